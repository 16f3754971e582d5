package redis

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/adaptive-rate-limiter/arl/backend"
	"github.com/adaptive-rate-limiter/arl/limiter/bucket"
)

// Defaults of [Options].
const (
	// DefaultKeyPrefix starts every key when Options.KeyPrefix is empty.
	DefaultKeyPrefix = "arl"
	// DefaultTimeout bounds each call when Options.Timeout is zero.
	DefaultTimeout = 200 * time.Millisecond
	// DefaultAddr is the server when Options.Addrs is empty.
	DefaultAddr = "127.0.0.1:6379"
)

// Options configures a Redis backend. The zero value connects to a single
// node at DefaultAddr.
type Options struct {
	// Addrs are host:port addresses: the server, Cluster seed nodes (with
	// Cluster), or Sentinels (with MasterName). Default: DefaultAddr.
	Addrs []string

	// Cluster selects Redis Cluster. Without it (and without MasterName)
	// exactly one address is allowed.
	Cluster bool

	// MasterName selects Sentinel: Addrs are Sentinel addresses and
	// MasterName names the monitored master. Empty: no Sentinel.
	MasterName string

	// Username and Password authenticate to Redis (ACL or requirepass).
	// Empty: no authentication.
	Username, Password string

	// TLS, when set, connects with TLS using this configuration. Nil: plain TCP.
	TLS *tls.Config

	// DB selects the database of a single node or Sentinel master; Cluster
	// supports only 0. Default: 0.
	DB int

	// KeyPrefix starts every key; it must not contain '{' or '}'.
	// Default: DefaultKeyPrefix.
	KeyPrefix string

	// Timeout bounds each call to Redis, from the caller's context, so that
	// an unreachable or stalled Redis fails fast instead of holding requests.
	// Default: DefaultTimeout.
	Timeout time.Duration

	// PoolSize is the number of connections per node. Default: go-redis's
	// (10 per GOMAXPROCS).
	PoolSize int

	// Client, when set, is used instead of a client built from the fields
	// above (which are then ignored, except KeyPrefix and Timeout), and is
	// not closed by Close: its owner closes it.
	Client goredis.UniversalClient
}

// Backend is the Redis [backend.Backend]. Its methods use Redis TIME as the
// clock: the Now fields of requests and the now arguments are ignored, so that
// every replica sharing the Redis agrees on time. It is safe for concurrent
// use. The zero value is not usable; call [New].
type Backend struct {
	client     goredis.UniversalClient
	ownsClient bool
	prefix     string
	timeout    time.Duration
	scripts    *scripts
	closed     atomic.Bool

	// clock, when set (tests only), pins the scripts' clock instead of TIME.
	clock func() time.Time
}

var _ backend.Backend = (*Backend)(nil)

// New connects to Redis, checks that it answers (every master of a cluster),
// and loads the scripts into every node's script cache. Each step is bounded
// by ctx and the per-call timeout; New fails when Redis cannot be reached.
func New(ctx context.Context, opts Options) (*Backend, error) {
	b := &Backend{prefix: opts.KeyPrefix, timeout: opts.Timeout}
	if b.prefix == "" {
		b.prefix = DefaultKeyPrefix
	}
	if strings.ContainsAny(b.prefix, "{}") {
		return nil, fmt.Errorf("redis backend: key prefix %q contains a brace, which would break the cluster hash tag", b.prefix)
	}
	if b.timeout <= 0 {
		b.timeout = DefaultTimeout
	}
	s, err := loadScripts()
	if err != nil {
		return nil, fmt.Errorf("redis backend: %w", err)
	}
	b.scripts = s

	if opts.Client != nil {
		b.client = opts.Client
	} else {
		if b.client, err = newClient(opts); err != nil {
			return nil, fmt.Errorf("redis backend: %w", err)
		}
		b.ownsClient = true
	}
	if err := b.Ping(ctx); err != nil {
		_ = b.closeClient()
		return nil, fmt.Errorf("redis backend: %w", err)
	}
	if err := b.loadScripts(ctx); err != nil {
		_ = b.closeClient()
		return nil, fmt.Errorf("redis backend: %w", err)
	}
	return b, nil
}

func newClient(opts Options) (goredis.UniversalClient, error) {
	addrs := opts.Addrs
	if len(addrs) == 0 {
		addrs = []string{DefaultAddr}
	}
	if len(addrs) > 1 && !opts.Cluster && opts.MasterName == "" {
		return nil, fmt.Errorf("%d addresses given: set Cluster (or MasterName for Sentinel), or give one address", len(addrs))
	}
	if opts.Cluster && opts.DB != 0 {
		return nil, fmt.Errorf("database %d selected: Redis Cluster has only database 0", opts.DB)
	}
	return goredis.NewUniversalClient(&goredis.UniversalOptions{
		Addrs:         addrs,
		IsClusterMode: opts.Cluster,
		MasterName:    opts.MasterName,
		Username:      opts.Username,
		Password:      opts.Password,
		TLSConfig:     opts.TLS,
		DB:            opts.DB,
		PoolSize:      opts.PoolSize,
		// Every call carries a deadline (the per-call timeout, longer for
		// a page of List or RecoverOrphans), which bounds its socket reads
		// and writes; go-redis's socket timeouts stay as a backstop.
		ContextTimeoutEnabled: true,
		ClientName:            "arl",
	}), nil
}

