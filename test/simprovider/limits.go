package simprovider

import (
	"math"
	"time"
)

// epsilon absorbs floating-point error in bucket levels: a level within
// epsilon times the capacity (at least one unit's worth) of a whole unit
// counts as that unit, so that a bucket refilled for exactly the computed wait
// admits the request it was waiting for. It is relative, so that it stays far
// below one unit's refill time also for day- and month-long windows.
const epsilon = 1e-9

// eps returns the bucket's tolerance in units (see epsilon).
func (b *bucket) eps() float64 { return epsilon * max(b.capacity, 1) }

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
	window   time.Duration
	rate     float64 // units per second
	level    float64
	last     time.Time
}

// newBucket returns a full bucket of the given capacity per window at now.
func newBucket(capacity int64, window time.Duration, now time.Time) *bucket {
	b := &bucket{capacity: float64(capacity), window: window, level: float64(capacity), last: now}
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
	return b.unlimited() || b.level+b.eps() >= n
}

// wait returns how long until n units are available (after advance). For n
// above capacity, which never fits, it returns the time until the bucket is
// full, at least one second: the earliest moment retrying makes any sense.
func (b *bucket) wait(n float64) time.Duration {
	if b.unlimited() || b.level+b.eps() >= n {
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

// give returns n units, never above capacity.
func (b *bucket) give(n float64) {
	if b.unlimited() {
		return
	}
	b.level = math.Min(b.capacity, b.level+n)
}

// untilFull returns the time until the bucket is full again (after advance).
func (b *bucket) untilFull() time.Duration {
	if b.unlimited() || b.level+b.eps() >= b.capacity {
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
		Window:    b.window,
	}
}

// secondsCeil converts seconds to a Duration, rounding up to the nanosecond.
func secondsCeil(s float64) time.Duration {
	return time.Duration(math.Ceil(s * float64(time.Second)))
}

// keyLimits holds one API key's buckets, one per quota.
type keyLimits struct {
	buckets [NumQuotas]*bucket
}

// amounts holds one number of units per quota.
type amounts [NumQuotas]int64

// decision is the outcome of admitting one request against a key's limits.
type decision struct {
	admitted  bool
	rejection *Rejection
	state     LimitState
}

// admit refills every bucket to now and, if need fits in every one, takes
// take from them (need and take differ for a quota charged only after the
// answer, see Enforcement.OutputAsGenerated). Otherwise it takes nothing and
// reports the first exhausted quota with a wait long enough for every quota
// that lacks capacity. With force set the request is charged even if it does
// not fit (levels stop at zero); forced requests are always admitted.
func (k *keyLimits) admit(now time.Time, need, take amounts, force bool) decision {
	ok, first := true, NumQuotas
	var wait time.Duration
	for q, b := range k.buckets {
		b.advance(now)
		if !b.fits(float64(need[q])) {
			ok = false
			first = min(first, Quota(q))
			wait = max(wait, b.wait(float64(need[q])))
		}
	}
	if force || ok {
		for q, b := range k.buckets {
			b.take(float64(take[q]))
		}
		return decision{admitted: true, state: k.state()}
	}
	d := k.buckets[first].dimension()
	rej := &Rejection{Quota: first, Limit: d.Limit, Used: d.Limit - d.Remaining, Requested: need[first], RetryAfter: wait}
	st := k.state()
	st.RetryAfter = wait
	return decision{rejection: rej, state: st}
}

// adjust refills quota q's bucket to now and moves its level by delta:
// units given back when positive, taken when negative, within zero and the
// capacity.
func (k *keyLimits) adjust(now time.Time, q Quota, delta int64) {
	b := k.buckets[q]
	b.advance(now)
	if delta >= 0 {
		b.give(float64(delta))
	} else {
		b.take(-float64(delta))
	}
}

// peek refills every bucket to now and returns their state without
// charging.
func (k *keyLimits) peek(now time.Time) LimitState {
	for _, b := range k.buckets {
		b.advance(now)
	}
	return k.state()
}

// state reports every bucket; requires them advanced to the current time.
func (k *keyLimits) state() LimitState {
	var st LimitState
	for q, b := range k.buckets {
		st.Quotas[q] = b.dimension()
	}
	return st
}
