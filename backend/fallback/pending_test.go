package fallback

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/adaptive-rate-limiter/arl/backend"
	"github.com/adaptive-rate-limiter/arl/backend/memory"
	"github.com/adaptive-rate-limiter/arl/limiter/bucket"
)

// stalling is a shared backend that stalls like a SIGSTOPped Redis: while
// stalled, its calls fail (their callers time out), yet Reserve and Settle
// are queued and happen when run is called, as Redis runs the scripts it read
// before it stopped. While lost is set, calls fail without happening (the
// command never left). It records the settlements that reach it.
type stalling struct {
	*memory.Backend

	mu      sync.Mutex
	stalled bool
	lost    bool
	queued  []func()
	settles []backend.SettleRequest
	// block, when set, makes Settle wait for it to close, or fail with a
	// timeout when its context ends first (as Redis's per-call deadline,
	// derived from it, would); entered receives one value per blocked call.
	block, entered chan struct{}
}

var errTimeout = errors.New("i/o timeout")

// fail returns the error of a call while the backend is away, queueing op
// (when not nil) to happen on run while stalled.
func (s *stalling) fail(op func()) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.lost:
		return errDown
	case s.stalled:
		if op != nil {
			s.queued = append(s.queued, op)
		}
		return errTimeout
	}
	return nil
}

func (s *stalling) set(stalled, lost bool) {
	s.mu.Lock()
	s.stalled, s.lost = stalled, lost
	s.mu.Unlock()
}

// run makes the queued calls happen.
func (s *stalling) run() {
	s.mu.Lock()
	q := s.queued
	s.queued = nil
	s.mu.Unlock()
	for _, op := range q {
		op()
	}
}

func (s *stalling) settled() []backend.SettleRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]backend.SettleRequest(nil), s.settles...)
}

func (s *stalling) Reserve(ctx context.Context, k bucket.Key, r backend.ReserveRequest) (backend.ReserveResult, error) {
	if err := s.fail(func() { _, _ = s.Backend.Reserve(context.Background(), k, r) }); err != nil {
		return backend.ReserveResult{}, err
	}
	return s.Backend.Reserve(ctx, k, r)
}

func (s *stalling) Settle(ctx context.Context, k bucket.Key, r backend.SettleRequest) (backend.SettleResult, error) {
	if err := s.fail(func() { _, _ = s.Backend.Settle(context.Background(), k, r) }); err != nil {
		return backend.SettleResult{}, err
	}
	s.mu.Lock()
	s.settles = append(s.settles, r)
	block, entered := s.block, s.entered
	s.mu.Unlock()
	if block != nil {
		entered <- struct{}{}
		select {
		case <-block:
		case <-ctx.Done():
			return backend.SettleResult{}, errTimeout
		}
	}
	return s.Backend.Settle(ctx, k, r)
}

func (s *stalling) Get(ctx context.Context, k bucket.Key, now time.Time) (bucket.State, bool, error) {
	if err := s.fail(nil); err != nil {
		return bucket.State{}, false, err
	}
	return s.Backend.Get(ctx, k, now)
}

func (s *stalling) RecoverOrphans(ctx context.Context, now time.Time) (int, error) {
	if err := s.fail(nil); err != nil {
		return 0, err
	}
	return s.Backend.RecoverOrphans(ctx, now)
}

// outcomes counts what Options.OnPendingEnd reports, and keeps the last
// value OnPending reported.
type outcomes struct {
	mu    sync.Mutex
	n     map[string]int
	gauge int
}

func (o *outcomes) options(opts Options) Options {
	o.n = make(map[string]int)
	opts.OnPending = func(n int) { o.mu.Lock(); o.gauge = n; o.mu.Unlock() }
	opts.OnPendingEnd = func(outcome string, n int) { o.mu.Lock(); o.n[outcome] += n; o.mu.Unlock() }
	return opts
}

func (o *outcomes) get(outcome string) int { o.mu.Lock(); defer o.mu.Unlock(); return o.n[outcome] }
func (o *outcomes) pending() int           { o.mu.Lock(); defer o.mu.Unlock(); return o.gauge }

// pendingRig is a fallback backend over a stalling shared backend, on a
// fixed clock, with a bucket of 10 requests and 10,000 tokens a day.
type pendingRig struct {
	t      *testing.T
	c      *clock
	shared *stalling
	b      *Backend
	out    *outcomes
}

