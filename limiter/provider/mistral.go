package provider

import (
	"time"

	"github.com/adaptive-rate-limiter/arl/limiter/bucket"
)

// mistral reads Mistral's headers, which count tokens per minute and per
// month, and requests per minute:
//
//	ratelimitbysize-limit, ratelimitbysize-remaining, ratelimitbysize-reset   tokens per minute, reset in seconds
//	x-ratelimitbysize-{limit,remaining}-minute                                tokens per minute
//	x-ratelimitbysize-{limit,remaining}-month                                 tokens per month
//	x-ratelimit-{limit,remaining}-tokens-{minute,month}                       the same, newer names
//	x-ratelimit-{limit,remaining}-req-minute                                  requests per minute
//
// ratelimitbysize-query-cost (the cost of the answered request) is not a
// limit and is not read.
type mistral struct{}

var mistralDims = []dimHeaders{
	{
		dim:       bucket.Tokens,
		limit:     []string{"x-ratelimit-limit-tokens-minute", "x-ratelimitbysize-limit-minute", "ratelimitbysize-limit"},
		remaining: []string{"x-ratelimit-remaining-tokens-minute", "x-ratelimitbysize-remaining-minute", "ratelimitbysize-remaining"},
		reset:     []string{"ratelimitbysize-reset"},
		format:    resetDelta,
	},
	{
		dim:       bucket.TokensPerMonth,
		limit:     []string{"x-ratelimit-limit-tokens-month", "x-ratelimitbysize-limit-month"},
		remaining: []string{"x-ratelimit-remaining-tokens-month", "x-ratelimitbysize-remaining-month"},
	},
	{
		dim:       bucket.Requests,
		limit:     []string{"x-ratelimit-limit-req-minute"},
		remaining: []string{"x-ratelimit-remaining-req-minute"},
	},
}

// Name implements Dialect.
func (mistral) Name() string { return Mistral }

// ParseAnswer implements Dialect.
func (mistral) ParseAnswer(status int, h Header, now time.Time) Answer {
	f := fields{h: h}
	obs := bucket.Observation{At: now}
	exhausted := f.readDims(&obs, mistralDims, now)
	return conclude(status, obs, &f, now, exhausted, statusPolicy{})
}

// ParseErrorBody implements Dialect: Mistral's errors are OpenAI-like, with
// the fields at the top level or under error.
func (mistral) ParseErrorBody(status int, body []byte, _ time.Time, a *Answer) {
	if e, ok := decodeError(body); ok {
		parseOpenAIError(status, e, a)
	}
}

// ErrorBody implements Dialect with OpenAI's envelope: Mistral's SDKs retry by
// status code, and OpenAI's SDKs, often pointed at Mistral, read this shape.
func (mistral) ErrorBody(status int, reason, message string) []byte {
	return openAIErrorBody(status, reason, message)
}