// loadScripts loads every script into the script cache (every shard of a
// cluster) so that the first calls are EVALSHA hits. Script.Run falls back to
// EVAL when a node has lost its cache (restart, failover, SCRIPT FLUSH).
func (b *Backend) loadScripts(ctx context.Context) error {
	for _, s := range b.scripts.all() {
		cctx, cancel := context.WithTimeout(ctx, b.timeout)
		sha, err := b.client.ScriptLoad(cctx, s.src).Result()
		cancel()
		if err != nil {
			return fmt.Errorf("load script %s: %w", s.name, err)
		}
		if sha != s.Hash() {
			return fmt.Errorf("load script %s: redis returned digest %s, want %s", s.name, sha, s.Hash())
		}
	}
	return nil
}

// Ping checks that Redis answers: every master of a cluster, or the one
// server (or Sentinel master) otherwise. It is a readiness check.
func (b *Backend) Ping(ctx context.Context) error {
	if b.closed.Load() {
		return backend.ErrClosed
	}
	ctx, cancel := context.WithTimeout(ctx, b.timeout)
	defer cancel()
	var err error
	if c, ok := b.client.(*goredis.ClusterClient); ok {
		err = c.ForEachMaster(ctx, func(ctx context.Context, n *goredis.Client) error {
			if err := n.Ping(ctx).Err(); err != nil {
				return fmt.Errorf("%s: %w", n.Options().Addr, err)
			}
			return nil
		})
	} else {
		err = b.client.Ping(ctx).Err()
	}
	if err != nil {
		return fmt.Errorf("ping: %w", err)
	}
	return nil
}

// Close implements [backend.Backend]: later operations fail with
// backend.ErrClosed, and the client is closed unless it was injected.
func (b *Backend) Close() error {
	if b.closed.Swap(true) {
		return nil
	}
	return b.closeClient()
}

func (b *Backend) closeClient() error {
	if !b.ownsClient {
		return nil
	}
	if err := b.client.Close(); err != nil {
		return fmt.Errorf("redis backend: close: %w", err)
	}
	return nil
}

// clockArg is ARGV[1] of every script: empty for Redis TIME.
func (b *Backend) clockArg() string {
	if b.clock == nil {
		return ""
	}
	return strconv.FormatInt(b.clock().UnixMicro(), 10)
}

// run runs script s on the bucket's keys with the per-call timeout: EVALSHA,
// then EVAL when the node does not have the script cached. A script's
// refusal of its arguments is a [backend.ErrInvalid].
func (b *Backend) run(ctx context.Context, s *script, keys keySet, a args) (any, error) {
	if b.closed.Load() {
		return nil, backend.ErrClosed
	}
	ctx, cancel := context.WithTimeout(ctx, b.timeout)
	defer cancel()
	v, err := s.Run(ctx, b.client, keys.slice(), a...).Result()
	b.noteFailure(err)
	if goredis.HasErrorPrefix(err, invalidPrefix) {
		msg, _, _ := strings.Cut(strings.TrimPrefix(err.Error(), invalidPrefix+" "), " script: ")
		err = fmt.Errorf("%w: %s", backend.ErrInvalid, msg)
	}
	return v, err
}

// invalidPrefix starts the error replies of scripts that refuse their
// arguments (read_amounts in prelude.lua).
const invalidPrefix = "ARLINVALID"

// noteFailure asks a cluster client to reload the slot map after a failure
// that is not an answer from Redis (a refused connection, a timeout): the
// node may have died and a replica taken over its slots, which go-redis
// otherwise learns only from MOVED replies or its periodic (one minute)
// reload. Reloads run in the background and are deduplicated. A call the
// caller cancelled says nothing about the cluster.
func (b *Backend) noteFailure(err error) {
	if err == nil || errors.Is(err, context.Canceled) {
		return
	}
	c, ok := b.client.(*goredis.ClusterClient)
	if !ok {
		return
	}
	var answer goredis.Error
	if errors.As(err, &answer) {
		return
	}
	c.ReloadState(context.Background())
}

// Reserve implements [backend.Backend]. Expired reservations of the bucket
// (up to 64 per call) are reclaimed first, as RecoverOrphans would, so that a
// crashed replica's probe cannot block a bucket until the next sweep.
func (b *Backend) Reserve(ctx context.Context, k bucket.Key, req backend.ReserveRequest) (backend.ReserveResult, error) {
	a := args{b.clockArg(), req.ID, micros(req.TTL)}.vector(req.Cost).limits(req.Defaults)
	v, err := b.run(ctx, b.scripts.reserve, keysFor(b.prefix, k), a)
	if err != nil {
		return backend.ReserveResult{}, fmt.Errorf("reserve %s: %w", k, err)
	}
	r, err := decodeReserve(v)
	if err != nil {
		return backend.ReserveResult{}, fmt.Errorf("reserve %s: %w", k, err)
	}
	return r, nil
}

