package redis

import (
	"context"
	"errors"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/adaptive-rate-limiter/arl/backend"
	"github.com/adaptive-rate-limiter/arl/backend/memory"
	"github.com/adaptive-rate-limiter/arl/limiter/bucket"
	"github.com/adaptive-rate-limiter/arl/test/redistest"
)

func TestBulkSingleNode(t *testing.T) {
	s := redistest.StartServer(t)
	runBulk(t, target{opts: Options{Addrs: []string{s.Addr}}, raw: s.Client()})
}

func TestBulkCluster(t *testing.T) {
	c := redistest.StartCluster(t, 3, 0)
	runBulk(t, target{opts: Options{Addrs: c.Addrs, Cluster: true}, raw: c.Client()})
}

func runBulk(t *testing.T, tg target) {
	for _, tc := range []struct {
		name string
		fn   func(*testing.T, target)
	}{
		{"GetMany", testGetMany},
		{"ObserveMany", testObserveMany},
		{"ScriptCacheFlushed", testBulkScriptCacheFlushed},
		{"PartialFailure", testObserveManyPartialFailure},
		{"Closed", testBulkClosed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tg := tg
			tg.opts.KeyPrefix = uniquePrefix()
			tc.fn(t, tg)
		})
	}
}

// bulkKeys returns n bucket keys, with parts that need escaping, spread over
// many hash slots.
func bulkKeys(n int) []bucket.Key {
	keys := make([]bucket.Key, n)
	for i := range keys {
		keys[i] = bucket.Key{Namespace: "ns" + strconv.Itoa(i%5), Provider: "p|" + strconv.Itoa(i%3), Account: bucket.AccountID(strconv.Itoa(i)), Model: "{m}%" + strconv.Itoa(i%4)}
	}
	return keys
}

// spreadOverMasters fails the test when keys of a cluster all live on one
// master, which would leave the per-node split of pipelines untested.
func spreadOverMasters(t *testing.T, tg target, keys []bucket.Key) {
	t.Helper()
	c, ok := tg.raw.(*goredis.ClusterClient)
	if !ok {
		return
	}
	masters := make(map[string]bool)
	for _, k := range keys {
		n, err := c.MasterForKey(context.Background(), keysFor(tg.opts.KeyPrefix, k).state)
		if err != nil {
			t.Fatal(err)
		}
		masters[n.Options().Addr] = true
	}
	if len(masters) < 2 {
		t.Fatalf("%d keys on %d master(s): want them spread", len(keys), len(masters))
	}
}

// randomLessons returns n lessons over keys, a bucket's lessons in time
// order, with limits that change and some exhaustions and blocks.
func randomLessons(rng *rand.Rand, keys []bucket.Key, n int, now time.Time) []backend.KeyedObserve {
	out := make([]backend.KeyedObserve, n)
	for i := range out {
		k := keys[rng.IntN(len(keys))]
		o := bucket.Observation{At: now.Add(-time.Second + time.Duration(i)*time.Microsecond)}
		for _, d := range []bucket.Dimension{bucket.Requests, bucket.Tokens, bucket.TokensPerDay} {
			if rng.IntN(3) == 0 {
				continue
			}
			limit := int64(1000 * (1 + rng.IntN(3)))
			o.Dims[d] = bucket.DimObservation{Limit: limit, Remaining: rng.Int64N(limit), HasRemaining: rng.IntN(2) == 0, Reset: time.Duration(rng.IntN(5000)) * time.Millisecond}
		}
		if rng.IntN(20) == 0 {
			o.RetryAfter, o.Reason = time.Duration(1+rng.IntN(3000))*time.Millisecond, "upstream"
		}
		out[i] = backend.KeyedObserve{Key: k, ObserveRequest: backend.ObserveRequest{Observation: o, Defaults: bucket.Limits{bucket.Requests: 50}, Now: now}}
	}
	return out
}

// sameStates fails the test unless the Redis and memory backends hold the
// same state for every key, as Get reads it.
func sameStates(t *testing.T, red *Backend, mem *memory.Backend, keys []bucket.Key, now time.Time) {
	t.Helper()
	ctx := context.Background()
	for _, k := range keys {
		want, wantOK, err := mem.Get(ctx, k, now)
		if err != nil {
			t.Fatal(err)
		}
		got, ok, err := red.Get(ctx, k, now)
		if err != nil {
			t.Fatalf("get %s: %v", k, err)
		}
		if ok != wantOK {
			t.Fatalf("%s: redis has it %v, memory %v", k, ok, wantOK)
		}
		if diff := stateDiff(got, want); diff != "" {
			t.Fatalf("%s: %s\nredis  %+v\nmemory %+v", k, diff, got, want)
		}
	}
}

