package simprovider

import (
	"net/http"
	"strconv"
	"time"
)

// Fireworks is the [Dialect] of Fireworks AI's OpenAI-compatible API (base
// path /inference/v1; OpenAI's bodies, see [OpenAI]).
//
// Quotas: requests per Config.Window ([Config.RPM]); prompt and generated
// tokens ([Config.InputTPM], [Config.OutputTPM]) per second, prorated, as
// Fireworks states them. Generated tokens are charged as they are generated
// (when the answer ends), not as a budget: a request is admitted while the
// quota is not exhausted.
//
// Headers: x-ratelimit-{limit,remaining}-requests and
// x-ratelimit-reset-requests (seconds), x-ratelimit-{limit,remaining}-tokens-
// prompt and -tokens-generated, and x-ratelimit-over-limit: yes when a
// reported quota is exhausted (no otherwise); on a rejection retry-after in
// whole seconds; always x-request-id.
type Fireworks struct{ OpenAI }

var _ Dialect = Fireworks{}

// Name implements [Dialect].
func (Fireworks) Name() string { return "fireworks" }

// Enforcement implements [Dialect]: prompt and generated tokens per second,
// generated tokens charged as generated.
func (Fireworks) Enforcement() Enforcement {
	var e Enforcement
	e.Windows[QuotaInputTokens] = time.Second
	e.Windows[QuotaOutputTokens] = time.Second
	e.OutputAsGenerated = true
	return e
}

// SetHeaders implements [Dialect].
func (Fireworks) SetHeaders(h http.Header, m Meta) {
	h.Set("X-Request-Id", m.RequestID)
	q := m.Limits.Quotas
	over, reported := false, false
	for _, f := range []struct {
		name string
		q    Quota
	}{{"requests", QuotaRequests}, {"tokens-prompt", QuotaInputTokens}, {"tokens-generated", QuotaOutputTokens}} {
		d := q[f.q]
		if d.Limit <= 0 {
			continue
		}
		reported = true
		over = over || d.Remaining <= 0
		h.Set("X-Ratelimit-Limit-"+f.name, strconv.FormatInt(d.Limit, 10))
		h.Set("X-Ratelimit-Remaining-"+f.name, strconv.FormatInt(d.Remaining, 10))
		if f.q == QuotaRequests {
			h.Set("X-Ratelimit-Reset-Requests", formatWholeSeconds(d.Reset))
		}
	}
	switch {
	case over:
		h.Set("X-Ratelimit-Over-Limit", "yes")
	case reported:
		h.Set("X-Ratelimit-Over-Limit", "no")
	}
	setRetryAfter(h, m.Limits.RetryAfter, "")
}
