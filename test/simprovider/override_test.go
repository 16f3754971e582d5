package simprovider

import (
	"net/http"
	"strings"
	"testing"
)

func TestServerOverrides(t *testing.T) {
	type call struct {
		key     string
		body    string // default chatBody(`"max_tokens":20`)
		status  int
		headers map[string]string // exact values; "" means absent
		check   func(t *testing.T, r reply)
	}
	tests := []struct {
		name        string
		cfg         Config
		overrides   []Override
		calls       []call
		wantPending int
		wantStats   map[string]KeyStats // only the fields compared below
	}{
		{
			name: "forced 200 with exhausted-looking headers and a normal body",
			cfg:  Config{RPM: 100},
			overrides: []Override{{Headers: http.Header{
				"x-ratelimit-remaining-requests": {"0"},
				"x-ratelimit-reset-requests":     {"20s"},
			}}},
			calls: []call{
				{key: "k", status: 200, headers: map[string]string{
					"x-ratelimit-limit-requests": "100", "x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "20s",
				}, check: func(t *testing.T, r reply) {
					if got := len(r.header.Values("x-ratelimit-remaining-requests")); got != 1 {
						t.Errorf("%d values of x-ratelimit-remaining-requests", got)
					}
					if m := decode(t, r.body); m["object"] != "chat.completion" {
						t.Errorf("body %s is not a chat completion", r.body)
					}
				}},
				{key: "k", status: 200, headers: map[string]string{"x-ratelimit-remaining-requests": "98"}},
			},
			wantStats: map[string]KeyStats{"k": {Requests: 2, Admitted: 2, TokensCharged: 60}},
		},
		{
			name:      "forced 429 with retry-after charges nothing",
			cfg:       Config{RPM: 10, TPM: 1000},
			overrides: []Override{{Status: 429, Headers: http.Header{"Retry-After": {"3"}}}},
			calls: []call{
				{key: "k", status: 429, headers: map[string]string{
					"retry-after": "3", "retry-after-ms": "", "x-ratelimit-remaining-requests": "10", "x-ratelimit-remaining-tokens": "1000",
				}, check: func(t *testing.T, r reply) {
					if e := errorOf(t, r.body); e["code"] != "rate_limit_exceeded" {
						t.Errorf("error %v", e)
					}
				}},
				{key: "k", status: 200, headers: map[string]string{"x-ratelimit-remaining-requests": "9"}},
			},
			wantStats: map[string]KeyStats{"k": {Requests: 2, Admitted: 1, TokensCharged: 30, Rejected: map[string]int64{ReasonForced: 1}}},
		},
		{
			name:      "forced 503 with a custom body",
			overrides: []Override{{Status: 503, Body: `{"error":{"message":"overloaded","type":"server_error","param":null,"code":null}}`}},
			calls: []call{
				{key: "k", status: 503, check: func(t *testing.T, r reply) {
					if e := errorOf(t, r.body); e["message"] != "overloaded" {
						t.Errorf("error %v", e)
					}
				}},
			},
			wantStats: map[string]KeyStats{"k": {Requests: 1, Rejected: map[string]int64{ReasonForced: 1}}},
		},
		{
			name:      "forced 500 gets the dialect's error body",
			overrides: []Override{{Status: 500}},
			calls: []call{
				{key: "k", status: 500, check: func(t *testing.T, r reply) {
					if e := errorOf(t, r.body); e["type"] != "server_error" {
						t.Errorf("error %v", e)
					}
				}},
			},
		},
		{
			name:      "keyed override waits for its key; unkeyed ones go in order",
			overrides: []Override{{Key: "b", Status: 500}, {Status: 502}, {Status: 503}},
			calls: []call{
				{key: "a", status: 502},
				{key: "b", status: 500},
				{key: "b", status: 503},
				{key: "b", status: 200},
			},
		},
		{
			name:      "invalid requests do not consume overrides",
			overrides: []Override{{Status: 500}},
			calls: []call{
				{key: "k", body: `{"model":`, status: 400},
				{key: "", status: 401},
				{key: "k", status: 500},
			},
		},
		{
			name:      "forced success is admitted without capacity",
			cfg:       Config{RPM: 1},
			overrides: []Override{{}, {Status: 201}},
			calls: []call{
				{key: "k", status: 200},
				{key: "k", status: 201, headers: map[string]string{"x-ratelimit-remaining-requests": "0"}},
				{key: "k", status: 429},
			},
			wantStats: map[string]KeyStats{"k": {Requests: 3, Admitted: 2, TokensCharged: 60, Rejected: map[string]int64{ReasonRequests: 1}}},
		},
		{
			name:      "output tokens and a streamed answer",
			overrides: []Override{{OutputTokens: 3}},
			calls: []call{
				{key: "k", body: chatBody(`"stream":true,"stream_options":{"include_usage":true}`), status: 200,
					check: func(t *testing.T, r reply) {
						events := parseSSE(t, r.body)
						usage := decode(t, []byte(events[len(events)-2].data))["usage"]
						wantUsage(t, usage, "completion_tokens", 3)
					}},
				{key: "k", check: func(t *testing.T, r reply) {
					wantUsage(t, decode(t, r.body)["usage"], "completion_tokens", DefaultOutputTokens)
				}, status: 200},
			},
		},
		{
			name:        "unmatched override stays queued",
			overrides:   []Override{{Key: "nobody", Status: 500}},
			calls:       []call{{key: "k", status: 200}},
			wantPending: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, tt.cfg)
			for _, o := range tt.overrides {
				h.srv.Enqueue(o)
			}
			for i, c := range tt.calls {
				body := c.body
				if body == "" {
					body = chatBody(`"max_tokens":20`)
				}
				r := h.post(c.key, "/v1/chat/completions", body)
				if r.status != c.status {
					t.Fatalf("call %d: status %d, want %d: %s", i, r.status, c.status, r.body)
				}
				if !strings.HasPrefix(r.header.Get("x-request-id"), "req_") {
					t.Errorf("call %d: no x-request-id", i)
				}
				for name, want := range c.headers {
					if got := r.header.Get(name); got != want {
						t.Errorf("call %d: %s = %q, want %q", i, name, got, want)
					}
				}
				if c.check != nil {
					c.check(t, r)
				}
			}
			if got := h.srv.PendingOverrides(); got != tt.wantPending {
				t.Errorf("pending overrides = %d, want %d", got, tt.wantPending)
			}
			st := h.srv.Stats()
			for key, want := range tt.wantStats {
				got := st.Keys[key]
				if got.Requests != want.Requests || got.Admitted != want.Admitted || got.TokensCharged != want.TokensCharged ||
					got.RejectedTotal() != want.RejectedTotal() {
					t.Errorf("key %s stats %+v, want %+v", key, got, want)
				}
				for reason, n := range want.Rejected {
					if got.Rejected[reason] != n {
						t.Errorf("key %s rejected[%s] = %d, want %d", key, reason, got.Rejected[reason], n)
					}
				}
			}
		})
	}
}

