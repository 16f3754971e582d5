package app

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"

	"github.com/adaptive-rate-limiter/arl/backend"
	"github.com/adaptive-rate-limiter/arl/backend/cache"
	"github.com/adaptive-rate-limiter/arl/backend/fallback"
	"github.com/adaptive-rate-limiter/arl/backend/memory"
	"github.com/adaptive-rate-limiter/arl/backend/redis"
	"github.com/adaptive-rate-limiter/arl/extproc"
	"github.com/adaptive-rate-limiter/arl/limiter"
	"github.com/adaptive-rate-limiter/arl/limiter/metrics"
)

// recoveryInterval is how often orphaned reservations are looked for, and
// how often the settlements Redis owes after failed calls are retried (they
// are also retried as soon as the breaker closes). A reservation that a
// timed-out call made all the same holds its cost until then: 10 s keeps a
// brief stall from starving a bucket for long, at the cost of a SCAN of
// Redis every 10 s per replica.
const recoveryInterval = 10 * time.Second

// Main loads the configuration from environ, logs JSON to logOut, and runs
// arl until ctx is done. Configuration errors are *ConfigError.
func Main(ctx context.Context, environ []string, logOut io.Writer) error {
	cfg, err := LoadConfig(environ)
	if err != nil {
		return err
	}
	level, _ := cfg.logLevel() // validated by LoadConfig
	log := slog.New(slog.NewJSONHandler(logOut, &slog.HandlerOptions{Level: level}))
	return Run(ctx, cfg, log, nil)
}

// Listening reports the addresses the servers are bound to, once they are.
type Listening struct {
	GRPC, Admin net.Addr
}

// Run serves arl with cfg until ctx is done, then shuts down gracefully: the
// health check turns NOT_SERVING, new streams are refused, and streams in
// flight get up to cfg.ShutdownTimeout to finish. ready, when not nil, is
// called once both listeners are bound.
func Run(ctx context.Context, cfg Config, log *slog.Logger, ready func(Listening)) error {
	if err := cfg.validate(); err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := metrics.New(reg)
	m.BuildInfo.WithLabelValues(version(), runtime.Version()).Set(1)

	be, err := newBackend(ctx, cfg, m, log)
	if err != nil {
		return err
	}
	defer func() { _ = be.Close() }()
	lim, err := limiter.New(cfg.limiterConfig(), be, m, log)
	if err != nil {
		return &ConfigError{Var: "ARL_*", Err: err}
	}

	grpcLis, err := net.Listen("tcp", cfg.GRPCAddr)
	if err != nil {
		return fmt.Errorf("listen on %s (ARL_GRPC_ADDR): %w", cfg.GRPCAddr, err)
	}
	adminLis, err := net.Listen("tcp", cfg.AdminAddr)
	if err != nil {
		_ = grpcLis.Close()
		return fmt.Errorf("listen on %s (ARL_ADMIN_ADDR): %w", cfg.AdminAddr, err)
	}

	gs := grpc.NewServer(
		grpc.MaxRecvMsgSize(cfg.GRPCMaxRecvBytes),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
	)
	extprocv3.RegisterExternalProcessorServer(gs, extproc.NewServer(lim, m, log, extproc.Options{MaxRequestBytes: cfg.GRPCMaxRecvBytes}))
	hs := health.NewServer()
	healthpb.RegisterHealthServer(gs, hs)
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus(extprocv3.ExternalProcessor_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)

	var draining atomic.Bool
	admin := &http.Server{Handler: adminMux(reg, lim, &draining), ReadHeaderTimeout: 5 * time.Second}

	errc := make(chan error, 2)
	go func() { errc <- serveErr("grpc", gs.Serve(grpcLis)) }()
	go func() { errc <- serveErr("admin", admin.Serve(adminLis)) }()
	recoverCtx, stopRecovery := context.WithCancel(context.WithoutCancel(ctx))
	defer stopRecovery()
	go lim.RunRecovery(recoverCtx, recoveryInterval)

	log.Info("arl started", "grpc_addr", grpcLis.Addr().String(), "admin_addr", adminLis.Addr().String(),
		"backend", cfg.Backend, "mode", cfg.Mode, "failure_mode", cfg.FailureMode, "version", version())
	if ready != nil {
		ready(Listening{GRPC: grpcLis.Addr(), Admin: adminLis.Addr()})
	}

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}

	log.Info("arl shutting down", "timeout", cfg.ShutdownTimeout.String())
	draining.Store(true)
	hs.Shutdown() // every service NOT_SERVING
	stopped := make(chan struct{})
	go func() { gs.GracefulStop(); close(stopped) }()
	timer := time.NewTimer(cfg.ShutdownTimeout)
	select {
	case <-stopped:
		timer.Stop()
	case <-timer.C:
		log.Warn("shutdown timeout: cancelling the streams still open")
		gs.Stop()
		<-stopped
	}
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_ = admin.Shutdown(shutdownCtx)
	log.Info("arl stopped")
	return runErr
}

