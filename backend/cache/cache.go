package cache

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/adaptive-rate-limiter/arl/backend"
	"github.com/adaptive-rate-limiter/arl/limiter/bucket"
)

// Defaults of [Options].
const (
	// DefaultTTL is how long a cached copy serves reads when Options.TTL is 0.
	DefaultTTL = time.Second
	// DefaultFlushInterval is the write-back period when
	// Options.FlushInterval is 0.
	DefaultFlushInterval = 100 * time.Millisecond
	// DefaultMaxPending bounds the buckets with waiting lessons when
	// Options.MaxPending is 0.
	DefaultMaxPending = 10000
	// DefaultRetries is how often a failed write-back is retried when
	// Options.Retries is 0.
	DefaultRetries = 3
)

// maxChain bounds the lessons one bucket keeps waiting: a routine lesson
// merges into the newest one, and one that cannot starts another; a bucket
// that already has this many writes its lessons through instead.
const maxChain = 4

// flushTimeout bounds one background flush, and closeTimeout the flushes of
// Close; the shared backend's own per-call timeout is usually far shorter.
const (
	flushTimeout = 5 * time.Second
	closeTimeout = 5 * time.Second
)

// minSweep is the shortest period between two sweeps of expired copies.
const minSweep = time.Second

// Options configures a [Cache]. The zero value is valid: write-through with
// the defaults below.
type Options struct {
	// Policy says how lessons travel to the shared backend. Default:
	// WriteThrough.
	Policy Policy

	// TTL is how long a copy fetched from the shared backend serves Get and
	// List. Default: DefaultTTL; negative: reads always go to the shared
	// backend.
	TTL time.Duration

	// FlushInterval is the period of write-back flushes. Default:
	// DefaultFlushInterval.
	FlushInterval time.Duration

	// MaxPending bounds how many buckets may hold waiting lessons under
	// write-back; a lesson for another bucket beyond it is written through.
	// Default: DefaultMaxPending.
	MaxPending int

	// Retries is how many further flushes retry a lesson whose write-back
	// failed before it is dropped. A newer lesson merged into one waiting
	// for its retry shares its count. Default: DefaultRetries; negative:
	// none.
	Retries int

	// OnDrop, when set, is called with the number of lessons (Observe calls)
	// dropped: write-back retries exhausted, a bucket's waiting lessons over
	// their bound, or lessons still waiting when Close gives up. For a
	// metric; it must not call the cache. Default: none.
	OnDrop func(n int)

	// Clock is the cache's time, by which copies age; it is also the Now of
	// a call that gives none. Lessons written later than they were taught
	// keep their caller's Now. Default: time.Now.
	Clock func() time.Time
}

// Cache is a [backend.Backend] that caches learned state in front of a shared
// backend; see the package documentation for its policies. It is safe for
// concurrent use. The zero value is not usable; call [New].
type Cache struct {
	shared     backend.Backend
	bulk       backend.Bulk // shared's bulk operations, nil when it has none
	policy     Policy
	ttl        time.Duration
	interval   time.Duration
	maxPending int
	retries    int
	onDrop     func(int)
	clock      func() time.Time

	mu        sync.Mutex
	slots     map[bucket.Key]*slot // requires mu for the map and every slot
	seq       uint64               // count of writes through the cache
	clearedAt uint64               // seq when every copy was last dropped
	fetching  int                  // reads from the shared backend in flight
	list      *listing             // the last full listing, nil when none
	pending   int                  // slots with waiting lessons
	lastSweep time.Time
	closed    bool

	stop     chan struct{} // closed by Close to end the flush loop
	loopDone chan struct{} // closed when the flush loop has ended
}

var _ backend.Backend = (*Cache)(nil)

// slot is what the cache holds for one bucket. Requires Cache.mu held.
type slot struct {
	cached    bool         // state holds a copy of the shared bucket
	exists    bool         // the copy found the bucket (false: cached absence)
	state     bucket.State // the copy, as fetched, updated by writes since
	fetchedAt time.Time    // clock reading before the fetch of the copy
	written   uint64       // seq of the newest write through the cache

	pending  []*lesson     // waiting lessons, oldest first
	busy     bool          // lessons of the bucket are being written
	flushing []*lesson     // the lessons being written, while busy
	flushed  chan struct{} // closed when busy ends
}

