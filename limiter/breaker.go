package limiter

import (
	"sync"
	"time"

	"github.com/adaptive-rate-limiter/arl/limiter/bucket"
	"github.com/adaptive-rate-limiter/arl/limiter/provider"
)

// breaker is a circuit breaker per bucket: when too many upstream requests of
// a bucket fail within a window, it opens and arl answers for the provider
// (429, reason circuit_open) until a cool-down passes. Some providers punish
// failing keys (Venice locks a key out after more than 20 failed requests in
// 30 s); the breaker opens before that line, at three quarters of it, so the
// key is never locked out. Other providers use the configured policy, which
// is off by default.
//
// The breaker is local to the replica: each replica sees its own share of the
// failures, which errs toward opening late, never toward opening for nothing.
type breaker struct {
	def Breaker

	mu      sync.Mutex
	buckets map[bucket.Key]*failures // requires mu
}

// Breaker configures the circuit breaker for providers without a lockout
// policy of their own. A zero Failures turns it off for them.
type Breaker struct {
	Failures int           // failures within Window that open the breaker
	Window   time.Duration // sliding window over which failures count
	Cooldown time.Duration // how long the breaker stays open
}

// failures is one bucket's recent failures. Requires breaker.mu held.
type failures struct {
	times     []time.Time // failure instants within the window, oldest first
	openUntil time.Time
}

// policyFor returns the breaker policy for a dialect: three quarters of the
// provider's own lockout line when it has one, the configured one otherwise.
func (b *breaker) policyFor(d provider.Dialect) Breaker {
	if lp, ok := d.(provider.LockoutPolicy); ok {
		lo := lp.Lockout()
		return Breaker{Failures: max(lo.Failures*3/4, 1), Window: lo.Window, Cooldown: max(lo.Window, lo.Penalty)}
	}
	return b.def
}

// check reports how long the bucket's breaker stays open, 0 when closed.
func (b *breaker) check(k bucket.Key, now time.Time) time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	f := b.buckets[k]
	if f == nil || !now.Before(f.openUntil) {
		return 0
	}
	return f.openUntil.Sub(now)
}

// fail records a failed upstream request and opens the breaker when the
// policy's threshold is reached. It reports whether the breaker opened.
func (b *breaker) fail(k bucket.Key, p Breaker, now time.Time) bool {
	if p.Failures <= 0 {
		return false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.buckets == nil {
		b.buckets = make(map[bucket.Key]*failures)
	}
	f := b.buckets[k]
	if f == nil {
		f = &failures{}
		b.buckets[k] = f
	}
	cut := 0
	for cut < len(f.times) && now.Sub(f.times[cut]) >= p.Window {
		cut++
	}
	f.times = append(f.times[cut:], now)
	if len(f.times) >= p.Failures && !now.Before(f.openUntil) {
		f.openUntil = now.Add(p.Cooldown)
		f.times = f.times[:0]
		return true
	}
	return false
}

// sweep forgets buckets whose failures and cool-down are all in the past.
func (b *breaker) sweep(now time.Time, window time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for k, f := range b.buckets {
		if !now.Before(f.openUntil) && (len(f.times) == 0 || now.Sub(f.times[len(f.times)-1]) >= window) {
			delete(b.buckets, k)
		}
	}
}