func serveErr(name string, err error) error {
	if err == nil || errors.Is(err, grpc.ErrServerStopped) || errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("%s server: %w", name, err)
}

// newBackend builds the configured backend. The Redis backend is wrapped in
// a breaker that falls back to local limits at ARL_FALLBACK_SHARE (or, with a
// share of 0, fails fast so that ARL_FAILURE_MODE applies), and that in the
// state cache with ARL_STATE_CACHE_POLICY:
//
//	limiter -> cache -> fallback -> redis
//	                       \-> local memory (while Redis is away)
func newBackend(ctx context.Context, cfg Config, m *metrics.Metrics, log *slog.Logger) (backend.Backend, error) {
	switch cfg.Backend {
	case "memory":
		return memory.New(memory.Options{}), nil
	case "redis":
		opts := redis.Options{
			Addrs: cfg.RedisAddrs, Cluster: cfg.RedisCluster, MasterName: cfg.RedisMasterName,
			Username: cfg.RedisUsername, Password: cfg.RedisPassword, DB: cfg.RedisDB,
			KeyPrefix: cfg.RedisKeyPrefix, Timeout: cfg.RedisTimeout, PoolSize: cfg.RedisPoolSize,
		}
		if cfg.RedisTLS {
			opts.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		startCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		rb, err := redis.New(startCtx, opts)
		if err != nil {
			return nil, fmt.Errorf("redis backend (ARL_REDIS_ADDRS=%s): %w", strings.Join(cfg.RedisAddrs, ","), err)
		}
		fb, err := fallback.New(rb, fallback.Options{
			Share: cfg.FallbackShare,
			OnChange: func(open bool) {
				if open {
					m.BackendCircuitOpen.Set(1)
					log.Warn("redis unavailable: circuit open", "fallback_share", cfg.FallbackShare, "failure_mode", cfg.FailureMode)
				} else {
					m.BackendCircuitOpen.Set(0)
					log.Info("redis available again: circuit closed")
				}
			},
			OnPending: func(n int) { m.PendingSettlements.Set(float64(n)) },
			OnPendingEnd: func(outcome string, n int) {
				m.PendingEnded.WithLabelValues(outcome).Add(float64(n))
				if outcome == fallback.PendingDropped {
					log.Warn("settlements owed by redis dropped; orphan recovery ends their reservations", "count", n)
				}
			},
		})
		if err != nil {
			_ = rb.Close()
			return nil, invalid("FallbackShare", "%v", err)
		}
		if cfg.FallbackShare > 0 {
			if err := fb.WarmUp(startCtx); err != nil {
				log.Warn("fallback warm-up failed; local limits start from defaults", "err", err)
			}
		}
		c, err := cache.New(fb, cache.Options{
			Policy: cfg.CachePolicy, TTL: cfg.CacheTTL,
			OnDrop: func(n int) {
				m.CacheDropped.Add(float64(n))
				log.Warn("write-back lessons dropped after retries", "count", n)
			},
		})
		if err != nil {
			_ = fb.Close()
			return nil, invalid("CachePolicy", "%v", err)
		}
		return c, nil
	default:
		return nil, invalid("Backend", "%q: not available", cfg.Backend)
	}
}

// adminMux serves the admin endpoints:
//
//	/healthz     200 while the process runs
//	/readyz      200 while serving, 503 once shutdown has begun
//	/metrics     Prometheus exposition
//	/v1/buckets  every bucket's learned limits and levels, as JSON
func adminMux(reg *prometheus.Registry, lim *limiter.Limiter, draining *atomic.Bool) *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if draining.Load() {
			http.Error(w, "shutting down", http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "ok\n")
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("GET /v1/buckets", func(w http.ResponseWriter, r *http.Request) {
		buckets, err := lim.Buckets(r.Context())
		if err != nil {
			http.Error(w, "backend unavailable: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"buckets": buckets})
	})
	return mux
}

func version() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "devel"
}