// idle reports whether the slot holds no lesson.
func (s *slot) idle() bool { return len(s.pending) == 0 && !s.busy }

// lesson is a lesson on its way to the shared backend: one or several merged
// Observe calls, or a caller's lesson being written through.
type lesson struct {
	obs      bucket.Observation // At is never zero
	defaults bucket.Limits      // of the oldest call: they create a missing bucket
	created  time.Time          // Now of the oldest call: a missing bucket's start
	now      time.Time          // Now of the newest call
	calls    int                // Observe calls merged into it
	attempts int                // failed writes so far
	queued   bool               // waited in the cache (false: a caller awaits the write)
}

// listing is the set of buckets of the last full List, and those written
// since; a List within TTL of it is served from the copies.
type listing struct {
	at   time.Time
	keys map[bucket.Key]struct{}
}

// New returns a cache in front of shared, which it owns: Close closes it.
// With WriteBack it starts a flush loop that Close ends.
func New(shared backend.Backend, opts Options) (*Cache, error) {
	if shared == nil {
		return nil, errors.New("cache: no shared backend")
	}
	if int(opts.Policy) >= len(policyNames) {
		return nil, fmt.Errorf("cache: unknown policy %v", opts.Policy)
	}
	c := &Cache{
		shared:     shared,
		policy:     opts.Policy,
		ttl:        opts.TTL,
		interval:   opts.FlushInterval,
		maxPending: opts.MaxPending,
		retries:    opts.Retries,
		onDrop:     opts.OnDrop,
		clock:      opts.Clock,
		slots:      make(map[bucket.Key]*slot),
	}
	c.bulk, _ = shared.(backend.Bulk)
	if c.ttl == 0 {
		c.ttl = DefaultTTL
	}
	if c.interval <= 0 {
		c.interval = DefaultFlushInterval
	}
	if c.maxPending <= 0 {
		c.maxPending = DefaultMaxPending
	}
	switch {
	case c.retries == 0:
		c.retries = DefaultRetries
	case c.retries < 0:
		c.retries = 0
	}
	if c.clock == nil {
		c.clock = time.Now
	}
	if c.policy == WriteBack {
		c.stop, c.loopDone = make(chan struct{}), make(chan struct{})
		go c.loop()
	}
	return c, nil
}

// Reserve implements [backend.Backend]: straight to the shared backend, after
// the bucket's waiting lessons under write-back (a failure to write them
// leaves them waiting and does not stop the reservation, whose own answer
// tells whether the shared backend is healthy).
func (c *Cache) Reserve(ctx context.Context, k bucket.Key, req backend.ReserveRequest) (backend.ReserveResult, error) {
	if err := c.checkOpen(); err != nil {
		return backend.ReserveResult{}, err
	}
	if c.policy == WriteBack {
		_ = c.drain(ctx, k, nil)
	}
	r, err := c.shared.Reserve(ctx, k, req)
	c.mu.Lock()
	c.invalidate(k)
	c.mu.Unlock()
	return r, err
}

// Settle implements [backend.Backend]: straight to the shared backend. Under
// write-back the bucket's waiting lessons go first, the newest folded into
// the settlement's observation when it merges (no extra round trip). The
// cached copy is dropped under every policy: the refund and its instant are
// the shared backend's to compute.
func (c *Cache) Settle(ctx context.Context, k bucket.Key, req backend.SettleRequest) (backend.SettleResult, error) {
	if err := c.checkOpen(); err != nil {
		return backend.SettleResult{}, err
	}
	var (
		res backend.SettleResult
		err error
	)
	if c.policy == WriteBack {
		res, err = c.settleFolded(ctx, k, req)
	} else {
		res, err = c.shared.Settle(ctx, k, req)
	}
	c.mu.Lock()
	c.invalidate(k)
	c.mu.Unlock()
	return res, err
}

// Extend implements [backend.Backend]: reservations live in the shared
// backend alone.
func (c *Cache) Extend(ctx context.Context, k bucket.Key, req backend.ExtendRequest) (bool, error) {
	if err := c.checkOpen(); err != nil {
		return false, err
	}
	return c.shared.Extend(ctx, k, req)
}