func decodeReserve(v any) (backend.ReserveResult, error) {
	f, err := replyStrings(v, 4)
	if err != nil {
		return backend.ReserveResult{}, err
	}
	var r backend.ReserveResult
	if r.Allowed, err = parseFlag(f[0]); err != nil {
		return backend.ReserveResult{}, err
	}
	if r.RetryAfter, err = parseMicros(f[1]); err != nil {
		return backend.ReserveResult{}, err
	}
	r.Reason = f[2]
	if r.Taken, err = parseVector(f[3]); err != nil {
		return backend.ReserveResult{}, err
	}
	return r, nil
}

// Settle implements [backend.Backend].
func (b *Backend) Settle(ctx context.Context, k bucket.Key, req backend.SettleRequest) (backend.SettleResult, error) {
	a := args{b.clockArg(), req.ID}.vector(req.Actual).limits(req.Defaults)
	if req.Observation != nil {
		a = append(a, "1").observation(req.Observation)
	} else {
		a = append(a, "0")
	}
	v, err := b.run(ctx, b.scripts.settle, keysFor(b.prefix, k), a)
	if err != nil {
		return backend.SettleResult{}, fmt.Errorf("settle %s: %w", k, err)
	}
	r, err := decodeSettle(v)
	if err != nil {
		return backend.SettleResult{}, fmt.Errorf("settle %s: %w", k, err)
	}
	return r, nil
}

func decodeSettle(v any) (backend.SettleResult, error) {
	f, err := replyStrings(v, 2)
	if err != nil {
		return backend.SettleResult{}, err
	}
	found, err := parseFlag(f[0])
	if err != nil || !found {
		return backend.SettleResult{}, err
	}
	taken, err := parseVector(f[1])
	if err != nil {
		return backend.SettleResult{}, err
	}
	return backend.SettleResult{Found: true, Taken: taken}, nil
}

// Extend implements [backend.Backend].
func (b *Backend) Extend(ctx context.Context, k bucket.Key, req backend.ExtendRequest) (bool, error) {
	v, err := b.run(ctx, b.scripts.extend, keysFor(b.prefix, k), args{b.clockArg(), req.ID, micros(req.TTL)})
	if err != nil {
		return false, fmt.Errorf("extend %s: %w", k, err)
	}
	found, err := decodeExtend(v)
	if err != nil {
		return false, fmt.Errorf("extend %s: %w", k, err)
	}
	return found, nil
}

func decodeExtend(v any) (bool, error) {
	f, err := replyStrings(v, 1)
	if err != nil {
		return false, err
	}
	return parseFlag(f[0])
}

// Observe implements [backend.Backend]. The observation's At, in
// microseconds, is compared with the newest one applied (the stale rule) and
// anchors the answer's remaining values, resets and retry hints as in
// [bucket.State.Observe]; since the scripts' clock is Redis TIME, replicas'
// clocks must agree with Redis's to within what these may be off (NTP). An At
// later than Redis TIME counts as TIME, so that a replica whose clock runs
// ahead cannot make the other replicas' answers stale.
func (b *Backend) Observe(ctx context.Context, k bucket.Key, req backend.ObserveRequest) error {
	a := args{b.clockArg()}.observation(&req.Observation).limits(req.Defaults)
	v, err := b.run(ctx, b.scripts.observe, keysFor(b.prefix, k), a)
	if err != nil {
		return fmt.Errorf("observe %s: %w", k, err)
	}
	if _, err := replyStrings(v, 1); err != nil {
		return fmt.Errorf("observe %s: %w", k, err)
	}
	return nil
}

// Get implements [backend.Backend]. It writes nothing.
func (b *Backend) Get(ctx context.Context, k bucket.Key, _ time.Time) (bucket.State, bool, error) {
	v, err := b.run(ctx, b.scripts.get, keysFor(b.prefix, k), args{b.clockArg()})
	if err != nil {
		return bucket.State{}, false, fmt.Errorf("get %s: %w", k, err)
	}
	s, ok, err := decodeGet(v)
	if err != nil {
		return bucket.State{}, false, fmt.Errorf("get %s: %w", k, err)
	}
	return s, ok, nil
}

func decodeGet(v any) (bucket.State, bool, error) {
	f, err := replyStrings(v, 0, stateFields)
	if err != nil || len(f) == 0 {
		return bucket.State{}, false, err
	}
	s, err := parseState(f)
	if err != nil {
		return bucket.State{}, false, err
	}
	return s, true, nil
}

// isNoScript reports whether err says a node lacks a cached script.
func isNoScript(err error) bool {
	return errors.Is(err, goredis.ErrNoScript) || goredis.HasErrorPrefix(err, "NOSCRIPT")
}
