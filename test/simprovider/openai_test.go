package simprovider

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestFormatOpenAIDuration(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{0, "0s"},
		{-time.Second, "0s"},
		{time.Nanosecond, "1ms"},
		{20 * time.Millisecond, "20ms"},
		{19*time.Millisecond + 1, "20ms"},
		{time.Second, "1s"},
		{1800 * time.Millisecond, "1.8s"},
		{6 * time.Minute, "6m0s"},
		{2*time.Minute + 59560*time.Millisecond, "2m59.56s"},
	}
	for _, tt := range tests {
		got := FormatOpenAIDuration(tt.d)
		if got != tt.want {
			t.Errorf("FormatOpenAIDuration(%v) = %q, want %q", tt.d, got, tt.want)
		}
		want := max(tt.d, 0)
		back, err := time.ParseDuration(got)
		if err != nil || back < want || back-want >= time.Millisecond {
			t.Errorf("ParseDuration(%q) = %v, %v; want within 1ms above %v", got, back, err, want)
		}
	}
}

func TestOpenAIAPIKey(t *testing.T) {
	tests := []struct {
		name    string
		headers map[string]string
		want    string
	}{
		{name: "bearer", headers: map[string]string{"Authorization": "Bearer sk-1"}, want: "sk-1"},
		{name: "bearer lower case", headers: map[string]string{"authorization": "bearer sk-2"}, want: "sk-2"},
		{name: "azure api-key is not OpenAI's", headers: map[string]string{"api-key": "az-1"}, want: ""},
		{name: "basic is not a key", headers: map[string]string{"Authorization": "Basic abc"}, want: ""},
		{name: "bearer without token", headers: map[string]string{"Authorization": "Bearer"}, want: ""},
		{name: "none", want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "/v1/chat/completions", nil)
			for k, v := range tt.headers {
				r.Header.Set(k, v)
			}
			if got := (OpenAI{}).APIKey(r); got != tt.want {
				t.Errorf("APIKey = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestOpenAIParseRequest(t *testing.T) {
	text40 := strings.Repeat("abcd", 10) // 10 tokens
	tests := []struct {
		name   string
		method string
		path   string
		body   string
		want   Call
		status int    // expected problem status, 0 for success
		param  string // expected problem param
	}{
		{
			name: "chat with max_tokens",
			path: "/v1/chat/completions",
			body: `{"model":"gpt-4o","messages":[{"role":"user","content":"` + text40 + `"}],"max_tokens":20}`,
			want: Call{Kind: KindChat, Model: "gpt-4o", PromptTokens: 10, MaxOutputTokens: 20, Choices: 1},
		},
		{
			name: "chat max_completion_tokens wins, n, parts, stream with usage",
			path: "/v1/chat/completions",
			body: `{"model":"m","messages":[{"role":"system","content":"abcd"},{"role":"user","content":[{"type":"text","text":"efgh"},{"type":"image_url","image_url":{"url":"x"}}]},{"role":"assistant","content":null}],` +
				`"max_tokens":5,"max_completion_tokens":7,"n":3,"stream":true,"stream_options":{"include_usage":true}}`,
			want: Call{Kind: KindChat, Model: "m", PromptTokens: 2, MaxOutputTokens: 7, Choices: 3, Stream: true, IncludeUsage: true},
		},
		{
			name: "any base path",
			path: "/openai/v1/chat/completions",
			body: `{"model":"llama","messages":[{"role":"user","content":"hi"}]}`,
			want: Call{Kind: KindChat, Model: "llama", PromptTokens: 1, Choices: 1},
		},
		{
			name: "legacy completion with two prompts",
			path: "/v1/completions",
			body: `{"model":"davinci","prompt":["abcd","efghij"],"n":2,"max_tokens":4}`,
			want: Call{Kind: KindCompletion, Model: "davinci", PromptTokens: 3, MaxOutputTokens: 4, Choices: 4},
		},
		{
			name: "legacy completion with token ids",
			path: "/inference/v1/completions",
			body: `{"model":"d","prompt":[1,2,3,4,5]}`,
			want: Call{Kind: KindCompletion, Model: "d", PromptTokens: 5, Choices: 1},
		},
		{
			name: "embeddings",
			path: "/v1/embeddings",
			body: `{"model":"text-embedding-3-small","input":["abcd","abcdefgh","x"],"dimensions":4,"encoding_format":"base64"}`,
			want: Call{Kind: KindEmbedding, Model: "text-embedding-3-small", PromptTokens: 4, Choices: 1, Inputs: 3, Dimensions: 4, EmbeddingBase64: true},
		},
		{
			name: "responses with instructions and items",
			path: "/v1/responses",
			body: `{"model":"gpt-4.1","instructions":"abcd","input":[{"role":"user","content":"efgh"},{"role":"user","content":[{"type":"input_text","text":"ijkl"}]},{"type":"function_call_output","call_id":"c","output":"mnop"}],"max_output_tokens":64,"stream":true}`,
			want: Call{Kind: KindResponse, Model: "gpt-4.1", PromptTokens: 4, MaxOutputTokens: 64, Choices: 1, Stream: true, IncludeUsage: true},
		},
		{name: "unknown path", path: "/v1/images/generations", body: `{}`, status: 404},
		{name: "unknown operation under a base path", path: "/openai/deployments/d/images", body: `{}`, status: 404},
		{name: "a sub-resource", path: "/v1/responses/resp_1", body: `{}`, status: 404},
		{name: "no deployment to stand for the model", path: "/openai/deployments/d/chat/completions",
			body: `{"messages":[{"role":"user","content":"x"}]}`, status: 400},
		{name: "wrong method", method: http.MethodGet, path: "/v1/chat/completions", status: 405},
		{name: "malformed json", path: "/v1/chat/completions", body: `{"model":`, status: 400},
		{name: "not an object", path: "/v1/chat/completions", body: `[1]`, status: 400},
		{name: "wrong field type", path: "/v1/chat/completions", body: `{"model":"m","messages":"hi"}`, status: 400, param: "messages"},
		{name: "no messages", path: "/v1/chat/completions", body: `{"model":"m","messages":[]}`, status: 400, param: "messages"},
		{name: "no model", path: "/v1/chat/completions", body: `{"messages":[{"role":"user","content":"x"}]}`, status: 400},
		{name: "bad content", path: "/v1/chat/completions", body: `{"model":"m","messages":[{"content":5}]}`, status: 400, param: "messages.[0].content"},
		{name: "zero max_tokens", path: "/v1/chat/completions", body: `{"model":"m","messages":[{"content":"x"}],"max_tokens":0}`, status: 400, param: "max_tokens"},
		{name: "n too large", path: "/v1/chat/completions", body: `{"model":"m","messages":[{"content":"x"}],"n":129}`, status: 400, param: "n"},
		{name: "stream_options without stream", path: "/v1/chat/completions", body: `{"model":"m","messages":[{"content":"x"}],"stream_options":{"include_usage":true}}`, status: 400, param: "stream_options"},
		{name: "embeddings without input", path: "/v1/embeddings", body: `{"model":"e"}`, status: 400, param: "input"},
		{name: "embeddings bad encoding", path: "/v1/embeddings", body: `{"model":"e","input":"x","encoding_format":"hex"}`, status: 400, param: "encoding_format"},
		{name: "responses without input", path: "/v1/responses", body: `{"model":"m"}`, status: 400, param: "input"},
		{name: "responses max_output_tokens below 16", path: "/v1/responses", body: `{"model":"m","input":"x","max_output_tokens":8}`, status: 400, param: "max_output_tokens"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			method := tt.method
			if method == "" {
				method = http.MethodPost
			}
			r := httptest.NewRequest(method, tt.path+"?api-version=2024-10-21", nil)
			call, err := (OpenAI{}).ParseRequest(r, []byte(tt.body))
			if tt.status != 0 {
				var p *Problem
				if !errors.As(err, &p) {
					t.Fatalf("err = %v, want a *Problem with status %d", err, tt.status)
				}
				if p.Status != tt.status || p.Param != tt.param {
					t.Errorf("problem = %d param %q (%s), want %d param %q", p.Status, p.Param, p.Message, tt.status, tt.param)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseRequest: %v", err)
			}
			if *call != tt.want {
				t.Errorf("call = %+v\nwant   %+v", *call, tt.want)
			}
		})
	}
}

func TestOpenAIErrorBody(t *testing.T) {
	tests := []struct {
		name      string
		problem   Problem
		wantType  string
		wantCode  any // string or nil
		wantParam any
		wantInMsg string
	}{
		{
			name:     "authentication",
			problem:  Problem{Status: 401, Kind: ProblemAuthentication, Message: "no key"},
			wantType: "invalid_request_error", wantCode: "invalid_api_key", wantInMsg: "no key",
		},
		{
			name:     "invalid with param",
			problem:  Problem{Status: 400, Kind: ProblemInvalidRequest, Message: "bad n", Param: "n"},
			wantType: "invalid_request_error", wantParam: "n", wantInMsg: "bad n",
		},
		{
			name: "requests rate limit",
			problem: Problem{Status: 429, Kind: ProblemRateLimit, Model: "gpt-4o",
				Rejection: &Rejection{Quota: QuotaRequests, Limit: 3, Used: 3, Requested: 1, RetryAfter: 20 * time.Second}},
			wantType: "requests", wantCode: "rate_limit_exceeded",
			wantInMsg: "Rate limit reached for gpt-4o in organization org-simulated on requests per min (RPM): Limit 3, Used 3, Requested 1. Please try again in 20s.",
		},
		{
			name: "tokens rate limit",
			problem: Problem{Status: 429, Kind: ProblemRateLimit, Model: "m",
				Rejection: &Rejection{Quota: QuotaTokens, Limit: 100, Used: 90, Requested: 30, RetryAfter: 1500 * time.Millisecond}},
			wantType: "tokens", wantCode: "rate_limit_exceeded",
			wantInMsg: "on tokens per min (TPM): Limit 100, Used 90, Requested 30. Please try again in 1.5s.",
		},
		{
			name: "request too large",
			problem: Problem{Status: 429, Kind: ProblemRateLimit, Model: "m",
				Rejection: &Rejection{Quota: QuotaTokens, Limit: 100, Requested: 300, RetryAfter: time.Second}},
			wantType: "tokens", wantCode: "rate_limit_exceeded", wantInMsg: "Request too large for m",
		},
		{
			name:     "forced 429",
			problem:  Problem{Status: 429, Kind: ProblemRateLimit, Message: "forced"},
			wantType: "requests", wantCode: "rate_limit_exceeded", wantInMsg: "forced",
		},
		{
			name:     "server error",
			problem:  Problem{Status: 503, Kind: ProblemServer, Message: "down"},
			wantType: "server_error", wantInMsg: "down",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var body struct {
				Error map[string]any `json:"error"`
			}
			raw := (OpenAI{}).ErrorBody(&tt.problem, Meta{})
			if err := json.Unmarshal(raw, &body); err != nil {
				t.Fatalf("decode %s: %v", raw, err)
			}
			e := body.Error
			for _, k := range []string{"message", "type", "param", "code"} {
				if _, ok := e[k]; !ok {
					t.Errorf("field %q missing in %s", k, raw)
				}
			}
			if e["type"] != tt.wantType || e["code"] != tt.wantCode || e["param"] != tt.wantParam {
				t.Errorf("type/code/param = %v/%v/%v, want %v/%v/%v", e["type"], e["code"], e["param"], tt.wantType, tt.wantCode, tt.wantParam)
			}
			if msg, _ := e["message"].(string); !strings.Contains(msg, tt.wantInMsg) {
				t.Errorf("message %q does not contain %q", msg, tt.wantInMsg)
			}
		})
	}
}

func TestOpenAISetHeaders(t *testing.T) {
	tests := []struct {
		name string
		meta Meta
		want map[string]string // "" means absent
	}{
		{
			name: "both limited, admitted",
			meta: Meta{RequestID: "req_1", Processing: 42 * time.Millisecond, Limits: LimitState{Quotas: [NumQuotas]Dimension{
				QuotaRequests: {Limit: 500, Remaining: 499, Reset: 120 * time.Millisecond},
				QuotaTokens:   {Limit: 30000, Remaining: 29000, Reset: 2 * time.Second},
			}}},
			want: map[string]string{
				"x-request-id": "req_1", "openai-processing-ms": "42",
				"x-ratelimit-limit-requests": "500", "x-ratelimit-remaining-requests": "499", "x-ratelimit-reset-requests": "120ms",
				"x-ratelimit-limit-tokens": "30000", "x-ratelimit-remaining-tokens": "29000", "x-ratelimit-reset-tokens": "2s",
				"retry-after": "", "retry-after-ms": "",
			},
		},
		{
			name: "rejected, tokens unlimited",
			meta: Meta{RequestID: "req_2", Limits: LimitState{
				Quotas:     [NumQuotas]Dimension{QuotaRequests: {Limit: 3, Remaining: 0, Reset: time.Minute}},
				RetryAfter: 19*time.Second + 1,
			}},
			want: map[string]string{
				"x-ratelimit-limit-requests": "3", "x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "1m0s",
				"x-ratelimit-limit-tokens": "", "x-ratelimit-remaining-tokens": "", "x-ratelimit-reset-tokens": "",
				"retry-after": "20", "retry-after-ms": "19001",
			},
		},
		{
			name: "sub-second wait still says one second",
			meta: Meta{Limits: LimitState{Quotas: [NumQuotas]Dimension{QuotaRequests: {Limit: 1000}}, RetryAfter: 60 * time.Millisecond}},
			want: map[string]string{"retry-after": "1", "retry-after-ms": "60"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			(OpenAI{}).SetHeaders(h, tt.meta)
			for k, v := range tt.want {
				if got := h.Get(k); got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
		})
	}
}
