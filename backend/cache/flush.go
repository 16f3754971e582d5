package cache

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/adaptive-rate-limiter/arl/backend"
	"github.com/adaptive-rate-limiter/arl/limiter/bucket"
)

// errNotAttempted marks a lesson that was not written because an earlier
// lesson of its bucket failed: writing it first would reorder the two.
var errNotAttempted = errors.New("not attempted after an earlier lesson of the bucket failed")

// observeBack is Observe under write-back: an urgent lesson goes at once,
// after the bucket's waiting ones; a routine one merges into the bucket's
// newest waiting lesson, or waits as a new one, or, over the bounds, is
// written through.
func (c *Cache) observeBack(ctx context.Context, k bucket.Key, req backend.ObserveRequest) error {
	now := c.nowOr(req.Now)
	l := &lesson{obs: req.Observation, defaults: req.Defaults, created: now, now: now, calls: 1, queued: true}
	if l.obs.At.IsZero() {
		l.obs.At = now // the answer speaks of the call's instant, not of the flush's
	}
	if l.obs.Urgent() {
		l.queued = false
		return c.drain(ctx, k, l)
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return backend.ErrClosed
	}
	s := c.slots[k]
	if s != nil && len(s.pending) > 0 {
		last := s.pending[len(s.pending)-1]
		if m, ok := merge(last.obs, l.obs); ok {
			s.pending[len(s.pending)-1] = &lesson{
				obs: m, defaults: last.defaults, created: last.created, now: later(last.now, l.now),
				calls: last.calls + l.calls, attempts: last.attempts, queued: true,
			}
			c.mu.Unlock()
			return nil
		}
		if len(s.pending) < maxChain {
			s.pending = append(s.pending, l)
			c.mu.Unlock()
			return nil
		}
	} else if c.pending < c.maxPending {
		if s == nil {
			s = &slot{}
			c.slots[k] = s
		}
		s.pending = []*lesson{l}
		c.pending++
		if c.list != nil {
			c.list.keys[k] = struct{}{}
		}
		c.mu.Unlock()
		return nil
	}
	c.mu.Unlock()
	l.queued = false
	return c.drain(ctx, k, l)
}

// drain writes k's waiting lessons, then extra when set (a caller's lesson,
// whose error it returns), in order and in one round trip where the shared
// backend allows. Waiting lessons that fail wait again. Without extra, it
// returns the first error.
func (c *Cache) drain(ctx context.Context, k bucket.Key, extra *lesson) error {
	ls, err := c.take(ctx, k, extra)
	if err != nil || len(ls) == 0 {
		return err
	}
	items := make([]item, len(ls))
	for i, l := range ls {
		items[i] = item{k, l}
	}
	errs := c.writeLessons(ctx, items, false)
	c.mu.Lock()
	dropped := c.finish(k, ls, errs)
	c.mu.Unlock()
	c.drop(dropped)
	if extra != nil {
		return errs[len(errs)-1]
	}
	return errors.Join(errs...)
}

// take waits until no other call is writing k's lessons, then claims the
// bucket: its waiting lessons, followed by extra when set, become the
// lessons being written, which the caller must pass to finish. It returns
// nothing (and claims nothing) when there is nothing to write, and an error
// when ctx ends while waiting.
func (c *Cache) take(ctx context.Context, k bucket.Key, extra *lesson) ([]*lesson, error) {
	for {
		c.mu.Lock()
		s := c.slots[k]
		if s != nil && s.busy {
			wait := s.flushed
			c.mu.Unlock()
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return nil, fmt.Errorf("cache: wait for the lessons of %s being written: %w", k, ctx.Err())
			}
		}
		if (s == nil || len(s.pending) == 0) && extra == nil {
			c.mu.Unlock()
			return nil, nil
		}
		if s == nil {
			s = &slot{}
			c.slots[k] = s
		}
		ls := c.claim(s)
		if extra != nil {
			ls = append(ls, extra)
			s.flushing = ls
		}
		c.mu.Unlock()
		return ls, nil
	}
}

// claim marks s busy, its waiting lessons now being written, and returns
// them. Requires c.mu held and s not busy.
func (c *Cache) claim(s *slot) []*lesson {
	if len(s.pending) > 0 {
		c.pending--
	}
	ls := s.pending
	s.pending = nil
	s.busy, s.flushing, s.flushed = true, ls, make(chan struct{})
	return ls
}

