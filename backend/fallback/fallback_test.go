package fallback

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/adaptive-rate-limiter/arl/backend"
	"github.com/adaptive-rate-limiter/arl/backend/backendtest"
	"github.com/adaptive-rate-limiter/arl/backend/memory"
	"github.com/adaptive-rate-limiter/arl/limiter/bucket"
)

// flaky is a shared backend that can be taken down: a memory backend whose
// calls fail while down is set, counting the calls it receives.
type flaky struct {
	*memory.Backend
	down  atomic.Bool
	calls atomic.Int64
}

var errDown = errors.New("connection refused")

func (f *flaky) err() error {
	f.calls.Add(1)
	if f.down.Load() {
		return errDown
	}
	return nil
}

func (f *flaky) GetMany(ctx context.Context, keys []bucket.Key, now time.Time) ([]backend.Entry, error) {
	if err := f.err(); err != nil {
		return nil, err
	}
	return f.Backend.GetMany(ctx, keys, now)
}

func (f *flaky) ObserveMany(ctx context.Context, lessons []backend.KeyedObserve) error {
	if err := f.err(); err != nil {
		return err
	}
	return f.Backend.ObserveMany(ctx, lessons)
}

// canceled is a shared backend whose calls all end as its caller gave up.
type canceled struct{ *memory.Backend }

func (canceled) Reserve(context.Context, bucket.Key, backend.ReserveRequest) (backend.ReserveResult, error) {
	return backend.ReserveResult{}, context.Canceled
}

func (f *flaky) Reserve(ctx context.Context, k bucket.Key, r backend.ReserveRequest) (backend.ReserveResult, error) {
	if err := f.err(); err != nil {
		return backend.ReserveResult{}, err
	}
	return f.Backend.Reserve(ctx, k, r)
}

func (f *flaky) Settle(ctx context.Context, k bucket.Key, r backend.SettleRequest) (backend.SettleResult, error) {
	if err := f.err(); err != nil {
		return backend.SettleResult{}, err
	}
	return f.Backend.Settle(ctx, k, r)
}

func (f *flaky) Observe(ctx context.Context, k bucket.Key, r backend.ObserveRequest) error {
	if err := f.err(); err != nil {
		return err
	}
	return f.Backend.Observe(ctx, k, r)
}

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func TestConformanceWhileShared(t *testing.T) {
	backendtest.Run(t, func(*testing.T) backend.Backend {
		b, err := New(memory.New(memory.Options{}), Options{Share: 0.5})
		if err != nil {
			t.Fatal(err)
		}
		return b
	})
}

var key = bucket.Key{Namespace: "default", Provider: "openai", Account: "a", Model: "m"}

func reserve(t *testing.T, b *Backend, c *clock, id string) (backend.ReserveResult, error) {
	t.Helper()
	return b.Reserve(context.Background(), key, backend.ReserveRequest{ID: id, Cost: bucket.Cost(1, 0, 0), TTL: time.Minute, Now: c.Now()})
}

func TestFallbackAtShareAndRecovery(t *testing.T) {
	c := &clock{now: time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)}
	shared := &flaky{Backend: memory.New(memory.Options{})}
	var transitions []bool
	b, err := New(shared, Options{Share: 0.25, Failures: 2, Cooldown: 5 * time.Second, Clock: c.Now,
		OnChange: func(open bool) { transitions = append(transitions, open) }})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	// The shared backend teaches a limit of 40 requests per day.
	var o bucket.Observation
	o.Dims[bucket.RequestsPerDay] = bucket.DimObservation{Limit: 40, Remaining: 40, HasRemaining: true}
	if err := b.Observe(ctx, key, backend.ObserveRequest{Observation: o, Now: c.Now()}); err != nil {
		t.Fatal(err)
	}
	shared.down.Store(true)
	// Requests go on locally at a quarter of the learned limit: 10.
	admitted := 0
	for i := range 20 {
		res, err := b.Reserve(ctx, key, backend.ReserveRequest{ID: "r" + string(rune('a'+i)), Cost: bucket.Cost(1, 0, 0), TTL: time.Minute, Now: c.Now()})
		if err != nil {
			t.Fatalf("reserve during the outage: %v", err)
		}
		if res.Allowed {
			admitted++
		}
	}
	if admitted != 10 {
		t.Fatalf("admitted %d during the outage, want 10 (a quarter of 40)", admitted)
	}
	if !b.Open() || len(transitions) != 1 || !transitions[0] {
		t.Fatalf("breaker open=%v transitions %v", b.Open(), transitions)
	}
	// While open, the shared backend is not called.
	calls := shared.calls.Load()
	_, _ = reserve(t, b, c, "x")
	if shared.calls.Load() != calls {
		t.Fatal("the open breaker called the shared backend")
	}
	// A local reservation settles locally, even after the shared backend is back.
	shared.down.Store(false)
	if res, err := b.Settle(ctx, key, backend.SettleRequest{ID: "ra", Now: c.Now()}); err != nil || !res.Found {
		t.Fatalf("local settle: %+v %v", res, err)
	}
	// After the cool-down one probe closes the breaker and the shared backend decides again.
	c.Advance(5 * time.Second)
	res, err := reserve(t, b, c, "after")
	if err != nil || !res.Allowed {
		t.Fatalf("after recovery: %+v %v", res, err)
	}
	if b.Open() || len(transitions) != 2 || transitions[1] {
		t.Fatalf("breaker open=%v transitions %v", b.Open(), transitions)
	}
	if s, _, _ := shared.Get(ctx, key, c.Now()); s.InFlight != 1 {
		t.Fatalf("shared in flight %d, want the one reservation made after recovery", s.InFlight)
	}
}

