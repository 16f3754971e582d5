package limiter

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/adaptive-rate-limiter/arl/backend"
	"github.com/adaptive-rate-limiter/arl/limiter/bucket"
	"github.com/adaptive-rate-limiter/arl/limiter/metrics"
)

// Limiter decides admission for LLM API requests against their provider
// buckets. It is safe for concurrent use; each HTTP request gets its own
// [Exchange] from [Limiter.Begin].
type Limiter struct {
	cfg     Config
	backend backend.Backend
	metrics *metrics.Metrics
	log     *slog.Logger
	breaker breaker
	leases  leases // reservations in flight, for ExtendLeases

	idPrefix string        // unique per process, so reservation IDs never collide across replicas
	idSeq    atomic.Uint64 // reservation sequence within this process
}

// New returns a Limiter over be. It fails when cfg is invalid, naming the
// offending setting.
func New(cfg Config, be backend.Backend, m *metrics.Metrics, log *slog.Logger) (*Limiter, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("limiter config: %w", err)
	}
	if be == nil || m == nil || log == nil {
		return nil, fmt.Errorf("limiter: backend, metrics and logger are required")
	}
	var p [6]byte
	if _, err := rand.Read(p[:]); err != nil {
		return nil, fmt.Errorf("limiter: reservation id prefix: %w", err)
	}
	return &Limiter{cfg: cfg, backend: be, metrics: m, log: log, breaker: breaker{def: cfg.Breaker},
		idPrefix: hex.EncodeToString(p[:]) + "-"}, nil
}

// Config returns the limiter's effective configuration, defaults applied.
func (l *Limiter) Config() Config { return l.cfg }

func (l *Limiter) newID() string {
	return l.idPrefix + strconv.FormatUint(l.idSeq.Add(1), 36)
}

// call runs one backend operation under the backend timeout, detached from
// the caller's cancellation: an operation that settles an aborted stream must
// still reach the backend after the stream's context is gone.
func (l *Limiter) call(ctx context.Context, op string, fn func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), l.cfg.BackendTimeout)
	defer cancel()
	start := time.Now()
	err := fn(ctx)
	l.metrics.BackendOps.WithLabelValues(op).Observe(time.Since(start).Seconds())
	switch {
	case err == nil:
	case errors.Is(err, backend.ErrUnavailable):
		// Known down: the breaker logged the outage once; do not log per call.
		l.metrics.BackendErrors.WithLabelValues(op).Inc()
	default:
		l.metrics.BackendErrors.WithLabelValues(op).Inc()
		l.log.Warn("backend operation failed", "op", op, "err", err)
	}
	return err
}

// RecoverOrphans ends reservations whose deadline has passed. See
// [backend.Backend.RecoverOrphans].
func (l *Limiter) RecoverOrphans(ctx context.Context) (int, error) {
	var n int
	err := l.call(ctx, "recover_orphans", func(ctx context.Context) error {
		var err error
		n, err = l.backend.RecoverOrphans(ctx, l.cfg.Clock())
		return err
	})
	l.metrics.OrphansRecovered.Add(float64(n))
	return n, err
}

// RunRecovery calls ExtendLeases and then RecoverOrphans every interval (or
// every quarter of ARL_RESERVATION_TTL when that is shorter, so that leases
// are extended in time) until ctx is done.
func (l *Limiter) RunRecovery(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(max(min(interval, l.cfg.ReservationTTL/4), time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			_, _ = l.ExtendLeases(ctx) // failures are counted and logged by call
			if n, err := l.RecoverOrphans(ctx); err == nil && n > 0 {
				l.log.Info("recovered orphaned reservations", "count", n)
			}
			l.breaker.sweep(l.cfg.Clock(), max(l.cfg.Breaker.Window, time.Hour))
		}
	}
}

// BucketView is one bucket as the admin API shows it.
type BucketView struct {
	Key          bucket.Key               `json:"key"`
	Dimensions   map[string]DimensionView `json:"dimensions"`
	InFlight     int64                    `json:"in_flight"`
	Learned      bool                     `json:"learned"`
	BlockedUntil *time.Time               `json:"blocked_until,omitempty"`
	BlockReason  string                   `json:"block_reason,omitempty"`
}

// DimensionView is one known dimension of a bucket in the admin API.
type DimensionView struct {
	Limit     int64      `json:"limit"`
	Window    string     `json:"window"`
	Available float64    `json:"available"`
	HoldUntil *time.Time `json:"hold_until,omitempty"`
}

// Buckets returns every bucket's current state.
func (l *Limiter) Buckets(ctx context.Context) ([]BucketView, error) {
	var entries []backend.Entry
	now := l.cfg.Clock()
	err := l.call(ctx, "list", func(ctx context.Context) error {
		var err error
		entries, err = l.backend.List(ctx, now)
		return err
	})
	if err != nil {
		return nil, err
	}
	out := make([]BucketView, 0, len(entries))
	for _, e := range entries {
		v := BucketView{Key: e.Key, Dimensions: map[string]DimensionView{}, InFlight: e.State.InFlight, Learned: e.State.Learned}
		if now.Before(e.State.BlockedUntil) {
			t := e.State.BlockedUntil
			v.BlockedUntil, v.BlockReason = &t, e.State.BlockReason
		}
		for i, d := range e.State.Dims {
			if d.Limit == 0 && !now.Before(d.HoldUntil) {
				continue
			}
			dv := DimensionView{Limit: d.Limit, Window: d.Window.String(), Available: d.Level}
			if now.Before(d.HoldUntil) {
				t := d.HoldUntil
				dv.HoldUntil = &t
			}
			v.Dimensions[bucket.Dimension(i).String()] = dv
		}
		out = append(out, v)
	}
	return out, nil
}
