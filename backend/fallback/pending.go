package fallback

import (
	"context"
	"errors"
	"time"

	"github.com/adaptive-rate-limiter/arl/backend"
	"github.com/adaptive-rate-limiter/arl/limiter/bucket"
)

// DefaultMaxPending bounds the pending settlements when Options.MaxPending
// is 0.
const DefaultMaxPending = 10000

// Outcomes of a pending settlement, reported through Options.OnPendingEnd.
const (
	// PendingRetried: a retry reached the shared backend and ended it.
	PendingRetried = "retried"
	// PendingExpired: a release whose reservation the shared backend never
	// showed by the reservation's deadline; orphan recovery ends it if it
	// appears later.
	PendingExpired = "expired"
	// PendingDropped: not kept, over Options.MaxPending, refused by the
	// shared backend as invalid (which no retry can change), or still
	// pending at Close.
	PendingDropped = "dropped"
)

// retryTimeout bounds one round of retries started when the breaker closes.
const retryTimeout = 10 * time.Second

// pendingKey names a reservation in the shared backend.
type pendingKey struct {
	key bucket.Key
	id  string
}

// pending is a settlement the shared backend owes: a Settle that failed, or a
// release of a reservation that a failed Reserve may have left behind.
type pending struct {
	req backend.SettleRequest // Now is set at each retry
	// until is zero for a settlement, which any answer of the shared
	// backend ends. For a release it is the reservation's deadline: the
	// release ends when the shared backend finds the reservation, and is
	// dropped at the deadline, after which orphan recovery ends it.
	until time.Time
}

// owe records that the shared backend may hold reservation req.ID of k
// unsettled after a call that failed with err: a settlement to retry (until
// zero), or a release (until the reservation's deadline). A request the
// shared backend refused as invalid changed nothing and is not kept. A
// settlement replaces a release of the same reservation, keeping its
// deadline, as the reservation may still appear.
func (b *Backend) owe(k bucket.Key, req backend.SettleRequest, until time.Time, err error) {
	if errors.Is(err, backend.ErrInvalid) {
		return
	}
	req.Now = time.Time{}
	pk := pendingKey{k, req.ID}
	b.mu.Lock()
	defer b.mu.Unlock()
	if old, ok := b.pending[pk]; ok {
		if until.IsZero() { // a settlement after a release
			b.pending[pk] = &pending{req: req, until: old.until}
		}
		return
	}
	if len(b.pending) >= b.opts.MaxPending {
		b.ended(PendingDropped, 1)
		return
	}
	b.pending[pk] = &pending{req: req, until: until}
	b.changed()
}

// forget drops a pending settlement of reservation id of k, which a settle
// through the shared backend has just ended.
func (b *Backend) forget(k bucket.Key, id string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	pk := pendingKey{k, id}
	if _, ok := b.pending[pk]; ok {
		delete(b.pending, pk)
		b.changed()
	}
}

// end removes p, still pending as pk, with outcome.
func (b *Backend) end(pk pendingKey, p *pending, outcome string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.pending[pk] == p {
		delete(b.pending, pk)
		b.ended(outcome, 1)
		b.changed()
	}
}

// expire drops the releases whose deadline is not after now.
func (b *Backend) expire(now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for pk, p := range b.pending {
		if !p.until.IsZero() && !now.Before(p.until) {
			delete(b.pending, pk)
			n++
		}
	}
	if n > 0 {
		b.ended(PendingExpired, n)
		b.changed()
	}
}

// changed reports the number of pending settlements. Requires b.mu held.
func (b *Backend) changed() {
	if b.opts.OnPending != nil {
		b.opts.OnPending(len(b.pending))
	}
}

// ended reports n pending settlements ended with outcome. Requires b.mu held.
func (b *Backend) ended(outcome string, n int) {
	if b.opts.OnPendingEnd != nil {
		b.opts.OnPendingEnd(outcome, n)
	}
}

// Pending returns the number of pending settlements: settlements and
// releases the shared backend owes, waiting for a retry.
func (b *Backend) Pending() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.pending)
}

// retryPending drops the releases past their deadline, then, when the breaker
// lets calls through, sends every pending settlement to the shared backend
// once, at now, until one fails (the shared backend is away again) or ctx is
// done. Rounds never overlap: with wait, it waits for a round in progress to
// end (or ctx) and then runs its own; without, it leaves the work to that
// round.
func (b *Backend) retryPending(ctx context.Context, now time.Time, wait bool) {
	b.expire(now)
	if wait {
		select {
		case b.round <- struct{}{}:
		case <-ctx.Done():
			return
		}
	} else {
		select {
		case b.round <- struct{}{}:
		default:
			return
		}
	}
	defer func() { <-b.round }()

	b.mu.Lock()
	type item struct {
		pk pendingKey
		p  *pending
	}
	batch := make([]item, 0, len(b.pending))
	for pk, p := range b.pending {
		batch = append(batch, item{pk, p})
	}
	b.mu.Unlock()
	if len(batch) == 0 || ctx.Err() != nil || !b.allow() {
		return
	}
	// allow may have admitted a probe: the first call always follows, and
	// its done ends the probe.
	for i, it := range batch {
		if i > 0 && ctx.Err() != nil {
			return
		}
		req := it.p.req
		req.Now = now
		res, err := b.shared.Settle(ctx, it.pk.key, req)
		if err != nil && ctx.Err() != nil {
			// The round ran out of time: that says nothing about the
			// shared backend.
			b.record(context.Canceled)
			return
		}
		b.record(err) // not done: this round retries all a new one would
		switch {
		case errors.Is(err, backend.ErrInvalid):
			b.end(it.pk, it.p, PendingDropped)
		case err != nil:
			return
		case res.Found || it.p.until.IsZero():
			b.end(it.pk, it.p, PendingRetried)
		}
	}
}

// kick starts a round of retries in the background, unless one is running,
// nothing is pending, or Close has begun. Close cancels the round and waits
// for it.
func (b *Backend) kick() {
	b.mu.Lock()
	if b.closed || len(b.pending) == 0 {
		b.mu.Unlock()
		return
	}
	b.wg.Add(1)
	b.mu.Unlock()
	go func() {
		defer b.wg.Done()
		ctx, cancel := context.WithTimeout(b.ctx, retryTimeout)
		defer cancel()
		b.retryPending(ctx, b.opts.Clock(), false)
	}()
}