// finish ends the writing of k's claimed lessons ls, whose errors are errs:
// written lessons are applied to the copy, failed waiting ones wait again
// (ahead of newer ones) unless their retries are spent, and other calls may
// claim the bucket again. It returns how many Observe calls' lessons were
// dropped. Requires c.mu held.
func (c *Cache) finish(k bucket.Key, ls []*lesson, errs []error) int {
	s := c.slots[k] // busy slots are never forgotten
	var failed []*lesson
	for i, l := range ls {
		if errs[i] != nil {
			if l.queued {
				failed = append(failed, l)
			}
			continue
		}
		c.touch(k)
		if s.cached {
			if s.exists {
				s.state.Observe(c.nowFor(l), l.obs)
			} else {
				s.cached = false // the lesson created the bucket
			}
		}
	}
	s.busy, s.flushing = false, nil
	close(s.flushed)
	s.flushed = nil
	dropped := c.requeue(s, failed)
	c.release(k, s)
	return dropped
}

// requeue puts failed waiting lessons back ahead of the bucket's newer ones,
// dropping those whose retries are spent and the oldest beyond maxChain. It
// returns how many Observe calls' lessons were dropped. Requires c.mu held.
func (c *Cache) requeue(s *slot, failed []*lesson) int {
	dropped := 0
	kept := make([]*lesson, 0, len(failed)+len(s.pending))
	for _, l := range failed {
		l.attempts++
		if l.attempts > c.retries {
			dropped += l.calls
			continue
		}
		kept = append(kept, l)
	}
	if len(kept) == 0 {
		return dropped
	}
	wasEmpty := len(s.pending) == 0
	kept = append(kept, s.pending...)
	for len(kept) > maxChain {
		dropped += kept[0].calls
		kept = kept[1:]
	}
	s.pending = kept
	if wasEmpty {
		c.pending++
	}
	return dropped
}

// settleFolded is Settle under write-back: the bucket's waiting lessons go
// first, the newest one folded into the settlement's observation when the two
// merge.
func (c *Cache) settleFolded(ctx context.Context, k bucket.Key, req backend.SettleRequest) (backend.SettleResult, error) {
	ls, err := c.take(ctx, k, nil)
	if err != nil || len(ls) == 0 {
		return c.shared.Settle(ctx, k, req)
	}
	last := ls[len(ls)-1]
	folded := req
	ok := true
	if req.Observation == nil {
		o := last.obs
		folded.Observation = &o
	} else {
		o := *req.Observation
		if o.At.IsZero() {
			o.At = c.nowOr(req.Now)
		}
		if o, ok = merge(last.obs, o); ok {
			folded.Observation = &o
		}
	}
	errs := make([]error, len(ls))
	before := ls // written on their own, before the settlement
	if ok {
		before = ls[:len(ls)-1]
	}
	var res backend.SettleResult
	if len(before) > 0 {
		items := make([]item, len(before))
		for i, l := range before {
			items[i] = item{k, l}
		}
		copy(errs, c.writeLessons(ctx, items, false))
		if ok && errors.Join(errs...) != nil {
			ok = false // the newest may not overtake a failed older one
			errs[len(ls)-1] = errNotAttempted
		}
	}
	if ok {
		res, err = c.shared.Settle(ctx, k, folded)
		errs[len(ls)-1] = err
	} else {
		res, err = c.shared.Settle(ctx, k, req)
	}
	c.mu.Lock()
	dropped := c.finish(k, ls, errs)
	c.mu.Unlock()
	c.drop(dropped)
	return res, err
}

// Flush writes every bucket's waiting lessons to the shared backend now, in
// one ObserveMany when it implements [backend.Bulk] (else one Observe each),
// skipping buckets whose lessons another call is writing. Failed lessons wait
// for the next flush, up to Retries times. The flush loop calls it every
// FlushInterval; it is exported for tests and for shutdown sequences that
// want the lessons written before they stop other things.
func (c *Cache) Flush(ctx context.Context) error {
	_, err := c.flush(ctx)
	return err
}

