package memory

import (
	"context"
	"fmt"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"

	"github.com/adaptive-rate-limiter/arl/backend"
	"github.com/adaptive-rate-limiter/arl/limiter/bucket"
)

// shardCount spreads buckets over independent locks so that unrelated buckets
// never contend. A power of two, so the shard is a mask of the hash.
const shardCount = 64

// DefaultIdleTTL is how long a bucket with no reservations may go untouched
// before RecoverOrphans evicts it: longer than the longest window (a day), so
// that eviction never forgets a limit that still applies.
const DefaultIdleTTL = 25 * time.Hour

// Backend is the in-memory backend. The zero value is not usable; call [New].
type Backend struct {
	seed    maphash.Seed
	idleTTL time.Duration
	shards  [shardCount]shard
	closed  atomic.Bool
}

var _ backend.Backend = (*Backend)(nil)

type shard struct {
	mu      sync.Mutex
	buckets map[bucket.Key]*entry
}

// entry is one bucket. Requires mu held for every field.
type entry struct {
	mu           sync.Mutex
	state        bucket.State
	reservations map[string]reservation
}

type reservation struct {
	taken    bucket.Vector
	deadline time.Time
}

// Options configures a memory backend. The zero value is valid.
type Options struct {
	// IdleTTL is how long an idle bucket is kept; 0 means DefaultIdleTTL.
	IdleTTL time.Duration
}

// New returns an empty memory backend.
func New(opts Options) *Backend {
	b := &Backend{seed: maphash.MakeSeed(), idleTTL: opts.IdleTTL}
	if b.idleTTL <= 0 {
		b.idleTTL = DefaultIdleTTL
	}
	for i := range b.shards {
		b.shards[i].buckets = make(map[bucket.Key]*entry)
	}
	return b
}

func (b *Backend) shard(k bucket.Key) *shard {
	var h maphash.Hash
	h.SetSeed(b.seed)
	h.WriteString(k.Namespace)
	h.WriteByte(0)
	h.WriteString(k.Provider)
	h.WriteByte(0)
	h.WriteString(k.Account)
	h.WriteByte(0)
	h.WriteString(k.Model)
	return &b.shards[h.Sum64()&(shardCount-1)]
}

// lookup returns the bucket for k, creating it with defaults at now when
// create is set. It returns with the entry locked; the caller unlocks it.
func (b *Backend) lookup(k bucket.Key, create bool, defaults bucket.Limits, now time.Time) (*entry, error) {
	if b.closed.Load() {
		return nil, backend.ErrClosed
	}
	s := b.shard(k)
	s.mu.Lock()
	e := s.buckets[k]
	if e == nil {
		if !create {
			s.mu.Unlock()
			return nil, nil
		}
		e = &entry{state: bucket.New(now, defaults)}
		s.buckets[k] = e
	}
	e.mu.Lock()
	s.mu.Unlock()
	return e, nil
}

// Reserve implements [backend.Backend].
func (b *Backend) Reserve(_ context.Context, k bucket.Key, req backend.ReserveRequest) (backend.ReserveResult, error) {
	if err := backend.CheckAmounts("cost", req.Cost); err != nil {
		return backend.ReserveResult{}, fmt.Errorf("reserve %s: %w", k, err)
	}
	e, err := b.lookup(k, true, req.Defaults, req.Now)
	if err != nil {
		return backend.ReserveResult{}, err
	}
	defer e.mu.Unlock()
	if r, ok := e.reservations[req.ID]; ok {
		return backend.ReserveResult{Decision: bucket.Decision{Allowed: true}, Taken: r.taken}, nil
	}
	d, taken := e.state.Reserve(req.Now, req.Cost)
	if d.Allowed {
		if e.reservations == nil {
			e.reservations = make(map[string]reservation)
		}
		e.reservations[req.ID] = reservation{taken: taken, deadline: req.Now.Add(req.TTL)}
	}
	return backend.ReserveResult{Decision: d, Taken: taken}, nil
}

