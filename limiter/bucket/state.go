package bucket

import (
	"math"
	"time"
)

// The accounting algorithm.
//
// Each dimension d of a bucket is a token bucket with capacity L = Limit that
// refills continuously at L/Window units per unit of time, so that an empty
// bucket is full again after one Window. Level is the number of units
// available at the bucket's Updated instant; it may be negative (debt) after a
// request larger than the capacity, or after usage that overran its estimate.
// A dimension whose Limit is 0 is unknown and does not constrain admission.
//
//	level(t) = min(L, level(Updated) + L·(t−Updated)/Window)
//
// Reserve takes a request's estimated cost from every known dimension when
// every one of them has it available. A request that costs more than a
// dimension's whole capacity needs a full bucket, then drives the level into
// debt (otherwise it could never be admitted, while the provider would accept
// it once its own window is clear). When a request does not fit, the wait
// until it would fit is the largest of the per-dimension waits:
//
//	wait_d = (min(cost_d, L) − level) / (L/Window)
//
// Settle gives back what a reservation took but did not use (reserved −
// actual), never above capacity, or takes an overrun (actual > reserved).
//
// Observe moves the bucket toward the provider's own view, from its response
// headers: a reported limit becomes the capacity (a changed limit moves the
// level by the difference), and a reported remaining value caps the level
// (level = min(level, remaining)). Remaining is never used to raise the level:
// the local level already accounts for requests in flight that the provider
// has not seen yet, and raising it would count them twice. Refunds and the
// continuous refill are what raise the level.
//
// When the provider reports a dimension exhausted (remaining ≤ 0) with a reset
// time, the dimension holds: it does not refill before the reset, the one
// promise the provider made, and at the reset it returns the full limit. An
// upstream 429 (or any answer carrying retry-after) blocks the whole bucket
// until the retry time.
//
// Answers can arrive out of order (replicas, lessons folded into a long
// stream's settlement): an answer older than the newest one applied is stale
// and teaches no limit, window or remaining value, so it cannot roll the
// bucket back; only its retry hint still blocks.
//
// Before anything is known about a bucket (no configured defaults and no
// observed response), it admits one probe request at a time, so that the
// first answer can teach it its limits without a burst running ahead.

// epsilon absorbs floating-point dust in the refill arithmetic, so that a level
// of 0.9999999999 admits a cost of 1.
const epsilon = 1e-9

// Dim is the accounting state of one dimension of a bucket.
type Dim struct {
	Limit      int64         // capacity per Window; 0 when unknown
	Window     time.Duration // refill period; the refill rate is Limit/Window
	Level      float64       // units available at State.Updated; negative is debt
	HoldUntil  time.Time     // provider reported exhaustion: no refill before this instant
	HoldRefill float64       // units the provider returns at HoldUntil
}

// rate returns the refill rate in units per nanosecond, 0 when unknown.
func (d *Dim) rate() float64 {
	if d.Limit <= 0 || d.Window <= 0 {
		return 0
	}
	return float64(d.Limit) / float64(d.Window)
}

// clamp bounds the level above by the capacity (requires a known limit).
func (d *Dim) clamp() {
	if d.Limit > 0 && d.Level > float64(d.Limit) {
		d.Level = float64(d.Limit)
	}
}

// State is the complete accounting state of one bucket. The zero value is a
// bucket about which nothing is known; use [New] to start one with defaults.
//
// State is a plain value and not safe for concurrent use: a backend owns each
// State and serialises the operations on it.
type State struct {
	Dims         [NumDimensions]Dim
	Updated      time.Time // instant the levels refer to
	BlockedUntil time.Time // an upstream 429 or retry-after: nothing is admitted before this
	BlockReason  string    // the x-arl-reason while blocked
	Learned      bool      // a provider answer has been observed
	InFlight     int64     // outstanding reservations
	ObservedAt   time.Time // instant of the newest observation applied
}

// Limits configures the limits assumed for a bucket before its provider has
// told it anything. A zero entry leaves that dimension unknown.
type Limits Vector

// New returns the state of a new bucket at now, with every dimension that
// limits gives a value for known and full.
func New(now time.Time, limits Limits) State {
	s := State{Updated: now}
	for i, l := range limits {
		if l > 0 {
			s.Dims[i] = Dim{Limit: l, Window: Dimension(i).DefaultWindow(), Level: float64(l)}
		}
	}
	return s
}

// Known reports whether any dimension of the bucket has a known limit.
func (s *State) Known() bool {
	for i := range s.Dims {
		if s.Dims[i].Limit > 0 {
			return true
		}
	}
	return false
}

