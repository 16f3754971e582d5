package provider

import (
	"strings"
	"time"

	"github.com/adaptive-rate-limiter/arl/limiter/bucket"
)

// Header gives read access to HTTP headers by lower-case name. Get returns ""
// for an absent header.
type Header interface {
	Get(name string) string
}

// Answer is what a dialect learned from one upstream answer's status line and
// headers (and, for error answers, its body).
type Answer struct {
	Observation bucket.Observation
	// Invalid counts header values that were present but could not be parsed
	// (or were absurd) and were therefore ignored.
	Invalid int
	// WantBody asks for the error answer's body: it says more than the
	// headers (which limit was hit, how long to wait, whether it is a billing
	// error). The limiter then buffers the body and calls ParseErrorBody
	// before applying the observation.
	WantBody bool
	// Billing reports an error that is about the account's quota or billing,
	// not a rate limit: it must not block the bucket.
	Billing bool
}

// Dialect is the way one provider speaks. Implementations are stateless and
// safe for concurrent use.
type Dialect interface {
	// Name is the provider's name as used in bucket keys and metrics.
	Name() string
	// ParseAnswer reads the rate-limit headers of an upstream answer received
	// at now. It never fails: values it cannot read are ignored and counted.
	ParseAnswer(status int, h Header, now time.Time) Answer
	// ParseErrorBody refines an answer that asked for its body (WantBody)
	// with what the error body says. body may be truncated or malformed; the
	// answer then stays as the headers made it.
	ParseErrorBody(status int, body []byte, now time.Time, a *Answer)
	// InjectsUsage reports whether the provider streams OpenAI-style chunks
	// that report usage when the request sets stream_options.include_usage.
	InjectsUsage() bool
	// ErrorBody renders a rejection with the given reason and message in the
	// provider's error shape.
	ErrorBody(status int, reason, message string) []byte
}

// hosts maps the upstream hosts arl knows to provider names.
var hosts = map[string]string{
	"api.openai.com":    "openai",
	"api.anthropic.com": "anthropic",
	"api.groq.com":      "groq",
	"api.together.xyz":  "together",
	"api.together.ai":   "together",
	"api.venice.ai":     "venice",
	"openrouter.ai":     "openrouter",
	"api.mistral.ai":    "mistral",
	"api.fireworks.ai":  "fireworks",
}

// hostSuffixes maps domain suffixes to provider names, for per-resource hosts.
var hostSuffixes = []struct{ suffix, name string }{
	{".openai.azure.com", "azure"},
	{".cognitiveservices.azure.com", "azure"},
}

// Generic is the name of the provider assumed for unknown hosts.
const Generic = "generic"

// Name returns the provider name for a request, from the provider header when
// set (lower-cased, trimmed), else from the :authority host (port and case
// ignored). Unknown hosts are Generic.
func Name(authority, override string) string {
	if o := strings.TrimSpace(override); o != "" {
		return strings.ToLower(o)
	}
	host := strings.ToLower(authority)
	if i := strings.LastIndexByte(host, ':'); i >= 0 && !strings.Contains(host[i:], "]") {
		host = host[:i]
	}
	if name, ok := hosts[host]; ok {
		return name
	}
	for _, s := range hostSuffixes {
		if strings.HasSuffix(host, s.suffix) {
			return s.name
		}
	}
	return Generic
}

// ForName returns the dialect for a provider name. Providers without a
// dialect of their own speak OpenAI's, which most of them imitate.
func ForName(name string) Dialect {
	return openAI{name: name}
}