func TestNoFallbackReturnsErrors(t *testing.T) {
	c := &clock{now: time.Unix(0, 0)}
	shared := &flaky{Backend: memory.New(memory.Options{})}
	shared.down.Store(true)
	b, _ := New(shared, Options{Failures: 1, Cooldown: time.Second, Clock: c.Now})
	if _, err := reserve(t, b, c, "a"); !errors.Is(err, errDown) {
		t.Fatalf("first failure: %v", err)
	}
	if _, err := reserve(t, b, c, "b"); !errors.Is(err, ErrOpen) {
		t.Fatalf("while open: %v", err)
	}
}

func TestInvalidShare(t *testing.T) {
	for _, s := range []float64{-0.1, 1.5} {
		if _, err := New(memory.New(memory.Options{}), Options{Share: s}); err == nil {
			t.Fatalf("share %v accepted", s)
		}
	}
}

func TestWarmUp(t *testing.T) {
	shared := &flaky{Backend: memory.New(memory.Options{})}
	ctx := context.Background()
	now := time.Now()
	if _, err := shared.Reserve(ctx, key, backend.ReserveRequest{ID: "w", Cost: bucket.Cost(1, 0, 0), Defaults: bucket.Limits{bucket.RequestsPerDay: 8}, TTL: time.Minute, Now: now}); err != nil {
		t.Fatal(err)
	}
	b, _ := New(shared, Options{Share: 0.5, Failures: 1})
	if err := b.WarmUp(ctx); err != nil {
		t.Fatal(err)
	}
	shared.down.Store(true)
	n := 0
	for i := range 10 {
		res, _ := b.Reserve(ctx, key, backend.ReserveRequest{ID: string(rune('a' + i)), Cost: bucket.Cost(1, 0, 0), TTL: time.Minute, Now: now})
		if res.Allowed {
			n++
		}
	}
	if n != 4 {
		t.Fatalf("admitted %d locally, want half of the warm-learned 8", n)
	}
}

