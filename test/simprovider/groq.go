package simprovider

import (
	"fmt"
	"net/http"
	"time"
)

// Groq is the [Dialect] of Groq's OpenAI-compatible API (base path
// /openai/v1; OpenAI's bodies, see [OpenAI]).
//
// Quotas: Groq's request headers count requests per day ([Config.RPD]), its
// token headers tokens per minute ([Config.TPM]); a Config.RPM is enforced
// but, as at Groq, not reported.
//
// Headers: OpenAI's names, x-ratelimit-{limit,remaining,reset}-requests for
// the daily quota and -tokens for the tokens quota, resets as Go durations
// ("2m59.56s", "7.66s"), retry-after in whole seconds on a rejection, and
// x-request-id. A rejection's message names the quota as Groq does ("on
// requests per day (RPD)") and the wait ("Please try again in 1m26.4s").
//
// Streams carry Groq's x_groq member: the request id on the first chunk, and
// the usage (with Groq's timing fields) on the last chunk, whether or not the
// request asked for stream_options.include_usage.
type Groq struct{ OpenAI }

var _ Dialect = Groq{}

// Name implements [Dialect].
func (Groq) Name() string { return "groq" }

// SetHeaders implements [Dialect].
func (Groq) SetHeaders(h http.Header, m Meta) {
	h.Set("X-Request-Id", m.RequestID)
	h.Set("X-Groq-Region", "sim-1")
	setOpenAILimits(h, m.Limits, QuotaRequestsPerDay, FormatOpenAIDuration, FormatOpenAIDuration)
	setRetryAfter(h, m.Limits.RetryAfter, "")
}

// ErrorBody implements [Dialect]: OpenAI's envelope, with Groq's wording.
func (Groq) ErrorBody(p *Problem, _ Meta) []byte {
	return openAIErrorBody(p, groqRateLimitMessage)
}

// groqRateLimitMessage words a rejection the way Groq does.
func groqRateLimitMessage(model string, r *Rejection) string {
	if model == "" {
		model = "the model"
	}
	if r.Requested > r.Limit {
		return fmt.Sprintf("Request too large for model `%s` in organization `org_simulated` service tier `on_demand` on %s: "+
			"Limit %d, Requested %d, please reduce your message size and try again.", model, quotaPhrase(r.Quota), r.Limit, r.Requested)
	}
	return fmt.Sprintf("Rate limit reached for model `%s` in organization `org_simulated` service tier `on_demand` on %s: "+
		"Limit %d, Used %d, Requested %d. Please try again in %s. Visit https://console.groq.com/docs/rate-limits for more information.",
		model, quotaPhrase(r.Quota), r.Limit, r.Used, r.Requested, FormatOpenAIDuration(r.RetryAfter))
}

// StreamEvents implements [Dialect]: chat streams carry x_groq.
func (g Groq) StreamEvents(c *Call, o *Output) ([]Event, error) {
	if c.Kind != KindChat {
		return g.OpenAI.StreamEvents(c, o)
	}
	events, err := chatStream(c, o, true)
	if err != nil {
		return nil, fmt.Errorf("groq: encode chat stream: %w", err)
	}
	return events, nil
}

// groqUsage returns the usage Groq reports under x_groq, with its timing
// fields (in seconds).
func groqUsage(o *Output) map[string]any {
	const perToken = 2 * time.Millisecond
	completion := (time.Duration(o.CompletionTokens) * perToken).Seconds()
	prompt := (time.Duration(o.PromptTokens) * perToken / 10).Seconds()
	return map[string]any{
		"queue_time":        0.0002,
		"prompt_tokens":     o.PromptTokens,
		"prompt_time":       prompt,
		"completion_tokens": o.CompletionTokens,
		"completion_time":   completion,
		"total_tokens":      o.PromptTokens + o.CompletionTokens,
		"total_time":        prompt + completion,
	}
}
