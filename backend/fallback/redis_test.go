package fallback

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/adaptive-rate-limiter/arl/backend"
	"github.com/adaptive-rate-limiter/arl/backend/redis"
	"github.com/adaptive-rate-limiter/arl/limiter/bucket"
	"github.com/adaptive-rate-limiter/arl/test/redistest"
)

// TestRedisStallReleasesQueuedReserves: reservations that time out on a
// stalled Redis (SIGSTOP) are made all the same when it resumes, by the
// scripts it read before it stopped. Nobody settles them; the fallback's
// retries release them within a couple of recovery rounds, long before the
// 10-minute reservation TTL, so that the bucket is full again.
func TestRedisStallReleasesQueuedReserves(t *testing.T) {
	redistest.RequireRedis(t)
	srv := redistest.StartServer(t)
	ctx := context.Background()
	const calls = 8
	rb, err := redis.New(ctx, redis.Options{Addrs: []string{srv.Addr}, Timeout: 200 * time.Millisecond, PoolSize: calls})
	if err != nil {
		t.Fatal(err)
	}
	c := &clock{now: time.Now()}
	b, err := New(rb, Options{Clock: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	k := bucket.Key{Namespace: "stall", Provider: "groq", Account: "a", Model: "m"}
	limits := bucket.Limits{bucket.RequestsPerDay: 100, bucket.TokensPerDay: 100_000}
	const ttl = 10 * time.Minute
	reserveAll := func(round string) []error {
		errs := make([]error, calls)
		var wg sync.WaitGroup
		for i := range calls {
			wg.Go(func() {
				_, errs[i] = b.Reserve(ctx, k, backend.ReserveRequest{ID: fmt.Sprint(round, i), Cost: bucket.Cost(1, 0, 2000),
					Defaults: limits, TTL: ttl, Now: c.Now()})
			})
		}
		wg.Wait()
		return errs
	}
	// Open a connection per concurrent call (so that, stalled, each call
	// writes its script), and leave the bucket full.
	for i, err := range reserveAll("warm") {
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b.Settle(ctx, k, backend.SettleRequest{ID: fmt.Sprint("warm", i), Now: c.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	state := func() bucket.State {
		t.Helper()
		s, ok, err := rb.Get(ctx, k, time.Time{})
		if err != nil || !ok {
			t.Fatalf("bucket: %v (exists %v)", err, ok)
		}
		return s
	}
	if s := state(); s.InFlight != 0 {
		t.Fatalf("%d in flight before the stall", s.InFlight)
	}

	srv.Pause()
	for i, err := range reserveAll("stalled") {
		if err == nil {
			t.Fatalf("reserve %d succeeded on a stalled Redis", i)
		}
	}
	srv.Resume()
	// Redis runs the scripts it read before it stopped: the bucket holds
	// reservations that nobody will settle. (Polled: Redis answers the
	// first read after its resume perhaps before it has run them all; a
	// second read comes after them.)
	deadline := time.Now().Add(10 * time.Second)
	for state().InFlight == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no reservation made by the stalled calls: the stall did not reproduce")
		}
		time.Sleep(10 * time.Millisecond)
	}
	orphans := state().InFlight
	t.Logf("%d of %d timed-out reservations made by Redis after it resumed", orphans, calls)

	// Two recovery rounds, 10 s apart on the fallback's clock (the first
	// after the breaker's cool-down), long before the TTL.
	for range 2 {
		c.Advance(10 * time.Second)
		if _, err := b.RecoverOrphans(ctx, c.Now()); err != nil {
			t.Fatal(err)
		}
	}
	s := state()
	if s.InFlight != 0 || s.Dims[bucket.RequestsPerDay].Level < 100 || s.Dims[bucket.TokensPerDay].Level < 100_000 {
		t.Fatalf("after 2 recovery rounds: %d of %d orphans in flight, %.1f requests and %.0f tokens left; want 0 and a full bucket (100, 100000)",
			s.InFlight, orphans, s.Dims[bucket.RequestsPerDay].Level, s.Dims[bucket.TokensPerDay].Level)
	}
}
