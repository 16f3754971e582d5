package limiter

import (
	"context"
	"sync"
	"time"

	"github.com/adaptive-rate-limiter/arl/backend"
	"github.com/adaptive-rate-limiter/arl/limiter/bucket"
)

// leases tracks the reservations this process holds in flight, with the
// deadline each was last given, so that a request that outlives
// ARL_RESERVATION_TTL (a long stream) has its deadline moved forward before
// orphan recovery, which any replica may run, takes it for a dead replica's:
// that would refund what the stream took and lose the usage it then settles.
// It is safe for concurrent use.
type leases struct {
	mu sync.Mutex
	m  map[string]lease // requires mu
}

type lease struct {
	key      bucket.Key
	deadline time.Time
}

func (ls *leases) add(id string, k bucket.Key, deadline time.Time) {
	ls.mu.Lock()
	if ls.m == nil {
		ls.m = make(map[string]lease)
	}
	ls.m[id] = lease{key: k, deadline: deadline}
	ls.mu.Unlock()
}

func (ls *leases) remove(id string) {
	ls.mu.Lock()
	delete(ls.m, id)
	ls.mu.Unlock()
}

// due returns the leases whose deadline is before t.
func (ls *leases) due(t time.Time) map[string]bucket.Key {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	var out map[string]bucket.Key
	for id, l := range ls.m {
		if l.deadline.Before(t) {
			if out == nil {
				out = make(map[string]bucket.Key)
			}
			out[id] = l.key
		}
	}
	return out
}

// renewed records a lease's new deadline, unless the reservation was settled
// meanwhile.
func (ls *leases) renewed(id string, deadline time.Time) {
	ls.mu.Lock()
	if l, ok := ls.m[id]; ok {
		l.deadline = deadline
		ls.m[id] = l
	}
	ls.mu.Unlock()
}

// ExtendLeases moves forward the deadline of every reservation this process
// holds whose deadline is less than half of ARL_RESERVATION_TTL away, to a
// full TTL from now. A reservation the backend no longer holds (recovered
// after all, or settled meanwhile) is forgotten. It returns how many it
// extended and the first backend error; the others are still tried.
func (l *Limiter) ExtendLeases(ctx context.Context) (int, error) {
	ttl := l.cfg.ReservationTTL
	now := l.cfg.Clock()
	n := 0
	var first error
	for id, k := range l.leases.due(now.Add(ttl / 2)) {
		var found bool
		err := l.call(ctx, "extend", func(ctx context.Context) error {
			var err error
			found, err = l.backend.Extend(ctx, k, backend.ExtendRequest{ID: id, TTL: ttl, Now: now})
			return err
		})
		switch {
		case err != nil:
			if first == nil {
				first = err
			}
		case found:
			l.leases.renewed(id, now.Add(ttl))
			n++
		default:
			l.leases.remove(id)
		}
	}
	l.metrics.LeasesExtended.Add(float64(n))
	return n, first
}
