package provider

import (
	"strings"
	"time"

	"github.com/adaptive-rate-limiter/arl/limiter/bucket"
)

// Block reasons that are not a dimension's name.
const (
	// ReasonUpstream blocks a bucket after an upstream 429 or 503 that did
	// not say which limit it hit.
	ReasonUpstream = "upstream"
	// ReasonOverloaded blocks a bucket after the provider said it is
	// overloaded (Anthropic's 529).
	ReasonOverloaded = "overloaded"
	// ReasonLockout blocks a bucket whose key the provider locked out after
	// too many failed requests (Venice).
	ReasonLockout = "lockout"
)

// defaultBlock is how long a 429 (or 529) without any retry hint blocks the
// bucket.
const defaultBlock = time.Second

// statusPolicy is how a provider's status codes turn into blocks and
// failures. The zero value is the common one.
type statusPolicy struct {
	// retryMs names the headers that carry the wait in milliseconds, read
	// in order before retry-after.
	retryMs []string
	// everyErrorFails makes every non-2xx answer a Failure (Venice counts
	// them all toward its lockout); otherwise only 429 and 5xx are.
	everyErrorFails bool
	// resetIsWait makes a 429 without retry-after wait for the reset of
	// resetDim, where the provider documents that reset as the time to
	// retry (Together, Venice).
	resetIsWait bool
	resetDim    bucket.Dimension
}

// defaultRetryMs is the millisecond retry header OpenAI and its imitators
// send.
var defaultRetryMs = []string{"retry-after-ms"}

// conclude turns an observation read from headers into an answer by status:
//
//   - 429 blocks the bucket for the upstream's wait (defaultBlock without
//     one), with the exhausted dimension as reason, and asks for the body;
//     the body may then name the limit and a wait of its own;
//   - 503 blocks only when the upstream gave a wait: an overloaded provider is
//     not a limit of this key;
//   - 529 (overloaded) blocks for the upstream's wait or defaultBlock, so a
//     burst does not pile onto a provider that is shedding load;
//   - 402 is a billing error, never a block; its body is asked for so that
//     the limiter counts it.
func conclude(status int, o bucket.Observation, f *fields, now time.Time, exhausted string, p statusPolicy) Answer {
	a := Answer{Observation: o}
	msNames := p.retryMs
	if msNames == nil {
		msNames = defaultRetryMs
	}
	switch status {
	case 429:
		wait, ok := f.retryAfter(now, msNames...)
		if r := o.Dims[p.resetDim].Reset; !ok && p.resetIsWait && r > 0 {
			wait, ok = r, true
		}
		if !ok {
			wait = defaultBlock
		}
		a.hinted = ok
		reason := exhausted
		if reason == "" {
			reason = ReasonUpstream
		}
		a.block(wait, reason)
		a.WantBody = true
	case 503:
		if wait, ok := f.retryAfter(now, msNames...); ok {
			a.hinted = true
			a.block(wait, ReasonUpstream)
		}
	case 529:
		wait, ok := f.retryAfter(now, msNames...)
		if !ok {
			wait = defaultBlock
		}
		a.hinted = ok
		a.block(wait, ReasonOverloaded)
	case 402:
		a.Billing = true
		a.WantBody = true
	}
	a.everyErrorFails = p.everyErrorFails
	if p.everyErrorFails {
		a.Failure = status < 200 || status >= 300
	} else {
		a.Failure = status == 429 || status >= 500
	}
	a.Invalid = f.invalid
	a.normalize()
	return a
}

// block sets the bucket-wide block, capped at maxRetryAfter. A wait that is
// not positive blocks nothing.
func (a *Answer) block(wait time.Duration, reason string) {
	if wait <= 0 {
		return
	}
	a.Observation.RetryAfter = min(wait, maxRetryAfter)
	a.Observation.Reason = reason
}

// refine applies what an error body said to a blocked answer: reason, when
// not "", names the limit that was hit; wait, when positive, replaces the
// default block unless the headers gave a wait of their own.
func (a *Answer) refine(reason string, wait time.Duration) {
	if a.Observation.RetryAfter <= 0 {
		return
	}
	if reason != "" {
		a.Observation.Reason = reason
	}
	if wait > 0 && !a.hinted {
		a.Observation.RetryAfter = min(wait, maxRetryAfter)
	}
}

// billing marks the answer as a billing error, which never blocks and is no
// Failure unless the provider counts every error.
func (a *Answer) billing() {
	a.Billing = true
	a.normalize()
}

