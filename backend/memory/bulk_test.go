package memory

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/adaptive-rate-limiter/arl/backend"
	"github.com/adaptive-rate-limiter/arl/limiter/bucket"
)

var bulkT0 = time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)

func tokensLesson(k bucket.Key, at time.Duration, limit, rem int64) backend.KeyedObserve {
	o := bucket.Observation{At: bulkT0.Add(at)}
	o.Dims[bucket.Tokens] = bucket.DimObservation{Limit: limit, Remaining: rem, HasRemaining: rem >= 0}
	return backend.KeyedObserve{Key: k, ObserveRequest: backend.ObserveRequest{Observation: o, Now: bulkT0.Add(at)}}
}

func TestGetMany(t *testing.T) {
	b := New(Options{})
	ctx := context.Background()
	a, c, missing := bucket.Key{Namespace: "a"}, bucket.Key{Namespace: "c"}, bucket.Key{Namespace: "missing"}
	for _, k := range []bucket.Key{a, c} {
		if _, err := b.Reserve(ctx, k, backend.ReserveRequest{ID: "r", Cost: bucket.Cost(1, 0, 0), Defaults: bucket.Limits{bucket.Requests: 10}, TTL: time.Minute, Now: bulkT0}); err != nil {
			t.Fatal(err)
		}
	}
	got, err := b.GetMany(ctx, []bucket.Key{a, missing, c, a}, bulkT0.Add(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	want := []bucket.Key{a, c, a}
	if len(got) != len(want) {
		t.Fatalf("got %d entries, want %d", len(got), len(want))
	}
	for i, e := range got {
		s, _, _ := b.Get(ctx, want[i], bulkT0.Add(time.Second))
		if e.Key != want[i] || e.State != s {
			t.Fatalf("entry %d: %+v, want %s %+v", i, e, want[i], s)
		}
	}
}

func TestObserveManyInOrder(t *testing.T) {
	ctx := context.Background()
	a, c := bucket.Key{Namespace: "a"}, bucket.Key{Namespace: "c"}
	lessons := []backend.KeyedObserve{
		tokensLesson(a, 0, 1000, 800),
		tokensLesson(c, 0, 500, 100),
		tokensLesson(a, time.Millisecond, 2000, -1), // limit raised, no remaining
		tokensLesson(a, 2*time.Millisecond, 2000, 1500),
	}
	bulk, one := New(Options{}), New(Options{})
	if err := bulk.ObserveMany(ctx, lessons); err != nil {
		t.Fatal(err)
	}
	for _, l := range lessons {
		if err := one.Observe(ctx, l.Key, l.ObserveRequest); err != nil {
			t.Fatal(err)
		}
	}
	now := bulkT0.Add(3 * time.Millisecond)
	for _, k := range []bucket.Key{a, c} {
		got, _, _ := bulk.Get(ctx, k, now)
		want, _, _ := one.Get(ctx, k, now)
		if got != want {
			t.Fatalf("%s: %+v, want %+v", k, got, want)
		}
	}
	if d, _, _ := bulk.Get(ctx, a, now); d.Dims[bucket.Tokens].Limit != 2000 {
		t.Fatalf("lessons applied out of order: %+v", d.Dims[bucket.Tokens])
	}
}

func TestBulkClosed(t *testing.T) {
	b := New(Options{})
	_ = b.Close()
	ctx := context.Background()
	if _, err := b.GetMany(ctx, []bucket.Key{{}}, bulkT0); !errors.Is(err, backend.ErrClosed) {
		t.Fatalf("get many: %v", err)
	}
	err := b.ObserveMany(ctx, []backend.KeyedObserve{tokensLesson(bucket.Key{}, 0, 1, 1)})
	if !errors.Is(err, backend.ErrClosed) || backend.OperationErr(err, 0) == nil {
		t.Fatalf("observe many: %v", err)
	}
}
