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
	// not a rate limit: it must not block the bucket. A Billing answer never
	// carries a RetryAfter.
	Billing bool
	// Failure reports an answer that counts as a failed request toward the
	// provider's failure budget, which a circuit breaker tracks per bucket:
	// 429 and 5xx answers for most providers, every non-2xx answer for
	// providers whose lockout counts them all (see [LockoutPolicy]). A
	// Billing answer is no Failure, since waiting does not cure it and the
	// breaker would block traffic for it, except at providers whose lockout
	// counts every failed request. Whether an answer is Billing may only be
	// known once its body is read: judge Failure after ParseErrorBody.
	Failure bool

	// hinted records that RetryAfter came from the answer's own headers, so
	// that a wait read from the body refines only a default block.
	hinted bool
	// everyErrorFails records that the provider counts every non-2xx
	// answer toward its lockout, billing errors included.
	everyErrorFails bool
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
	// ErrorBody renders a rejection with the given reason and message in the
	// provider's error shape.
	ErrorBody(status int, reason, message string) []byte
}

// Lockout describes a provider's own penalty for failing traffic: more than
// Failures failed requests (answers with [Answer.Failure]) within Window lock
// the API key out for Penalty.
type Lockout struct {
	Failures int
	Window   time.Duration
	Penalty  time.Duration
}

// LockoutPolicy is implemented by dialects whose provider locks a key out
// after too many failed requests. A circuit breaker should open before the
// provider's threshold is reached, since the provider's lockout rejects every
// request, also those that would have succeeded.
type LockoutPolicy interface {
	Lockout() Lockout
}

// Names of the providers arl has a dialect for.
const (
	OpenAI     = "openai"
	Azure      = "azure"
	Anthropic  = "anthropic"
	Groq       = "groq"
	Together   = "together"
	Venice     = "venice"
	OpenRouter = "openrouter"
	Mistral    = "mistral"
	Fireworks  = "fireworks"
	Gemini     = "gemini"
	// Generic is the name of the provider assumed for unknown hosts.
	Generic = "generic"
)

// hosts maps the upstream hosts arl knows to provider names.
var hosts = map[string]string{
	"api.openai.com":                    OpenAI,
	"api.anthropic.com":                 Anthropic,
	"api.groq.com":                      Groq,
	"api.together.xyz":                  Together,
	"api.together.ai":                   Together,
	"api.venice.ai":                     Venice,
	"openrouter.ai":                     OpenRouter,
	"api.mistral.ai":                    Mistral,
	"api.fireworks.ai":                  Fireworks,
	"generativelanguage.googleapis.com": Gemini,
}

// hostSuffixes maps domain suffixes to provider names, for per-resource hosts.
var hostSuffixes = []struct{ suffix, name string }{
	{".openai.azure.com", Azure},
	{".cognitiveservices.azure.com", Azure},
}

// Name returns the provider name for a request, from the provider header when
// set (lower-cased, trimmed), else from the :authority host (port and case
// ignored). Unknown hosts are Generic. A header that names no provider arl
// has a dialect for is Generic too, and known is false: the name becomes a
// metric label and a bucket key segment, so it must be one of a bounded set.
func Name(authority, override string) (name string, known bool) {
	if o := strings.TrimSpace(override); o != "" {
		o = strings.ToLower(o)
		if _, ok := byName[o]; ok {
			return o, true
		}
		return Generic, false
	}
	host := strings.ToLower(authority)
	if i := strings.LastIndexByte(host, ':'); i >= 0 && !strings.Contains(host[i:], "]") {
		host = host[:i]
	}
	host = strings.TrimSuffix(host, ".")
	if name, ok := hosts[host]; ok {
		return name, true
	}
	for _, s := range hostSuffixes {
		if strings.HasSuffix(host, s.suffix) {
			return s.name, true
		}
	}
	return Generic, true
}

// byName maps the provider names arl knows to their dialects.
var byName = map[string]Dialect{
	OpenAI:     openAIDialect,
	Azure:      azureDialect,
	Groq:       groqDialect,
	Venice:     veniceDialect,
	Anthropic:  anthropic{},
	Together:   together{},
	OpenRouter: openRouter{},
	Mistral:    mistral{},
	Fireworks:  fireworks{},
	Gemini:     gemini{},
	Generic:    generic{},
}

// ForName returns the dialect for a provider name. Other names get the
// generic one, named Generic: it reads the IETF RateLimit headers,
// X-RateLimit-* and OpenAI's x-ratelimit-* names, which most
// OpenAI-compatible providers send.
func ForName(name string) Dialect {
	if d, ok := byName[name]; ok {
		return d
	}
	return generic{}
}
