package backendtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/adaptive-rate-limiter/arl/backend"
	"github.com/adaptive-rate-limiter/arl/limiter/bucket"
)

// Factory returns a fresh backend for one test; the suite closes it.
type Factory func(t *testing.T) backend.Backend

// slack is how far a duration measured by the backend may be from the exact
// value, to allow for the time the test takes between its calls.
const slack = 500 * time.Millisecond

// Run runs the whole conformance suite against the backends newBackend makes.
func Run(t *testing.T, newBackend Factory) {
	tests := []struct {
		name string
		fn   func(*testing.T, backend.Backend)
	}{
		{"AdmitThenDeny", testAdmitThenDeny},
		{"ReserveIdempotent", testReserveIdempotent},
		{"SettleRefunds", testSettleRefunds},
		{"SettleTwice", testSettleTwice},
		{"SettleUnknown", testSettleUnknown},
		{"ReleaseGivesAllBack", testRelease},
		{"RefundClampedAtCapacity", testRefundClamped},
		{"CostAboveCapacity", testCostAboveCapacity},
		{"ObserveLearns", testObserveLearns},
		{"ObserveExhaustedHolds", testObserveExhaustedHolds},
		{"UpstreamBlock", testUpstreamBlock},
		{"SettleWithObservation", testSettleWithObservation},
		{"ProbeOneAtATime", testProbe},
		{"KeysIsolated", testKeysIsolated},
		{"GetAndList", testGetAndList},
		{"RecoverOrphans", testRecoverOrphans},
		{"ExtendKeepsReservationInFlight", testExtend},
		{"NegativeAmountsRefused", testNegativeAmounts},
		{"ConcurrentNoOverAdmission", testConcurrent},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := newBackend(t)
			t.Cleanup(func() { _ = b.Close() })
			tc.fn(t, b)
		})
	}
}

// newKey returns a bucket key no other test uses, so that tests sharing one
// store (a Redis server) never see each other's state.
func newKey(t *testing.T) bucket.Key {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return bucket.Key{Namespace: "conformance-" + hex.EncodeToString(b[:]), Provider: "openai", Account: "acct", Model: "gpt"}
}

func newID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func reserve(t *testing.T, b backend.Backend, k bucket.Key, id string, cost bucket.Vector, defaults bucket.Limits) backend.ReserveResult {
	t.Helper()
	r, err := b.Reserve(context.Background(), k, backend.ReserveRequest{
		ID: id, Cost: cost, Defaults: defaults, TTL: time.Minute, Now: time.Now(),
	})
	if err != nil {
		t.Fatalf("reserve %s: %v", id, err)
	}
	return r
}

func settle(t *testing.T, b backend.Backend, k bucket.Key, id string, actual bucket.Vector, obs *bucket.Observation) backend.SettleResult {
	t.Helper()
	r, err := b.Settle(context.Background(), k, backend.SettleRequest{ID: id, Actual: actual, Observation: obs, Now: time.Now()})
	if err != nil {
		t.Fatalf("settle %s: %v", id, err)
	}
	return r
}

func observe(t *testing.T, b backend.Backend, k bucket.Key, o bucket.Observation) {
	t.Helper()
	o.At = time.Now()
	if err := b.Observe(context.Background(), k, backend.ObserveRequest{Observation: o, Now: time.Now()}); err != nil {
		t.Fatalf("observe: %v", err)
	}
}

func get(t *testing.T, b backend.Backend, k bucket.Key) bucket.State {
	t.Helper()
	s, ok, err := b.Get(context.Background(), k, time.Now())
	if err != nil || !ok {
		t.Fatalf("get %s: ok=%v err=%v", k, ok, err)
	}
	return s
}

func near(got, want time.Duration) bool { return got <= want && got >= want-slack }

// unknown is the defaults of a bucket that is to learn everything from its provider.
var unknown bucket.Limits

// Day-long windows keep refill negligible while a test runs.
var perDay = bucket.Limits{bucket.RequestsPerDay: 3, bucket.TokensPerDay: 1_000_000}

func testAdmitThenDeny(t *testing.T, b backend.Backend) {
	k := newKey(t)
	for i := range 3 {
		if r := reserve(t, b, k, newID(), bucket.Cost(1, 10, 10), perDay); !r.Allowed {
			t.Fatalf("request %d denied: %+v", i, r.Decision)
		}
	}
	r := reserve(t, b, k, newID(), bucket.Cost(1, 10, 10), perDay)
	if r.Allowed || r.Reason != "requests_per_day" {
		t.Fatalf("4th request: %+v, want denied on requests_per_day", r.Decision)
	}
	if !near(r.RetryAfter, 8*time.Hour) { // 3 per day: one every 8 hours
		t.Fatalf("retry after %v, want about 8h", r.RetryAfter)
	}
	if !r.Taken.IsZero() {
		t.Fatalf("denied reservation took %v", r.Taken)
	}
	if s := get(t, b, k); s.InFlight != 3 {
		t.Fatalf("in flight %d, want 3", s.InFlight)
	}
}

