package backend

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/adaptive-rate-limiter/arl/limiter/bucket"
)

// Backend stores bucket state and reservations. Implementations are safe for
// concurrent use, and every method is atomic with respect to one bucket.
//
// Times: memory implementations use the Now fields and arguments as the
// current time; distributed implementations may use a shared clock of their
// own (Redis TIME) instead, so that every replica agrees.
//
// Amounts: a cost (Reserve) or a usage (Settle) with a negative amount in any
// dimension is refused, as [CheckAmounts] checks: the call changes nothing
// and returns an error wrapping ErrInvalid. (Taken as given, a negative cost
// would raise a level above its capacity, and a negative usage would refund
// more than was taken.)
type Backend interface {
	// Reserve creates the bucket when needed (with req.Defaults), and when the
	// cost fits takes it and records reservation req.ID until its deadline.
	// Reserving an ID that is already recorded returns the original decision
	// without taking again.
	Reserve(ctx context.Context, key bucket.Key, req ReserveRequest) (ReserveResult, error)

	// Settle ends reservation req.ID: it gives back what the reservation took
	// less req.Actual, and first applies req.Observation when set (the response
	// headers, folded into the same round trip). Settling an unknown or already
	// settled ID changes nothing and reports Found false.
	Settle(ctx context.Context, key bucket.Key, req SettleRequest) (SettleResult, error)

	// Extend moves reservation req.ID's deadline to req.Now + req.TTL when
	// that is later than its deadline, so that a request still in flight
	// (a long stream) is not taken for an orphan. It reports false when the
	// reservation is not recorded (settled, recovered, or unknown).
	Extend(ctx context.Context, key bucket.Key, req ExtendRequest) (bool, error)
	// Observe applies what a provider answer taught about the bucket, creating
	// it (with defaults) when needed.
	Observe(ctx context.Context, key bucket.Key, req ObserveRequest) error

	// Get returns the bucket's state advanced to now, and false when the
	// bucket does not exist.
	Get(ctx context.Context, key bucket.Key, now time.Time) (bucket.State, bool, error)

	// List returns every bucket's state advanced to now, in no particular order.
	List(ctx context.Context, now time.Time) ([]Entry, error)

	// RecoverOrphans releases the reservations whose deadline has passed
	// (their owner died or lost track of them): their capacity returns, as
	// when a settlement reports no usage. What the provider did count of them
	// shows in its next answer's remaining values, which cap the level again.
	// It returns how many it ended. Any replica may run it at any time.
	RecoverOrphans(ctx context.Context, now time.Time) (int, error)

	// Close releases the backend's resources.
	Close() error
}

// ReserveRequest asks for capacity in one bucket.
type ReserveRequest struct {
	ID       string        // unique reservation ID, chosen by the caller
	Cost     bucket.Vector // estimated cost of the request
	Defaults bucket.Limits // limits for a bucket that does not exist yet
	TTL      time.Duration // the reservation is an orphan after this long
	Now      time.Time
}

// ReserveResult is the outcome of a reservation attempt.
type ReserveResult struct {
	bucket.Decision
	Taken bucket.Vector // what the reservation took; zero when denied
}

// SettleRequest ends a reservation with the request's actual usage.
type SettleRequest struct {
	ID          string
	Actual      bucket.Vector       // zero releases the reservation entirely
	Observation *bucket.Observation // optional: applied before settling
	Defaults    bucket.Limits       // for a bucket recreated by the observation
	Now         time.Time
}

// SettleResult reports what Settle did.
type SettleResult struct {
	Found bool          // false: unknown ID, already settled or recovered
	Taken bucket.Vector // what the reservation had taken, when found
}

// ExtendRequest renews the lease of a reservation still in flight.
type ExtendRequest struct {
	ID  string
	TTL time.Duration // the new deadline is Now + TTL
	Now time.Time
}

// ObserveRequest carries a provider answer's lesson for one bucket.
type ObserveRequest struct {
	Observation bucket.Observation
	Defaults    bucket.Limits // for a bucket that does not exist yet
	Now         time.Time
}

// Entry is one bucket in a listing.
type Entry struct {
	Key   bucket.Key
	State bucket.State
}

// ErrClosed is returned by operations on a closed backend.
var ErrClosed = errors.New("backend closed")

// ErrInvalid is returned for a request a backend refuses, such as a negative
// cost or usage amount; the call changed nothing. It is the caller's fault,
// not the backend's: it says nothing about the backend's health.
var ErrInvalid = errors.New("invalid request")

// ErrUnavailable is returned, without trying, while a backend is known to be
// down (its circuit breaker is open). Callers apply their failure mode, and
// need not log each occurrence: the breaker reports its transitions.
var ErrUnavailable = errors.New("backend unavailable")

// CheckAmounts returns an error wrapping ErrInvalid when an amount of v, a
// cost or a usage (named by what), is negative; nil otherwise.
func CheckAmounts(what string, v bucket.Vector) error {
	for i, x := range v {
		if x < 0 {
			return fmt.Errorf("%w: %s %d in %s is negative", ErrInvalid, what, x, bucket.Dimension(i))
		}
	}
	return nil
}
