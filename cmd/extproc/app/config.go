package app

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caarlos0/env/v11"

	"github.com/adaptive-rate-limiter/arl/backend/cache"
	"github.com/adaptive-rate-limiter/arl/limiter"
	"github.com/adaptive-rate-limiter/arl/limiter/bucket"
)

// envPrefix prefixes every configuration variable.
const envPrefix = "ARL_"

// Config is arl's configuration, read from ARL_* environment variables. The
// defaults are those of the contract table in README.md.
type Config struct {
	GRPCAddr         string        `env:"GRPC_ADDR" envDefault:":50051"`
	AdminAddr        string        `env:"ADMIN_ADDR" envDefault:":9090"`
	Backend          string        `env:"BACKEND" envDefault:"memory"`
	RedisAddrs       []string      `env:"REDIS_ADDRS" envDefault:"127.0.0.1:6379" envSeparator:","`
	RedisCluster     bool          `env:"REDIS_CLUSTER" envDefault:"false"`
	RedisMasterName  string        `env:"REDIS_MASTER_NAME"`
	RedisUsername    string        `env:"REDIS_USERNAME"`
	RedisPassword    string        `env:"REDIS_PASSWORD"`
	RedisTLS         bool          `env:"REDIS_TLS" envDefault:"false"`
	RedisDB          int           `env:"REDIS_DB" envDefault:"0"`
	RedisKeyPrefix   string        `env:"REDIS_KEY_PREFIX" envDefault:"arl"`
	RedisTimeout     time.Duration `env:"REDIS_TIMEOUT" envDefault:"200ms"`
	RedisPoolSize    int           `env:"REDIS_POOL_SIZE" envDefault:"0"`
	FallbackShare    float64       `env:"FALLBACK_SHARE" envDefault:"0"`
	CachePolicy      cache.Policy  `env:"STATE_CACHE_POLICY" envDefault:"write-through"`
	CacheTTL         time.Duration `env:"STATE_CACHE_TTL" envDefault:"1s"`
	Mode             string        `env:"MODE" envDefault:"basic"`
	MaxQueueWait     time.Duration `env:"MAX_QUEUE_WAIT" envDefault:"30s"`
	MaxQueueSize     int           `env:"MAX_QUEUE_SIZE" envDefault:"1000"`
	NamespaceHeader  string        `env:"NAMESPACE_HEADER" envDefault:"x-arl-namespace"`
	TenantHeader     string        `env:"TENANT_HEADER" envDefault:"x-arl-tenant"`
	PriorityHeader   string        `env:"PRIORITY_HEADER" envDefault:"x-arl-priority"`
	ProviderHeader   string        `env:"PROVIDER_HEADER" envDefault:"x-arl-provider"`
	DefaultRPM       int64         `env:"DEFAULT_RPM" envDefault:"0"`
	DefaultTPM       int64         `env:"DEFAULT_TPM" envDefault:"0"`
	DefaultMaxTokens int64         `env:"DEFAULT_MAX_TOKENS" envDefault:"4096"`
	FailureMode      string        `env:"FAILURE_MODE" envDefault:"open"`
	InjectUsage      bool          `env:"INJECT_STREAM_USAGE" envDefault:"false"`
	CircuitFailures  int           `env:"CIRCUIT_FAILURES" envDefault:"0"`
	CircuitWindow    time.Duration `env:"CIRCUIT_WINDOW" envDefault:"30s"`
	CircuitCooldown  time.Duration `env:"CIRCUIT_COOLDOWN" envDefault:"30s"`
	ConfigFile       string        `env:"CONFIG_FILE"`
	ReservationTTL   time.Duration `env:"RESERVATION_TTL" envDefault:"10m"`
	BackendTimeout   time.Duration `env:"BACKEND_TIMEOUT" envDefault:"1s"`
	ShutdownTimeout  time.Duration `env:"SHUTDOWN_TIMEOUT" envDefault:"30s"`
	GRPCMaxRecvBytes int           `env:"GRPC_MAX_RECV_BYTES" envDefault:"33554432"`
	LogLevel         string        `env:"LOG_LEVEL" envDefault:"info"`
}