// Observe implements [backend.Backend] per the cache's policy.
func (c *Cache) Observe(ctx context.Context, k bucket.Key, req backend.ObserveRequest) error {
	if err := c.checkOpen(); err != nil {
		return err
	}
	switch c.policy {
	case WriteBack:
		return c.observeBack(ctx, k, req)
	case WriteAround:
		err := c.shared.Observe(ctx, k, req)
		c.mu.Lock()
		c.invalidate(k)
		c.mu.Unlock()
		return err
	default:
		err := c.shared.Observe(ctx, k, req)
		c.mu.Lock()
		if err != nil {
			c.invalidate(k) // it may have applied or not
		} else {
			c.refresh(k, req.Observation, c.nowOr(req.Now))
		}
		c.mu.Unlock()
		return err
	}
}

// Get implements [backend.Backend]: from a copy younger than TTL, else from
// the shared backend (refreshing the copy), with the bucket's waiting
// lessons applied to the returned state.
func (c *Cache) Get(ctx context.Context, k bucket.Key, now time.Time) (bucket.State, bool, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return bucket.State{}, false, backend.ErrClosed
	}
	if s := c.slots[k]; s != nil && c.fresh(s, c.clock()) {
		st, ok, ls := s.state, s.exists, s.lessons()
		c.mu.Unlock()
		st, ok = view(st, ok, ls, now)
		return st, ok, nil
	}
	seq0, at := c.seq, c.clock()
	c.fetching++
	c.mu.Unlock()

	st, ok, err := c.shared.Get(ctx, k, now)

	c.mu.Lock()
	c.fetching--
	var ls []lesson
	if err == nil {
		c.store(k, st, ok, seq0, at)
		if s := c.slots[k]; s != nil {
			ls = s.lessons()
		}
	}
	c.sweepIfDue()
	c.mu.Unlock()
	if err != nil {
		return bucket.State{}, false, err
	}
	st, ok = view(st, ok, ls, now)
	return st, ok, nil
}

// List implements [backend.Backend]. Within TTL of the last full listing it
// is served from the copies, fetching only the buckets whose copies are
// stale (one GetMany when the shared backend implements [backend.Bulk]);
// otherwise it lists the shared backend and refreshes every copy. Buckets
// created by other replicas since the last full listing show once it is
// older than TTL. Waiting lessons are applied to the states returned.
func (c *Cache) List(ctx context.Context, now time.Time) ([]backend.Entry, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, backend.ErrClosed
	}
	at := c.clock()
	if c.list != nil && c.ttl > 0 && at.Sub(c.list.at) < c.ttl {
		var views []entryView
		var stale []bucket.Key
		for k := range c.list.keys {
			if s := c.slots[k]; s != nil && c.fresh(s, at) {
				views = append(views, entryView{k, s.state, s.exists, s.lessons()})
			} else {
				stale = append(stale, k)
			}
		}
		if len(stale) == 0 {
			c.mu.Unlock()
			return entries(views, now), nil
		}
		if c.bulk != nil {
			return c.listStale(ctx, now, at, views, stale) // unlocks
		}
	}
	seq0 := c.seq
	c.fetching++
	c.mu.Unlock()

	got, err := c.shared.List(ctx, now)

	c.mu.Lock()
	defer c.mu.Unlock()
	c.fetching--
	if err != nil {
		c.sweepIfDue()
		return nil, err
	}
	keys := make(map[bucket.Key]struct{}, len(got))
	views := make([]entryView, 0, len(got))
	for _, e := range got {
		c.store(e.Key, e.State, true, seq0, at)
		keys[e.Key] = struct{}{}
		views = append(views, entryView{e.Key, e.State, true, c.lessonsOf(e.Key)})
	}
	for k, s := range c.slots {
		if _, listed := keys[k]; listed {
			continue
		}
		if !s.idle() { // taught here, not yet in the shared backend
			views = append(views, entryView{k, bucket.State{}, false, s.lessons()})
			keys[k] = struct{}{}
		} else if s.written > seq0 { // written during the listing
			keys[k] = struct{}{}
		}
	}
	if c.ttl > 0 && c.clearedAt <= seq0 {
		c.list = &listing{at: at, keys: keys}
	}
	c.sweepIfDue()
	return entries(views, now), nil
}

