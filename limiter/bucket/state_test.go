package bucket

import (
	"testing"
	"time"
)

var t0 = time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)

func at(d time.Duration) time.Time { return t0.Add(d) }

func tokens(n int64) Vector { return Cost(1, n, 0) }

func TestReserveWithinLimits(t *testing.T) {
	s := New(t0, Limits{Requests: 3, Tokens: 1000})
	for i := range 3 {
		d, taken := s.Reserve(t0, tokens(100))
		if !d.Allowed {
			t.Fatalf("request %d denied: %+v", i, d)
		}
		if taken[Requests] != 1 || taken[Tokens] != 100 {
			t.Fatalf("taken = %v", taken)
		}
	}
	d, taken := s.Reserve(t0, tokens(100))
	if d.Allowed || d.Reason != "requests" {
		t.Fatalf("4th request: %+v, want denied on requests", d)
	}
	if !taken.IsZero() {
		t.Fatalf("denied reservation took %v", taken)
	}
	// 3 RPM refills one request every 20 s.
	if d.RetryAfter != 20*time.Second {
		t.Fatalf("retry after %v, want 20s", d.RetryAfter)
	}
	if s.InFlight != 3 {
		t.Fatalf("in flight %d, want 3", s.InFlight)
	}
	if d, _ := s.Reserve(at(20*time.Second), tokens(100)); !d.Allowed {
		t.Fatalf("after refill: %+v", d)
	}
}

func TestRetryAfterIsLargestDimensionWait(t *testing.T) {
	s := New(t0, Limits{Requests: 60, Tokens: 600})
	if d, _ := s.Reserve(t0, tokens(500)); !d.Allowed {
		t.Fatal(d)
	}
	// 100 tokens left; 400 more needed at 10 tokens/s = 40 s. Requests are fine.
	d := s.Check(t0, tokens(500))
	if d.Allowed || d.Reason != "tokens" || d.RetryAfter != 40*time.Second {
		t.Fatalf("got %+v, want tokens 40s", d)
	}
	if d := s.Check(at(39*time.Second), tokens(500)); d.Allowed || d.RetryAfter != time.Second {
		t.Fatalf("at 39s: %+v", d)
	}
	if d := s.Check(at(40*time.Second), tokens(500)); !d.Allowed {
		t.Fatalf("at 40s: %+v", d)
	}
}

func TestCostAboveCapacityNeedsFullBucketThenDebt(t *testing.T) {
	s := New(t0, Limits{Tokens: 1000})
	if d, _ := s.Reserve(t0, Cost(0, 100, 0)); !d.Allowed {
		t.Fatal(d)
	}
	// 5000 > capacity: it waits for a full bucket (100 to refill at 1000/min = 6 s).
	d := s.Check(t0, Cost(0, 5000, 0))
	if d.Allowed || d.RetryAfter != 6*time.Second {
		t.Fatalf("got %+v, want a 6s wait for a full bucket", d)
	}
	d, taken := s.Reserve(at(6*time.Second), Cost(0, 5000, 0))
	if !d.Allowed || taken[Tokens] != 5000 {
		t.Fatalf("full bucket: %+v %v", d, taken)
	}
	if got := s.Dims[Tokens].Level; got != -4000 {
		t.Fatalf("level %v, want -4000 (debt)", got)
	}
	// The debt is paid by refill: a 1-token request waits 4000 tokens' worth = 4 min.
	if d := s.Check(at(6*time.Second), Cost(0, 1, 0)); d.RetryAfter < 4*time.Minute {
		t.Fatalf("retry after %v during debt", d.RetryAfter)
	}
}

func TestSettleRefundsUnusedAndChargesOverrun(t *testing.T) {
	tests := []struct {
		name   string
		actual Vector
		want   float64 // token level after settle
	}{
		{"refund", Cost(1, 100, 20), 880},
		{"exact", Cost(1, 100, 500), 400},
		{"overrun", Cost(1, 100, 700), 200},
		{"release", Vector{}, 1000},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := New(t0, Limits{Requests: 10, Tokens: 1000})
			_, taken := s.Reserve(t0, Cost(1, 100, 500))
			s.Settle(t0, taken, tc.actual)
			if got := s.Dims[Tokens].Level; got != tc.want {
				t.Fatalf("level %v, want %v", got, tc.want)
			}
			if s.InFlight != 0 {
				t.Fatalf("in flight %d", s.InFlight)
			}
		})
	}
}

