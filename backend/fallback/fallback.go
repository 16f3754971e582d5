package fallback

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/adaptive-rate-limiter/arl/backend"
	"github.com/adaptive-rate-limiter/arl/backend/memory"
	"github.com/adaptive-rate-limiter/arl/limiter/bucket"
)

// Options configures a fallback backend. Zero fields take their defaults.
type Options struct {
	// Share is the fraction of a learned limit the local backend allows
	// while the shared one is away, in (0, 1]. 0 disables the fallback:
	// failures are returned to the caller, whose failure mode applies.
	Share float64
	// Failures is how many consecutive failures open the breaker; default 3.
	Failures int
	// Cooldown is how long the breaker stays open before one call probes the
	// shared backend again; default 2 seconds.
	Cooldown time.Duration
	// OnChange, when set, is called with true when the breaker opens and
	// false when it closes.
	OnChange func(open bool)
	// Clock returns the current time; default time.Now.
	Clock func() time.Time

	// MaxPending bounds the pending settlements (see [Backend]); one more is
	// dropped and reported to OnPendingEnd. Default: DefaultMaxPending.
	MaxPending int
	// OnPending, when set, is called with the number of pending settlements
	// whenever it changes. It is called with the backend's lock held: it must
	// not call the backend. For a gauge.
	OnPending func(n int)
	// OnPendingEnd, when set, is called with the outcome (PendingRetried,
	// PendingExpired or PendingDropped) of n pending settlements as they end.
	// Like OnPending, it must not call the backend. For a counter.
	OnPendingEnd func(outcome string, n int)
}

// ErrOpen is returned, when the fallback is disabled, for calls the open
// breaker did not send to the shared backend. It is a
// [backend.ErrUnavailable].
var ErrOpen = fmt.Errorf("shared backend circuit open: %w", backend.ErrUnavailable)

// Backend is a shared backend with a local fallback. It is safe for
// concurrent use.
//
// Pending settlements: a call to the shared backend that fails may still have
// happened, or happen later (a timeout on a stalled Redis runs the queued
// script when Redis resumes). So after a Reserve sent to the shared backend
// fails, the reservation it may have made is released by a later settle of
// its ID with no usage; after a Settle fails (or the open breaker does not
// send it), it is sent again with its usage and observation. These pending
// settlements are retried on every RecoverOrphans and, in the background,
// as soon as the breaker closes. A settlement ends at the first answer; a
// release ends when the shared backend finds the reservation, and is dropped
// at the reservation's deadline (Now + TTL), after which orphan recovery
// would end it anyway. Settle is idempotent by ID, so a retry never ends a
// reservation twice; a reservation taken locally under the same ID settles
// locally, and the retry releases the shared one. At most MaxPending are kept.
type Backend struct {
	shared backend.Backend
	local  *memory.Backend
	opts   Options

	mu        sync.Mutex
	failures  int                          // consecutive failures; requires mu
	openUntil time.Time                    // breaker open until; requires mu
	probing   bool                         // a half-open probe is in flight; requires mu
	limits    map[bucket.Key]bucket.Limits // learned limits; requires mu
	pending   map[pendingKey]*pending      // pending settlements; requires mu
	closed    bool                         // Close has begun; requires mu

	round  chan struct{}      // holds a token while a round of retries runs
	ctx    context.Context    // of background rounds, cancelled by Close
	cancel context.CancelFunc // cancels ctx
	wg     sync.WaitGroup     // background rounds; Add requires mu and !closed
}

var (
	_ backend.Backend = (*Backend)(nil)
	_ backend.Bulk    = (*Backend)(nil)
)

