package provider

import (
	"encoding/json"
	"time"

	"github.com/adaptive-rate-limiter/arl/limiter/bucket"
)

// openAIFamily reads the headers OpenAI introduced,
//
//	x-ratelimit-limit-requests, x-ratelimit-remaining-requests, x-ratelimit-reset-requests
//	x-ratelimit-limit-tokens,   x-ratelimit-remaining-tokens,   x-ratelimit-reset-tokens
//
// with retry-after-ms / retry-after on 429s, and renders OpenAI's error
// envelope. The providers that copied the names differ in what the names
// mean; those differences are the fields:
//
//   - OpenAI: requests and tokens per minute, resets as Go durations
//     ("6m0s", "14h29m11.04s", "12ms"); x-ratelimit-*-tokens_usage_based
//     repeat the token values and stand in when the plain ones are absent.
//   - Azure OpenAI: resets in plain seconds, "-1" for unknown values,
//     x-ms-retry-after-ms, and requests enforced over 10 s windows (see
//     azureRequestWindow).
//   - Groq: the request headers count requests per day, the token headers
//     tokens per minute.
//   - Venice: resets as Unix timestamps (requests) or seconds (tokens), read
//     by size; the venice type adds its lockout.
type openAIFamily struct {
	name     string
	dims     []dimHeaders
	policy   statusPolicy
	minusOne bool // "-1" means unknown (Azure)
}

// azureRequestWindow is the window Azure OpenAI enforces request limits
// over. Its x-ratelimit-*-requests headers count that window: a deployment
// with 600 RPM reports a limit of 100 (RPM/6), so the bucket keeps the
// reported numbers as they are, over a 10 s window, and refills at exactly
// RPM/60 per second.
const azureRequestWindow = 10 * time.Second

// openAIHeaders returns OpenAI's request and token headers with requests
// counted in requestsDim and resets written in format.
func openAIHeaders(requestsDim bucket.Dimension, format resetFormat) []dimHeaders {
	return []dimHeaders{
		{
			dim:       requestsDim,
			limit:     []string{"x-ratelimit-limit-requests"},
			remaining: []string{"x-ratelimit-remaining-requests"},
			reset:     []string{"x-ratelimit-reset-requests"},
			format:    format,
		},
		{
			dim:       bucket.Tokens,
			limit:     []string{"x-ratelimit-limit-tokens", "x-ratelimit-limit-tokens_usage_based"},
			remaining: []string{"x-ratelimit-remaining-tokens", "x-ratelimit-remaining-tokens_usage_based"},
			reset:     []string{"x-ratelimit-reset-tokens", "x-ratelimit-reset-tokens_usage_based"},
			format:    format,
		},
	}
}

var (
	openAIDialect = openAIFamily{name: OpenAI, dims: openAIHeaders(bucket.Requests, resetDelta)}
	groqDialect   = openAIFamily{name: Groq, dims: openAIHeaders(bucket.RequestsPerDay, resetDelta)}
	azureDialect  = openAIFamily{
		name: Azure,
		dims: []dimHeaders{
			{
				dim:       bucket.Requests,
				limit:     []string{"x-ratelimit-limit-requests"},
				remaining: []string{"x-ratelimit-remaining-requests"},
				reset:     []string{"x-ratelimit-reset-requests"},
				format:    resetDelta,
				window:    azureRequestWindow,
			},
			{
				dim:       bucket.Tokens,
				limit:     []string{"x-ratelimit-limit-tokens"},
				remaining: []string{"x-ratelimit-remaining-tokens"},
				reset:     []string{"x-ratelimit-reset-tokens", "x-rate-limit-reset-tokens"},
				format:    resetDelta,
			},
		},
		policy:   statusPolicy{retryMs: []string{"retry-after-ms", "x-ms-retry-after-ms"}},
		minusOne: true,
	}
	veniceDialect = venice{openAIFamily{
		name:   Venice,
		dims:   openAIHeaders(bucket.Requests, resetAuto),
		policy: statusPolicy{everyErrorFails: true, resetIsWait: true, resetDim: bucket.Requests},
	}}
)

// Name implements Dialect.
func (o openAIFamily) Name() string { return o.name }

// ParseAnswer implements Dialect.
func (o openAIFamily) ParseAnswer(status int, h Header, now time.Time) Answer {
	f := fields{h: h, minusOneUnknown: o.minusOne}
	obs := bucket.Observation{At: now}
	exhausted := f.readDims(&obs, o.dims, now)
	return conclude(status, obs, &f, now, exhausted, o.policy)
}

// ParseErrorBody implements Dialect: see parseOpenAIError.
func (openAIFamily) ParseErrorBody(status int, body []byte, _ time.Time, a *Answer) {
	if e, ok := decodeError(body); ok {
		parseOpenAIError(status, e, a)
	}
}

// ErrorBody implements Dialect with OpenAI's envelope.
func (openAIFamily) ErrorBody(status int, reason, message string) []byte {
	return openAIErrorBody(status, reason, message)
}

// parseOpenAIError refines an answer with an OpenAI-style error: code or type
// insufficient_quota (and other billing codes) is a billing error, not a rate
// limit; on a 429 the message ("... on requests per day (RPD) ...") or else
// the type ("tokens", "requests") names the limit that was hit, and the
// message's "Please try again in 2.754s" replaces a default block.
func parseOpenAIError(status int, e apiError, a *Answer) {
	if isBilling(e) {
		a.billing()
		return
	}
	if status != 429 {
		return
	}
	reason := reasonFromMessage(e.Message)
	if reason == "" {
		reason = reasonFromType(e.Type)
	}
	wait, _ := waitFromMessage(e.Message)
	a.refine(reason, wait)
}

// openAIError is OpenAI's error envelope, which the OpenAI SDKs parse.
type openAIError struct {
	Error openAIErrorBodyJSON `json:"error"`
}

type openAIErrorBodyJSON struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    string  `json:"code"`
}

// openAIErrorBody renders OpenAI's error envelope: a 429 has code
// rate_limit_exceeded and the reason as its type (OpenAI's own types are
// "requests" and "tokens"), anything else is a server_error with code
// service_unavailable.
func openAIErrorBody(status int, reason, message string) []byte {
	e := openAIError{Error: openAIErrorBodyJSON{Message: message, Type: reason, Code: "rate_limit_exceeded"}}
	if status != 429 {
		e.Error.Type, e.Error.Code = "server_error", "service_unavailable"
	}
	return mustJSON(e)
}

// mustJSON marshals values made of strings, numbers and nested structs, which
// cannot fail; should it ever, the result is an empty JSON object rather than
// a panic.
func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		return []byte("{}")
	}
	return b
}