func TestRefundNeverExceedsCapacity(t *testing.T) {
	s := New(t0, Limits{Tokens: 1000})
	_, taken := s.Reserve(t0, Cost(0, 600, 0))
	// One minute later the bucket is full again; the refund must not overfill it.
	s.Settle(at(time.Minute), taken, Vector{})
	if got := s.Dims[Tokens].Level; got != 1000 {
		t.Fatalf("level %v, want capacity 1000", got)
	}
}

func TestSettleOnlyWhatWasTaken(t *testing.T) {
	s := New(t0, Limits{})
	d, taken := s.Reserve(t0, Cost(1, 100, 500)) // probe: nothing known, nothing taken
	if !d.Allowed || !taken.IsZero() {
		t.Fatalf("probe: %+v %v", d, taken)
	}
	var o Observation
	o.Dims[Tokens] = DimObservation{Limit: 1000, Remaining: 400, HasRemaining: true}
	s.Observe(t0, o)
	s.Settle(t0, taken, Cost(1, 100, 10))
	if got := s.Dims[Tokens].Level; got != 400 {
		t.Fatalf("level %v: settle credited capacity the probe never took", got)
	}
}

func TestProbeOneAtATime(t *testing.T) {
	s := New(t0, Limits{})
	if d, _ := s.Reserve(t0, tokens(10)); !d.Allowed {
		t.Fatalf("first probe denied: %+v", d)
	}
	d, _ := s.Reserve(t0, tokens(10))
	if d.Allowed || d.Reason != ReasonProbe || d.RetryAfter <= 0 {
		t.Fatalf("second request during probe: %+v", d)
	}
	// An answer without any rate-limit header still ends the probe phase.
	s.Observe(at(time.Second), Observation{At: at(time.Second)})
	if d, _ := s.Reserve(at(time.Second), tokens(10)); !d.Allowed {
		t.Fatalf("after the probe's answer: %+v", d)
	}
}

func TestObserveLearnsAndNeverRaisesLevel(t *testing.T) {
	s := New(t0, Limits{})
	obs := func(limit, remaining int64) Observation {
		var o Observation
		o.Dims[Tokens] = DimObservation{Limit: limit, Remaining: remaining, HasRemaining: true}
		return o
	}
	s.Observe(t0, obs(1000, 900))
	if d := s.Dims[Tokens]; d.Limit != 1000 || d.Level != 900 || d.Window != time.Minute {
		t.Fatalf("learned %+v", d)
	}
	_, _ = s.Reserve(t0, Cost(0, 500, 0)) // local level 400
	s.Observe(t0, obs(1000, 900))         // the provider has not seen it yet
	if got := s.Dims[Tokens].Level; got != 400 {
		t.Fatalf("level %v: remaining raised the level", got)
	}
	s.Observe(t0, obs(1000, 100)) // other consumers of the key
	if got := s.Dims[Tokens].Level; got != 100 {
		t.Fatalf("level %v, want the provider's 100", got)
	}
	s.Observe(t0, obs(2000, 2000)) // tier upgrade: capacity grows by the difference
	if d := s.Dims[Tokens]; d.Limit != 2000 || d.Level != 1100 {
		t.Fatalf("after upgrade %+v", d)
	}
}

