package provider

import (
	"strings"
	"time"

	"github.com/adaptive-rate-limiter/arl/limiter/bucket"
)

// together reads Together AI's headers:
//
//	x-ratelimit-limit, x-ratelimit-remaining, x-ratelimit-reset   requests per second
//	x-tokenlimit-limit, x-tokenlimit-remaining                     tokens per second
//	x-ratelimit-limit-dynamic, x-ratelimit-remaining-dynamic, ...  the current dynamic rate
//
// Together measures its limits per second and advertises them per minute
// (60 RPM is enforced as 1 request per second). The headers carry the
// per-second numbers, so both dimensions take them as they are over a 1 s
// window: the refill rate is exactly the provider's, and a burst is held to
// one second's worth, which is what a per-second limit admits. The dynamic
// values, where present, are preferred: requests above the dynamic rate are
// the ones answered 429 (error_type dynamic_request_limited or
// dynamic_token_limited). x-ratelimit-reset is the suggested wait in
// seconds: a 429 without retry-after waits that long.
//
// A 503 is Together's own capacity, not this key's limit: it blocks only
// when it carries a retry-after.
type together struct{}

// perSecond is the window of limits providers state per second.
const perSecond = time.Second

var togetherDims = []dimHeaders{
	{
		dim:       bucket.Requests,
		limit:     []string{"x-ratelimit-limit-dynamic", "x-ratelimit-limit"},
		remaining: []string{"x-ratelimit-remaining-dynamic", "x-ratelimit-remaining"},
		reset:     []string{"x-ratelimit-reset"},
		format:    resetDelta,
		window:    perSecond,
	},
	{
		dim:       bucket.Tokens,
		limit:     []string{"x-tokenlimit-limit-dynamic", "x-tokenlimit-limit"},
		remaining: []string{"x-tokenlimit-remaining-dynamic", "x-tokenlimit-remaining"},
		window:    perSecond,
	},
}

// Name implements Dialect.
func (together) Name() string { return Together }

// ParseAnswer implements Dialect.
func (together) ParseAnswer(status int, h Header, now time.Time) Answer {
	f := fields{h: h}
	obs := bucket.Observation{At: now}
	exhausted := f.readDims(&obs, togetherDims, now)
	return conclude(status, obs, &f, now, exhausted, statusPolicy{resetIsWait: true, resetDim: bucket.Requests})
}

// togetherTypes maps Together's 429 error types to the dimension limited.
var togetherTypes = map[string]bucket.Dimension{
	"dynamic_request_limited": bucket.Requests,
	"dynamic_token_limited":   bucket.Tokens,
}

// ParseErrorBody implements Dialect: dynamic_request_limited and
// dynamic_token_limited (as error_type, type or code) name the limit; other
// errors read as OpenAI's.
func (together) ParseErrorBody(status int, body []byte, _ time.Time, a *Answer) {
	e, ok := decodeError(body)
	if !ok {
		return
	}
	if status == 429 {
		for _, t := range [...]string{e.ErrorType, e.Type, e.Code} {
			if d, ok := togetherTypes[strings.ToLower(t)]; ok {
				wait, _ := waitFromMessage(e.Message)
				a.refine(d.String(), wait)
				return
			}
		}
	}
	parseOpenAIError(status, e, a)
}

// ErrorBody implements Dialect with OpenAI's envelope, which Together's API
// and SDKs share.
func (together) ErrorBody(status int, reason, message string) []byte {
	return openAIErrorBody(status, reason, message)
}
