package backend

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/adaptive-rate-limiter/arl/limiter/bucket"
)

// Bulk is implemented by backends that can read or teach many buckets in one
// round trip (a Redis pipeline, split per node in a cluster). It is optional:
// callers check for it with a type assertion and otherwise loop over the
// single-bucket methods of [Backend].
//
// Every operation stays atomic for its own bucket; a bulk call is not atomic
// across buckets.
type Bulk interface {
	// GetMany returns the state, advanced to now, of every bucket of keys
	// that exists, in the order of keys; missing buckets are omitted, and a
	// key given twice is returned twice. On error it returns no entries.
	GetMany(ctx context.Context, keys []bucket.Key, now time.Time) ([]Entry, error)

	// ObserveMany applies every lesson as [Backend.Observe] would, each one
	// atomic for its bucket, and the lessons of one bucket in slice order.
	// It returns nil when every lesson was applied, a *[BulkError] when some
	// were and some failed, and any other error when none can be assumed
	// applied. Applying a lesson twice teaches the same as applying it once,
	// so a caller may retry the failed ones, or all of them.
	ObserveMany(ctx context.Context, lessons []KeyedObserve) error
}

// KeyedObserve is one lesson of an [Bulk.ObserveMany] call: the bucket and
// what an answer taught about it.
type KeyedObserve struct {
	Key bucket.Key
	ObserveRequest
}

// BulkError reports a bulk call in which some operations failed and the
// others succeeded.
type BulkError struct {
	// Errs has one entry per operation of the call, in call order: nil for
	// those that succeeded.
	Errs []error
}

// Error summarises the failures: how many, and the first one.
func (e *BulkError) Error() string {
	n, first := 0, error(nil)
	for _, err := range e.Errs {
		if err != nil {
			if first == nil {
				first = err
			}
			n++
		}
	}
	if first == nil {
		return "bulk: no operation failed"
	}
	return fmt.Sprintf("bulk: %d of %d operations failed, first: %v", n, len(e.Errs), first)
}

// Unwrap returns the errors of the failed operations, for errors.Is and
// errors.As.
func (e *BulkError) Unwrap() []error {
	var out []error
	for _, err := range e.Errs {
		if err != nil {
			out = append(out, err)
		}
	}
	return out
}

// OperationErr returns the error of operation i of a bulk call that returned
// err: nil when the call succeeded or operation i did (per a *[BulkError]),
// and err itself when the call failed as a whole.
func OperationErr(err error, i int) error {
	if err == nil {
		return nil
	}
	var be *BulkError
	if errors.As(err, &be) {
		if i < 0 || i >= len(be.Errs) {
			return fmt.Errorf("bulk: operation %d not reported (%d operations): %w", i, len(be.Errs), err)
		}
		return be.Errs[i]
	}
	return err
}

// GetEach is [Bulk.GetMany] over single [Backend.Get] calls, for backends
// with no cheaper way to read many buckets.
func GetEach(ctx context.Context, be Backend, keys []bucket.Key, now time.Time) ([]Entry, error) {
	out := make([]Entry, 0, len(keys))
	for _, k := range keys {
		s, ok, err := be.Get(ctx, k, now)
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, Entry{Key: k, State: s})
		}
	}
	return out, nil
}