func testReserveIdempotent(t *testing.T, b backend.Backend) {
	k := newKey(t)
	id := newID()
	for range 3 {
		if r := reserve(t, b, k, id, bucket.Cost(1, 0, 0), perDay); !r.Allowed || r.Taken[bucket.RequestsPerDay] != 1 {
			t.Fatalf("reserve %+v", r)
		}
	}
	if s := get(t, b, k); s.InFlight != 1 || s.Dims[bucket.RequestsPerDay].Level > 2.001 {
		t.Fatalf("same ID reserved twice: %+v", s)
	}
}

var tokenDay = bucket.Limits{bucket.TokensPerDay: 1000}

func testSettleRefunds(t *testing.T, b backend.Backend) {
	k := newKey(t)
	first := newID()
	if r := reserve(t, b, k, first, bucket.Cost(1, 100, 500), tokenDay); !r.Allowed {
		t.Fatal(r.Decision)
	}
	if r := reserve(t, b, k, newID(), bucket.Cost(1, 100, 500), tokenDay); r.Allowed || r.Reason != "tokens_per_day" {
		t.Fatalf("second 600-token request: %+v, want denied", r.Decision)
	}
	if r := settle(t, b, k, first, bucket.Cost(1, 100, 20), nil); !r.Found || r.Taken[bucket.TokensPerDay] != 600 {
		t.Fatalf("settle: %+v", r)
	}
	if r := reserve(t, b, k, newID(), bucket.Cost(1, 100, 500), tokenDay); !r.Allowed {
		t.Fatalf("after the refund: %+v", r.Decision)
	}
	if s := get(t, b, k); s.InFlight != 1 {
		t.Fatalf("in flight %d", s.InFlight)
	}
}

func testSettleTwice(t *testing.T, b backend.Backend) {
	k := newKey(t)
	id := newID()
	reserve(t, b, k, id, bucket.Cost(1, 100, 500), tokenDay)
	if r := settle(t, b, k, id, bucket.Cost(1, 100, 0), nil); !r.Found {
		t.Fatal("first settle not found")
	}
	level := get(t, b, k).Dims[bucket.TokensPerDay].Level
	if r := settle(t, b, k, id, bucket.Cost(1, 0, 0), nil); r.Found {
		t.Fatal("second settle found the reservation again")
	}
	if got := get(t, b, k).Dims[bucket.TokensPerDay].Level; got > level+0.01 {
		t.Fatalf("second settle refunded again: %v -> %v", level, got)
	}
}

func testSettleUnknown(t *testing.T, b backend.Backend) {
	k := newKey(t)
	if r := settle(t, b, k, newID(), bucket.Vector{}, nil); r.Found {
		t.Fatal("unknown reservation found")
	}
	reserve(t, b, k, newID(), bucket.Cost(1, 1, 1), tokenDay)
	if r := settle(t, b, k, newID(), bucket.Vector{}, nil); r.Found {
		t.Fatal("unknown reservation found in an existing bucket")
	}
}

func testRelease(t *testing.T, b backend.Backend) {
	k := newKey(t)
	id := newID()
	reserve(t, b, k, id, bucket.Cost(1, 300, 300), tokenDay)
	settle(t, b, k, id, bucket.Vector{}, nil)
	s := get(t, b, k)
	if got := s.Dims[bucket.TokensPerDay].Level; got < 999.99 {
		t.Fatalf("level %v after release, want 1000", got)
	}
	if s.InFlight != 0 {
		t.Fatalf("in flight %d after release", s.InFlight)
	}
}

func testRefundClamped(t *testing.T, b backend.Backend) {
	k := newKey(t)
	// A 20 ms window: the bucket is full again before the refund arrives.
	var o bucket.Observation
	o.Dims[bucket.Tokens] = bucket.DimObservation{Limit: 1000, Window: 20 * time.Millisecond}
	observe(t, b, k, o)
	id := newID()
	reserve(t, b, k, id, bucket.Cost(0, 600, 0), unknown)
	time.Sleep(40 * time.Millisecond) // let the window refill the bucket (wall clock: Redis keeps its own)
	settle(t, b, k, id, bucket.Vector{}, nil)
	if got := get(t, b, k).Dims[bucket.Tokens].Level; got > 1000.0001 {
		t.Fatalf("level %v above capacity", got)
	}
}

