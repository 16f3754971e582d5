package memory

import (
	"context"
	"time"

	"github.com/adaptive-rate-limiter/arl/backend"
	"github.com/adaptive-rate-limiter/arl/limiter/bucket"
)

var _ backend.Bulk = (*Backend)(nil)

// GetMany implements [backend.Bulk]: one Get per key, in order, each under
// its bucket's lock.
func (b *Backend) GetMany(ctx context.Context, keys []bucket.Key, now time.Time) ([]backend.Entry, error) {
	return backend.GetEach(ctx, b, keys, now)
}

// ObserveMany implements [backend.Bulk]: one Observe per lesson, in order. It
// fails as a whole, before applying anything, only when the backend is
// closed; a memory Observe cannot otherwise fail.
func (b *Backend) ObserveMany(ctx context.Context, lessons []backend.KeyedObserve) error {
	if b.closed.Load() {
		return backend.ErrClosed
	}
	var errs []error
	for i, l := range lessons {
		if err := b.Observe(ctx, l.Key, l.ObserveRequest); err != nil {
			if errs == nil {
				errs = make([]error, len(lessons))
			}
			errs[i] = err
		}
	}
	if errs != nil {
		return &backend.BulkError{Errs: errs}
	}
	return nil
}
