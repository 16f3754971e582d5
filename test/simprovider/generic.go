package simprovider

import (
	"net/http"
	"strconv"
)

// Generic is the [Dialect] of an OpenAI-compatible provider that reports its
// limits with the IETF rate-limit header fields (draft-ietf-httpapi-
// ratelimit-headers, in the separate-fields form of the early drafts), as
// gateways and self-hosted servers do (OpenAI's bodies, see [OpenAI]).
//
// Quotas: requests per Config.Window are reported; other quotas set are
// enforced but hidden.
//
// Headers: RateLimit-Limit, RateLimit-Remaining and RateLimit-Reset (seconds
// until the bucket is full again), with RateLimit-Policy: <limit>;w=<window
// in seconds> naming the window; on a rejection retry-after in whole
// seconds; always x-request-id.
type Generic struct{ OpenAI }

var _ Dialect = Generic{}

// Name implements [Dialect].
func (Generic) Name() string { return "generic" }

// SetHeaders implements [Dialect].
func (Generic) SetHeaders(h http.Header, m Meta) {
	h.Set("X-Request-Id", m.RequestID)
	if d := m.Limits.Quotas[QuotaRequests]; d.Limit > 0 {
		h.Set("RateLimit-Limit", strconv.FormatInt(d.Limit, 10))
		h.Set("RateLimit-Remaining", strconv.FormatInt(d.Remaining, 10))
		h.Set("RateLimit-Reset", formatWholeSeconds(d.Reset))
		h.Set("RateLimit-Policy", strconv.FormatInt(d.Limit, 10)+";w="+formatWholeSeconds(d.Window))
	}
	setRetryAfter(h, m.Limits.RetryAfter, "")
}
