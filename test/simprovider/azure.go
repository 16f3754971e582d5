package simprovider

import (
	"fmt"
	"net/http"
	"strings"
	"time"
)

// Azure is the [Dialect] of Azure OpenAI (OpenAI's bodies, see [OpenAI]).
//
// Paths: /openai/deployments/{deployment}/chat/completions, .../completions
// and .../embeddings, where the deployment stands for the model when the body
// names none, and the v1 API's /openai/v1/... (any api-version query). The
// credential is the api-key header, or a bearer token (Microsoft Entra ID).
//
// Quotas: Azure enforces a deployment's requests over 10 s windows: a
// Config.RPM of 60 per minute is 10 requests per 10 s, and the request headers
// count that window. Tokens are per Config.Window.
//
// Headers: x-ratelimit-{limit,remaining,reset}-{requests,tokens}, resets in
// whole seconds; on a rejection retry-after (seconds) and x-ms-retry-after-ms;
// always x-request-id and apim-request-id. A rejection's body is Azure's:
// {"error":{"code":"429","message":"... have exceeded call rate limit ...
// Please retry after N seconds. ..."}} ("token rate limit" for tokens).
type Azure struct{ OpenAI }

var _ Dialect = Azure{}

// azureRequestWindow is the window Azure enforces request limits over.
const azureRequestWindow = 10 * time.Second

// Name implements [Dialect].
func (Azure) Name() string { return "azure" }

// APIKey implements [Dialect]: the api-key header, or the bearer token.
func (Azure) APIKey(r *http.Request) string {
	if key := strings.TrimSpace(r.Header.Get("Api-Key")); key != "" {
		return key
	}
	return bearerToken(r)
}

// ParseRequest implements [Dialect]: a deployment's name stands for the
// model when the body names none.
func (Azure) ParseRequest(r *http.Request, body []byte) (*Call, error) {
	deployment := ""
	if rest, ok := strings.CutPrefix(r.URL.Path, "/openai/deployments/"); ok {
		deployment, _, _ = strings.Cut(rest, "/")
	}
	return parseOpenAIRequest(r, body, deployment)
}

// Enforcement implements [Dialect]: requests over 10 s.
func (Azure) Enforcement() Enforcement {
	var e Enforcement
	e.Windows[QuotaRequests] = azureRequestWindow
	return e
}

// SetHeaders implements [Dialect].
func (Azure) SetHeaders(h http.Header, m Meta) {
	h.Set("X-Request-Id", m.RequestID)
	h.Set("Apim-Request-Id", m.RequestID)
	setOpenAILimits(h, m.Limits, QuotaRequests, formatWholeSeconds, formatWholeSeconds)
	setRetryAfter(h, m.Limits.RetryAfter, "X-Ms-Retry-After-Ms")
}

// ErrorBody implements [Dialect]: Azure's rate-limit body, OpenAI's envelope
// for other errors.
func (a Azure) ErrorBody(p *Problem, m Meta) []byte {
	r := p.Rejection
	if p.Kind != ProblemRateLimit || r == nil {
		return a.OpenAI.ErrorBody(p, m)
	}
	limit := "token rate limit"
	if r.Quota == QuotaRequests || r.Quota == QuotaRequestsPerDay {
		limit = "call rate limit"
	}
	msg := fmt.Sprintf("Requests to the ChatCompletions_Create Operation under Azure OpenAI API version 2024-10-21 "+
		"have exceeded %s of your current OpenAI S0 pricing tier. Please retry after %s seconds. "+
		"Please go here: https://aka.ms/oai/quotaincrease if you would like to further increase the default rate limit.",
		limit, formatWholeSeconds(max(r.RetryAfter, time.Second)))
	type inner struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}
	return mustJSON(struct {
		Error inner `json:"error"`
	}{inner{Code: "429", Message: msg}}, `{"error":{"code":"429","message":"Rate limit exceeded."}}`)
}
