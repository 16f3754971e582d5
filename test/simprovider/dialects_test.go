package simprovider

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestDialectFor(t *testing.T) {
	names := DialectNames()
	want := []string{"anthropic", "azure", "fireworks", "gemini", "generic", "groq", "mistral", "openai", "openrouter", "together", "venice"}
	if !slices.Equal(names, want) {
		t.Fatalf("DialectNames() = %v, want %v", names, want)
	}
	for _, name := range names {
		d, ok := DialectFor(name)
		if !ok || d.Name() != name {
			t.Errorf("DialectFor(%q) = %v, %v; want the dialect named %q", name, d, ok, name)
		}
	}
	if d, ok := DialectFor(" Anthropic "); !ok || d.Name() != "anthropic" {
		t.Errorf("DialectFor is not case and space insensitive: %v, %v", d, ok)
	}
	if d, ok := DialectFor("deepseek"); ok || d != nil {
		t.Errorf("DialectFor(unknown) = %v, %v; want nil, false", d, ok)
	}
}

func TestShape(t *testing.T) {
	perSecond := func(qs ...Quota) Enforcement {
		var e Enforcement
		for _, q := range qs {
			e.Windows[q] = time.Second
		}
		return e
	}
	tests := []struct {
		name         string
		q            Quota
		amount       int64
		window       time.Duration
		e            Enforcement
		wantCapacity int64
		wantWindow   time.Duration
	}{
		{"configured window", QuotaRequests, 60, time.Minute, Enforcement{}, 60, time.Minute},
		{"prorated to a second", QuotaRequests, 120, time.Minute, perSecond(QuotaRequests), 2, time.Second},
		{"prorated, rounded down", QuotaTokens, 100, time.Minute, perSecond(QuotaTokens), 1, time.Second},
		{"prorated, at least one", QuotaRequests, 10, time.Minute, perSecond(QuotaRequests), 1, time.Second},
		{"own window equal to the configured one", QuotaRequests, 7, time.Second, perSecond(QuotaRequests), 7, time.Second},
		{"own window longer", QuotaRequests, 3, time.Second, Enforcement{Windows: [NumQuotas]time.Duration{QuotaRequests: 10 * time.Second}}, 30, 10 * time.Second},
		{"prorating saturates", QuotaTokens, 1 << 62, time.Second, Enforcement{Windows: [NumQuotas]time.Duration{QuotaTokens: time.Hour}}, maxCharge, time.Hour},
		{"unlimited stays unlimited", QuotaRequests, 0, time.Minute, perSecond(QuotaRequests), 0, time.Minute},
		{"per day ignores windows", QuotaRequestsPerDay, 1000, time.Second, perSecond(QuotaRequestsPerDay), 1000, Day},
		{"per month", QuotaTokensPerMonth, 5, time.Minute, Enforcement{}, 5, Month},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			capacity, window := shape(tt.q, tt.amount, tt.window, tt.e)
			if capacity != tt.wantCapacity || window != tt.wantWindow {
				t.Errorf("shape = %d over %v, want %d over %v", capacity, window, tt.wantCapacity, tt.wantWindow)
			}
		})
	}
}

func TestQuotaString(t *testing.T) {
	want := []string{"requests", "requests_per_day", "tokens", "input_tokens", "output_tokens", "tokens_per_month"}
	for q := range NumQuotas {
		if q.String() != want[q] {
			t.Errorf("Quota(%d).String() = %q, want %q", q, q, want[q])
		}
	}
	if NumQuotas.String() != "unknown" || ReasonRequests != QuotaRequests.String() || ReasonTokens != QuotaTokens.String() {
		t.Errorf("quota names and reasons disagree")
	}
}

