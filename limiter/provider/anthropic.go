package provider

import (
	"time"

	"github.com/adaptive-rate-limiter/arl/limiter/bucket"
)

// anthropic reads Anthropic's headers,
//
//	anthropic-ratelimit-requests-{limit,remaining,reset}
//	anthropic-ratelimit-input-tokens-{limit,remaining,reset}
//	anthropic-ratelimit-output-tokens-{limit,remaining,reset}
//	anthropic-ratelimit-tokens-{limit,remaining,reset}
//
// with resets as RFC 3339 instants (when the limit is fully replenished) and
// retry-after in seconds on 429s. Input and output tokens per minute are
// separate limits and separate dimensions. The tokens-* family combines
// them (its limit is their sum) and is read into the Tokens dimension only
// when the split families are absent: beside them it adds nothing but a
// second, differently rounded view.
//
// Token remaining values are rounded to the nearest thousand. A value that
// is a multiple of 1000 is therefore read as the top of its rounding
// interval (r+499, at most the limit): remaining only ever lowers the local
// level, so the top of the interval never makes a bucket look exhausted
// when it is not (a rounded 0 may be 499), and the cap at the limit never
// makes it look over-full. A key that is truly exhausted answers 429 with
// retry-after, which blocks the bucket.
//
// 529 overloaded_error blocks the bucket for retry-after, or 1 s without
// one: the provider is shedding load, and a brief pause keeps a queue from
// pouring into it; Anthropic's SDKs retry 429 and 529 alike.
type anthropic struct{}

// anthropicRounding is the granularity of Anthropic's token remaining values.
const anthropicRounding = 1000

// anthropicSplit are the families of separate limits; anthropicCombined is
// read only when they are absent.
var (
	anthropicSplit = []dimHeaders{
		anthropicFamily(bucket.Requests, "requests"),
		anthropicFamily(bucket.InputTokens, "input-tokens"),
		anthropicFamily(bucket.OutputTokens, "output-tokens"),
	}
	anthropicCombined = []dimHeaders{anthropicFamily(bucket.Tokens, "tokens")}
)

func anthropicFamily(dim bucket.Dimension, name string) dimHeaders {
	p := "anthropic-ratelimit-" + name + "-"
	return dimHeaders{
		dim:       dim,
		limit:     []string{p + "limit"},
		remaining: []string{p + "remaining"},
		reset:     []string{p + "reset"},
		format:    resetInstant,
	}
}

// Name implements Dialect.
func (anthropic) Name() string { return Anthropic }

// ParseAnswer implements Dialect.
func (anthropic) ParseAnswer(status int, h Header, now time.Time) Answer {
	f := fields{h: h}
	obs := bucket.Observation{At: now}
	exhausted := f.readDims(&obs, anthropicSplit, now)
	split := obs.Dims[bucket.InputTokens] != (bucket.DimObservation{}) || obs.Dims[bucket.OutputTokens] != (bucket.DimObservation{})
	if !split {
		if e := f.readDims(&obs, anthropicCombined, now); exhausted == "" {
			exhausted = e
		}
	}
	for _, d := range [...]bucket.Dimension{bucket.Tokens, bucket.InputTokens, bucket.OutputTokens} {
		unround(&obs.Dims[d])
	}
	return conclude(status, obs, &f, now, exhausted, statusPolicy{})
}

// unround reads a remaining value rounded to the nearest thousand as the top
// of its rounding interval, capped at the limit.
func unround(od *bucket.DimObservation) {
	if !od.HasRemaining || od.Remaining%anthropicRounding != 0 {
		return
	}
	od.Remaining += anthropicRounding/2 - 1
	if od.Limit > 0 {
		od.Remaining = min(od.Remaining, od.Limit)
	}
}

// ParseErrorBody implements Dialect: a rate_limit_error's message names the
// limit ("... rate limit of 50,000 input tokens per minute ..."), a
// billing_error is billing.
func (anthropic) ParseErrorBody(status int, body []byte, _ time.Time, a *Answer) {
	e, ok := decodeError(body)
	if !ok {
		return
	}
	if isBilling(e) {
		a.billing()
		return
	}
	if status == 429 {
		a.refine(reasonFromMessage(e.Message), 0)
	}
}

// anthropicError is Anthropic's error envelope, which its SDKs parse.
type anthropicError struct {
	Type  string              `json:"type"`
	Error anthropicErrorInner `json:"error"`
}

type anthropicErrorInner struct {
	Type    string `json:"type"`
	Message string `json:"message"`
}

// ErrorBody implements Dialect with Anthropic's envelope,
// {"type":"error","error":{"type":...,"message":...}}: 429 is a
// rate_limit_error, 529 and an "overloaded" rejection an overloaded_error,
// anything else (arl's 503 when its state store is down) an api_error.
func (anthropic) ErrorBody(status int, reason, message string) []byte {
	t := "api_error"
	switch {
	case status == 429:
		t = "rate_limit_error"
	case status == 529 || reason == ReasonOverloaded:
		t = "overloaded_error"
	}
	return mustJSON(anthropicError{Type: "error", Error: anthropicErrorInner{Type: t, Message: message}})
}
