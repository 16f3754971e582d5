package provider

import (
	"encoding/json"
	"time"

	"github.com/adaptive-rate-limiter/arl/limiter/bucket"
)

// openAI reads OpenAI's headers:
//
//	x-ratelimit-limit-requests, x-ratelimit-remaining-requests, x-ratelimit-reset-requests
//	x-ratelimit-limit-tokens,   x-ratelimit-remaining-tokens,   x-ratelimit-reset-tokens
//
// with resets as Go durations ("6m0s", "20ms"), and retry-after-ms /
// retry-after on 429s. Both are per-minute limits.
type openAI struct{ name string }

func (o openAI) Name() string { return o.name }

// InjectsUsage implements Dialect: OpenAI streams report usage on request.
func (openAI) InjectsUsage() bool { return true }

// defaultBlock is how long a 429 without any retry hint blocks the bucket.
const defaultBlock = time.Second

func (o openAI) ParseAnswer(status int, h Header, now time.Time) Answer {
	f := fields{h: h}
	obs := bucket.Observation{At: now}
	dims := []struct {
		dim    bucket.Dimension
		suffix string
	}{{bucket.Requests, "requests"}, {bucket.Tokens, "tokens"}}
	exhausted := ""
	for _, d := range dims {
		od := &obs.Dims[d.dim]
		od.Limit, _ = f.count("x-ratelimit-limit-" + d.suffix)
		od.Remaining, od.HasRemaining = f.count("x-ratelimit-remaining-" + d.suffix)
		od.Reset, _ = f.duration("x-ratelimit-reset-" + d.suffix)
		if od.HasRemaining && od.Remaining == 0 && exhausted == "" {
			exhausted = d.dim.String()
		}
	}
	if status == 429 || status == 503 {
		wait, ok := f.retryAfter(now)
		if !ok && status == 429 {
			wait = defaultBlock
		}
		if wait > 0 {
			obs.RetryAfter = wait
			obs.Reason = exhausted
			if obs.Reason == "" {
				obs.Reason = "upstream"
			}
		}
	}
	return Answer{Observation: obs, Invalid: f.invalid, WantBody: status == 429}
}

// openAIError is OpenAI's error envelope, which the OpenAI SDKs parse.
type openAIError struct {
	Error openAIErrorBody `json:"error"`
}

type openAIErrorBody struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    string  `json:"code"`
}

func (openAI) ErrorBody(status int, reason, message string) []byte {
	e := openAIError{Error: openAIErrorBody{Message: message, Type: reason, Code: "rate_limit_exceeded"}}
	if status != 429 {
		e.Error.Type, e.Error.Code = "server_error", "service_unavailable"
	}
	b, _ := json.Marshal(e) // cannot fail: strings only
	return b
}

// ParseErrorBody reads OpenAI's error envelope: type "tokens" or "requests"
// names the limit hit, and code "insufficient_quota" is a billing error, not
// a rate limit.
func (openAI) ParseErrorBody(status int, body []byte, _ time.Time, a *Answer) {
	var e struct {
		Error struct {
			Type string `json:"type"`
			Code any    `json:"code"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &e) != nil {
		return
	}
	if code, _ := e.Error.Code.(string); code == "insufficient_quota" || e.Error.Type == "insufficient_quota" {
		a.Billing = true
		a.Observation.RetryAfter, a.Observation.Reason = 0, ""
		return
	}
	if status == 429 && a.Observation.RetryAfter > 0 {
		switch e.Error.Type {
		case "tokens", "requests", "input_tokens", "output_tokens":
			a.Observation.Reason = e.Error.Type
		}
	}
}