func testCostAboveCapacity(t *testing.T, b backend.Backend) {
	k := newKey(t)
	r := reserve(t, b, k, newID(), bucket.Cost(0, 5000, 0), tokenDay)
	if !r.Allowed {
		t.Fatalf("a full bucket must admit a request above capacity: %+v", r.Decision)
	}
	if got := get(t, b, k).Dims[bucket.TokensPerDay].Level; got > -3999 {
		t.Fatalf("level %v, want debt of 4000", got)
	}
	if r := reserve(t, b, k, newID(), bucket.Cost(0, 1, 0), tokenDay); r.Allowed {
		t.Fatal("admitted while in debt")
	}
}

func testObserveLearns(t *testing.T, b backend.Backend) {
	k := newKey(t)
	var o bucket.Observation
	o.Dims[bucket.TokensPerDay] = bucket.DimObservation{Limit: 1000, Remaining: 700, HasRemaining: true}
	observe(t, b, k, o)
	s := get(t, b, k)
	if d := s.Dims[bucket.TokensPerDay]; d.Limit != 1000 || d.Level < 699.9 || d.Level > 700.1 || !s.Learned {
		t.Fatalf("learned %+v learned=%v", d, s.Learned)
	}
	if r := reserve(t, b, k, newID(), bucket.Cost(0, 800, 0), unknown); r.Allowed {
		t.Fatal("admitted 800 with 700 remaining")
	}
	// Remaining above the local level does not raise it.
	reserve(t, b, k, newID(), bucket.Cost(0, 600, 0), unknown)
	observe(t, b, k, o)
	if got := get(t, b, k).Dims[bucket.TokensPerDay].Level; got > 100.1 {
		t.Fatalf("level %v: remaining raised the level", got)
	}
}

func testObserveExhaustedHolds(t *testing.T, b backend.Backend) {
	k := newKey(t)
	var o bucket.Observation
	o.Dims[bucket.Requests] = bucket.DimObservation{Remaining: 0, HasRemaining: true, Reset: 20 * time.Second}
	observe(t, b, k, o)
	r := reserve(t, b, k, newID(), bucket.Cost(1, 10, 10), unknown)
	if r.Allowed || r.Reason != "requests" || !near(r.RetryAfter, 20*time.Second) {
		t.Fatalf("got %+v, want requests about 20s", r.Decision)
	}
}

func testUpstreamBlock(t *testing.T, b backend.Backend) {
	k := newKey(t)
	observe(t, b, k, bucket.Observation{RetryAfter: 3 * time.Second, Reason: "tokens"})
	r := reserve(t, b, k, newID(), bucket.Cost(1, 1, 1), unknown)
	if r.Allowed || r.Reason != "tokens" || !near(r.RetryAfter, 3*time.Second) {
		t.Fatalf("got %+v, want tokens about 3s", r.Decision)
	}
}

func testSettleWithObservation(t *testing.T, b backend.Backend) {
	k := newKey(t)
	id := newID()
	reserve(t, b, k, id, bucket.Cost(1, 0, 0), unknown) // probe
	var o bucket.Observation
	o.At = time.Now()
	o.Dims[bucket.RequestsPerDay] = bucket.DimObservation{Limit: 10, Remaining: 9, HasRemaining: true}
	if r := settle(t, b, k, id, bucket.Cost(1, 0, 0), &o); !r.Found {
		t.Fatal("not found")
	}
	s := get(t, b, k)
	if d := s.Dims[bucket.RequestsPerDay]; d.Limit != 10 || d.Level < 8.99 || d.Level > 9.01 || s.InFlight != 0 {
		t.Fatalf("state %+v", s)
	}
}

func testProbe(t *testing.T, b backend.Backend) {
	k := newKey(t)
	first := newID()
	if r := reserve(t, b, k, first, bucket.Cost(1, 10, 10), unknown); !r.Allowed {
		t.Fatalf("probe denied: %+v", r.Decision)
	}
	if r := reserve(t, b, k, newID(), bucket.Cost(1, 10, 10), unknown); r.Allowed || r.Reason != bucket.ReasonProbe {
		t.Fatalf("second during probe: %+v", r.Decision)
	}
	settle(t, b, k, first, bucket.Cost(1, 10, 10), &bucket.Observation{At: time.Now()})
	for i := range 3 {
		if r := reserve(t, b, k, newID(), bucket.Cost(1, 10, 10), unknown); !r.Allowed {
			t.Fatalf("after the probe's answer, request %d: %+v", i, r.Decision)
		}
	}
}