func TestBulkThroughFallback(t *testing.T) {
	c := &clock{now: time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)}
	shared := &flaky{Backend: memory.New(memory.Options{})}
	b, err := New(shared, Options{Share: 0.5, Failures: 1, Cooldown: time.Minute, Clock: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	other := key
	other.Account = "b"
	lesson := func(k bucket.Key, limit int64) backend.KeyedObserve {
		var o bucket.Observation
		o.Dims[bucket.Requests] = bucket.DimObservation{Limit: limit}
		return backend.KeyedObserve{Key: k, ObserveRequest: backend.ObserveRequest{Observation: o, Now: c.Now()}}
	}
	// Shared backend up: one bulk call each way, to the shared buckets.
	calls := shared.calls.Load()
	if err := b.ObserveMany(ctx, []backend.KeyedObserve{lesson(key, 40), lesson(other, 60)}); err != nil {
		t.Fatal(err)
	}
	es, err := b.GetMany(ctx, []bucket.Key{key, other}, c.Now())
	if err != nil || len(es) != 2 || es[0].State.Dims[bucket.Requests].Limit != 40 || es[1].State.Dims[bucket.Requests].Limit != 60 {
		t.Fatalf("GetMany: %+v %v", es, err)
	}
	if n := shared.calls.Load() - calls; n != 2 {
		t.Fatalf("%d calls to the shared backend, want 2 bulk calls", n)
	}
	if s, ok, _ := shared.Get(ctx, other, c.Now()); !ok || s.Dims[bucket.Requests].Limit != 60 {
		t.Fatalf("shared bucket %+v (exists %v)", s, ok)
	}

	// Shared backend down: the lessons teach the local buckets at the share.
	shared.down.Store(true)
	if err := b.ObserveMany(ctx, []backend.KeyedObserve{lesson(key, 80)}); err != nil {
		t.Fatalf("ObserveMany during the outage: %v", err)
	}
	if !b.Open() {
		t.Fatal("the failed bulk call did not open the breaker")
	}
	es, err = b.GetMany(ctx, []bucket.Key{key, other}, c.Now())
	if err != nil || len(es) != 1 || es[0].Key != key || es[0].State.Dims[bucket.Requests].Limit != 40 {
		t.Fatalf("GetMany during the outage: %+v %v, want the local bucket at half of 80", es, err)
	}

	// The single-bucket path scales the same way.
	if err := b.Observe(ctx, other, lesson(other, 100).ObserveRequest); err != nil {
		t.Fatal(err)
	}
	if s, ok, _ := b.Get(ctx, other, c.Now()); !ok || s.Dims[bucket.Requests].Limit != 50 {
		t.Fatalf("local bucket after Observe during the outage: %+v (exists %v), want half of 100", s, ok)
	}

	// Without a fallback share, the caller sees the outage.
	nb, err := New(shared, Options{Failures: 1, Clock: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := nb.GetMany(ctx, []bucket.Key{key}, c.Now()); !errors.Is(err, errDown) {
		t.Fatalf("GetMany without fallback: %v", err)
	}
	if err := nb.ObserveMany(ctx, []backend.KeyedObserve{lesson(key, 80)}); !errors.Is(err, backend.ErrUnavailable) {
		t.Fatalf("ObserveMany with the breaker open: %v", err)
	}
}

func TestCanceledCallsLeaveTheBreakerAlone(t *testing.T) {
	c := &clock{now: time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)}
	shared := &flaky{Backend: memory.New(memory.Options{})}
	var transitions []bool
	b, err := New(shared, Options{Failures: 2, Cooldown: 5 * time.Second, Clock: c.Now,
		OnChange: func(open bool) { transitions = append(transitions, open) }})
	if err != nil {
		t.Fatal(err)
	}
	shared.down.Store(true)
	for range 2 {
		_, _ = reserve(t, b, c, "x")
	}
	if !b.Open() {
		t.Fatal("breaker not open after 2 failures")
	}
	// After the cool-down, the probe's caller gives up: the breaker neither
	// closes nor forgets the failures, and the next probe may go at once.
	c.Advance(5 * time.Second)
	b.shared = canceled{shared.Backend}
	if _, err := reserve(t, b, c, "y"); !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled probe: %v", err)
	}
	b.shared = shared
	calls := shared.calls.Load()
	if _, err := reserve(t, b, c, "z"); !errors.Is(err, errDown) || shared.calls.Load() != calls+1 {
		t.Fatalf("the next probe: %v (calls %d)", err, shared.calls.Load()-calls)
	}
	if !b.Open() || len(transitions) != 1 || !transitions[0] {
		t.Fatalf("breaker open=%v transitions %v, want one opening and no closing", b.Open(), transitions)
	}
}

// TestInvalidCallsLeaveTheBreakerAlone: a request the shared backend refuses
// (ErrInvalid) is the caller's fault, not an outage.
func TestInvalidCallsLeaveTheBreakerAlone(t *testing.T) {
	c := &clock{now: time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)}
	shared := &flaky{Backend: memory.New(memory.Options{})}
	b, err := New(shared, Options{Failures: 1, Clock: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	k := bucket.Key{Namespace: "invalid"}
	_, err = b.Reserve(context.Background(), k, backend.ReserveRequest{ID: "neg", Cost: bucket.Cost(1, -5, 0), TTL: time.Minute, Now: c.Now()})
	if !errors.Is(err, backend.ErrInvalid) {
		t.Fatalf("reserve of a negative cost: %v, want ErrInvalid", err)
	}
	if _, err := b.Settle(context.Background(), k, backend.SettleRequest{ID: "x", Actual: bucket.Cost(-1, 0, 0), Now: c.Now()}); !errors.Is(err, backend.ErrInvalid) {
		t.Fatalf("settle of a negative usage: %v, want ErrInvalid", err)
	}
	if b.Open() {
		t.Fatal("refused requests opened the breaker")
	}
}
