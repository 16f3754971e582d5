package simprovider

import (
	"net/http"
	"strconv"
)

// Venice is the [Dialect] of Venice's OpenAI-compatible API (base path
// /api/v1; OpenAI's bodies, see [OpenAI]).
//
// Quotas: requests and tokens per Config.Window.
//
// Headers: OpenAI's names; x-ratelimit-reset-requests is a Unix timestamp in
// seconds, x-ratelimit-reset-tokens a number of seconds. Venice sends no
// retry-after: it documents x-ratelimit-reset-requests as the time to retry a
// rejected request, so on a rejection that header is the instant the request
// would fit (rounded up to the second). Always x-request-id. Errors are
// {"error":"<message>"}.
type Venice struct{ OpenAI }

var _ Dialect = Venice{}

// Name implements [Dialect].
func (Venice) Name() string { return "venice" }

// SetHeaders implements [Dialect].
func (Venice) SetHeaders(h http.Header, m Meta) {
	h.Set("X-Request-Id", m.RequestID)
	st := m.Limits
	if d := st.Quotas[QuotaRequests]; d.Limit > 0 {
		reset := d.Reset
		if st.RetryAfter > 0 {
			reset = st.RetryAfter
		}
		h.Set("X-Ratelimit-Limit-Requests", strconv.FormatInt(d.Limit, 10))
		h.Set("X-Ratelimit-Remaining-Requests", strconv.FormatInt(d.Remaining, 10))
		h.Set("X-Ratelimit-Reset-Requests", strconv.FormatInt(resetInstant(m.At, reset).Unix(), 10))
	}
	if d := st.Quotas[QuotaTokens]; d.Limit > 0 {
		h.Set("X-Ratelimit-Limit-Tokens", strconv.FormatInt(d.Limit, 10))
		h.Set("X-Ratelimit-Remaining-Tokens", strconv.FormatInt(d.Remaining, 10))
		h.Set("X-Ratelimit-Reset-Tokens", formatWholeSeconds(d.Reset))
	}
}

// ErrorBody implements [Dialect]: {"error":"<message>"}.
func (Venice) ErrorBody(p *Problem, _ Meta) []byte {
	msg := p.Message
	if r := p.Rejection; p.Kind == ProblemRateLimit && r != nil {
		msg = "Rate limit exceeded on " + quotaPhrase(r.Quota) + ": check x-ratelimit-reset-requests before sending again."
	}
	return mustJSON(map[string]string{"error": msg}, `{"error":"error"}`)
}