func testGetMany(t *testing.T, tg target) {
	now := t0
	red := newBackend(t, tg.opts)
	pin(red, &now)
	mem := memory.New(memory.Options{})
	ctx := context.Background()
	keys := bulkKeys(60)
	spreadOverMasters(t, tg, keys)
	var asked []bucket.Key
	for i, k := range keys {
		if i%3 == 2 {
			asked = append(asked, k) // never created
			continue
		}
		req := backend.ReserveRequest{ID: "r", Cost: bucket.Cost(1, int64(i), 0), Defaults: bucket.Limits{bucket.Requests: 10, bucket.Tokens: 1000}, TTL: time.Minute, Now: now}
		for _, b := range []backend.Backend{red, mem} {
			if _, err := b.Reserve(ctx, k, req); err != nil {
				t.Fatal(err)
			}
		}
		asked = append(asked, k)
	}
	asked = append(asked, keys[0]) // asked twice: returned twice
	now = now.Add(1500 * time.Millisecond)
	got, err := red.GetMany(ctx, asked, now)
	if err != nil {
		t.Fatal(err)
	}
	want, err := mem.GetMany(ctx, asked, now)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) || len(got) != 41 {
		t.Fatalf("redis returned %d entries, memory %d, want 41", len(got), len(want))
	}
	for i := range got {
		if got[i].Key != want[i].Key {
			t.Fatalf("entry %d is %s, want %s", i, got[i].Key, want[i].Key)
		}
		if diff := stateDiff(got[i].State, want[i].State); diff != "" {
			t.Fatalf("%s: %s", got[i].Key, diff)
		}
	}
	if got, err := red.GetMany(ctx, nil, now); err != nil || len(got) != 0 {
		t.Fatalf("no keys: %v %v", got, err)
	}
}

func testObserveMany(t *testing.T, tg target) {
	now := t0
	red := newBackend(t, tg.opts)
	pin(red, &now)
	mem := memory.New(memory.Options{})
	keys := bulkKeys(40)
	spreadOverMasters(t, tg, keys)
	// More lessons than one pipeline carries: pages split a bucket's lessons.
	lessons := randomLessons(rand.New(rand.NewPCG(7, 8)), keys, bulkPage+150, now)
	ctx := context.Background()
	if err := red.ObserveMany(ctx, lessons); err != nil {
		t.Fatal(err)
	}
	if err := mem.ObserveMany(ctx, lessons); err != nil {
		t.Fatal(err)
	}
	sameStates(t, red, mem, keys, now)
	if err := red.ObserveMany(ctx, nil); err != nil {
		t.Fatalf("no lessons: %v", err)
	}
}

// testBulkScriptCacheFlushed checks the EVAL fallback of both bulk
// operations, and that a bucket's lessons still apply in order after it.
func testBulkScriptCacheFlushed(t *testing.T, tg target) {
	now := t0
	red := newBackend(t, tg.opts)
	pin(red, &now)
	mem := memory.New(memory.Options{})
	ctx := context.Background()
	keys := bulkKeys(12)
	lessons := randomLessons(rand.New(rand.NewPCG(3, 4)), keys, 80, now)
	if err := tg.raw.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if err := red.ObserveMany(ctx, lessons); err != nil {
		t.Fatalf("observe many after SCRIPT FLUSH: %v", err)
	}
	if err := mem.ObserveMany(ctx, lessons); err != nil {
		t.Fatal(err)
	}
	sameStates(t, red, mem, keys, now)
	if err := tg.raw.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	got, err := red.GetMany(ctx, keys, now)
	if err != nil {
		t.Fatalf("get many after SCRIPT FLUSH: %v", err)
	}
	want, _ := mem.GetMany(ctx, keys, now)
	if len(got) != len(want) {
		t.Fatalf("%d entries, want %d", len(got), len(want))
	}
}

// testObserveManyPartialFailure breaks one bucket (its state key holds a
// string): only its lesson fails, reported per lesson.
func testObserveManyPartialFailure(t *testing.T, tg target) {
	now := t0
	red := newBackend(t, tg.opts)
	pin(red, &now)
	ctx := context.Background()
	keys := bulkKeys(3)
	if err := tg.raw.Set(ctx, keysFor(tg.opts.KeyPrefix, keys[1]).state, "not a hash", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	lessons := make([]backend.KeyedObserve, len(keys))
	for i, k := range keys {
		var o bucket.Observation
		o.At = now
		o.Dims[bucket.Tokens] = bucket.DimObservation{Limit: 1000, Remaining: 700, HasRemaining: true}
		lessons[i] = backend.KeyedObserve{Key: k, ObserveRequest: backend.ObserveRequest{Observation: o, Now: now}}
	}
	err := red.ObserveMany(ctx, lessons)
	var be *backend.BulkError
	if !errors.As(err, &be) {
		t.Fatalf("err %v, want a *backend.BulkError", err)
	}
	for i := range lessons {
		if failed := backend.OperationErr(err, i) != nil; failed != (i == 1) {
			t.Fatalf("lesson %d failed=%v: %v", i, failed, err)
		}
	}
	for _, k := range []bucket.Key{keys[0], keys[2]} {
		s, ok, err := red.Get(ctx, k, now)
		if err != nil || !ok || s.Dims[bucket.Tokens].Limit != 1000 {
			t.Fatalf("%s not applied: %+v %v %v", k, s, ok, err)
		}
	}
	if _, err := red.GetMany(ctx, keys, now); err == nil {
		t.Fatal("get many over a broken bucket succeeded")
	}
}

func testBulkClosed(t *testing.T, tg target) {
	red := newBackend(t, tg.opts)
	_ = red.Close()
	ctx := context.Background()
	if _, err := red.GetMany(ctx, bulkKeys(1), t0); !errors.Is(err, backend.ErrClosed) {
		t.Fatalf("get many: %v", err)
	}
	if err := red.ObserveMany(ctx, []backend.KeyedObserve{{Key: bulkKeys(1)[0]}}); !errors.Is(err, backend.ErrClosed) {
		t.Fatalf("observe many: %v", err)
	}
}
