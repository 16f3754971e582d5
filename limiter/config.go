package limiter

import (
	"errors"
	"fmt"
	"time"

	"github.com/adaptive-rate-limiter/arl/limiter/bucket"
)

// Mode is a scheduling mode.
type Mode string

// The scheduling modes.
const (
	// ModeBasic admits a request when it fits, and otherwise rejects it at
	// once with the exact retry-after.
	ModeBasic Mode = "basic"
	// ModeIntelligent queues what does not fit (not implemented yet).
	ModeIntelligent Mode = "intelligent"
	// ModeAccount adds fair sharing across tenants (not implemented yet).
	ModeAccount Mode = "account"
)

// FailureMode is what happens to a request when the backend fails.
type FailureMode string

// The failure modes.
const (
	// FailOpen forwards the request without a reservation.
	FailOpen FailureMode = "open"
	// FailClosed rejects the request with 503.
	FailClosed FailureMode = "closed"
)

// Config configures a Limiter. The zero value of each field selects its
// documented default.
type Config struct {
	// Mode is the scheduling mode; default ModeBasic.
	Mode Mode
	// Defaults are the limits assumed for a bucket before its provider has
	// reported any; zero entries are unknown (a new bucket then admits one
	// probe request at a time until the first answer).
	Defaults bucket.Limits
	// DefaultMaxTokens is the output budget of a request that names none;
	// default 4096.
	DefaultMaxTokens int64
	// ReservationTTL is how long a reservation may stay open before orphan
	// recovery reclaims it; default 10 minutes. It must exceed the longest
	// stream arl will see.
	ReservationTTL time.Duration
	// FailureMode applies when the backend fails; default FailOpen.
	FailureMode FailureMode
	// NamespaceHeader names the trusted header carrying the namespace;
	// default "x-arl-namespace". Absent: DefaultNamespace.
	NamespaceHeader string
	// ProviderHeader names the header naming the provider where the host does
	// not; default "x-arl-provider".
	ProviderHeader string
	// BackendTimeout bounds each backend call; default 1 second.
	BackendTimeout time.Duration
	// MaxResponseBytes bounds the non-streamed response body kept to read
	// its usage; default 8 MiB.
	MaxResponseBytes int
	// Breaker is the circuit breaker for providers without a lockout policy
	// of their own; its zero value leaves them without one.
	Breaker Breaker
	// InjectStreamUsage adds stream_options.include_usage to OpenAI-style
	// streaming requests that lack it, so that refunds are exact, and removes
	// what it adds from the stream the client receives.
	InjectStreamUsage bool
	// Clock returns the current time; default time.Now.
	Clock func() time.Time
}

// DefaultNamespace is the namespace of requests without a namespace header.
const DefaultNamespace = "default"

// ErrModeNotImplemented reports a scheduling mode that this build refuses
// rather than fakes.
var ErrModeNotImplemented = errors.New("scheduling mode not implemented yet")

// withDefaults returns c with every zero field set to its default, or an
// error naming the first invalid field.
func (c Config) withDefaults() (Config, error) {
	if c.Mode == "" {
		c.Mode = ModeBasic
	}
	switch c.Mode {
	case ModeBasic:
	case ModeIntelligent, ModeAccount:
		return c, fmt.Errorf("mode %q: %w (use %q)", c.Mode, ErrModeNotImplemented, ModeBasic)
	default:
		return c, fmt.Errorf("mode %q: want basic, intelligent or account", c.Mode)
	}
	if c.FailureMode == "" {
		c.FailureMode = FailOpen
	}
	if c.FailureMode != FailOpen && c.FailureMode != FailClosed {
		return c, fmt.Errorf("failure mode %q: want open or closed", c.FailureMode)
	}
	for d, v := range c.Defaults {
		if v < 0 {
			return c, fmt.Errorf("default %s limit %d: must not be negative", bucket.Dimension(d), v)
		}
	}
	if c.DefaultMaxTokens < 0 {
		return c, fmt.Errorf("default max tokens %d: must not be negative", c.DefaultMaxTokens)
	}
	if c.DefaultMaxTokens == 0 {
		c.DefaultMaxTokens = 4096
	}
	if c.ReservationTTL < 0 || c.BackendTimeout < 0 || c.MaxResponseBytes < 0 {
		return c, errors.New("durations and sizes must not be negative")
	}
	if c.Breaker.Failures < 0 || c.Breaker.Window < 0 || c.Breaker.Cooldown < 0 {
		return c, errors.New("circuit breaker settings must not be negative")
	}
	if c.Breaker.Failures > 0 && (c.Breaker.Window == 0 || c.Breaker.Cooldown == 0) {
		return c, errors.New("circuit breaker: a failure threshold needs a window and a cool-down")
	}
	if c.ReservationTTL == 0 {
		c.ReservationTTL = 10 * time.Minute
	}
	if c.BackendTimeout == 0 {
		c.BackendTimeout = time.Second
	}
	if c.MaxResponseBytes == 0 {
		c.MaxResponseBytes = 8 << 20
	}
	if c.NamespaceHeader == "" {
		c.NamespaceHeader = "x-arl-namespace"
	}
	if c.ProviderHeader == "" {
		c.ProviderHeader = "x-arl-provider"
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	return c, nil
}