func TestObserveStaleDoesNotRollBack(t *testing.T) {
	s := New(t0, Limits{})
	var fresh, old Observation
	fresh.At = at(2 * time.Second)
	fresh.Dims[Requests] = DimObservation{Limit: 100, Remaining: 90, HasRemaining: true}
	old.At = at(time.Second)
	old.Dims[Requests] = DimObservation{Limit: 100, Remaining: 10, HasRemaining: true}
	s.Observe(at(2*time.Second), fresh)
	s.Observe(at(2*time.Second), old)
	if got := s.Dims[Requests].Level; got != 90 {
		t.Fatalf("level %v: stale observation applied", got)
	}

	// A stale answer with another limit and window (a replica's answer from
	// before the tier changed, folded into a long stream's settlement) does
	// not undo the newer lesson, nor teach anything the newer one did not.
	old.Dims[Requests] = DimObservation{Limit: 200, Remaining: 150, HasRemaining: true, Window: time.Hour}
	old.Dims[Tokens] = DimObservation{Limit: 5000}
	s.Observe(at(3*time.Second), old)
	if d := s.Dims[Requests]; d.Limit != 100 || d.Window != time.Minute || d.Level > 100 {
		t.Fatalf("requests %+v: the stale answer rolled the limit back", d)
	}
	if d := s.Dims[Tokens]; d.Limit != 0 {
		t.Fatalf("tokens %+v: the stale answer taught a limit", d)
	}
	if !s.ObservedAt.Equal(fresh.At) {
		t.Fatalf("observed at %v, want %v", s.ObservedAt, fresh.At)
	}

	// A stale 429 still blocks: its wait is real at the provider.
	old = Observation{At: at(time.Second), RetryAfter: 10 * time.Second, Reason: "upstream"}
	s.Observe(at(3*time.Second), old)
	if d := s.Check(at(3*time.Second), Cost(1, 1, 0)); d.Allowed || d.RetryAfter != 8*time.Second {
		t.Fatalf("after a stale 429: %+v, want a block of 8s", d)
	}
}

// An answer stamped in the future (a replica whose clock runs ahead) speaks
// of now: it cannot make the correct answers after it stale until its
// instant comes, which would freeze the bucket's limits for every replica.
func TestObserveFromTheFutureIsCapped(t *testing.T) {
	s := New(t0, Limits{})
	var skewed, correct Observation
	skewed.At = at(time.Hour)
	skewed.Dims[Requests] = DimObservation{Limit: 100, Remaining: 90, HasRemaining: true}
	s.Observe(t0, skewed)
	if !s.ObservedAt.Equal(t0) || s.Dims[Requests].Level != 90 {
		t.Fatalf("observed at %v, level %v: want capped at now, 90", s.ObservedAt, s.Dims[Requests].Level)
	}
	correct.At = at(time.Second)
	correct.Dims[Requests] = DimObservation{Limit: 200, Remaining: 50, HasRemaining: true}
	s.Observe(at(time.Second), correct)
	if d := s.Dims[Requests]; d.Limit != 200 || d.Level != 50 || !s.ObservedAt.Equal(correct.At) {
		t.Fatalf("requests %+v observed at %v: the correct answer did not apply", d, s.ObservedAt)
	}

	// A newest instant already past now (stored before the cap, or a clock
	// that stepped back) counts as now.
	s.ObservedAt = at(time.Hour)
	correct.At = at(2 * time.Second)
	correct.Dims[Requests] = DimObservation{Limit: 300, Remaining: 40, HasRemaining: true}
	s.Observe(at(2*time.Second), correct)
	if d := s.Dims[Requests]; d.Limit != 300 || d.Level != 40 || !s.ObservedAt.Equal(correct.At) {
		t.Fatalf("requests %+v observed at %v: a newest instant in the future froze the bucket", d, s.ObservedAt)
	}
}

func TestExhaustedDimensionHoldsUntilReset(t *testing.T) {
	for _, limit := range []int64{0, 3, 100} {
		s := New(t0, Limits{})
		var o Observation
		o.Dims[Requests] = DimObservation{Limit: limit, Remaining: 0, HasRemaining: true, Reset: 20 * time.Second}
		s.Observe(t0, o)
		d := s.Check(t0, Cost(1, 10, 0))
		if d.Allowed || d.Reason != "requests" || d.RetryAfter != 20*time.Second {
			t.Fatalf("limit %d: %+v, want requests 20s", limit, d)
		}
		if d := s.Check(at(19*time.Second), Cost(1, 10, 0)); d.Allowed {
			t.Fatalf("limit %d: admitted before the reset", limit)
		}
		if d := s.Check(at(20*time.Second), Cost(1, 10, 0)); !d.Allowed {
			t.Fatalf("limit %d: denied after the reset: %+v", limit, d)
		}
		if limit > 0 && s.Dims[Requests].Level != float64(limit) {
			t.Fatalf("limit %d: level after reset %v", limit, s.Dims[Requests].Level)
		}
	}
}