// ConfigError is an invalid configuration; main exits with status 2 on it.
type ConfigError struct {
	Var string // the environment variable at fault
	Err error
}

func (e *ConfigError) Error() string { return e.Var + ": " + e.Err.Error() }

func (e *ConfigError) Unwrap() error { return e.Err }

func invalid(field, format string, args ...any) error {
	return &ConfigError{Var: varName(field), Err: fmt.Errorf(format, args...)}
}

// varName returns the environment variable of a Config field.
func varName(field string) string {
	f, ok := reflect.TypeFor[Config]().FieldByName(field)
	if !ok {
		return field
	}
	return envPrefix + f.Tag.Get("env")
}

// LoadConfig reads the configuration from environ (KEY=value entries, as
// os.Environ returns) and validates it. Errors are *ConfigError values naming
// the variable at fault.
func LoadConfig(environ []string) (Config, error) {
	vars := make(map[string]string, len(environ))
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok {
			vars[k] = v
		}
	}
	var c Config
	if err := env.ParseWithOptions(&c, env.Options{Prefix: envPrefix, Environment: vars}); err != nil {
		var agg env.AggregateError
		if errors.As(err, &agg) && len(agg.Errors) > 0 {
			var pe env.ParseError
			if errors.As(agg.Errors[0], &pe) {
				return c, &ConfigError{Var: varName(pe.Name), Err: fmt.Errorf("%q: %w", vars[varName(pe.Name)], pe.Err)}
			}
		}
		return c, &ConfigError{Var: "ARL_*", Err: err}
	}
	return c, c.validate()
}

func (c *Config) validate() error {
	switch c.Backend {
	case "memory", "redis":
	default:
		return invalid("Backend", "%q: want memory or redis", c.Backend)
	}
	switch limiter.Mode(c.Mode) {
	case limiter.ModeBasic:
	case limiter.ModeIntelligent, limiter.ModeAccount:
		return invalid("Mode", "%q is not implemented in this build yet (queueing arrives with the scheduling work); use basic", c.Mode)
	default:
		return invalid("Mode", "%q: want basic, intelligent or account", c.Mode)
	}
	switch limiter.FailureMode(c.FailureMode) {
	case limiter.FailOpen, limiter.FailClosed:
	default:
		return invalid("FailureMode", "%q: want open or closed", c.FailureMode)
	}
	if c.ConfigFile != "" {
		return invalid("ConfigFile", "configuration files are not supported in this build yet")
	}
	checks := []struct {
		field string
		bad   bool
		why   string
	}{
		{"DefaultRPM", c.DefaultRPM < 0, "must not be negative"},
		{"DefaultTPM", c.DefaultTPM < 0, "must not be negative"},
		{"DefaultMaxTokens", c.DefaultMaxTokens <= 0 || c.DefaultMaxTokens > 10_000_000, "must be between 1 and 10000000"},
		{"MaxQueueWait", c.MaxQueueWait <= 0, "must be positive"},
		{"MaxQueueSize", c.MaxQueueSize <= 0, "must be positive"},
		{"ReservationTTL", c.ReservationTTL < time.Second, "must be at least 1s"},
		{"BackendTimeout", c.BackendTimeout <= 0, "must be positive"},
		{"ShutdownTimeout", c.ShutdownTimeout < 0, "must not be negative"},
		{"GRPCMaxRecvBytes", c.GRPCMaxRecvBytes < 4<<20, "must be at least 4194304 (gRPC's default)"},
		{"GRPCAddr", !validListenAddr(c.GRPCAddr), "must be host:port or :port, with a port from 0 to 65535"},
		{"AdminAddr", !validListenAddr(c.AdminAddr), "must be host:port or :port, with a port from 0 to 65535"},
		{"NamespaceHeader", !validHeaderName(c.NamespaceHeader), "must be a lower-case header name"},
		{"TenantHeader", !validHeaderName(c.TenantHeader), "must be a lower-case header name"},
		{"PriorityHeader", !validHeaderName(c.PriorityHeader), "must be a lower-case header name"},
		{"ProviderHeader", !validHeaderName(c.ProviderHeader), "must be a lower-case header name"},
		{"RedisAddrs", len(c.RedisAddrs) == 0 || slices.ContainsFunc(c.RedisAddrs, func(a string) bool { return !validDialAddr(a) }), "must be a comma-separated list of host:port"},
		{"CircuitFailures", c.CircuitFailures < 0, "must not be negative"},
		{"RedisDB", c.RedisDB < 0, "must not be negative"},
		{"RedisTimeout", c.RedisTimeout <= 0, "must be positive"},
		{"RedisPoolSize", c.RedisPoolSize < 0, "must not be negative (0: go-redis's default)"},
		{"RedisKeyPrefix", c.RedisKeyPrefix == "" || strings.ContainsAny(c.RedisKeyPrefix, "{} "), "must be non-empty, without braces or spaces"},
		{"RedisCluster", c.RedisCluster && c.RedisMasterName != "", "cannot be combined with ARL_REDIS_MASTER_NAME (Sentinel)"},
		{"FallbackShare", c.FallbackShare < 0 || c.FallbackShare > 1, "must be a fraction between 0 and 1"},
		{"CacheTTL", c.CacheTTL <= 0, "must be positive"},
		{"CircuitWindow", c.CircuitWindow <= 0, "must be positive"},
		{"CircuitCooldown", c.CircuitCooldown <= 0, "must be positive"},
	}
	for _, ch := range checks {
		if ch.bad {
			return invalid(ch.field, "%s", ch.why)
		}
	}
	if _, err := c.logLevel(); err != nil {
		return invalid("LogLevel", "%v", err)
	}
	return nil
}