func TestDialectAPIKeys(t *testing.T) {
	tests := []struct {
		dialect string
		path    string
		headers map[string]string
		want    string
	}{
		{"openai", "/v1/chat/completions", map[string]string{"Authorization": "Bearer sk-1"}, "sk-1"},
		{"groq", "/openai/v1/chat/completions", map[string]string{"Authorization": "Bearer gsk-1"}, "gsk-1"},
		{"azure", "/openai/deployments/d/chat/completions", map[string]string{"api-key": "az-1"}, "az-1"},
		{"azure", "/openai/v1/chat/completions", map[string]string{"Authorization": "Bearer entra"}, "entra"},
		{"azure", "/openai/deployments/d/chat/completions", map[string]string{"api-key": "az-2", "Authorization": "Bearer entra"}, "az-2"},
		{"anthropic", "/v1/messages", map[string]string{"x-api-key": "sk-ant-1"}, "sk-ant-1"},
		{"anthropic", "/v1/messages", map[string]string{"Authorization": "Bearer sk-ant-1"}, ""},
		{"gemini", "/v1beta/openai/chat/completions", map[string]string{"Authorization": "Bearer g-1"}, "g-1"},
		{"gemini", "/v1beta/openai/chat/completions", map[string]string{"x-goog-api-key": "g-2"}, "g-2"},
		{"gemini", "/v1beta/openai/chat/completions?key=g-3", nil, "g-3"},
		{"generic", "/v1/chat/completions", map[string]string{"api-key": "x"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.dialect+" "+tt.want, func(t *testing.T) {
			d, _ := DialectFor(tt.dialect)
			r := httptest.NewRequest(http.MethodPost, tt.path, nil)
			for k, v := range tt.headers {
				r.Header.Set(k, v)
			}
			if got := d.APIKey(r); got != tt.want {
				t.Errorf("APIKey = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestDialectHeaders(t *testing.T) {
	unix := func(d time.Duration) string { return strconv.FormatInt(t0.Add(d).Unix(), 10) }
	millis := func(d time.Duration) string { return strconv.FormatInt(t0.Add(d).UnixMilli(), 10) }
	quotas := func(pairs ...any) [NumQuotas]Dimension {
		var q [NumQuotas]Dimension
		for i := 0; i < len(pairs); i += 2 {
			q[pairs[i].(Quota)] = pairs[i+1].(Dimension)
		}
		return q
	}
	tests := []struct {
		name    string
		dialect string
		meta    Meta
		want    map[string]string // "" means absent
	}{
		{
			name: "azure: seconds, x-ms-retry-after-ms", dialect: "azure",
			meta: Meta{RequestID: "req_a", Limits: LimitState{Quotas: quotas(
				QuotaRequests, Dimension{Limit: 10, Remaining: 0, Reset: 10 * time.Second, Window: 10 * time.Second},
				QuotaTokens, Dimension{Limit: 20000, Remaining: 19000, Reset: 3200 * time.Millisecond, Window: time.Minute}),
				RetryAfter: 2500 * time.Millisecond}},
			want: map[string]string{
				"x-ratelimit-limit-requests": "10", "x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "10",
				"x-ratelimit-limit-tokens": "20000", "x-ratelimit-remaining-tokens": "19000", "x-ratelimit-reset-tokens": "4",
				"retry-after": "3", "x-ms-retry-after-ms": "2500", "retry-after-ms": "",
				"x-request-id": "req_a", "apim-request-id": "req_a",
			},
		},
		{
			name: "anthropic: split limits, rounded token remainders, RFC 3339 resets", dialect: "anthropic",
			meta: Meta{RequestID: "req_b", At: t0, Limits: LimitState{Quotas: quotas(
				QuotaRequests, Dimension{Limit: 50, Remaining: 49, Reset: 1200 * time.Millisecond},
				QuotaInputTokens, Dimension{Limit: 80000, Remaining: 78400, Reset: 1500 * time.Millisecond},
				QuotaOutputTokens, Dimension{Limit: 16000, Remaining: 12600, Reset: 15 * time.Second})}},
			want: map[string]string{
				"anthropic-ratelimit-requests-limit": "50", "anthropic-ratelimit-requests-remaining": "49",
				"anthropic-ratelimit-requests-reset":      "2026-01-02T03:04:07Z",
				"anthropic-ratelimit-input-tokens-limit":  "80000",
				"anthropic-ratelimit-input-tokens-reset":  "2026-01-02T03:04:07Z",
				"anthropic-ratelimit-output-tokens-limit": "16000", "anthropic-ratelimit-output-tokens-remaining": "13000",
				"anthropic-ratelimit-input-tokens-remaining": "78000",
				"anthropic-ratelimit-output-tokens-reset":    "2026-01-02T03:04:20Z",
				"anthropic-ratelimit-tokens-limit":           "96000", "anthropic-ratelimit-tokens-remaining": "91000",
				"anthropic-ratelimit-tokens-reset": "2026-01-02T03:04:20Z",
				"request-id":                       "req_b", "anthropic-organization-id": anthropicOrganization, "retry-after": "",
			},
		},
		{
			name: "anthropic: combined tokens of an older account, rounding capped at the limit", dialect: "anthropic",
			meta: Meta{At: t0, Limits: LimitState{Quotas: quotas(
				QuotaTokens, Dimension{Limit: 1500, Remaining: 1500}),
				RetryAfter: 1100 * time.Millisecond}},
			want: map[string]string{
				"anthropic-ratelimit-tokens-limit": "1500", "anthropic-ratelimit-tokens-remaining": "1500",
				"anthropic-ratelimit-tokens-reset":       "2026-01-02T03:04:05Z",
				"anthropic-ratelimit-input-tokens-limit": "", "anthropic-ratelimit-requests-limit": "",
				"retry-after": "2",
			},
		},
		{
			name: "groq: requests per day, Go durations", dialect: "groq",
			meta: Meta{RequestID: "req_c", Limits: LimitState{Quotas: quotas(
				QuotaRequests, Dimension{Limit: 30, Remaining: 29, Reset: 2 * time.Second},
				QuotaRequestsPerDay, Dimension{Limit: 14400, Remaining: 14370, Reset: 2*time.Minute + 59560*time.Millisecond},
				QuotaTokens, Dimension{Limit: 18000, Remaining: 17997, Reset: 7660 * time.Millisecond}),
				RetryAfter: 1500 * time.Millisecond}},
			want: map[string]string{
				"x-ratelimit-limit-requests": "14400", "x-ratelimit-remaining-requests": "14370", "x-ratelimit-reset-requests": "2m59.56s",
				"x-ratelimit-limit-tokens": "18000", "x-ratelimit-remaining-tokens": "17997", "x-ratelimit-reset-tokens": "7.66s",
				"retry-after": "2", "retry-after-ms": "", "x-request-id": "req_c",
			},
		},
		{
			name: "together: per-second values", dialect: "together",
			meta: Meta{Limits: LimitState{Quotas: quotas(
				QuotaRequests, Dimension{Limit: 10, Remaining: 9, Reset: 100 * time.Millisecond, Window: time.Second},
				QuotaTokens, Dimension{Limit: 2000, Remaining: 1800, Reset: 100 * time.Millisecond, Window: time.Second}),
				RetryAfter: 200 * time.Millisecond}},
			want: map[string]string{
				"x-ratelimit-limit": "10", "x-ratelimit-remaining": "9", "x-ratelimit-reset": "0.1",
				"x-tokenlimit-limit": "2000", "x-tokenlimit-remaining": "1800", "retry-after": "1",
				"x-ratelimit-limit-requests": "",
			},
		},
		{
			name: "venice: Unix timestamp and seconds", dialect: "venice",
			meta: Meta{At: t0, Limits: LimitState{Quotas: quotas(
				QuotaRequests, Dimension{Limit: 50, Remaining: 49, Reset: 1200 * time.Millisecond},
				QuotaTokens, Dimension{Limit: 750000, Remaining: 749000, Reset: 45 * time.Second})}},
			want: map[string]string{
				"x-ratelimit-limit-requests": "50", "x-ratelimit-remaining-requests": "49", "x-ratelimit-reset-requests": unix(2 * time.Second),
				"x-ratelimit-limit-tokens": "750000", "x-ratelimit-remaining-tokens": "749000", "x-ratelimit-reset-tokens": "45",
			},
		},
		{
			name: "venice: a rejection's request reset is when to retry, no retry-after", dialect: "venice",
			meta: Meta{At: t0, Limits: LimitState{Quotas: quotas(
				QuotaRequests, Dimension{Limit: 50, Remaining: 0, Reset: time.Minute}), RetryAfter: 5 * time.Second}},
			want: map[string]string{"x-ratelimit-reset-requests": unix(5 * time.Second), "retry-after": ""},
		},
		{
			name: "openrouter: epoch milliseconds", dialect: "openrouter",
			meta: Meta{At: t0, Limits: LimitState{Quotas: quotas(
				QuotaRequests, Dimension{Limit: 20, Remaining: 19, Reset: 3*time.Second + 1})}},
			want: map[string]string{"x-ratelimit-limit": "20", "x-ratelimit-remaining": "19", "x-ratelimit-reset": millis(3*time.Second + time.Millisecond)},
		},
		{
			name: "openrouter: the quota with fewer requests left", dialect: "openrouter",
			meta: Meta{At: t0, Limits: LimitState{Quotas: quotas(
				QuotaRequests, Dimension{Limit: 20, Remaining: 19, Reset: 3 * time.Second},
				QuotaRequestsPerDay, Dimension{Limit: 50, Remaining: 10, Reset: 5 * time.Hour})}},
			want: map[string]string{"x-ratelimit-limit": "50", "x-ratelimit-remaining": "10", "x-ratelimit-reset": millis(5 * time.Hour)},
		},
		{
			name: "openrouter: a 429 carries none", dialect: "openrouter",
			meta: Meta{At: t0, Limits: LimitState{Quotas: quotas(
				QuotaRequests, Dimension{Limit: 20, Remaining: 0, Reset: time.Minute}), RetryAfter: 3 * time.Second}},
			want: map[string]string{"x-ratelimit-limit": "", "x-ratelimit-remaining": "", "retry-after": ""},
		},
		{
			name: "mistral: by size, per minute and month, requests", dialect: "mistral",
			meta: Meta{Charged: 100, Limits: LimitState{Quotas: quotas(
				QuotaRequests, Dimension{Limit: 720, Remaining: 717, Reset: time.Second},
				QuotaTokens, Dimension{Limit: 500000, Remaining: 499900, Reset: 27100 * time.Millisecond},
				QuotaTokensPerMonth, Dimension{Limit: 1000000000, Remaining: 999000000, Reset: 100 * time.Hour})}},
			want: map[string]string{
				"ratelimitbysize-limit": "500000", "ratelimitbysize-remaining": "499900", "ratelimitbysize-reset": "28",
				"x-ratelimitbysize-limit-minute": "500000", "x-ratelimitbysize-remaining-minute": "499900",
				"x-ratelimitbysize-limit-month": "1000000000", "x-ratelimitbysize-remaining-month": "999000000",
				"x-ratelimit-limit-req-minute": "720", "x-ratelimit-remaining-req-minute": "717",
				"ratelimitbysize-query-cost": "100",
			},
		},
		{
			name: "fireworks: prompt and generated tokens, over the limit", dialect: "fireworks",
			meta: Meta{Limits: LimitState{Quotas: quotas(
				QuotaRequests, Dimension{Limit: 600, Remaining: 599, Reset: 100 * time.Millisecond},
				QuotaInputTokens, Dimension{Limit: 1000, Remaining: 900, Window: time.Second},
				QuotaOutputTokens, Dimension{Limit: 10, Remaining: 0, Reset: time.Second, Window: time.Second})}},
			want: map[string]string{
				"x-ratelimit-limit-requests": "600", "x-ratelimit-remaining-requests": "599", "x-ratelimit-reset-requests": "1",
				"x-ratelimit-limit-tokens-prompt": "1000", "x-ratelimit-remaining-tokens-prompt": "900",
				"x-ratelimit-limit-tokens-generated": "10", "x-ratelimit-remaining-tokens-generated": "0",
				"x-ratelimit-over-limit": "yes",
			},
		},
		{
			name: "fireworks: not over the limit", dialect: "fireworks",
			meta: Meta{Limits: LimitState{Quotas: quotas(QuotaRequests, Dimension{Limit: 600, Remaining: 1})}},
			want: map[string]string{"x-ratelimit-over-limit": "no"},
		},
		{
			name: "gemini: nothing", dialect: "gemini",
			meta: Meta{RequestID: "req_g", Limits: LimitState{Quotas: quotas(
				QuotaRequests, Dimension{Limit: 15, Remaining: 0, Reset: time.Minute}), RetryAfter: 4 * time.Second}},
			want: map[string]string{"x-ratelimit-limit-requests": "", "retry-after": "", "x-request-id": ""},
		},
		{
			name: "generic: IETF fields", dialect: "generic",
			meta: Meta{Limits: LimitState{Quotas: quotas(
				QuotaRequests, Dimension{Limit: 100, Remaining: 50, Reset: 29100 * time.Millisecond, Window: time.Minute},
				QuotaTokens, Dimension{Limit: 1000, Remaining: 10}), RetryAfter: 20 * time.Second}},
			want: map[string]string{
				"ratelimit-limit": "100", "ratelimit-remaining": "50", "ratelimit-reset": "30", "ratelimit-policy": "100;w=60",
				"retry-after": "20", "x-ratelimit-limit-tokens": "",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, _ := DialectFor(tt.dialect)
			h := http.Header{}
			d.SetHeaders(h, tt.meta)
			for k, v := range tt.want {
				if got := h.Get(k); got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
		})
	}
}

func TestDialectErrorBodies(t *testing.T) {
	rejection := &Problem{Status: 429, Kind: ProblemRateLimit, Model: "m",
		Rejection: &Rejection{Quota: QuotaOutputTokens, Limit: 8000, Used: 7990, Requested: 100, RetryAfter: 12 * time.Second}}
	meta := Meta{RequestID: "req_1", At: t0, Limits: LimitState{
		Quotas:     [NumQuotas]Dimension{QuotaRequests: {Limit: 20, Remaining: 0, Reset: 30 * time.Second}},
		RetryAfter: 12 * time.Second}}
	tests := []struct {
		name    string
		dialect string
		problem *Problem
		// want maps JSON paths ("error.type", "0.error.status") to values.
		want map[string]any
	}{
		{"openai", "openai", rejection, map[string]any{"error.type": "output_tokens", "error.code": "rate_limit_exceeded",
			"error.message": "Rate limit reached for m in organization org-simulated on output tokens per min (OTPM): Limit 8000, " +
				"Used 7990, Requested 100. Please try again in 12s. Visit https://platform.openai.com/account/rate-limits to learn more."}},
		{"azure", "azure", rejection, map[string]any{"error.code": "429", "error.message": "Requests to the ChatCompletions_Create " +
			"Operation under Azure OpenAI API version 2024-10-21 have exceeded token rate limit of your current OpenAI S0 pricing " +
			"tier. Please retry after 12 seconds. Please go here: https://aka.ms/oai/quotaincrease if you would like to further " +
			"increase the default rate limit."}},
		{"azure other errors are OpenAI's", "azure", &Problem{Status: 404, Kind: ProblemNotFound, Message: "nope"},
			map[string]any{"error.code": "unknown_url", "error.type": "invalid_request_error"}},
		{"anthropic", "anthropic", rejection, map[string]any{"type": "error", "error.type": "rate_limit_error", "request_id": "req_1",
			"error.message": "This request would exceed the rate limit for your organization (" + anthropicOrganization + ") of 8,000 " +
				"output tokens per minute. For details, refer to: https://docs.claude.com/en/api/rate-limits. You can see the " +
				"response headers for current usage. Please reduce the prompt length or the maximum tokens requested, or try again later."}},
		{"anthropic authentication", "anthropic", &Problem{Status: 401, Kind: ProblemAuthentication, Message: "no key"},
			map[string]any{"error.type": "authentication_error", "error.message": "x-api-key header is required"}},
		{"anthropic overloaded", "anthropic", &Problem{Status: 529, Kind: ProblemServer, Message: "Overloaded"},
			map[string]any{"error.type": "overloaded_error", "error.message": "Overloaded"}},
		{"anthropic too large", "anthropic", &Problem{Status: 413, Kind: ProblemTooLarge, Message: "big"},
			map[string]any{"error.type": "request_too_large"}},
		{"anthropic forced 503", "anthropic", &Problem{Status: 503, Kind: ProblemServer, Message: "down"},
			map[string]any{"error.type": "api_error"}},
		{"groq", "groq", rejection, map[string]any{"error.type": "output_tokens", "error.message": "Rate limit reached for model `m` " +
			"in organization `org_simulated` service tier `on_demand` on output tokens per min (OTPM): Limit 8000, Used 7990, " +
			"Requested 100. Please try again in 12s. Visit https://console.groq.com/docs/rate-limits for more information."}},
		{"together tokens", "together", rejection, map[string]any{"id": "req_1", "error.type": "dynamic_token_limited",
			"error.message": "You are being rate limited: tokens above your current rate of 8000 per second. Please try again in 12s."}},
		{"venice", "venice", rejection, map[string]any{
			"error": "Rate limit exceeded on output tokens per min (OTPM): check x-ratelimit-reset-requests before sending again."}},
		{"venice other errors", "venice", &Problem{Status: 400, Kind: ProblemInvalidRequest, Message: "bad"}, map[string]any{"error": "bad"}},
		{"openrouter", "openrouter", &Problem{Status: 429, Kind: ProblemRateLimit,
			Rejection: &Rejection{Quota: QuotaRequests, Limit: 20, Used: 20, Requested: 1, RetryAfter: 3 * time.Second}},
			map[string]any{"error.code": float64(429), "error.message": "Rate limit exceeded: free-models-per-min.",
				"error.metadata.headers.X-RateLimit-Limit": "20", "error.metadata.headers.X-RateLimit-Remaining": "0",
				"error.metadata.headers.X-RateLimit-Reset": strconv.FormatInt(t0.Add(30*time.Second).UnixMilli(), 10),
				"error.metadata.provider_name":             nil, "user_id": "user_simulated"}},
		{"openrouter other errors", "openrouter", &Problem{Status: 401, Kind: ProblemAuthentication, Message: "No auth credentials found"},
			map[string]any{"error.code": float64(401), "error.message": "No auth credentials found"}},
		{"mistral tokens", "mistral", rejection, map[string]any{"object": "error", "type": "rate_limited", "code": "1300",
			"message": "Tokens per minute rate limit exceeded", "param": nil}},
		{"mistral requests", "mistral", &Problem{Status: 429, Kind: ProblemRateLimit, Rejection: &Rejection{Quota: QuotaRequests}},
			map[string]any{"message": "Requests rate limit exceeded"}},
		{"fireworks", "fireworks", rejection, map[string]any{"error.type": "output_tokens", "error.code": "rate_limit_exceeded"}},
		{"gemini", "gemini", rejection, map[string]any{"0.error.code": float64(429), "0.error.status": "RESOURCE_EXHAUSTED",
			"0.error.details.0.@type":                              "type.googleapis.com/google.rpc.QuotaFailure",
			"0.error.details.0.violations.0.quotaId":               "GenerateContentOutputTokensPerModelPerMinute-FreeTier",
			"0.error.details.0.violations.0.quotaValue":            "8000",
			"0.error.details.0.violations.0.quotaDimensions.model": "m",
			"0.error.details.2.@type":                              "type.googleapis.com/google.rpc.RetryInfo",
			"0.error.details.2.retryDelay":                         "12s"}},
		{"gemini other errors", "gemini", &Problem{Status: 401, Kind: ProblemAuthentication, Message: "API key not valid."},
			map[string]any{"0.error.code": float64(401), "0.error.status": "UNAUTHENTICATED", "0.error.message": "API key not valid."}},
		{"generic", "generic", rejection, map[string]any{"error.type": "output_tokens"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, _ := DialectFor(tt.dialect)
			raw := d.ErrorBody(tt.problem, meta)
			var v any
			if err := json.Unmarshal(raw, &v); err != nil {
				t.Fatalf("decode %s: %v", raw, err)
			}
			for path, want := range tt.want {
				if got, ok := lookup(v, path); !ok || got != want {
					t.Errorf("%s = %#v (found %v), want %#v in %s", path, got, ok, want, raw)
				}
			}
		})
	}
}

// lookup follows a dotted path of object keys and array indexes in a decoded
// JSON value.
func lookup(v any, path string) (any, bool) {
	for _, part := range strings.Split(path, ".") {
		switch x := v.(type) {
		case map[string]any:
			var ok bool
			if v, ok = x[part]; !ok {
				return nil, false
			}
		case []any:
			i, err := strconv.Atoi(part)
			if err != nil || i < 0 || i >= len(x) {
				return nil, false
			}
			v = x[i]
		default:
			return nil, false
		}
	}
	return v, true
}