func TestUpstreamBlock(t *testing.T) {
	s := New(t0, Limits{Requests: 100})
	s.Observe(t0, Observation{RetryAfter: 3 * time.Second, Reason: "tokens"})
	d := s.Check(at(time.Second), tokens(1))
	if d.Allowed || d.Reason != "tokens" || d.RetryAfter != 2*time.Second {
		t.Fatalf("blocked: %+v", d)
	}
	// A shorter later block does not shorten the first.
	s.Observe(at(time.Second), Observation{RetryAfter: time.Second, Reason: "requests"})
	if d := s.Check(at(2500*time.Millisecond), tokens(1)); d.Allowed || d.Reason != "tokens" {
		t.Fatalf("block shortened: %+v", d)
	}
	if d := s.Check(at(3*time.Second), tokens(1)); !d.Allowed {
		t.Fatalf("after block: %+v", d)
	}
}

func TestClockStepBackTakesNothing(t *testing.T) {
	s := New(at(time.Minute), Limits{Tokens: 600})
	_, _ = s.Reserve(at(time.Minute), Cost(0, 600, 0))
	s.Advance(t0)
	if s.Dims[Tokens].Level != 0 || !s.Updated.Equal(at(time.Minute)) {
		t.Fatalf("state moved backwards: %+v", s)
	}
}

func TestAccountID(t *testing.T) {
	a := AccountID("Bearer sk-test-123")
	if a != AccountID("sk-test-123") || a != AccountID("  bearer sk-test-123 ") {
		t.Fatal("same credential, different accounts")
	}
	if a == AccountID("sk-test-124") {
		t.Fatal("different credentials, same account")
	}
	if len(a) != 24 || AccountID("") != "anonymous" {
		t.Fatalf("account %q", a)
	}
}

func BenchmarkReserveSettle(b *testing.B) {
	s := New(t0, Limits{Requests: 1 << 40, Tokens: 1 << 50})
	cost, used := Cost(1, 500, 1000), Cost(1, 500, 200)
	b.ReportAllocs()
	now := t0
	for b.Loop() {
		now = now.Add(time.Microsecond)
		_, taken := s.Reserve(now, cost)
		s.Settle(now, taken, used)
	}
}

func TestObserveAppliedLate(t *testing.T) {
	// The same answer, applied 30 s after it arrived (folded into the
	// settlement of a long stream), teaches what it taught at the time.
	var o Observation
	o.At = t0
	o.Dims[Tokens] = DimObservation{Limit: 600, Remaining: 100, HasRemaining: true}
	o.Dims[Requests] = DimObservation{Remaining: 0, HasRemaining: true, Reset: 20 * time.Second}
	o.RetryAfter, o.Reason = 40*time.Second, "upstream"

	late := New(t0, Limits{})
	late.Observe(at(30*time.Second), o)
	if got := late.Dims[Tokens].Level; got != 400 { // 100 + 30 s at 10 tokens/s
		t.Fatalf("tokens level %v, want 400", got)
	}
	if !late.Dims[Requests].HoldUntil.IsZero() {
		t.Fatalf("a reset that passed still holds: %v", late.Dims[Requests].HoldUntil)
	}
	if !late.BlockedUntil.Equal(at(40 * time.Second)) {
		t.Fatalf("blocked until %v, want t0+40s", late.BlockedUntil)
	}

	onTime := New(t0, Limits{})
	onTime.Observe(t0, o)
	onTime.Advance(at(30 * time.Second))
	if onTime.Dims[Tokens].Level != late.Dims[Tokens].Level || !onTime.BlockedUntil.Equal(late.BlockedUntil) {
		t.Fatalf("on time %+v, late %+v", onTime.Dims[Tokens], late.Dims[Tokens])
	}
}

func TestObservationUrgent(t *testing.T) {
	var routine, exhausted, paused Observation
	routine.Dims[Tokens] = DimObservation{Limit: 100, Remaining: 50, HasRemaining: true}
	exhausted.Dims[Requests] = DimObservation{Remaining: 0, HasRemaining: true}
	paused.RetryAfter = time.Second
	if routine.Urgent() || !exhausted.Urgent() || !paused.Urgent() || (&Observation{}).Urgent() {
		t.Fatal("urgency misjudged")
	}
}