var dayLimits = bucket.Limits{bucket.RequestsPerDay: 10, bucket.TokensPerDay: 10_000}

func newPendingRig(t *testing.T, opts Options) *pendingRig {
	t.Helper()
	r := &pendingRig{t: t, c: &clock{now: time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)},
		shared: &stalling{Backend: memory.New(memory.Options{})}, out: &outcomes{}}
	opts.Clock = r.c.Now
	b, err := New(r.shared, r.out.options(opts))
	if err != nil {
		t.Fatal(err)
	}
	r.b = b
	t.Cleanup(func() { _ = b.Close() })
	return r
}

func (r *pendingRig) reserve(id string, tokens int64) (backend.ReserveResult, error) {
	return r.b.Reserve(context.Background(), key, backend.ReserveRequest{ID: id, Cost: bucket.Cost(1, 0, tokens),
		Defaults: dayLimits, TTL: time.Minute, Now: r.c.Now()})
}

// timeOut reserves id while the shared backend is stalled: the call fails,
// and the reserve waits in its queue. Then the backend answers again.
func (r *pendingRig) timeOut(id string) {
	r.t.Helper()
	r.shared.set(true, false)
	if _, err := r.reserve(id, 1000); err == nil {
		r.t.Fatalf("reserve %s succeeded on a stalled backend", id)
	}
	r.shared.set(false, false)
}

// blockSettles makes the shared backend's Settle wait (see stalling.block).
func (r *pendingRig) blockSettles() {
	r.shared.mu.Lock()
	r.shared.block, r.shared.entered = make(chan struct{}), make(chan struct{}, 1)
	r.shared.mu.Unlock()
}

func (r *pendingRig) recover() {
	r.t.Helper()
	if _, err := r.b.RecoverOrphans(context.Background(), r.c.Now()); err != nil {
		r.t.Fatalf("recover orphans: %v", err)
	}
}

// want checks the shared bucket: reservations in flight, and requests and
// tokens available (within the refill of a minute: 7 tokens).
func (r *pendingRig) want(inFlight int64, requests, tokens float64) {
	r.t.Helper()
	s, ok, err := r.shared.Backend.Get(context.Background(), key, r.c.Now())
	if err != nil || !ok {
		r.t.Fatalf("shared bucket: %v (exists %v)", err, ok)
	}
	got := [2]float64{s.Dims[bucket.RequestsPerDay].Level, s.Dims[bucket.TokensPerDay].Level}
	if s.InFlight != inFlight || math.Abs(got[0]-requests) > 0.1 || math.Abs(got[1]-tokens) > 10 {
		r.t.Fatalf("shared bucket: %d in flight, %.2f requests and %.2f tokens left; want %d, %v and %v",
			s.InFlight, got[0], got[1], inFlight, requests, tokens)
	}
}

// TestPendingReleaseAfterStall: reservations whose calls timed out on a
// stalled shared backend, but which it made when it resumed, are released by
// the next RecoverOrphans.
func TestPendingReleaseAfterStall(t *testing.T) {
	r := newPendingRig(t, Options{Failures: 2, Cooldown: 5 * time.Second})
	if _, err := r.reserve("before", 1000); err != nil {
		t.Fatal(err)
	}
	r.shared.set(true, false)
	for _, id := range []string{"a", "b", "c"} {
		if _, err := r.reserve(id, 1000); err == nil {
			t.Fatalf("reserve %s succeeded on a stalled backend", id)
		}
	}
	// Two calls were sent (the third found the breaker open): two releases.
	if n := r.b.Pending(); n != 2 || r.out.pending() != 2 {
		t.Fatalf("%d pending (gauge %d), want 2", n, r.out.pending())
	}
	r.shared.set(false, false)
	r.shared.run()
	r.want(3, 7, 7000)
	r.c.Advance(5 * time.Second)
	r.recover()
	r.want(1, 9, 9000)
	if r.b.Pending() != 0 || r.out.pending() != 0 || r.out.get(PendingRetried) != 2 {
		t.Fatalf("%d pending (gauge %d), %d retried; want 0, 0, 2", r.b.Pending(), r.out.pending(), r.out.get(PendingRetried))
	}
	// Nothing more is sent.
	n := len(r.shared.settled())
	r.recover()
	if len(r.shared.settled()) != n {
		t.Fatal("a settlement was sent again after it ended")
	}
}

