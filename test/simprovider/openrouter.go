package simprovider

import (
	"net/http"
	"strconv"
	"time"
)

// OpenRouter is the [Dialect] of OpenRouter's OpenAI-compatible API (base
// path /api/v1; OpenAI's bodies, see [OpenAI]).
//
// Quotas: requests per Config.Window and per day (a free model's per-minute
// and daily allowances, [Config.RPM] and [Config.RPD]).
//
// Headers: X-RateLimit-Limit, X-RateLimit-Remaining and X-RateLimit-Reset
// (a Unix timestamp in milliseconds, when the bucket is full again) for the
// request quota with the fewer requests left, the per-minute one on a tie; on
// a rejection for the rejected quota. A 429 carries no rate-limit or retry
// headers: its body repeats them under error.metadata.headers, as
// OpenRouter's does, and names the allowance hit ("Rate limit exceeded:
// free-models-per-min.").
type OpenRouter struct{ OpenAI }

var _ Dialect = OpenRouter{}

// Name implements [Dialect].
func (OpenRouter) Name() string { return "openrouter" }

// openRouterQuota returns the request quota the headers report.
func openRouterQuota(st LimitState, r *Rejection) (Quota, bool) {
	if r != nil && (r.Quota == QuotaRequests || r.Quota == QuotaRequestsPerDay) {
		return r.Quota, true
	}
	minute, day := st.Quotas[QuotaRequests], st.Quotas[QuotaRequestsPerDay]
	switch {
	case minute.Limit > 0 && (day.Limit <= 0 || minute.Remaining <= day.Remaining):
		return QuotaRequests, true
	case day.Limit > 0:
		return QuotaRequestsPerDay, true
	}
	return 0, false
}

// openRouterHeaders returns the X-RateLimit-* values for the reported quota.
func openRouterHeaders(m Meta, r *Rejection) map[string]string {
	q, ok := openRouterQuota(m.Limits, r)
	if !ok {
		return nil
	}
	d := m.Limits.Quotas[q]
	reset := ceilTime(m.At.Add(d.Reset), time.Millisecond)
	return map[string]string{
		"X-RateLimit-Limit":     strconv.FormatInt(d.Limit, 10),
		"X-RateLimit-Remaining": strconv.FormatInt(d.Remaining, 10),
		"X-RateLimit-Reset":     strconv.FormatInt(reset.UnixMilli(), 10),
	}
}

// SetHeaders implements [Dialect].
func (OpenRouter) SetHeaders(h http.Header, m Meta) {
	h.Set("X-Request-Id", m.RequestID)
	if m.Limits.RetryAfter > 0 {
		return // the 429's body carries them
	}
	for name, v := range openRouterHeaders(m, nil) {
		h.Set(name, v)
	}
}

// ErrorBody implements [Dialect]: {"error":{"message","code","metadata"}}.
func (OpenRouter) ErrorBody(p *Problem, m Meta) []byte {
	type metadata struct {
		Headers      map[string]string `json:"headers,omitempty"`
		ProviderName *string           `json:"provider_name"`
	}
	type inner struct {
		Message  string    `json:"message"`
		Code     int       `json:"code"`
		Metadata *metadata `json:"metadata,omitempty"`
	}
	e := inner{Message: p.Message, Code: p.Status}
	if r := p.Rejection; p.Kind == ProblemRateLimit && r != nil {
		e.Message = "Rate limit exceeded"
		switch r.Quota {
		case QuotaRequests:
			e.Message += ": free-models-per-min."
		case QuotaRequestsPerDay:
			e.Message += ": free-models-per-day. Add credits to unlock more free model requests per day."
		}
		e.Metadata = &metadata{Headers: openRouterHeaders(m, r)}
	}
	return mustJSON(struct {
		Error  inner  `json:"error"`
		UserID string `json:"user_id"`
	}{e, "user_simulated"}, `{"error":{"message":"error","code":500}}`)
}