// listStale completes a List served from the copies: it fetches the stale
// buckets with one GetMany. Requires c.mu held; it unlocks it.
func (c *Cache) listStale(ctx context.Context, now, at time.Time, views []entryView, stale []bucket.Key) ([]backend.Entry, error) {
	seq0 := c.seq
	c.fetching++
	c.mu.Unlock()

	got, err := c.bulk.GetMany(ctx, stale, now)

	c.mu.Lock()
	defer c.mu.Unlock()
	c.fetching--
	if err != nil {
		c.sweepIfDue()
		return nil, err
	}
	found := make(map[bucket.Key]bool, len(got))
	for _, e := range got {
		c.store(e.Key, e.State, true, seq0, at)
		found[e.Key] = true
		views = append(views, entryView{e.Key, e.State, true, c.lessonsOf(e.Key)})
	}
	for _, k := range stale {
		if found[k] {
			continue
		}
		c.store(k, bucket.State{}, false, seq0, at)
		if ls := c.lessonsOf(k); len(ls) > 0 {
			views = append(views, entryView{k, bucket.State{}, false, ls})
		}
	}
	c.sweepIfDue()
	return entries(views, now), nil
}

// RecoverOrphans implements [backend.Backend]: straight to the shared
// backend; when it ended any reservation (or failed), every cached copy is
// dropped, since it cannot say which buckets it changed.
func (c *Cache) RecoverOrphans(ctx context.Context, now time.Time) (int, error) {
	if err := c.checkOpen(); err != nil {
		return 0, err
	}
	n, err := c.shared.RecoverOrphans(ctx, now)
	if n > 0 || err != nil {
		c.mu.Lock()
		c.invalidateAll()
		c.mu.Unlock()
	}
	return n, err
}

// Close implements [backend.Backend]: it stops the flush loop, writes the
// waiting lessons (retrying failures up to Retries times, within a few
// seconds in all), drops what still could not be written (reported through
// OnDrop and in the error), then closes the shared backend. Later calls fail
// with backend.ErrClosed; closing again does nothing.
func (c *Cache) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.mu.Unlock()
	if c.stop != nil {
		close(c.stop)
		<-c.loopDone
	}

	ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
	defer cancel()
	dropped, flushErr := 0, error(nil)
	for {
		n, err := c.flush(ctx)
		dropped += n
		if err != nil {
			flushErr = err
		}
		c.mu.Lock()
		waiting, busy := c.pending, c.anyBusy()
		c.mu.Unlock()
		if (waiting == 0 && busy == nil) || ctx.Err() != nil {
			break
		}
		if busy != nil { // another call is writing lessons: let it end first
			select {
			case <-busy:
			case <-ctx.Done():
			}
		}
	}
	c.mu.Lock()
	n := c.dropAll()
	c.mu.Unlock()
	c.drop(n)
	dropped += n

	var errs []error
	if dropped > 0 {
		if flushErr == nil {
			flushErr = ctx.Err()
		}
		errs = append(errs, fmt.Errorf("cache: close: %d lessons not written: %w", dropped, flushErr))
	}
	if err := c.shared.Close(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// checkOpen returns backend.ErrClosed once Close has begun.
func (c *Cache) checkOpen() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return backend.ErrClosed
	}
	return nil
}

// nowOr returns now, or the cache's clock when now is zero.
func (c *Cache) nowOr(now time.Time) time.Time {
	if now.IsZero() {
		return c.clock()
	}
	return now
}

// fresh reports whether s holds a copy younger than TTL at at. Requires c.mu
// held.
func (c *Cache) fresh(s *slot, at time.Time) bool {
	return s.cached && c.ttl > 0 && at.Sub(s.fetchedAt) < c.ttl
}

// store keeps a copy fetched from the shared backend (ok: the bucket exists)
// by a read that began at write count seq0 and clock reading at, unless a
// write through the cache since then may have overtaken it, or a copy
// fetched later is already held. Requires c.mu held.
func (c *Cache) store(k bucket.Key, st bucket.State, ok bool, seq0 uint64, at time.Time) {
	if c.ttl <= 0 || c.clearedAt > seq0 {
		return
	}
	s := c.slots[k]
	if s == nil {
		s = &slot{}
		c.slots[k] = s
	}
	if s.written > seq0 || (s.cached && s.fetchedAt.After(at)) {
		return
	}
	s.cached, s.exists, s.state, s.fetchedAt = true, ok, st, at
}

