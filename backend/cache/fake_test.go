package cache_test

import (
	"context"
	"sync"
	"time"

	"github.com/adaptive-rate-limiter/arl/backend"
	"github.com/adaptive-rate-limiter/arl/backend/memory"
	"github.com/adaptive-rate-limiter/arl/limiter/bucket"
)

// counting is a shared backend for tests: a memory backend that records
// every call, can fail lesson writes, and can hold a Get after it has read
// the state.
type counting struct {
	mem *memory.Backend

	mu       sync.Mutex
	log      []string               // call names, in order
	lessons  []backend.KeyedObserve // every lesson received, in order
	batches  [][]backend.KeyedObserve
	getKeys  [][]bucket.Key // keys of each GetMany
	failObs  error          // when set, Observe and ObserveMany fail with it
	afterGet func()         // when set, Get calls it after reading the state

	failSettle error  // when set, Settle fails with it
	inMany     func() // when set, ObserveMany calls it before applying
}

var (
	_ backend.Backend = (*counting)(nil)
	_ backend.Bulk    = (*counting)(nil)
)

func newCounting() *counting { return &counting{mem: memory.New(memory.Options{})} }

func (f *counting) record(name string) {
	f.mu.Lock()
	f.log = append(f.log, name)
	f.mu.Unlock()
}

// count returns how many times the named method was called.
func (f *counting) count(name string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.log {
		if c == name {
			n++
		}
	}
	return n
}

// calls returns the call log.
func (f *counting) calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.log...)
}

// received returns every lesson the backend was asked to apply.
func (f *counting) received() []backend.KeyedObserve {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]backend.KeyedObserve(nil), f.lessons...)
}

func (f *counting) setFail(err error) {
	f.mu.Lock()
	f.failObs = err
	f.mu.Unlock()
}

func (f *counting) fail() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.failObs
}

func (f *counting) Reserve(ctx context.Context, k bucket.Key, req backend.ReserveRequest) (backend.ReserveResult, error) {
	f.record("Reserve")
	return f.mem.Reserve(ctx, k, req)
}

func (f *counting) Extend(ctx context.Context, k bucket.Key, req backend.ExtendRequest) (bool, error) {
	f.record("Extend")
	return f.mem.Extend(ctx, k, req)
}

func (f *counting) Settle(ctx context.Context, k bucket.Key, req backend.SettleRequest) (backend.SettleResult, error) {
	f.record("Settle")
	f.mu.Lock()
	failed := f.failSettle
	f.mu.Unlock()
	if failed != nil {
		return backend.SettleResult{}, failed
	}
	if req.Observation != nil {
		f.mu.Lock()
		f.lessons = append(f.lessons, backend.KeyedObserve{Key: k, ObserveRequest: backend.ObserveRequest{Observation: *req.Observation, Defaults: req.Defaults, Now: req.Now}})
		f.mu.Unlock()
	}
	return f.mem.Settle(ctx, k, req)
}

func (f *counting) Observe(ctx context.Context, k bucket.Key, req backend.ObserveRequest) error {
	f.record("Observe")
	if err := f.fail(); err != nil {
		return err
	}
	f.mu.Lock()
	f.lessons = append(f.lessons, backend.KeyedObserve{Key: k, ObserveRequest: req})
	f.mu.Unlock()
	return f.mem.Observe(ctx, k, req)
}

func (f *counting) ObserveMany(ctx context.Context, lessons []backend.KeyedObserve) error {
	f.record("ObserveMany")
	if err := f.fail(); err != nil {
		return err
	}
	f.mu.Lock()
	hook := f.inMany
	f.mu.Unlock()
	if hook != nil {
		hook()
	}
	f.mu.Lock()
	f.lessons = append(f.lessons, lessons...)
	f.batches = append(f.batches, append([]backend.KeyedObserve(nil), lessons...))
	f.mu.Unlock()
	return f.mem.ObserveMany(ctx, lessons)
}

func (f *counting) Get(ctx context.Context, k bucket.Key, now time.Time) (bucket.State, bool, error) {
	f.record("Get")
	s, ok, err := f.mem.Get(ctx, k, now)
	f.mu.Lock()
	hook := f.afterGet
	f.mu.Unlock()
	if hook != nil {
		hook()
	}
	return s, ok, err
}

func (f *counting) GetMany(ctx context.Context, keys []bucket.Key, now time.Time) ([]backend.Entry, error) {
	f.record("GetMany")
	f.mu.Lock()
	f.getKeys = append(f.getKeys, append([]bucket.Key(nil), keys...))
	f.mu.Unlock()
	return f.mem.GetMany(ctx, keys, now)
}

func (f *counting) List(ctx context.Context, now time.Time) ([]backend.Entry, error) {
	f.record("List")
	return f.mem.List(ctx, now)
}

func (f *counting) RecoverOrphans(ctx context.Context, now time.Time) (int, error) {
	f.record("RecoverOrphans")
	return f.mem.RecoverOrphans(ctx, now)
}

func (f *counting) Close() error {
	f.record("Close")
	return f.mem.Close()
}

// single hides the bulk operations of a backend.
type single struct{ backend.Backend }

// clock is a manual clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}