// TestPendingReleaseUntilDeadline: a release the shared backend does not find
// is retried, as the reserve may not have run yet, until the reservation's
// deadline; then it is dropped.
func TestPendingReleaseUntilDeadline(t *testing.T) {
	for _, happens := range []bool{true, false} {
		t.Run(fmt.Sprint("reserve happens ", happens), func(t *testing.T) {
			r := newPendingRig(t, Options{Failures: 1, Cooldown: 5 * time.Second})
			r.timeOut("late") // it answers, but has not run the queued reserve
			for i, step := range []time.Duration{10 * time.Second, 20 * time.Second} {
				r.c.Advance(step)
				r.recover()
				if r.b.Pending() != 1 || len(r.shared.settled()) != i+1 {
					t.Fatalf("round %d: %d pending, %d releases sent; want 1, %d", i, r.b.Pending(), len(r.shared.settled()), i+1)
				}
			}
			if happens {
				r.shared.run()
				r.want(1, 9, 9000)
				r.c.Advance(20 * time.Second)
				r.recover()
				r.want(0, 10, 10_000)
				if r.b.Pending() != 0 || r.out.get(PendingRetried) != 1 {
					t.Fatalf("%d pending, %d retried after the reserve ran; want 0, 1", r.b.Pending(), r.out.get(PendingRetried))
				}
				return
			}
			r.c.Advance(30 * time.Second) // the deadline: TTL 1 minute
			r.recover()
			if r.b.Pending() != 0 || r.out.get(PendingExpired) != 1 || len(r.shared.settled()) != 2 {
				t.Fatalf("at the deadline: %d pending, %d expired, %d releases sent; want 0, 1, 2",
					r.b.Pending(), r.out.get(PendingExpired), len(r.shared.settled()))
			}
		})
	}
}

// TestPendingSettleRetried: a settlement that failed, or that the open
// breaker did not send, is sent again with its usage and observation.
func TestPendingSettleRetried(t *testing.T) {
	r := newPendingRig(t, Options{Failures: 1, Cooldown: 5 * time.Second})
	for _, id := range []string{"x", "y"} {
		if res, err := r.reserve(id, 1000); err != nil || !res.Allowed {
			t.Fatalf("reserve %s: %+v %v", id, res, err)
		}
	}
	ctx := context.Background()
	var o bucket.Observation
	o.At = r.c.Now()
	o.Dims[bucket.TokensPerDay] = bucket.DimObservation{Limit: 20_000}
	x := backend.SettleRequest{ID: "x", Actual: bucket.Cost(1, 100, 200), Observation: &o, Defaults: dayLimits, Now: r.c.Now()}
	y := backend.SettleRequest{ID: "y", Actual: bucket.Cost(1, 0, 50), Defaults: dayLimits, Now: r.c.Now()}
	r.shared.set(false, true) // lost: the settlement never arrives
	if _, err := r.b.Settle(ctx, key, x); !errors.Is(err, errDown) {
		t.Fatalf("settle x: %v", err)
	}
	if _, err := r.b.Settle(ctx, key, y); !errors.Is(err, ErrOpen) {
		t.Fatalf("settle y with the breaker open: %v", err)
	}
	if r.b.Pending() != 2 {
		t.Fatalf("%d pending, want 2", r.b.Pending())
	}
	r.shared.set(false, false)
	r.c.Advance(5 * time.Second)
	r.recover()
	got := r.shared.settled()
	if len(got) != 2 || r.b.Pending() != 0 || r.out.get(PendingRetried) != 2 {
		t.Fatalf("%d settlements sent, %d pending, %d retried; want 2, 0, 2", len(got), r.b.Pending(), r.out.get(PendingRetried))
	}
	for _, s := range got {
		want := map[string]backend.SettleRequest{"x": x, "y": y}[s.ID]
		if s.Actual != want.Actual || s.Observation != want.Observation || s.Defaults != want.Defaults || !s.Now.Equal(r.c.Now()) {
			t.Fatalf("retried %+v, want %+v at %v", s, want, r.c.Now())
		}
	}
	// Charged their usage: 300 and 50 tokens of a limit now 20,000.
	s, _, _ := r.shared.Backend.Get(ctx, key, r.c.Now())
	if s.InFlight != 0 || s.Dims[bucket.TokensPerDay].Limit != 20_000 || s.Dims[bucket.RequestsPerDay].Level > 8.1 {
		t.Fatalf("shared bucket after the retries: %+v", s)
	}
	if tokens := s.Dims[bucket.TokensPerDay].Level; math.Abs(tokens-(20_000-350)) > 1 {
		t.Fatalf("%v tokens left, want 20,000 less the 350 used", tokens)
	}
}