func TestEnqueueCopiesHeaders(t *testing.T) {
	h := newHarness(t, Config{})
	hdr := http.Header{"X-Forced": {"one"}}
	h.srv.Enqueue(Override{Headers: hdr})
	hdr.Set("X-Forced", "two")
	if got := h.post("k", "/v1/chat/completions", chatBody("")).header.Get("X-Forced"); got != "one" {
		t.Errorf("X-Forced = %q, want the value at Enqueue time", got)
	}
}

func TestStatsTotals(t *testing.T) {
	h := newHarness(t, Config{RPM: 1, OutputTokens: 2})
	h.post("a", "/v1/chat/completions", chatBody(`"max_tokens":5`))
	h.post("a", "/v1/chat/completions", chatBody(`"max_tokens":5`))
	h.post("b", "/v1/chat/completions", chatBody(`"max_tokens":5`))
	h.post("", "/v1/chat/completions", chatBody(""))
	st := h.srv.Stats()
	want := KeyStats{Requests: 3, Admitted: 2, TokensCharged: 30, TokensGenerated: 4}
	got := st.Total
	if got.Requests != want.Requests || got.Admitted != want.Admitted || got.TokensCharged != want.TokensCharged ||
		got.TokensGenerated != want.TokensGenerated || got.Rejected[ReasonRequests] != 1 || st.Unauthorized != 1 || len(st.Keys) != 2 {
		t.Errorf("stats %+v", st)
	}
	// The snapshot is a copy.
	st.Keys["a"].Rejected[ReasonRequests] = 99
	if h.srv.Stats().Keys["a"].Rejected[ReasonRequests] != 1 {
		t.Errorf("Stats returned a shared map")
	}
}
