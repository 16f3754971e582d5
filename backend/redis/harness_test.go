package redis

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"math"
	"testing"
	"time"

	"github.com/adaptive-rate-limiter/arl/backend"
	"github.com/adaptive-rate-limiter/arl/backend/memory"
	"github.com/adaptive-rate-limiter/arl/limiter/bucket"
)

// t0 is the first instant of scripted scenarios: a whole second, so every
// instant t0+d with d in microseconds is exact in both backends.
var t0 = time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)

// uniquePrefix returns a key prefix no other test uses, so that scans of a
// shared server see only this test's buckets.
func uniquePrefix() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return "arltest-" + hex.EncodeToString(b[:])
}

// twin runs every operation on the Redis backend, with its clock pinned, and
// on the memory backend, the reference implementation of limiter/bucket, at
// the same instant; it fails the test when their results or states differ.
// Memory does not reclaim expired reservations in Reserve: scenarios that
// reserve after a reservation's deadline belong in Redis-only tests.
type twin struct {
	t   *testing.T
	red *Backend
	mem *memory.Backend
	key bucket.Key
	now time.Time
}

func newTwin(t *testing.T, opts Options) *twin {
	t.Helper()
	opts.KeyPrefix = uniquePrefix()
	tw := &twin{
		t:   t,
		red: newBackend(t, opts),
		mem: memory.New(memory.Options{}),
		key: bucket.Key{Namespace: "ns", Provider: "openai", Account: "acct", Model: "gpt"},
		now: t0,
	}
	tw.red.clock = func() time.Time { return tw.now }
	return tw
}

// at moves both clocks to t0+d.
func (tw *twin) at(d time.Duration) *twin {
	tw.now = t0.Add(d)
	return tw
}

func (tw *twin) reserve(id string, cost bucket.Vector, defaults bucket.Limits, ttl time.Duration) backend.ReserveResult {
	tw.t.Helper()
	ctx := context.Background()
	req := backend.ReserveRequest{ID: id, Cost: cost, Defaults: defaults, TTL: ttl, Now: tw.now}
	want, err := tw.mem.Reserve(ctx, tw.key, req)
	if err != nil {
		tw.t.Fatal(err)
	}
	got, err := tw.red.Reserve(ctx, tw.key, req)
	if err != nil {
		tw.t.Fatalf("reserve %s: %v", id, err)
	}
	if got.Allowed != want.Allowed || got.Reason != want.Reason || got.Taken != want.Taken ||
		!nearDuration(got.RetryAfter, want.RetryAfter) {
		tw.t.Fatalf("reserve %s at %v: redis %+v, memory %+v", id, tw.now.Sub(t0), got, want)
	}
	tw.compare()
	return got
}

func (tw *twin) settle(id string, actual bucket.Vector, obs *bucket.Observation, defaults bucket.Limits) backend.SettleResult {
	tw.t.Helper()
	ctx := context.Background()
	req := backend.SettleRequest{ID: id, Actual: actual, Observation: obs, Defaults: defaults, Now: tw.now}
	want, err := tw.mem.Settle(ctx, tw.key, req)
	if err != nil {
		tw.t.Fatal(err)
	}
	got, err := tw.red.Settle(ctx, tw.key, req)
	if err != nil {
		tw.t.Fatalf("settle %s: %v", id, err)
	}
	if got != want {
		tw.t.Fatalf("settle %s at %v: redis %+v, memory %+v", id, tw.now.Sub(t0), got, want)
	}
	tw.compare()
	return got
}

func (tw *twin) observe(o bucket.Observation, defaults bucket.Limits) {
	tw.t.Helper()
	ctx := context.Background()
	req := backend.ObserveRequest{Observation: o, Defaults: defaults, Now: tw.now}
	if err := tw.mem.Observe(ctx, tw.key, req); err != nil {
		tw.t.Fatal(err)
	}
	if err := tw.red.Observe(ctx, tw.key, req); err != nil {
		tw.t.Fatalf("observe: %v", err)
	}
	tw.compare()
}

func (tw *twin) recover() int {
	tw.t.Helper()
	ctx := context.Background()
	want, err := tw.mem.RecoverOrphans(ctx, tw.now)
	if err != nil {
		tw.t.Fatal(err)
	}
	got, err := tw.red.RecoverOrphans(ctx, tw.now)
	if err != nil {
		tw.t.Fatalf("recover: %v", err)
	}
	if got != want {
		tw.t.Fatalf("recovered %d at %v, memory %d", got, tw.now.Sub(t0), want)
	}
	tw.compare()
	return got
}

// state returns the bucket's state, after checking both backends agree.
func (tw *twin) state() bucket.State {
	tw.t.Helper()
	return tw.compare()
}

// compare fails the test unless both backends hold the same bucket state
// (levels within float rounding) at the current instant.
func (tw *twin) compare() bucket.State {
	tw.t.Helper()
	ctx := context.Background()
	want, wantOK, err := tw.mem.Get(ctx, tw.key, tw.now)
	if err != nil {
		tw.t.Fatal(err)
	}
	got, ok, err := tw.red.Get(ctx, tw.key, tw.now)
	if err != nil {
		tw.t.Fatalf("get: %v", err)
	}
	if ok != wantOK {
		tw.t.Fatalf("at %v: redis has bucket %v, memory %v", tw.now.Sub(t0), ok, wantOK)
	}
	if diff := stateDiff(got, want); diff != "" {
		tw.t.Fatalf("at %v: %s\nredis  %+v\nmemory %+v", tw.now.Sub(t0), diff, got, want)
	}
	return got
}

// stateDiff describes the first difference between two states, or "".
func stateDiff(a, b bucket.State) string {
	switch {
	case !a.Updated.Equal(b.Updated):
		return "Updated differs"
	case !a.BlockedUntil.Equal(b.BlockedUntil):
		return "BlockedUntil differs"
	case a.BlockReason != b.BlockReason:
		return "BlockReason differs"
	case a.Learned != b.Learned:
		return "Learned differs"
	case a.InFlight != b.InFlight:
		return "InFlight differs"
	case !a.ObservedAt.Equal(b.ObservedAt):
		return "ObservedAt differs"
	}
	for i := range a.Dims {
		x, y := a.Dims[i], b.Dims[i]
		name := bucket.Dimension(i).String()
		switch {
		case x.Limit != y.Limit:
			return name + " Limit differs"
		case x.Window != y.Window:
			return name + " Window differs"
		case !nearFloat(x.Level, y.Level):
			return name + " Level differs"
		case !x.HoldUntil.Equal(y.HoldUntil):
			return name + " HoldUntil differs"
		case !nearFloat(x.HoldRefill, y.HoldRefill):
			return name + " HoldRefill differs"
		}
	}
	return ""
}

// nearFloat allows for the different rounding of the same arithmetic in
// nanoseconds (Go) and microseconds (Lua).
func nearFloat(a, b float64) bool {
	return math.Abs(a-b) <= 1e-6+1e-9*math.Max(math.Abs(a), math.Abs(b))
}

// nearDuration allows for waits rounded up to the nanosecond (Go) or to the
// microsecond (Lua).
func nearDuration(a, b time.Duration) bool {
	d := a - b
	return d >= -2*time.Microsecond && d <= 2*time.Microsecond
}