// TestPendingWithLocalFallback: a reservation taken locally under the ID of
// a shared reserve that timed out settles locally; the retry releases the
// shared one, once: neither bucket is refunded twice.
func TestPendingWithLocalFallback(t *testing.T) {
	r := newPendingRig(t, Options{Share: 0.5, Failures: 1, Cooldown: 5 * time.Second})
	ctx := context.Background()
	if res, err := r.reserve("held", 1000); err != nil || !res.Allowed {
		t.Fatalf("reserve held: %+v %v", res, err)
	}
	r.shared.set(true, false)
	if res, err := r.reserve("z", 1000); err != nil || !res.Allowed {
		t.Fatalf("local reserve z: %+v %v", res, err)
	}
	r.shared.set(false, false)
	r.shared.run() // the shared reserve of z happens too
	r.want(2, 8, 8000)
	if res, err := r.b.Settle(ctx, key, backend.SettleRequest{ID: "z", Actual: bucket.Cost(1, 0, 300), Now: r.c.Now()}); err != nil || !res.Found {
		t.Fatalf("settle z: %+v %v", res, err)
	}
	if len(r.shared.settled()) != 0 {
		t.Fatal("the local reservation was settled in the shared backend")
	}
	local, _, _ := r.b.local.Get(ctx, key, r.c.Now())
	if local.InFlight != 0 || math.Abs(local.Dims[bucket.TokensPerDay].Level-(5000-300)) > 1 {
		t.Fatalf("local bucket: %+v, want half of 10,000 less the 300 used", local)
	}
	for range 3 {
		r.c.Advance(5 * time.Second)
		r.recover()
	}
	// Released once: "held" still counts.
	r.want(1, 9, 9000)
	if n := len(r.shared.settled()); n != 1 || r.b.Pending() != 0 {
		t.Fatalf("%d releases sent, %d pending; want 1, 0", n, r.b.Pending())
	}
	// The limiter settling z again changes nothing anywhere.
	if res, err := r.b.Settle(ctx, key, backend.SettleRequest{ID: "z", Now: r.c.Now()}); err != nil || res.Found {
		t.Fatalf("settle z again: %+v %v", res, err)
	}
	r.want(1, 9, 9000)
}

func TestPendingBound(t *testing.T) {
	r := newPendingRig(t, Options{Failures: 100, MaxPending: 2})
	r.shared.set(true, false)
	for i := range 3 {
		_, _ = r.reserve(fmt.Sprint("r", i), 10)
	}
	if r.b.Pending() != 2 || r.out.pending() != 2 || r.out.get(PendingDropped) != 1 {
		t.Fatalf("%d pending (gauge %d), %d dropped; want 2, 2, 1", r.b.Pending(), r.out.pending(), r.out.get(PendingDropped))
	}
	// A refused request is the caller's fault and changed nothing: not kept.
	r.shared.set(false, false)
	_, err := r.b.Reserve(context.Background(), key, backend.ReserveRequest{ID: "neg", Cost: bucket.Cost(-1, 0, 0), TTL: time.Minute, Now: r.c.Now()})
	if !errors.Is(err, backend.ErrInvalid) || r.b.Pending() != 2 {
		t.Fatalf("invalid reserve: %v, %d pending", err, r.b.Pending())
	}
	// Close drops what is still pending.
	if err := r.b.Close(); err != nil {
		t.Fatal(err)
	}
	if r.out.pending() != 0 || r.out.get(PendingDropped) != 3 {
		t.Fatalf("after Close: gauge %d, %d dropped; want 0, 3", r.out.pending(), r.out.get(PendingDropped))
	}
}

