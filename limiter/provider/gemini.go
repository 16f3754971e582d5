package provider

import (
	"strings"
	"time"

	"github.com/adaptive-rate-limiter/arl/limiter/bucket"
)

// gemini is the Gemini API's dialect (generativelanguage.googleapis.com),
// native or OpenAI-compatible. Gemini sends no rate-limit headers: all it
// teaches comes with a 429 RESOURCE_EXHAUSTED, whose body (an object, or an
// array holding one) carries google.rpc details:
//
//   - RetryInfo.retryDelay ("55s") is the wait; it replaces the default
//     block when no retry-after header came.
//   - QuotaFailure.violations[].quotaId names the quota, e.g.
//     GenerateRequestsPerDayPerProjectPerModel-FreeTier (requests per day),
//     GenerateRequestsPerMinutePerProjectPerModel-FreeTier (requests per
//     minute), GenerateContentInputTokensPerModelPerMinute-FreeTier (input
//     tokens per minute). The first violation's dimension is the block's
//     reason; each violation's quotaValue, where given, becomes its
//     dimension's limit with nothing remaining, so the bucket refills from
//     empty at the quota's rate instead of probing a spent quota again.
type gemini struct{}

// Name implements Dialect.
func (gemini) Name() string { return Gemini }

// ParseAnswer implements Dialect: only retry-after, should a proxy add it.
func (gemini) ParseAnswer(status int, h Header, now time.Time) Answer {
	f := fields{h: h}
	return conclude(status, bucket.Observation{At: now}, &f, now, "", statusPolicy{})
}

// ParseErrorBody implements Dialect.
func (gemini) ParseErrorBody(status int, body []byte, _ time.Time, a *Answer) {
	e, ok := decodeError(body)
	if !ok {
		return
	}
	if isBilling(e) {
		a.billing()
		return
	}
	if status != 429 {
		return
	}
	var wait time.Duration
	reason := ""
	for _, d := range e.Details {
		t := string(d.Type)
		switch {
		case strings.HasSuffix(t, "google.rpc.RetryInfo"):
			if w, ok := parseReset(strings.TrimSpace(string(d.RetryDelay)), resetDelta, time.Time{}); ok {
				wait = w
			} else if d.RetryDelay != "" {
				a.Invalid++
			}
		case strings.HasSuffix(t, "google.rpc.QuotaFailure"):
			for _, v := range d.Violations {
				dim, ok := geminiQuota(string(v.QuotaID) + " " + string(v.QuotaMetric))
				if !ok {
					continue
				}
				if reason == "" {
					reason = dim.String()
				}
				if v.QuotaValue == "" {
					continue
				}
				limit, ok := parseCount(strings.TrimSpace(string(v.QuotaValue)))
				if !ok {
					a.Invalid++
					continue
				}
				if od := &a.Observation.Dims[dim]; limit > 0 && od.Limit == 0 {
					od.Limit, od.Remaining, od.HasRemaining = limit, 0, true
				}
			}
		}
	}
	if reason == "" {
		reason = reasonFromMessage(e.Message)
	}
	a.refine(reason, wait)
}

// geminiQuota maps a Gemini quota's id and metric to the dimension it limits.
func geminiQuota(id string) (bucket.Dimension, bool) {
	l := strings.ToLower(id)
	perDay := strings.Contains(l, "perday") || strings.Contains(l, "per_day")
	tokens := strings.Contains(l, "token")
	switch {
	case perDay && tokens:
		return bucket.TokensPerDay, true
	case perDay:
		return bucket.RequestsPerDay, true
	case strings.Contains(l, "inputtoken") || strings.Contains(l, "input_token"):
		return bucket.InputTokens, true
	case tokens:
		return bucket.Tokens, true
	case strings.Contains(l, "request"):
		return bucket.Requests, true
	}
	return 0, false
}

// geminiError is Google's error envelope.
type geminiError struct {
	Error geminiErrorInner `json:"error"`
}

type geminiErrorInner struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	Status  string `json:"status"`
}

// ErrorBody implements Dialect with Google's envelope,
// {"error":{"code":429,"message":...,"status":"RESOURCE_EXHAUSTED"}}; other
// statuses are UNAVAILABLE, which Google's SDKs retry as well.
func (gemini) ErrorBody(status int, _, message string) []byte {
	s := "UNAVAILABLE"
	if status == 429 {
		s = "RESOURCE_EXHAUSTED"
	}
	return mustJSON(geminiError{Error: geminiErrorInner{Code: status, Message: message, Status: s}})
}