// Settle implements [backend.Backend].
func (b *Backend) Settle(_ context.Context, k bucket.Key, req backend.SettleRequest) (backend.SettleResult, error) {
	if err := backend.CheckAmounts("usage", req.Actual); err != nil {
		return backend.SettleResult{}, fmt.Errorf("settle %s: %w", k, err)
	}
	e, err := b.lookup(k, req.Observation != nil, req.Defaults, req.Now)
	if err != nil || e == nil {
		return backend.SettleResult{}, err
	}
	defer e.mu.Unlock()
	if req.Observation != nil {
		e.state.Observe(req.Now, *req.Observation)
	}
	r, ok := e.reservations[req.ID]
	if !ok {
		return backend.SettleResult{}, nil
	}
	delete(e.reservations, req.ID)
	e.state.Settle(req.Now, r.taken, req.Actual)
	return backend.SettleResult{Found: true, Taken: r.taken}, nil
}

// Extend implements [backend.Backend].
func (b *Backend) Extend(_ context.Context, k bucket.Key, req backend.ExtendRequest) (bool, error) {
	e, err := b.lookup(k, false, bucket.Limits{}, req.Now)
	if err != nil || e == nil {
		return false, err
	}
	defer e.mu.Unlock()
	r, ok := e.reservations[req.ID]
	if !ok {
		return false, nil
	}
	if d := req.Now.Add(req.TTL); d.After(r.deadline) {
		r.deadline = d
		e.reservations[req.ID] = r
	}
	return true, nil
}

// Observe implements [backend.Backend].
func (b *Backend) Observe(_ context.Context, k bucket.Key, req backend.ObserveRequest) error {
	e, err := b.lookup(k, true, req.Defaults, req.Now)
	if err != nil {
		return err
	}
	e.state.Observe(req.Now, req.Observation)
	e.mu.Unlock()
	return nil
}

// Get implements [backend.Backend].
func (b *Backend) Get(_ context.Context, k bucket.Key, now time.Time) (bucket.State, bool, error) {
	e, err := b.lookup(k, false, bucket.Limits{}, now)
	if err != nil || e == nil {
		return bucket.State{}, false, err
	}
	defer e.mu.Unlock()
	e.state.Advance(now)
	return e.state, true, nil
}

// List implements [backend.Backend].
func (b *Backend) List(_ context.Context, now time.Time) ([]backend.Entry, error) {
	var out []backend.Entry
	b.each(func(k bucket.Key, e *entry) bool {
		e.state.Advance(now)
		out = append(out, backend.Entry{Key: k, State: e.state})
		return true
	})
	return out, nil
}

// RecoverOrphans implements [backend.Backend]. It also evicts buckets that
// have been idle, with nothing in flight, for longer than the idle TTL.
func (b *Backend) RecoverOrphans(_ context.Context, now time.Time) (int, error) {
	n := 0
	b.each(func(_ bucket.Key, e *entry) bool {
		for id, r := range e.reservations {
			if now.After(r.deadline) {
				delete(e.reservations, id)
				e.state.Settle(now, r.taken, bucket.Vector{})
				n++
			}
		}
		return len(e.reservations) > 0 || now.Sub(e.state.Updated) < b.idleTTL
	})
	return n, nil
}

// each calls fn for every bucket with the bucket locked; fn returns false to
// evict the bucket.
func (b *Backend) each(fn func(bucket.Key, *entry) bool) {
	for i := range b.shards {
		s := &b.shards[i]
		s.mu.Lock()
		for k, e := range s.buckets {
			e.mu.Lock()
			keep := fn(k, e)
			e.mu.Unlock()
			if !keep {
				delete(s.buckets, k)
			}
		}
		s.mu.Unlock()
	}
}

// Close implements [backend.Backend]. Later operations fail with ErrClosed.
func (b *Backend) Close() error {
	b.closed.Store(true)
	return nil
}