// splitAddr splits host:port, and reports whether the port is a number from
// 0 to 65535.
func splitAddr(s string) (host string, port uint64, ok bool) {
	host, p, err := net.SplitHostPort(s)
	if err != nil {
		return "", 0, false
	}
	port, err = strconv.ParseUint(p, 10, 16)
	return host, port, err == nil
}

// validListenAddr accepts what net.Listen("tcp", s) takes: an optional host
// and a port number (0: any free port).
func validListenAddr(s string) bool {
	_, _, ok := splitAddr(s)
	return ok
}

// validDialAddr accepts a host and a port from 1 to 65535.
func validDialAddr(s string) bool {
	host, port, ok := splitAddr(s)
	return ok && host != "" && port > 0
}

// validHeaderName accepts HTTP token characters in lower case, as Envoy
// presents header names.
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || strings.IndexByte("-_.!#$%&'*+^`|~", c) >= 0) {
			return false
		}
	}
	return true
}

func (c *Config) logLevel() (slog.Level, error) {
	var l slog.Level
	err := l.UnmarshalText([]byte(c.LogLevel))
	return l, err
}

// limiterConfig maps the environment configuration to the limiter's.
func (c *Config) limiterConfig() limiter.Config {
	var defaults bucket.Limits
	defaults[bucket.Requests] = c.DefaultRPM
	defaults[bucket.Tokens] = c.DefaultTPM
	return limiter.Config{
		Mode:             limiter.Mode(c.Mode),
		Defaults:         defaults,
		DefaultMaxTokens: c.DefaultMaxTokens,
		ReservationTTL:   c.ReservationTTL,
		FailureMode:      limiter.FailureMode(c.FailureMode),
		NamespaceHeader:  c.NamespaceHeader,
		ProviderHeader:   c.ProviderHeader,
		BackendTimeout:   c.BackendTimeout,

		InjectStreamUsage: c.InjectUsage,
		Breaker:           limiter.Breaker{Failures: c.CircuitFailures, Window: c.CircuitWindow, Cooldown: c.CircuitCooldown},
	}
}