// TestPendingRetriedWhenBreakerCloses: the call that closes the breaker
// starts a round of retries in the background, without waiting for
// RecoverOrphans.
func TestPendingRetriedWhenBreakerCloses(t *testing.T) {
	r := newPendingRig(t, Options{Failures: 1, Cooldown: 5 * time.Second})
	r.timeOut("a")
	r.shared.run()
	r.c.Advance(5 * time.Second)
	if _, _, err := r.b.Get(context.Background(), key, r.c.Now()); err != nil || r.b.Open() {
		t.Fatalf("probe: %v (open %v)", err, r.b.Open())
	}
	r.b.wg.Wait() // the round started by the probe
	r.want(0, 10, 10_000)
	if r.b.Pending() != 0 {
		t.Fatalf("%d pending after the breaker closed", r.b.Pending())
	}
}

// TestCloseStopsRetries: Close cancels a round of retries in progress and
// waits for it.
func TestCloseStopsRetries(t *testing.T) {
	r := newPendingRig(t, Options{Failures: 1, Cooldown: 5 * time.Second})
	r.timeOut("a")
	r.blockSettles()
	r.c.Advance(5 * time.Second)
	if _, _, err := r.b.Get(context.Background(), key, r.c.Now()); err != nil {
		t.Fatal(err)
	}
	<-r.shared.entered // the background round waits in Settle
	if err := r.b.Close(); err != nil {
		t.Fatal(err)
	}
	if r.b.Pending() != 0 || r.out.get(PendingDropped) != 1 || len(r.shared.settled()) != 1 {
		t.Fatalf("after Close: %d pending, %d dropped, %d settlements sent; want 0, 1, 1",
			r.b.Pending(), r.out.get(PendingDropped), len(r.shared.settled()))
	}
}

// TestPendingRoundOutOfTime: a retry cut short by the caller's deadline
// counts no failure against the shared backend, and stays pending.
func TestPendingRoundOutOfTime(t *testing.T) {
	r := newPendingRig(t, Options{Failures: 1, Cooldown: 5 * time.Second})
	r.timeOut("a")
	r.blockSettles()
	r.c.Advance(5 * time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-r.shared.entered; cancel() }()
	if _, err := r.b.RecoverOrphans(ctx, r.c.Now()); err != nil {
		t.Fatal(err)
	}
	if r.b.Open() || r.b.Pending() != 1 {
		t.Fatalf("breaker open %v, %d pending; want closed, 1", r.b.Open(), r.b.Pending())
	}
}

// TestPendingConcurrent runs reservations, settlements, stalls and
// recoveries at once (for the race detector); once the shared backend is
// back, every reservation in it is ended.
func TestPendingConcurrent(t *testing.T) {
	r := newPendingRig(t, Options{Share: 0.5, Failures: 2, Cooldown: time.Second})
	ctx := context.Background()
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			r.shared.set(i%3 == 0, i%7 == 0)
			if i%3 != 0 {
				r.shared.run()
			}
			r.c.Advance(time.Second)
			_, _ = r.b.RecoverOrphans(ctx, r.c.Now())
		}
	})
	var workers sync.WaitGroup
	for w := range 4 {
		workers.Go(func() {
			for i := range 200 {
				id := fmt.Sprintf("w%d-%d", w, i)
				res, err := r.b.Reserve(ctx, key, backend.ReserveRequest{ID: id, Cost: bucket.Cost(1, 0, 1),
					Defaults: bucket.Limits{bucket.Requests: 1_000_000}, TTL: time.Hour, Now: r.c.Now()})
				if err == nil && res.Allowed {
					_, _ = r.b.Settle(ctx, key, backend.SettleRequest{ID: id, Actual: bucket.Cost(1, 0, 1), Now: r.c.Now()})
				}
			}
		})
	}
	workers.Wait()
	close(stop)
	wg.Wait()
	r.shared.set(false, false)
	r.shared.run()
	for range 3 {
		r.c.Advance(time.Second)
		r.recover()
	}
	r.b.wg.Wait()
	s, _, _ := r.shared.Backend.Get(ctx, key, r.c.Now())
	local, _, _ := r.b.local.Get(ctx, key, r.c.Now())
	if s.InFlight != 0 || local.InFlight != 0 {
		t.Fatalf("in flight: %d shared, %d local; want 0", s.InFlight, local.InFlight)
	}
	// Releases whose reserve never happened (or whose first retry timed out
	// yet happened) wait for their deadline.
	r.c.Advance(time.Hour)
	r.recover()
	if r.b.Pending() != 0 {
		t.Fatalf("%d pending after the deadline", r.b.Pending())
	}
}