// New wraps shared. It fails on an invalid share.
func New(shared backend.Backend, opts Options) (*Backend, error) {
	if opts.Share < 0 || opts.Share > 1 {
		return nil, fmt.Errorf("fallback share %v: want a fraction between 0 and 1", opts.Share)
	}
	if opts.Failures <= 0 {
		opts.Failures = 3
	}
	if opts.Cooldown <= 0 {
		opts.Cooldown = 2 * time.Second
	}
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	if opts.MaxPending <= 0 {
		opts.MaxPending = DefaultMaxPending
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Backend{
		shared: shared, local: memory.New(memory.Options{}), opts: opts,
		limits:  make(map[bucket.Key]bucket.Limits),
		pending: make(map[pendingKey]*pending),
		round:   make(chan struct{}, 1),
		ctx:     ctx, cancel: cancel,
	}, nil
}

// WarmUp learns the limits of every bucket the shared backend holds, so that
// a fallback right after start-up already knows them.
func (b *Backend) WarmUp(ctx context.Context) error {
	entries, err := b.shared.List(ctx, b.opts.Clock())
	if err != nil {
		return fmt.Errorf("warm up: %w", err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, e := range entries {
		var l bucket.Limits
		for i, d := range e.State.Dims {
			l[i] = d.Limit
		}
		b.limits[e.Key] = l
	}
	return nil
}

// Open reports whether the breaker is open.
func (b *Backend) Open() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.opts.Clock().Before(b.openUntil)
}

// allow reports whether a call may go to the shared backend: the breaker is
// closed, or its cool-down has passed and no other probe is in flight.
func (b *Backend) allow() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.failures < b.opts.Failures {
		return true
	}
	if b.opts.Clock().Before(b.openUntil) || b.probing {
		return false
	}
	b.probing = true
	return true
}

// done records the outcome of a shared call. When it closes the breaker, the
// pending settlements are retried at once, in the background.
func (b *Backend) done(err error) {
	if b.record(err) {
		b.kick()
	}
}

// record records the outcome of a shared call, and reports whether it closed
// the breaker.
func (b *Backend) record(err error) bool {
	b.mu.Lock()
	wasOpen := b.failures >= b.opts.Failures
	b.probing = false
	if errors.Is(err, context.Canceled) || errors.Is(err, backend.ErrInvalid) {
		// The caller gave up (its client went away), or sent a request the
		// shared backend refused: that says nothing about the shared
		// backend either way.
		b.mu.Unlock()
		return false
	}
	if err == nil {
		b.failures = 0
		b.mu.Unlock()
		if wasOpen && b.opts.OnChange != nil {
			b.opts.OnChange(false)
		}
		return wasOpen
	}
	b.failures++
	opened := b.failures == b.opts.Failures
	if b.failures >= b.opts.Failures {
		b.openUntil = b.opts.Clock().Add(b.opts.Cooldown)
	}
	b.mu.Unlock()
	if opened && b.opts.OnChange != nil {
		b.opts.OnChange(true)
	}
	return false
}

// learn remembers the limits an observation reports.
func (b *Backend) learn(k bucket.Key, o *bucket.Observation) {
	if o == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	l := b.limits[k]
	changed := false
	for i, d := range o.Dims {
		if d.Limit > 0 && l[i] != d.Limit {
			l[i], changed = d.Limit, true
		}
	}
	if changed {
		b.limits[k] = l
	}
}

// localDefaults is the share of the learned limits (or, for a bucket never
// seen, of the configured defaults) a local bucket starts with.
func (b *Backend) localDefaults(k bucket.Key, configured bucket.Limits) bucket.Limits {
	b.mu.Lock()
	l, ok := b.limits[k]
	b.mu.Unlock()
	if !ok {
		l = configured
	}
	for i, v := range l {
		if v > 0 {
			l[i] = max(int64(float64(v)*b.opts.Share), 1)
		}
	}
	return l
}

// observeLocal teaches a local bucket a lesson at the share: the limits and
// remaining values the provider reported for the whole key are scaled to this
// replica's share of them, as the local bucket's defaults are.
func (b *Backend) observeLocal(ctx context.Context, k bucket.Key, req backend.ObserveRequest) error {
	req.Defaults = b.localDefaults(k, req.Defaults)
	for i := range req.Observation.Dims {
		d := &req.Observation.Dims[i]
		if d.Limit > 0 {
			d.Limit = max(int64(float64(d.Limit)*b.opts.Share), 1)
		}
		if d.HasRemaining && d.Remaining > 0 {
			d.Remaining = int64(float64(d.Remaining) * b.opts.Share)
		}
	}
	return b.local.Observe(ctx, k, req)
}

// observeLocalIfAny teaches the local bucket a lesson the shared backend
// took, when a local bucket exists (made during an outage), so that a block
// learned meanwhile holds there too.
func (b *Backend) observeLocalIfAny(ctx context.Context, k bucket.Key, req backend.ObserveRequest) {
	if _, ok, _ := b.local.Get(ctx, k, req.Now); ok {
		_ = b.observeLocal(ctx, k, req)
	}
}

func (b *Backend) fallbackErr(err error) error {
	if err == nil {
		return ErrOpen
	}
	return err
}

// Reserve implements [backend.Backend]. When the shared backend fails, the
// reservation it may have made all the same is released later (see
// [Backend]).
func (b *Backend) Reserve(ctx context.Context, k bucket.Key, req backend.ReserveRequest) (backend.ReserveResult, error) {
	var err error
	if b.allow() {
		var res backend.ReserveResult
		res, err = b.shared.Reserve(ctx, k, req)
		b.done(err)
		if err == nil {
			return res, nil
		}
		b.owe(k, backend.SettleRequest{ID: req.ID}, req.Now.Add(req.TTL), err)
	}
	if b.opts.Share == 0 {
		return backend.ReserveResult{}, b.fallbackErr(err)
	}
	req.Defaults = b.localDefaults(k, req.Defaults)
	return b.local.Reserve(ctx, k, req)
}

// Settle implements [backend.Backend]. A reservation taken locally is
// settled locally; one taken in the shared backend is settled there, and if
// that fails (or the open breaker does not send it) the settlement is retried
// later (see [Backend]).
func (b *Backend) Settle(ctx context.Context, k bucket.Key, req backend.SettleRequest) (backend.SettleResult, error) {
	b.learn(k, req.Observation)
	// A reservation is local when the local backend holds it: a lookup in
	// memory, without a lesson, so that it creates no local bucket.
	if res, err := b.local.Settle(ctx, k, backend.SettleRequest{ID: req.ID, Actual: req.Actual, Now: req.Now}); err == nil && res.Found {
		if req.Observation != nil {
			_ = b.observeLocal(ctx, k, backend.ObserveRequest{Observation: *req.Observation, Defaults: req.Defaults, Now: req.Now})
		}
		return res, nil
	}
	var err error
	if b.allow() {
		var res backend.SettleResult
		res, err = b.shared.Settle(ctx, k, req)
		b.done(err)
		if err == nil {
			if res.Found {
				b.forget(k, req.ID)
			}
			return res, nil
		}
	}
	b.owe(k, req, time.Time{}, err)
	if b.opts.Share > 0 && req.Observation != nil {
		// Keep the lesson for the local buckets while the shared one is away.
		_ = b.observeLocal(ctx, k, backend.ObserveRequest{Observation: *req.Observation, Defaults: req.Defaults, Now: req.Now})
	}
	return backend.SettleResult{}, b.fallbackErr(err)
}

// Extend implements [backend.Backend]: a reservation taken locally is
// extended locally, one taken in the shared backend there.
func (b *Backend) Extend(ctx context.Context, k bucket.Key, req backend.ExtendRequest) (bool, error) {
	if ok, err := b.local.Extend(ctx, k, req); err == nil && ok {
		return true, nil
	}
	if !b.allow() {
		return false, ErrOpen
	}
	ok, err := b.shared.Extend(ctx, k, req)
	b.done(err)
	return ok, err
}

// Observe implements [backend.Backend]. The lesson is applied to the local
// bucket too when one exists, so that a block learned during an outage holds.
func (b *Backend) Observe(ctx context.Context, k bucket.Key, req backend.ObserveRequest) error {
	b.learn(k, &req.Observation)
	var err error
	if b.allow() {
		err = b.shared.Observe(ctx, k, req)
		b.done(err)
		if err == nil {
			b.observeLocalIfAny(ctx, k, req)
			return nil
		}
	}
	if b.opts.Share == 0 {
		return b.fallbackErr(err)
	}
	return b.observeLocal(ctx, k, req)
}

// Get implements [backend.Backend]: the shared state, or the local one while
// the shared backend is away.
func (b *Backend) Get(ctx context.Context, k bucket.Key, now time.Time) (bucket.State, bool, error) {
	var err error
	if b.allow() {
		var s bucket.State
		var ok bool
		s, ok, err = b.shared.Get(ctx, k, now)
		b.done(err)
		if err == nil {
			return s, ok, nil
		}
	}
	if b.opts.Share == 0 {
		return bucket.State{}, false, b.fallbackErr(err)
	}
	return b.local.Get(ctx, k, now)
}

// List implements [backend.Backend], like Get.
func (b *Backend) List(ctx context.Context, now time.Time) ([]backend.Entry, error) {
	var err error
	if b.allow() {
		var es []backend.Entry
		es, err = b.shared.List(ctx, now)
		b.done(err)
		if err == nil {
			return es, nil
		}
	}
	if b.opts.Share == 0 {
		return nil, b.fallbackErr(err)
	}
	return b.local.List(ctx, now)
}

// GetMany implements [backend.Bulk] like Get: in one call when the shared
// backend implements [backend.Bulk], otherwise one Get per key.
func (b *Backend) GetMany(ctx context.Context, keys []bucket.Key, now time.Time) ([]backend.Entry, error) {
	bulk, ok := b.shared.(backend.Bulk)
	if !ok {
		return backend.GetEach(ctx, b, keys, now)
	}
	var err error
	if b.allow() {
		var es []backend.Entry
		es, err = bulk.GetMany(ctx, keys, now)
		b.done(err)
		if err == nil {
			return es, nil
		}
	}
	if b.opts.Share == 0 {
		return nil, b.fallbackErr(err)
	}
	return b.local.GetMany(ctx, keys, now)
}

// ObserveMany implements [backend.Bulk] like Observe: in one call when the
// shared backend implements [backend.Bulk], otherwise one Observe per lesson
// (failing as a whole on the first failure, which a retry of all of them
// repairs, as lessons are idempotent). Lessons that only partly reached the
// shared backend (a [backend.BulkError]) are reported as such for the caller
// to retry; the shared backend answered, so the breaker counts no failure.
func (b *Backend) ObserveMany(ctx context.Context, lessons []backend.KeyedObserve) error {
	bulk, ok := b.shared.(backend.Bulk)
	if !ok {
		for _, l := range lessons {
			if err := b.Observe(ctx, l.Key, l.ObserveRequest); err != nil {
				return err
			}
		}
		return nil
	}
	for i := range lessons {
		b.learn(lessons[i].Key, &lessons[i].Observation)
	}
	var err error
	if b.allow() {
		err = bulk.ObserveMany(ctx, lessons)
		var partial *backend.BulkError
		if errors.As(err, &partial) {
			b.done(nil)
			return err
		}
		b.done(err)
		if err == nil {
			for _, l := range lessons {
				b.observeLocalIfAny(ctx, l.Key, l.ObserveRequest)
			}
			return nil
		}
	}
	if b.opts.Share == 0 {
		return b.fallbackErr(err)
	}
	for _, l := range lessons {
		_ = b.observeLocal(ctx, l.Key, l.ObserveRequest)
	}
	return nil
}

// RecoverOrphans implements [backend.Backend] on both backends. Local
// reservations past their deadline are forgotten locally as well. When the
// shared backend answers, the pending settlements are then retried within
// ctx; they are not counted in the result.
func (b *Backend) RecoverOrphans(ctx context.Context, now time.Time) (int, error) {
	n, _ := b.local.RecoverOrphans(ctx, now)
	if !b.allow() {
		b.expire(now)
		return n, nil
	}
	m, err := b.shared.RecoverOrphans(ctx, now)
	b.record(err) // no background round: one follows here
	if err == nil {
		b.retryPending(ctx, now, true)
	} else {
		b.expire(now)
	}
	return n + m, err
}

// Close implements [backend.Backend]. It cancels a round of retries running
// in the background and waits for it; the settlements still pending are
// dropped (orphan recovery ends their reservations).
func (b *Backend) Close() error {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	b.cancel()
	b.wg.Wait()
	b.mu.Lock()
	if n := len(b.pending); n > 0 {
		clear(b.pending)
		b.ended(PendingDropped, n)
		b.changed()
	}
	b.mu.Unlock()
	return errors.Join(b.shared.Close(), b.local.Close())
}
