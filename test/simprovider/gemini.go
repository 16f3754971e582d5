package simprovider

import (
	"net/http"
	"strconv"
	"strings"
)

// Gemini is the [Dialect] of the Gemini API's OpenAI-compatible endpoint
// (base path /v1beta/openai; OpenAI's bodies, see [OpenAI]).
//
// The credential is the bearer token, the x-goog-api-key header or the key
// query parameter. Quotas: Gemini's RPM, RPD and TPM, which counts input
// tokens: [Config.RPM], [Config.RPD] and [Config.InputTPM].
//
// Gemini sends no rate-limit headers, nor retry-after. Everything comes with a
// 429 RESOURCE_EXHAUSTED, whose body, like every error body of this endpoint,
// is a JSON array holding one Google error: {"error":{"code","message",
// "status","details"}}, the details a google.rpc.QuotaFailure naming the
// quota hit (quotaId GenerateRequestsPerMinutePerProjectPerModel-FreeTier,
// GenerateRequestsPerDayPerProjectPerModel-FreeTier,
// GenerateContentInputTokensPerModelPerMinute-FreeTier, ..., with its limit
// as quotaValue) and a google.rpc.RetryInfo whose retryDelay ("43s", "0.5s")
// is the wait.
type Gemini struct{ OpenAI }

var _ Dialect = Gemini{}

// Name implements [Dialect].
func (Gemini) Name() string { return "gemini" }

// APIKey implements [Dialect].
func (Gemini) APIKey(r *http.Request) string {
	if key := bearerToken(r); key != "" {
		return key
	}
	if key := strings.TrimSpace(r.Header.Get("X-Goog-Api-Key")); key != "" {
		return key
	}
	return strings.TrimSpace(r.URL.Query().Get("key"))
}

// SetHeaders implements [Dialect]: no rate-limit headers.
func (Gemini) SetHeaders(http.Header, Meta) {}

// geminiQuotas names each quota as Gemini's QuotaFailure does: quota id and
// metric.
var geminiQuotas = [NumQuotas][2]string{
	QuotaRequests: {"GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
		"generativelanguage.googleapis.com/generate_content_free_tier_requests"},
	QuotaRequestsPerDay: {"GenerateRequestsPerDayPerProjectPerModel-FreeTier",
		"generativelanguage.googleapis.com/generate_content_free_tier_requests"},
	QuotaTokens: {"GenerateContentTokensPerModelPerMinute-FreeTier",
		"generativelanguage.googleapis.com/generate_content_free_tier_token_count"},
	QuotaInputTokens: {"GenerateContentInputTokensPerModelPerMinute-FreeTier",
		"generativelanguage.googleapis.com/generate_content_free_tier_input_token_count"},
	QuotaOutputTokens: {"GenerateContentOutputTokensPerModelPerMinute-FreeTier",
		"generativelanguage.googleapis.com/generate_content_free_tier_output_token_count"},
	QuotaTokensPerMonth: {"GenerateContentTokensPerMonthPerProjectPerModel-FreeTier",
		"generativelanguage.googleapis.com/generate_content_free_tier_token_count"},
}

// googleStatus returns Google's canonical status for an HTTP status.
func googleStatus(status int) string {
	switch status {
	case http.StatusUnauthorized:
		return "UNAUTHENTICATED"
	case http.StatusForbidden:
		return "PERMISSION_DENIED"
	case http.StatusNotFound:
		return "NOT_FOUND"
	case http.StatusTooManyRequests:
		return "RESOURCE_EXHAUSTED"
	case http.StatusServiceUnavailable:
		return "UNAVAILABLE"
	case http.StatusGatewayTimeout:
		return "DEADLINE_EXCEEDED"
	}
	if status >= 500 {
		return "INTERNAL"
	}
	return "INVALID_ARGUMENT"
}

// ErrorBody implements [Dialect]: an array holding one Google error.
func (Gemini) ErrorBody(p *Problem, _ Meta) []byte {
	type googleError struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
		Status  string `json:"status"`
		Details []any  `json:"details,omitempty"`
	}
	e := googleError{Code: p.Status, Message: p.Message, Status: googleStatus(p.Status)}
	if r := p.Rejection; p.Kind == ProblemRateLimit && r != nil {
		model := p.Model
		if model == "" {
			model = "gemini"
		}
		e.Message = "You exceeded your current quota, please check your plan and billing details. " +
			"For more information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits."
		names := geminiQuotas[r.Quota]
		e.Details = []any{
			map[string]any{
				"@type": "type.googleapis.com/google.rpc.QuotaFailure",
				"violations": []any{map[string]any{
					"quotaMetric":     names[1],
					"quotaId":         names[0],
					"quotaDimensions": map[string]string{"location": "global", "model": model},
					"quotaValue":      strconv.FormatInt(r.Limit, 10),
				}},
			},
			map[string]any{
				"@type": "type.googleapis.com/google.rpc.Help",
				"links": []any{map[string]string{"description": "Learn more about Gemini API quotas",
					"url": "https://ai.google.dev/gemini-api/docs/rate-limits"}},
			},
			map[string]any{
				"@type":      "type.googleapis.com/google.rpc.RetryInfo",
				"retryDelay": formatSeconds(r.RetryAfter) + "s",
			},
		}
	}
	return mustJSON([]any{map[string]any{"error": e}}, `[{"error":{"code":500,"message":"error","status":"INTERNAL"}}]`)
}
