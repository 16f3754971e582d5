package simprovider

import (
	"math"
	"time"
)

// epsilon absorbs floating-point error in bucket levels: a level within
// epsilon of a whole unit counts as that unit, so that a bucket refilled for
// exactly the computed wait admits the request it was waiting for.
const epsilon = 1e-6

// bucket is a continuously refilling token bucket, the model OpenAI documents
// for its limits: capacity units, refilled at capacity/window per second, never
// above capacity. A capacity of 0 means unlimited.
//
// The level is a float64 so that partial refills accumulate exactly enough
// for integer arithmetic on the values the server exposes (headers floor the
// level, waits are rounded up).
//
// bucket is not safe for concurrent use; the server guards it with its mutex.
type bucket struct {
	capacity float64
	rate     float64 // units per second
	level    float64
	last     time.Time
}

// newBucket returns a full bucket of the given capacity per window at now.
func newBucket(capacity int64, window time.Duration, now time.Time) *bucket {
	b := &bucket{capacity: float64(capacity), level: float64(capacity), last: now}
	if capacity > 0 {
		b.rate = float64(capacity) / window.Seconds()
	}
	return b
}

// unlimited reports whether the bucket never refuses.
func (b *bucket) unlimited() bool { return b.capacity <= 0 }

// advance refills the bucket for the time passed since the last call. A clock
// that goes backwards refills nothing.
func (b *bucket) advance(now time.Time) {
	if b.unlimited() {
		return
	}
	if dt := now.Sub(b.last); dt > 0 {
		b.level = math.Min(b.capacity, b.level+b.rate*dt.Seconds())
		b.last = now
	}
}

// fits reports whether n units are available now (after advance).
func (b *bucket) fits(n float64) bool {
	return b.unlimited() || b.level+epsilon >= n
}

// wait returns how long until n units are available (after advance). For n
// above capacity, which never fits, it returns the time until the bucket is
// full, at least one second: the earliest moment retrying makes any sense.
func (b *bucket) wait(n float64) time.Duration {
	if b.unlimited() || b.level+epsilon >= n {
		return 0
	}
	if n > b.capacity {
		return max(b.untilFull(), time.Second)
	}
	return secondsCeil((n - b.level) / b.rate)
}

// take removes n units, leaving at least zero.
func (b *bucket) take(n float64) {
	if b.unlimited() {
		return
	}
	b.level = math.Max(0, b.level-n)
}

// untilFull returns the time until the bucket is full again (after advance).
func (b *bucket) untilFull() time.Duration {
	if b.unlimited() || b.level+epsilon >= b.capacity {
		return 0
	}
	return secondsCeil((b.capacity - b.level) / b.rate)
}

// dimension reports the bucket as the headers show it (after advance).
func (b *bucket) dimension() Dimension {
	if b.unlimited() {
		return Dimension{}
	}
	return Dimension{
		Limit:     int64(b.capacity),
		Remaining: int64(math.Floor(b.level + epsilon)),
		Reset:     b.untilFull(),
	}
}

// secondsCeil converts seconds to a Duration, rounding up to the nanosecond.
func secondsCeil(s float64) time.Duration {
	return time.Duration(math.Ceil(s * float64(time.Second)))
}

// keyLimits holds one API key's buckets.
type keyLimits struct {
	requests *bucket
	tokens   *bucket
}

// decision is the outcome of admitting one request against a key's limits.
type decision struct {
	admitted  bool
	rejection *Rejection
	state     LimitState
}

// admit refills both buckets to now and charges 1 request and tokens if both
// fit. Otherwise it charges nothing and reports the first exhausted dimension
// (requests before tokens) with a wait long enough for every dimension that
// lacks capacity. With force set the request is charged even if it does not
// fit (levels stop at zero); forced requests are always admitted.
func (k *keyLimits) admit(now time.Time, tokens int64, force bool) decision {
	k.requests.advance(now)
	k.tokens.advance(now)
	okReq := k.requests.fits(1)
	okTok := k.tokens.fits(float64(tokens))
	if force || (okReq && okTok) {
		k.requests.take(1)
		k.tokens.take(float64(tokens))
		return decision{admitted: true, state: k.state()}
	}
	wait := max(k.requests.wait(1), k.tokens.wait(float64(tokens)))
	rej := &Rejection{RetryAfter: wait}
	if !okReq {
		d := k.requests.dimension()
		rej.Dimension, rej.Limit, rej.Used, rej.Requested = ReasonRequests, d.Limit, d.Limit-d.Remaining, 1
	} else {
		d := k.tokens.dimension()
		rej.Dimension, rej.Limit, rej.Used, rej.Requested = ReasonTokens, d.Limit, d.Limit-d.Remaining, tokens
	}
	st := k.state()
	st.RetryAfter = wait
	return decision{rejection: rej, state: st}
}

// peek refills both buckets to now and returns their state without charging.
func (k *keyLimits) peek(now time.Time) LimitState {
	k.requests.advance(now)
	k.tokens.advance(now)
	return k.state()
}

// state reports both buckets; requires both advanced to the current time.
func (k *keyLimits) state() LimitState {
	return LimitState{Requests: k.requests.dimension(), Tokens: k.tokens.dimension()}
}
