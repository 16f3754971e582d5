package provider

import (
	"time"

	"github.com/adaptive-rate-limiter/arl/limiter/bucket"
)

// generic is the dialect of providers arl has no dialect for (unknown hosts,
// or provider headers naming none), all under the name Generic. It reads, in this order, and each family
// fills only the dimensions the ones before it did not report:
//
//  1. OpenAI's x-ratelimit-{limit,remaining,reset}-{requests,tokens}, which
//     most OpenAI-compatible servers send;
//  2. the IETF RateLimit and RateLimit-Policy fields, in the forms of every
//     draft (see ietf.go);
//  3. X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset, counting
//     requests per minute.
//
// Resets are read by size: a number of seconds to wait, or a Unix epoch in
// seconds or in milliseconds; Go durations ("6m0s") and dates are read too.
// Errors read and render as OpenAI's.
type generic struct{}

var genericOpenAI = openAIHeaders(bucket.Requests, resetAuto)

var genericXRateLimit = []dimHeaders{{
	dim:       bucket.Requests,
	limit:     []string{"x-ratelimit-limit"},
	remaining: []string{"x-ratelimit-remaining"},
	reset:     []string{"x-ratelimit-reset"},
	format:    resetAuto,
}}

// Name implements Dialect.
func (generic) Name() string { return Generic }

// ParseAnswer implements Dialect.
func (generic) ParseAnswer(status int, h Header, now time.Time) Answer {
	f := fields{h: h}
	obs := bucket.Observation{At: now}
	exhausted := f.readDims(&obs, genericOpenAI, now)
	if e := f.readIETF(&obs); exhausted == "" {
		exhausted = e
	}
	if e := f.readDims(&obs, genericXRateLimit, now); exhausted == "" {
		exhausted = e
	}
	return conclude(status, obs, &f, now, exhausted, statusPolicy{})
}

// ParseErrorBody implements Dialect: see parseOpenAIError.
func (generic) ParseErrorBody(status int, body []byte, _ time.Time, a *Answer) {
	if e, ok := decodeError(body); ok {
		parseOpenAIError(status, e, a)
	}
}

// ErrorBody implements Dialect with OpenAI's envelope.
func (generic) ErrorBody(status int, reason, message string) []byte {
	return openAIErrorBody(status, reason, message)
}