// touch records a write to k, so that no read that began before it stores
// its copy. While no read is in flight no slot is needed for that. Requires
// c.mu held.
func (c *Cache) touch(k bucket.Key) *slot {
	c.seq++
	if c.list != nil {
		c.list.keys[k] = struct{}{}
	}
	s := c.slots[k]
	if s == nil {
		if c.fetching == 0 {
			return nil
		}
		s = &slot{}
		c.slots[k] = s
	}
	s.written = c.seq
	return s
}

// invalidate records a write to k and drops its copy. Requires c.mu held.
func (c *Cache) invalidate(k bucket.Key) {
	if s := c.touch(k); s != nil {
		s.cached, s.state = false, bucket.State{}
		c.release(k, s)
	}
}

// refresh records a write of observation o to k at now and applies it to the
// copy, so that the copy stays as the shared bucket is. Requires c.mu held.
func (c *Cache) refresh(k bucket.Key, o bucket.Observation, now time.Time) {
	s := c.touch(k)
	if s == nil || !s.cached {
		return
	}
	if !s.exists { // the observation created the bucket: fetch it next time
		s.cached = false
		c.release(k, s)
		return
	}
	s.state.Observe(now, o)
}

// release forgets an empty slot when no read in flight needs its write
// count. Requires c.mu held.
func (c *Cache) release(k bucket.Key, s *slot) {
	if !s.cached && s.idle() && c.fetching == 0 {
		delete(c.slots, k)
	}
}

// invalidateAll drops every copy and the listing. Requires c.mu held.
func (c *Cache) invalidateAll() {
	c.seq++
	c.clearedAt = c.seq
	c.list = nil
	for k, s := range c.slots {
		s.cached, s.state, s.written = false, bucket.State{}, c.seq
		c.release(k, s)
	}
}

// sweepIfDue forgets expired copies and empty slots, at most once per TTL (or
// minSweep), and never while a read is in flight (it would lose the write
// counts that read checks). Requires c.mu held.
func (c *Cache) sweepIfDue() {
	if c.fetching > 0 {
		return
	}
	at := c.clock()
	if at.Sub(c.lastSweep) < max(c.ttl, minSweep) {
		return
	}
	c.lastSweep = at
	if c.list != nil && at.Sub(c.list.at) >= c.ttl {
		c.list = nil
	}
	for k, s := range c.slots {
		if s.cached && !c.fresh(s, at) {
			s.cached, s.state = false, bucket.State{}
		}
		c.release(k, s)
	}
}

// lessonsOf returns copies of k's lessons in flight and waiting, oldest
// first. Requires c.mu held.
func (c *Cache) lessonsOf(k bucket.Key) []lesson {
	if s := c.slots[k]; s != nil {
		return s.lessons()
	}
	return nil
}

// lessons returns copies of the slot's lessons in flight and waiting, oldest
// first. Requires Cache.mu held.
func (s *slot) lessons() []lesson {
	if len(s.flushing) == 0 && len(s.pending) == 0 {
		return nil
	}
	out := make([]lesson, 0, len(s.flushing)+len(s.pending))
	for _, l := range s.flushing {
		out = append(out, *l)
	}
	for _, l := range s.pending {
		out = append(out, *l)
	}
	return out
}

// view returns a bucket's state at now as a read returns it: the copy (ok:
// the bucket exists) advanced to now, with the lessons not yet written
// applied in order; a bucket that only lessons know starts as their first
// call would have created it.
func view(st bucket.State, ok bool, ls []lesson, now time.Time) (bucket.State, bool) {
	if ok {
		st.Advance(now)
	}
	for i := range ls {
		l := &ls[i]
		if !ok {
			st, ok = bucket.New(l.created, l.defaults), true
		}
		st.Observe(now, l.obs)
	}
	return st, ok
}

// entryView is one bucket of a listing before its lessons are applied.
type entryView struct {
	key     bucket.Key
	state   bucket.State
	exists  bool
	lessons []lesson
}

// entries renders a listing at now, omitting buckets that do not exist.
func entries(views []entryView, now time.Time) []backend.Entry {
	out := make([]backend.Entry, 0, len(views))
	for _, v := range views {
		if st, ok := view(v.state, v.exists, v.lessons, now); ok {
			out = append(out, backend.Entry{Key: v.key, State: st})
		}
	}
	return out
}