// Advance brings every level forward to now: the continuous refill, and the
// provider's reset for held dimensions whose hold has ended. An instant that is
// not after Updated changes nothing, so a clock that steps back never takes
// capacity away.
func (s *State) Advance(now time.Time) {
	if !now.After(s.Updated) {
		return
	}
	for i := range s.Dims {
		d := &s.Dims[i]
		from := s.Updated
		if !d.HoldUntil.IsZero() {
			if now.Before(d.HoldUntil) {
				continue
			}
			d.Level += d.HoldRefill
			from = d.HoldUntil
			d.HoldUntil, d.HoldRefill = time.Time{}, 0
		}
		d.Level += d.rate() * float64(now.Sub(from))
		d.clamp()
	}
	s.Updated = now
}

// Decision is the outcome of a reservation attempt.
type Decision struct {
	Allowed    bool
	RetryAfter time.Duration // when denied: how long until the same request would fit
	Reason     string        // when denied: the dimension name, or the reason of a block
}

// Reasons for denials that are not a single dimension running out.
const (
	ReasonProbe = "probe" // nothing is known yet and a probe request is in flight
)

// probeRetry is the retry hint while a probe is in flight: the probe's answer
// usually arrives well within it.
const probeRetry = time.Second

// Reserve advances the bucket to now and, when cost fits in every known
// dimension, takes it and counts one more request in flight. It returns the
// decision and the amounts actually taken (zero in dimensions that were
// unknown), which the caller must keep and hand back to [State.Settle].
func (s *State) Reserve(now time.Time, cost Vector) (Decision, Vector) {
	d := s.Check(now, cost)
	if !d.Allowed {
		return d, Vector{}
	}
	var taken Vector
	for i := range s.Dims {
		dim := &s.Dims[i]
		if dim.Limit > 0 && cost[i] != 0 {
			dim.Level -= float64(cost[i])
			taken[i] = cost[i]
		}
	}
	s.InFlight++
	return d, taken
}

// Check advances the bucket to now and reports whether cost would fit, and if
// not, how long until it would. It takes nothing.
func (s *State) Check(now time.Time, cost Vector) Decision {
	s.Advance(now)
	if now.Before(s.BlockedUntil) {
		return Decision{RetryAfter: s.BlockedUntil.Sub(now), Reason: s.BlockReason}
	}
	if !s.Learned && !s.Known() && s.InFlight > 0 {
		return Decision{RetryAfter: probeRetry, Reason: ReasonProbe}
	}
	var wait time.Duration
	reason := ""
	for i := range s.Dims {
		if cost[i] <= 0 {
			continue
		}
		if w := s.Dims[i].wait(now, cost[i]); w > wait {
			wait, reason = w, Dimension(i).String()
		}
	}
	if wait > 0 {
		return Decision{RetryAfter: wait, Reason: reason}
	}
	return Decision{Allowed: true}
}

// wait returns how long from now until cost fits in the dimension (requires
// the dimension advanced to now).
func (d *Dim) wait(now time.Time, cost int64) time.Duration {
	held := now.Before(d.HoldUntil)
	if d.Limit <= 0 {
		if held {
			return d.HoldUntil.Sub(now)
		}
		return 0
	}
	need := float64(min(cost, d.Limit))
	level := d.Level
	var wait time.Duration
	if held {
		if level+epsilon >= need {
			return 0
		}
		wait = d.HoldUntil.Sub(now)
		level = min(level+d.HoldRefill, float64(d.Limit))
	}
	if level+epsilon >= need {
		return wait
	}
	return wait + durationCeil((need-level)/d.rate())
}

// durationCeil converts nanoseconds to a Duration, rounding up so that a wait
// is never reported shorter than it is.
func durationCeil(ns float64) time.Duration {
	if ns >= math.MaxInt64 {
		return time.Duration(math.MaxInt64)
	}
	return time.Duration(math.Ceil(ns))
}

// Settle advances the bucket to now and settles a reservation that took taken:
// each known dimension gets back taken − actual (a refund when the request used
// less than its estimate, a further charge when it used more), never above
// capacity. Only dimensions the reservation actually took from are settled, so
// a bucket that learned a limit while the request was in flight is not
// credited for capacity it never lent. Settling with a zero actual releases the
// reservation entirely.
func (s *State) Settle(now time.Time, taken, actual Vector) {
	s.Advance(now)
	for i := range s.Dims {
		d := &s.Dims[i]
		if d.Limit <= 0 || taken[i] == 0 {
			continue
		}
		d.Level += float64(taken[i] - actual[i])
		d.clamp()
	}
	if s.InFlight > 0 {
		s.InFlight--
	}
}

