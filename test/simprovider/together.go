package simprovider

import (
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// Together is the [Dialect] of Together AI's OpenAI-compatible API (base path
// /v1; OpenAI's bodies, see [OpenAI]).
//
// Quotas: Together measures its limits per second and advertises them per
// minute: requests and tokens are enforced over 1 s windows, the configured
// Config.RPM and Config.TPM prorated (60 per minute is 1 per second; set
// Config.Window to a second to configure per-second amounts directly).
//
// Headers: x-ratelimit-limit, x-ratelimit-remaining and x-ratelimit-reset
// (seconds until the requests bucket is full again) for requests,
// x-tokenlimit-limit and x-tokenlimit-remaining for tokens, all per second;
// on a rejection retry-after in whole seconds; always x-request-id. A
// rejection's error type is dynamic_request_limited or
// dynamic_token_limited.
type Together struct{ OpenAI }

var _ Dialect = Together{}

// Name implements [Dialect].
func (Together) Name() string { return "together" }

// Enforcement implements [Dialect]: requests and tokens per second.
func (Together) Enforcement() Enforcement {
	var e Enforcement
	e.Windows[QuotaRequests] = time.Second
	e.Windows[QuotaTokens] = time.Second
	return e
}

// SetHeaders implements [Dialect].
func (Together) SetHeaders(h http.Header, m Meta) {
	h.Set("X-Request-Id", m.RequestID)
	if d := m.Limits.Quotas[QuotaRequests]; d.Limit > 0 {
		h.Set("X-Ratelimit-Limit", strconv.FormatInt(d.Limit, 10))
		h.Set("X-Ratelimit-Remaining", strconv.FormatInt(d.Remaining, 10))
		h.Set("X-Ratelimit-Reset", formatSeconds(d.Reset))
	}
	if d := m.Limits.Quotas[QuotaTokens]; d.Limit > 0 {
		h.Set("X-Tokenlimit-Limit", strconv.FormatInt(d.Limit, 10))
		h.Set("X-Tokenlimit-Remaining", strconv.FormatInt(d.Remaining, 10))
	}
	setRetryAfter(h, m.Limits.RetryAfter, "")
}

// ErrorBody implements [Dialect]: OpenAI's envelope; a rejection's type is
// Together's dynamic_request_limited or dynamic_token_limited, and its
// envelope has an id.
func (t Together) ErrorBody(p *Problem, m Meta) []byte {
	r := p.Rejection
	if p.Kind != ProblemRateLimit || r == nil {
		return t.OpenAI.ErrorBody(p, m)
	}
	typ, what := "dynamic_token_limited", "tokens"
	if r.Quota == QuotaRequests || r.Quota == QuotaRequestsPerDay {
		typ, what = "dynamic_request_limited", "requests"
	}
	return mustJSON(struct {
		ID    string            `json:"id"`
		Error openAIErrorDetail `json:"error"`
	}{m.RequestID, openAIErrorDetail{Type: typ, Message: fmt.Sprintf(
		"You are being rate limited: %s above your current rate of %d per second. Please try again in %s.",
		what, r.Limit, formatSeconds(r.RetryAfter)+"s")}}, `{"error":{"message":"rate limited","type":"`+typ+`"}}`)
}