func testKeysIsolated(t *testing.T, b backend.Backend) {
	k := newKey(t)
	others := []bucket.Key{k, k, k, k}
	others[0].Namespace += "-other"
	others[1].Provider = "anthropic"
	others[2].Account = "acct2"
	others[3].Model = "other-model"
	limit := bucket.Limits{bucket.RequestsPerDay: 1}
	reserve(t, b, k, newID(), bucket.Cost(1, 0, 0), limit)
	if r := reserve(t, b, k, newID(), bucket.Cost(1, 0, 0), limit); r.Allowed {
		t.Fatal("limit of 1 admitted 2")
	}
	for _, o := range others {
		if r := reserve(t, b, o, newID(), bucket.Cost(1, 0, 0), limit); !r.Allowed {
			t.Fatalf("bucket %s affected by %s: %+v", o, k, r.Decision)
		}
	}
}

func testGetAndList(t *testing.T, b backend.Backend) {
	k := newKey(t)
	if _, ok, err := b.Get(context.Background(), k, time.Now()); ok || err != nil {
		t.Fatalf("unknown bucket: ok=%v err=%v", ok, err)
	}
	reserve(t, b, k, newID(), bucket.Cost(1, 5, 5), tokenDay)
	entries, err := b.List(context.Background(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Key == k {
			if e.State.Dims[bucket.TokensPerDay].Limit != 1000 || e.State.InFlight != 1 {
				t.Fatalf("listed state %+v", e.State)
			}
			return
		}
	}
	t.Fatalf("bucket %s missing from %d listed", k, len(entries))
}

func testRecoverOrphans(t *testing.T, b backend.Backend) {
	k := newKey(t)
	ctx := context.Background()
	ttl := 100 * time.Millisecond
	r, err := b.Reserve(ctx, k, backend.ReserveRequest{ID: "orphan", Cost: bucket.Cost(1, 100, 100), Defaults: tokenDay, TTL: ttl, Now: time.Now()})
	if err != nil || !r.Allowed {
		t.Fatalf("reserve: %+v %v", r, err)
	}
	if n, err := b.RecoverOrphans(ctx, time.Now()); err != nil || n != 0 {
		t.Fatalf("recovered %d before the deadline (err %v)", n, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	total := 0
	for total == 0 && time.Now().Before(deadline) {
		time.Sleep(ttl / 2)
		n, err := b.RecoverOrphans(ctx, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		total += n
	}
	if total != 1 {
		t.Fatalf("recovered %d orphans, want 1", total)
	}
	s := get(t, b, k)
	if s.InFlight != 0 {
		t.Fatalf("in flight %d after recovery", s.InFlight)
	}
	if got := s.Dims[bucket.TokensPerDay].Level; got < 999.99 {
		t.Fatalf("level %v after recovery: the orphan's capacity did not return", got)
	}
	// Settling a recovered reservation changes nothing.
	level := get(t, b, k).Dims[bucket.TokensPerDay].Level
	if r := settle(t, b, k, "orphan", bucket.Vector{}, nil); r.Found {
		t.Fatal("recovered reservation settled again")
	}
	if got := get(t, b, k).Dims[bucket.TokensPerDay].Level; got > level+0.01 {
		t.Fatalf("refund after recovery: %v -> %v", level, got)
	}
}

func testConcurrent(t *testing.T, b backend.Backend) {
	k := newKey(t)
	limits := bucket.Limits{bucket.RequestsPerDay: 50, bucket.TokensPerDay: 1_000_000}
	var admitted atomic.Int64
	var wg sync.WaitGroup
	for range 200 {
		wg.Go(func() {
			r, err := b.Reserve(context.Background(), k, backend.ReserveRequest{
				ID: newID(), Cost: bucket.Cost(1, 10, 10), Defaults: limits, TTL: time.Minute, Now: time.Now(),
			})
			if err != nil {
				t.Error(err)
				return
			}
			if r.Allowed {
				admitted.Add(1)
			}
		})
	}
	wg.Wait()
	if got := admitted.Load(); got != 50 {
		t.Fatalf("admitted %d of 200 against a limit of 50", got)
	}
}

// testExtend: a reservation whose lease is renewed past its first deadline is
// no orphan, and its settlement still refunds; only recorded reservations
// can be extended.
func testExtend(t *testing.T, b backend.Backend) {
	k := newKey(t)
	ctx := context.Background()
	r, err := b.Reserve(ctx, k, backend.ReserveRequest{ID: "long", Cost: bucket.Cost(1, 100, 900), Defaults: tokenDay, TTL: 100 * time.Millisecond, Now: time.Now()})
	if err != nil || !r.Allowed {
		t.Fatalf("reserve: %+v %v", r, err)
	}
	if ok, err := b.Extend(ctx, k, backend.ExtendRequest{ID: "long", TTL: time.Hour, Now: time.Now()}); err != nil || !ok {
		t.Fatalf("extend: %v %v", ok, err)
	}
	// A shorter lease does not shorten it.
	if ok, err := b.Extend(ctx, k, backend.ExtendRequest{ID: "long", TTL: time.Millisecond, Now: time.Now()}); err != nil || !ok {
		t.Fatalf("extend with a shorter TTL: %v %v", ok, err)
	}
	time.Sleep(300 * time.Millisecond) // past the first deadline
	if n, err := b.RecoverOrphans(ctx, time.Now()); err != nil || n != 0 {
		t.Fatalf("recovered %d reservations whose lease was renewed (err %v)", n, err)
	}
	before := get(t, b, k).Dims[bucket.TokensPerDay].Level
	res, err := b.Settle(ctx, k, backend.SettleRequest{ID: "long", Actual: bucket.Cost(1, 100, 100), Now: time.Now()})
	if err != nil || !res.Found {
		t.Fatalf("settle after extending: %+v %v", res, err)
	}
	if got := get(t, b, k).Dims[bucket.TokensPerDay].Level; got < before+800-1 {
		t.Fatalf("level %v after settling, want the 800 unused tokens back on %v", got, before)
	}
	for _, id := range []string{"long", "unknown"} {
		if ok, err := b.Extend(ctx, k, backend.ExtendRequest{ID: id, TTL: time.Hour, Now: time.Now()}); err != nil || ok {
			t.Fatalf("extend %s (settled or never reserved): %v %v, want not found", id, ok, err)
		}
	}
	other := newKey(t)
	if ok, err := b.Extend(ctx, other, backend.ExtendRequest{ID: "long", TTL: time.Hour, Now: time.Now()}); err != nil || ok {
		t.Fatalf("extend in a bucket that does not exist: %v %v", ok, err)
	}
	if _, exists, err := b.Get(ctx, other, time.Now()); err != nil || exists {
		t.Fatalf("extend created a bucket: %v %v", exists, err)
	}
}

// testNegativeAmounts: a negative cost or usage is refused with ErrInvalid,
// and the refused call changes nothing: no bucket is created, no level moves,
// and the reservation a refused settlement named is still there.
func testNegativeAmounts(t *testing.T, b backend.Backend) {
	k := newKey(t)
	ctx := context.Background()
	_, err := b.Reserve(ctx, k, backend.ReserveRequest{ID: newID(), Cost: bucket.Cost(1, -600, 0), Defaults: tokenDay, TTL: time.Minute, Now: time.Now()})
	if !errors.Is(err, backend.ErrInvalid) {
		t.Fatalf("reserve of a negative cost: %v, want ErrInvalid", err)
	}
	if _, ok, err := b.Get(ctx, k, time.Now()); ok || err != nil {
		t.Fatalf("a refused reservation created the bucket: %v %v", ok, err)
	}
	id := newID()
	reserve(t, b, k, id, bucket.Cost(1, 100, 100), tokenDay)
	if _, err := b.Reserve(ctx, k, backend.ReserveRequest{ID: id, Cost: bucket.Cost(-1, 0, 0), Defaults: tokenDay, TTL: time.Minute, Now: time.Now()}); !errors.Is(err, backend.ErrInvalid) {
		t.Fatalf("reserve of a negative cost under a recorded ID: %v, want ErrInvalid", err)
	}
	level := get(t, b, k).Dims[bucket.TokensPerDay].Level
	_, err = b.Settle(ctx, k, backend.SettleRequest{ID: id, Actual: bucket.Cost(1, 0, -500), Now: time.Now()})
	if !errors.Is(err, backend.ErrInvalid) {
		t.Fatalf("settle of a negative usage: %v, want ErrInvalid", err)
	}
	if s := get(t, b, k); s.InFlight != 1 || s.Dims[bucket.TokensPerDay].Level > level+0.1 {
		t.Fatalf("a refused settlement changed the bucket: in flight %d, level %v -> %v", s.InFlight, level, s.Dims[bucket.TokensPerDay].Level)
	}
	if r := settle(t, b, k, id, bucket.Cost(1, 100, 50), nil); !r.Found {
		t.Fatal("the reservation did not outlive a refused settlement")
	}
}