// DimObservation is what a provider's answer reported about one dimension.
type DimObservation struct {
	Limit        int64         // capacity per window; 0 when not reported
	Remaining    int64         // units left, when HasRemaining
	HasRemaining bool          // whether Remaining was reported
	Reset        time.Duration // time until the dimension is full again; 0 when not reported
	Window       time.Duration // the provider's window when it differs from the default; 0 for the default
}

// Observation is what one provider answer taught about its bucket.
type Observation struct {
	At         time.Time // when the answer was received; older than State.ObservedAt means stale
	Dims       [NumDimensions]DimObservation
	RetryAfter time.Duration // block the whole bucket this long (upstream 429, 503 with retry-after)
	Reason     string        // the x-arl-reason while blocked, e.g. "tokens" or "upstream"
}

// Urgent reports whether the lesson must reach the bucket at once rather than
// later (batched, or with the settlement of its request): the provider asks
// for a pause, or reports a dimension exhausted, and requests admitted
// meanwhile would run into its 429s.
func (o *Observation) Urgent() bool {
	if o.RetryAfter > 0 {
		return true
	}
	for i := range o.Dims {
		if d := &o.Dims[i]; d.HasRemaining && d.Remaining <= 0 {
			return true
		}
	}
	return false
}

// Observe advances the bucket to now and applies what a provider answer
// reported. The answer speaks of the instant o.At (when the answer arrived;
// now when zero): its remaining values are brought forward to now by the
// refill since then, and its resets and retry hints count from then, so an
// observation applied late (folded into a settlement at the end of a stream)
// teaches the same as one applied at once. A stale observation (At before the
// newest one applied) cannot roll the bucket back: its retry hint still
// blocks (the wait is real at the provider), but it teaches no limit, window
// or remaining value, since a newer answer already spoke for them.
//
// An At later than now (the clock of the replica that received the answer
// runs ahead of the backend's) counts as now, and so does a newest instant
// applied that is later than now: otherwise one skewed answer would make
// every correct answer after it stale until its instant came.
func (s *State) Observe(now time.Time, o Observation) {
	s.Advance(now)
	if o.At.After(now) {
		o.At = now
	}
	if s.ObservedAt.After(now) {
		s.ObservedAt = now
	}
	anchor := now
	if !o.At.IsZero() {
		anchor = o.At
	}
	stale := !o.At.IsZero() && o.At.Before(s.ObservedAt)
	if !stale { // a stale answer leaves what a newer one taught
		s.observeDims(now, anchor, &o)
		if o.At.After(s.ObservedAt) {
			s.ObservedAt = o.At
		}
	}
	s.Learned = true
	if o.RetryAfter > 0 {
		if until := anchor.Add(o.RetryAfter); until.After(now) && until.After(s.BlockedUntil) {
			s.BlockedUntil = until
			s.BlockReason = o.Reason
		}
	}
}

// observeDims applies what a fresh answer reported of each dimension (see
// Observe), its remaining values brought forward from anchor to now.
func (s *State) observeDims(now, anchor time.Time, o *Observation) {
	elapsed := float64(now.Sub(anchor))
	for i := range s.Dims {
		d, od := &s.Dims[i], &o.Dims[i]
		if od.Window > 0 {
			d.Window = od.Window
		}
		if od.Limit > 0 && od.Limit != d.Limit {
			if d.Limit == 0 {
				d.Level = float64(od.Limit) // first learned: remaining below lowers it
			} else {
				d.Level += float64(od.Limit - d.Limit)
			}
			d.Limit = od.Limit
			if d.Window == 0 {
				d.Window = Dimension(i).DefaultWindow()
			}
			d.clamp()
		}
		if !od.HasRemaining {
			continue
		}
		exhausted := od.Remaining <= 0 && od.Reset > 0
		until := anchor.Add(od.Reset)
		if exhausted && !until.After(now) {
			continue // the reset has passed: the provider is full again and caps nothing
		}
		remaining := float64(max(od.Remaining, 0))
		if !exhausted {
			remaining += d.rate() * elapsed
			if d.Limit > 0 {
				remaining = min(remaining, float64(d.Limit))
			}
		}
		if d.Level > remaining || d.Limit == 0 {
			d.Level = remaining
		}
		if exhausted && until.After(d.HoldUntil) {
			d.HoldUntil = until
			d.HoldRefill = float64(d.Limit)
		}
	}
}
