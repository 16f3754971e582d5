package provider

import (
	"strings"
	"time"

	"github.com/adaptive-rate-limiter/arl/limiter/bucket"
)

// fireworks reads Fireworks AI's headers:
//
//	x-ratelimit-limit-requests, x-ratelimit-remaining-requests, x-ratelimit-reset-requests   requests per minute
//	x-ratelimit-limit-tokens-prompt, x-ratelimit-remaining-tokens-prompt                     prompt tokens per second
//	x-ratelimit-limit-tokens-generated, x-ratelimit-remaining-tokens-generated               generated tokens per second
//	x-ratelimit-over-limit: yes                                                              above the adaptive limit
//
// Prompt and generated tokens are separate limits: InputTokens and
// OutputTokens. Fireworks states its adaptive token limits per second, so
// those dimensions take the numbers over a 1 s window (the same rate as the
// per-minute enforcement, with bursts held to one second's worth).
// x-ratelimit-limit-tokens-cache-adjusted-prompt limits uncached prompt
// tokens only; arl cannot tell cached from uncached tokens before the
// answer, so it is not read.
//
// x-ratelimit-over-limit: yes means requests are being de-prioritised above
// the adaptive limit: every dimension the answer reported is drained to zero
// remaining (without a hold), so arl admits only at the provider's steady
// rate until the flag clears, before Fireworks starts answering 429. A
// dimension the answer reports exhausted with a reset keeps its hold.
type fireworks struct{}

var fireworksDims = []dimHeaders{
	{
		dim:       bucket.Requests,
		limit:     []string{"x-ratelimit-limit-requests"},
		remaining: []string{"x-ratelimit-remaining-requests"},
		reset:     []string{"x-ratelimit-reset-requests"},
		format:    resetAuto,
	},
	{
		dim:       bucket.InputTokens,
		limit:     []string{"x-ratelimit-limit-tokens-prompt"},
		remaining: []string{"x-ratelimit-remaining-tokens-prompt"},
		window:    perSecond,
	},
	{
		dim:       bucket.OutputTokens,
		limit:     []string{"x-ratelimit-limit-tokens-generated"},
		remaining: []string{"x-ratelimit-remaining-tokens-generated"},
		window:    perSecond,
	},
}

// Name implements Dialect.
func (fireworks) Name() string { return Fireworks }

// ParseAnswer implements Dialect.
func (fireworks) ParseAnswer(status int, h Header, now time.Time) Answer {
	f := fields{h: h}
	obs := bucket.Observation{At: now}
	exhausted := f.readDims(&obs, fireworksDims, now)
	switch strings.ToLower(strings.TrimSpace(h.Get("x-ratelimit-over-limit"))) {
	case "", "no", "false", "0":
	case "yes", "true", "1":
		for i := range obs.Dims {
			od := &obs.Dims[i]
			if od.HasRemaining && od.Remaining <= 0 && od.Reset > 0 {
				continue // truly exhausted: it holds until its reset
			}
			if od.Limit > 0 || od.HasRemaining {
				od.Remaining, od.HasRemaining, od.Reset = 0, true, 0
			}
		}
	default:
		f.invalid++
	}
	return conclude(status, obs, &f, now, exhausted, statusPolicy{})
}

// ParseErrorBody implements Dialect: Fireworks' errors are OpenAI's.
func (fireworks) ParseErrorBody(status int, body []byte, _ time.Time, a *Answer) {
	if e, ok := decodeError(body); ok {
		parseOpenAIError(status, e, a)
	}
}

// ErrorBody implements Dialect with OpenAI's envelope, which Fireworks'
// OpenAI-compatible API returns.
func (fireworks) ErrorBody(status int, reason, message string) []byte {
	return openAIErrorBody(status, reason, message)
}