// flush is Flush, also returning how many Observe calls' lessons it dropped.
func (c *Cache) flush(ctx context.Context) (int, error) {
	type claimed struct {
		key     bucket.Key
		lessons []*lesson
	}
	var batch []claimed
	n := 0
	c.mu.Lock()
	for k, s := range c.slots {
		if !s.busy && len(s.pending) > 0 {
			ls := c.claim(s)
			batch = append(batch, claimed{k, ls})
			n += len(ls)
		}
	}
	c.mu.Unlock()
	if n == 0 {
		return 0, nil
	}
	items := make([]item, 0, n)
	for _, b := range batch {
		for _, l := range b.lessons {
			items = append(items, item{b.key, l})
		}
	}
	errs := c.writeLessons(ctx, items, true)

	c.mu.Lock()
	dropped, i := 0, 0
	for _, b := range batch {
		dropped += c.finish(b.key, b.lessons, errs[i:i+len(b.lessons)])
		i += len(b.lessons)
	}
	c.sweepIfDue()
	c.mu.Unlock()
	c.drop(dropped)

	failed, first := 0, error(nil)
	for _, err := range errs {
		if err != nil {
			if first == nil {
				first = err
			}
			failed++
		}
	}
	if failed > 0 {
		return dropped, fmt.Errorf("cache: flush: %d of %d lessons failed (%d Observe calls dropped): %w", failed, len(errs), dropped, first)
	}
	return dropped, nil
}

// loop flushes every FlushInterval until Close.
func (c *Cache) loop() {
	defer close(c.loopDone)
	t := time.NewTicker(c.interval)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), flushTimeout)
			_ = c.Flush(ctx) // failures wait for the next flush; drops reach OnDrop
			cancel()
		}
	}
}

// item is one lesson to write and its bucket.
type item struct {
	key    bucket.Key
	lesson *lesson
}

// writeLessons writes items to the shared backend in order and returns each
// one's error: one ObserveMany when the shared backend implements
// [backend.Bulk] (except for a single lesson outside a flush, which takes one
// Observe), else one Observe each (a bucket's later lessons are then not
// attempted after one of its lessons failed).
func (c *Cache) writeLessons(ctx context.Context, items []item, flush bool) []error {
	errs := make([]error, len(items))
	if len(items) == 1 && (!flush || c.bulk == nil) {
		errs[0] = c.shared.Observe(ctx, items[0].key, c.request(items[0].lesson))
		return errs
	}
	if c.bulk != nil {
		batch := make([]backend.KeyedObserve, len(items))
		for i, it := range items {
			batch[i] = backend.KeyedObserve{Key: it.key, ObserveRequest: c.request(it.lesson)}
		}
		err := c.bulk.ObserveMany(ctx, batch)
		for i := range errs {
			errs[i] = backend.OperationErr(err, i)
		}
		return errs
	}
	failed := make(map[bucket.Key]bool)
	for i, it := range items {
		if failed[it.key] {
			errs[i] = fmt.Errorf("observe %s: %w", it.key, errNotAttempted)
			continue
		}
		if errs[i] = c.shared.Observe(ctx, it.key, c.request(it.lesson)); errs[i] != nil {
			failed[it.key] = true
		}
	}
	return errs
}

// request is the Observe request that writes l.
func (c *Cache) request(l *lesson) backend.ObserveRequest {
	return backend.ObserveRequest{Observation: l.obs, Defaults: l.defaults, Now: c.nowFor(l)}
}

// nowFor is the Now with which l is written: that of its newest call, so
// that a shared backend that takes Now as its clock (memory) never sees the
// cache's clock mixed with its callers'. A lesson written late thus caps the
// level as of that instant, slightly lower than it would at the flush.
func (c *Cache) nowFor(l *lesson) time.Time { return l.now }

// drop reports dropped Observe calls to OnDrop. Call it without c.mu held.
func (c *Cache) drop(n int) {
	if n > 0 && c.onDrop != nil {
		c.onDrop(n)
	}
}

// dropAll forgets every waiting lesson and returns how many Observe calls'
// lessons that drops. Requires c.mu held.
func (c *Cache) dropAll() int {
	n := 0
	for k, s := range c.slots {
		for _, l := range s.pending {
			n += l.calls
		}
		if len(s.pending) > 0 {
			s.pending = nil
			c.pending--
		}
		if !s.busy {
			c.release(k, s)
		}
	}
	return n
}

// anyBusy returns the channel of a bucket whose lessons are being written,
// or nil when none is. Requires c.mu held.
func (c *Cache) anyBusy() chan struct{} {
	for _, s := range c.slots {
		if s.busy {
			return s.flushed
		}
	}
	return nil
}

// later returns the later of two instants.
func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
