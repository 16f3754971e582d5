package provider

import (
	"strings"
	"time"
)

// venice is Venice's dialect: OpenAI's header names, with
// x-ratelimit-reset-requests a Unix timestamp and x-ratelimit-reset-tokens
// seconds (both read by size, so either may change format), and an abuse
// protection that locks a key out for 30 s after more than 20 failed requests
// (any non-2xx answer) in 30 s. Every non-2xx answer is therefore a Failure,
// and the lockout's 429 blocks the bucket for the lockout. A 429 without
// retry-after waits until x-ratelimit-reset-requests, which Venice documents
// as the time to retry.
type venice struct{ openAIFamily }

var _ LockoutPolicy = venice{}

// veniceLockout is Venice's abuse protection.
var veniceLockout = Lockout{Failures: 20, Window: 30 * time.Second, Penalty: 30 * time.Second}

// Lockout implements LockoutPolicy.
func (venice) Lockout() Lockout { return veniceLockout }

// ParseErrorBody implements Dialect. The lockout's message ("Too many failed
// attempts (> 20) resulting in a non-success status code. Please wait 30s and
// try again.") blocks for the wait it names, or the lockout's penalty; other
// errors read as OpenAI's.
func (venice) ParseErrorBody(status int, body []byte, _ time.Time, a *Answer) {
	e, ok := decodeError(body)
	if !ok {
		return
	}
	if status == 429 && strings.Contains(strings.ToLower(e.Message), "too many failed") {
		wait, found := waitFromMessage(e.Message)
		if !found {
			wait = veniceLockout.Penalty
		}
		// The lockout is what blocks now, for the longer of its own wait and
		// whatever the headers asked for.
		a.refine(ReasonLockout, 0)
		if a.Observation.RetryAfter > 0 {
			a.Observation.RetryAfter = min(max(a.Observation.RetryAfter, wait), maxRetryAfter)
		}
		return
	}
	parseOpenAIError(status, e, a)
}
