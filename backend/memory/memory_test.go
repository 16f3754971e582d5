package memory

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/adaptive-rate-limiter/arl/backend"
	"github.com/adaptive-rate-limiter/arl/backend/backendtest"
	"github.com/adaptive-rate-limiter/arl/limiter/bucket"
)

func TestConformance(t *testing.T) {
	backendtest.Run(t, func(*testing.T) backend.Backend { return New(Options{}) })
}

func TestIdleBucketsEvicted(t *testing.T) {
	b := New(Options{IdleTTL: time.Hour})
	ctx := context.Background()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	idle, busy := bucket.Key{Namespace: "idle"}, bucket.Key{Namespace: "busy"}
	for _, k := range []bucket.Key{idle, busy} {
		if _, err := b.Reserve(ctx, k, backend.ReserveRequest{ID: "r", Cost: bucket.Cost(1, 0, 0), TTL: 48 * time.Hour, Now: t0}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := b.Settle(ctx, idle, backend.SettleRequest{ID: "r", Now: t0}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.RecoverOrphans(ctx, t0.Add(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := b.Get(ctx, idle, t0); ok {
		t.Fatal("idle bucket kept")
	}
	if _, ok, _ := b.Get(ctx, busy, t0); !ok {
		t.Fatal("bucket with a reservation in flight evicted")
	}
}

func TestClosed(t *testing.T) {
	b := New(Options{})
	_ = b.Close()
	_, err := b.Reserve(context.Background(), bucket.Key{}, backend.ReserveRequest{ID: "x", Now: time.Now()})
	if !errors.Is(err, backend.ErrClosed) {
		t.Fatalf("err %v, want ErrClosed", err)
	}
}

func BenchmarkReserveSettle(b *testing.B) {
	be := New(Options{})
	ctx := context.Background()
	k := bucket.Key{Namespace: "default", Provider: "openai", Account: bucket.AccountID("sk-bench"), Model: "gpt-4o"}
	limits := bucket.Limits{bucket.Requests: 1 << 40, bucket.Tokens: 1 << 50}
	cost, used := bucket.Cost(1, 500, 1000), bucket.Cost(1, 500, 200)
	ids := make([]string, 1024)
	for i := range ids {
		ids[i] = "reservation-" + string(rune('a'+i%26)) + string(rune('a'+i/26%26)) + string(rune('a'+i/676))
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		now := time.Now()
		id := ids[i&1023]
		i++
		if _, err := be.Reserve(ctx, k, backend.ReserveRequest{ID: id, Cost: cost, Defaults: limits, TTL: time.Minute, Now: now}); err != nil {
			b.Fatal(err)
		}
		if _, err := be.Settle(ctx, k, backend.SettleRequest{ID: id, Actual: used, Now: now}); err != nil {
			b.Fatal(err)
		}
	}
}
