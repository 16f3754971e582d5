package simprovider

import (
	"net/http"
	"strconv"
)

// Mistral is the [Dialect] of Mistral's API (base path /v1; OpenAI's bodies,
// see [OpenAI]).
//
// Quotas: tokens per Config.Window and per month ([Config.TPM],
// [Config.TokensPerMonth]), requests per Config.Window ([Config.RPM]).
//
// Headers: ratelimitbysize-limit, ratelimitbysize-remaining and
// ratelimitbysize-reset (seconds) with x-ratelimitbysize-{limit,remaining}-
// minute for the tokens quota, x-ratelimitbysize-{limit,remaining}-month for
// the monthly one, x-ratelimit-{limit,remaining}-req-minute for requests, and
// ratelimitbysize-query-cost, the tokens the request was charged; on a
// rejection retry-after in whole seconds. Errors are OpenAI-like with the
// fields at the top level: {"object":"error","message","type","param","code"}.
type Mistral struct{ OpenAI }

var _ Dialect = Mistral{}

// Name implements [Dialect].
func (Mistral) Name() string { return "mistral" }

// SetHeaders implements [Dialect].
func (Mistral) SetHeaders(h http.Header, m Meta) {
	h.Set("X-Request-Id", m.RequestID)
	q := m.Limits.Quotas
	if d := q[QuotaTokens]; d.Limit > 0 {
		h.Set("Ratelimitbysize-Limit", strconv.FormatInt(d.Limit, 10))
		h.Set("Ratelimitbysize-Remaining", strconv.FormatInt(d.Remaining, 10))
		h.Set("Ratelimitbysize-Reset", formatWholeSeconds(d.Reset))
		h.Set("X-Ratelimitbysize-Limit-Minute", strconv.FormatInt(d.Limit, 10))
		h.Set("X-Ratelimitbysize-Remaining-Minute", strconv.FormatInt(d.Remaining, 10))
	}
	if d := q[QuotaTokensPerMonth]; d.Limit > 0 {
		h.Set("X-Ratelimitbysize-Limit-Month", strconv.FormatInt(d.Limit, 10))
		h.Set("X-Ratelimitbysize-Remaining-Month", strconv.FormatInt(d.Remaining, 10))
	}
	if d := q[QuotaRequests]; d.Limit > 0 {
		h.Set("X-Ratelimit-Limit-Req-Minute", strconv.FormatInt(d.Limit, 10))
		h.Set("X-Ratelimit-Remaining-Req-Minute", strconv.FormatInt(d.Remaining, 10))
	}
	if q[QuotaTokens].Limit > 0 || q[QuotaTokensPerMonth].Limit > 0 {
		h.Set("Ratelimitbysize-Query-Cost", strconv.FormatInt(m.Charged, 10))
	}
	setRetryAfter(h, m.Limits.RetryAfter, "")
}

// ErrorBody implements [Dialect]: Mistral's top-level error object.
func (Mistral) ErrorBody(p *Problem, _ Meta) []byte {
	type mistralError struct {
		Object  string  `json:"object"`
		Message string  `json:"message"`
		Type    string  `json:"type"`
		Param   *string `json:"param"`
		Code    string  `json:"code"`
	}
	e := mistralError{Object: "error", Message: p.Message, Type: "invalid_request_error", Code: strconv.Itoa(p.Status)}
	if p.Param != "" {
		e.Param = &p.Param
	}
	if r := p.Rejection; p.Kind == ProblemRateLimit && r != nil {
		e.Type, e.Code = "rate_limited", "1300"
		switch r.Quota {
		case QuotaRequests, QuotaRequestsPerDay:
			e.Message = "Requests rate limit exceeded"
		case QuotaTokensPerMonth:
			e.Message = "Monthly token budget exhausted"
		default:
			e.Message = "Tokens per minute rate limit exceeded"
		}
	}
	return mustJSON(e, `{"object":"error","message":"error","type":"api_error"}`)
}