// normalize enforces the invariants every answer keeps: a billing error never
// blocks and is a Failure only where every error is, a block has a reason and
// lasts at most maxRetryAfter, and a reason comes only with a block.
func (a *Answer) normalize() {
	if a.Billing && !a.everyErrorFails {
		a.Failure = false
	}
	o := &a.Observation
	if a.Billing || o.RetryAfter <= 0 {
		o.RetryAfter, o.Reason = 0, ""
		return
	}
	o.RetryAfter = min(o.RetryAfter, maxRetryAfter)
	if o.Reason == "" {
		o.Reason = ReasonUpstream
	}
}

// billingCodes are error types and codes that mean quota or billing, not a
// rate limit.
var billingCodes = map[string]bool{
	"insufficient_quota":         true, // OpenAI, Azure OpenAI
	"billing_hard_limit_reached": true, // OpenAI
	"billing_error":              true, // Anthropic
	"insufficient_balance":       true, // OpenAI-compatible providers
	"insufficient_credits":       true,
	"credit_limit":               true, // Together
	"payment_required":           true,
}

// isBilling reports whether an error names a billing or quota problem.
func isBilling(e apiError) bool {
	return billingCodes[strings.ToLower(e.Code)] || billingCodes[strings.ToLower(e.Type)] || billingCodes[strings.ToLower(e.ErrorType)]
}

// reasonFromType maps an OpenAI-style error type to the dimension it names.
func reasonFromType(t string) string {
	switch strings.ToLower(t) {
	case "tokens", "tokens_usage_based":
		return bucket.Tokens.String()
	case "requests":
		return bucket.Requests.String()
	case "input_tokens":
		return bucket.InputTokens.String()
	case "output_tokens":
		return bucket.OutputTokens.String()
	case "requests_per_day":
		return bucket.RequestsPerDay.String()
	case "tokens_per_day":
		return bucket.TokensPerDay.String()
	}
	return ""
}

// messagePhrases maps phrases in providers' rate-limit messages to the
// dimension they name, most specific first ("input tokens per minute" before
// "tokens per min").
var messagePhrases = []struct {
	phrase string
	dim    bucket.Dimension
}{
	{"(rpd)", bucket.RequestsPerDay},
	{"requests per day", bucket.RequestsPerDay},
	{"(tpd)", bucket.TokensPerDay},
	{"tokens per day", bucket.TokensPerDay},
	{"(itpm)", bucket.InputTokens},
	{"input tokens per minute", bucket.InputTokens},
	{"(otpm)", bucket.OutputTokens},
	{"output tokens per minute", bucket.OutputTokens},
	{"(rpm)", bucket.Requests},
	{"requests per min", bucket.Requests},
	{"call rate limit", bucket.Requests},     // Azure OpenAI
	{"request rate limit", bucket.Requests},  // Azure OpenAI
	{"requests rate limit", bucket.Requests}, // Mistral
	{"(tpm)", bucket.Tokens},
	{"tokens per min", bucket.Tokens},
	{"token rate limit", bucket.Tokens}, // Azure OpenAI
}

// reasonFromMessage returns the dimension a rate-limit message names, such as
// OpenAI's and Groq's "on tokens per min (TPM): Limit 6000 ..." or Azure's
// "exceeded token rate limit", "" when it names none.
func reasonFromMessage(msg string) string {
	lower := strings.ToLower(msg)
	for _, p := range messagePhrases {
		if strings.Contains(lower, p.phrase) {
			return p.dim.String()
		}
	}
	return ""
}

// waitMarkers introduce a wait in providers' messages: OpenAI and Groq's
// "Please try again in 2.754s", Azure's "Please retry after 33 seconds",
// Venice's "Please wait 30s".
var waitMarkers = []string{"try again in ", "retry after ", "retry in ", "wait "}

// waitFromMessage returns the wait a message asks for, as a Go duration
// ("2.754s", "7m12s", "20ms") or as a number followed by "second(s)". ok is
// false when the message names none.
func waitFromMessage(msg string) (time.Duration, bool) {
	lower := strings.ToLower(msg)
	for _, marker := range waitMarkers {
		i := strings.Index(lower, marker)
		if i < 0 {
			continue
		}
		words := strings.Fields(lower[i+len(marker):])
		if len(words) == 0 {
			continue
		}
		token := strings.TrimRight(words[0], ".,;:)!")
		if d, err := time.ParseDuration(token); err == nil && d >= 0 {
			return min(d, maxRetryAfter), true
		}
		if len(words) > 1 && strings.HasPrefix(words[1], "sec") {
			if secs, ok := parseDecimal(token); ok {
				return waitOf(secs, time.Second), true
			}
		}
	}
	return 0, false
}
