package simprovider

import (
	"encoding/base64"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestServerLimits(t *testing.T) {
	type step struct {
		advance time.Duration
		key     string // default "k1"
		body    string // default chatBody(`"max_tokens":20`): 10 + 20 = 30 tokens
		status  int
		headers map[string]string // exact values; "" means absent
		errType string            // error.type of a 429
	}
	tests := []struct {
		name  string
		cfg   Config
		steps []step
	}{
		{
			name: "requests per minute",
			cfg:  Config{RPM: 3, TPM: 1000},
			steps: []step{
				{status: 200, headers: map[string]string{
					"x-ratelimit-limit-requests": "3", "x-ratelimit-remaining-requests": "2", "x-ratelimit-reset-requests": "20s",
					"x-ratelimit-limit-tokens": "1000", "x-ratelimit-remaining-tokens": "970", "x-ratelimit-reset-tokens": "1.8s",
					"retry-after": "", "retry-after-ms": "",
				}},
				{status: 200, headers: map[string]string{"x-ratelimit-remaining-requests": "1", "x-ratelimit-reset-requests": "40s"}},
				{status: 200, headers: map[string]string{"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "1m0s",
					"x-ratelimit-remaining-tokens": "910", "x-ratelimit-reset-tokens": "5.4s"}},
				{status: 429, errType: "requests", headers: map[string]string{
					"retry-after": "20", "retry-after-ms": "20000",
					"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "1m0s", "x-ratelimit-remaining-tokens": "910",
				}},
				{advance: 19 * time.Second, status: 429, errType: "requests", headers: map[string]string{"retry-after": "1", "retry-after-ms": "1000"}},
				{key: "k2", status: 200, headers: map[string]string{"x-ratelimit-remaining-requests": "2"}},
				{advance: time.Second, status: 200, headers: map[string]string{
					"x-ratelimit-remaining-requests": "0", "x-ratelimit-remaining-tokens": "970", "x-ratelimit-reset-tokens": "1.8s",
				}},
			},
		},
		{
			name: "tokens per minute",
			cfg:  Config{TPM: 100},
			steps: []step{
				{status: 200, headers: map[string]string{
					"x-ratelimit-limit-tokens": "100", "x-ratelimit-remaining-tokens": "70", "x-ratelimit-reset-tokens": "18s",
					"x-ratelimit-limit-requests": "", "x-ratelimit-remaining-requests": "", "x-ratelimit-reset-requests": "",
				}},
				{status: 200, headers: map[string]string{"x-ratelimit-remaining-tokens": "40"}},
				{status: 200, headers: map[string]string{"x-ratelimit-remaining-tokens": "10", "x-ratelimit-reset-tokens": "54s"}},
				{status: 429, errType: "tokens", headers: map[string]string{"retry-after": "12", "retry-after-ms": "12000", "x-ratelimit-remaining-tokens": "10"}},
				{advance: 12 * time.Second, status: 200, headers: map[string]string{"x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "1m0s"}},
			},
		},
		{
			name: "output budget: default, n and embeddings",
			cfg:  Config{TPM: 1000, DefaultMaxTokens: 50},
			steps: []step{
				{body: chatBody(""), status: 200, headers: map[string]string{"x-ratelimit-remaining-tokens": "940"}},
				{body: chatBody(`"max_tokens":20,"n":3`), status: 200, headers: map[string]string{"x-ratelimit-remaining-tokens": "870"}},
				{body: `{"model":"e","input":["abcdabcd","abcd"]}`, status: 200, headers: map[string]string{"x-ratelimit-remaining-tokens": "867"}},
				{body: `{"model":"r","input":"abcd","max_output_tokens":100}`, status: 200, headers: map[string]string{"x-ratelimit-remaining-tokens": "766"}},
			},
		},
		{
			name: "request larger than the limit",
			cfg:  Config{TPM: 100},
			steps: []step{
				{body: chatBody(`"max_tokens":200`), status: 429, errType: "tokens", headers: map[string]string{
					"retry-after": "1", "retry-after-ms": "1000", "x-ratelimit-remaining-tokens": "100",
				}},
				{status: 200, headers: map[string]string{"x-ratelimit-remaining-tokens": "70"}},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, tt.cfg)
			for i, s := range tt.steps {
				h.clock.Advance(s.advance)
				key, body, path := s.key, s.body, "/v1/chat/completions"
				if key == "" {
					key = "k1"
				}
				if body == "" {
					body = chatBody(`"max_tokens":20`)
				}
				if strings.Contains(body, `"input"`) {
					path = "/v1/embeddings"
					if strings.Contains(body, "max_output_tokens") {
						path = "/v1/responses"
					}
				}
				r := h.post(key, path, body)
				if r.status != s.status {
					t.Fatalf("step %d: status %d, want %d: %s", i, r.status, s.status, r.body)
				}
				for name, want := range s.headers {
					if got := r.header.Get(name); got != want {
						t.Errorf("step %d: %s = %q, want %q", i, name, got, want)
					}
				}
				if s.errType != "" {
					e := errorOf(t, r.body)
					if e["type"] != s.errType || e["code"] != "rate_limit_exceeded" {
						t.Errorf("step %d: error %v, want type %s code rate_limit_exceeded", i, e, s.errType)
					}
				}
			}
		})
	}
}

func TestServerHeadersParseBack(t *testing.T) {
	h := newHarness(t, Config{RPM: 500, TPM: 90000, Window: time.Minute})
	ids := map[string]bool{}
	for i := range 3 {
		h.clock.Advance(37 * time.Millisecond)
		r := h.post("k", "/v1/chat/completions", chatBody(`"max_tokens":100`))
		if r.status != http.StatusOK {
			t.Fatalf("status %d: %s", r.status, r.body)
		}
		for _, dim := range []string{"requests", "tokens"} {
			limit, err1 := strconv.ParseInt(r.header.Get("x-ratelimit-limit-"+dim), 10, 64)
			rem, err2 := strconv.ParseInt(r.header.Get("x-ratelimit-remaining-"+dim), 10, 64)
			reset, err3 := time.ParseDuration(r.header.Get("x-ratelimit-reset-" + dim))
			if err1 != nil || err2 != nil || err3 != nil {
				t.Fatalf("%s headers do not parse: %v %v %v (%v)", dim, err1, err2, err3, r.header)
			}
			if rem < 0 || rem >= limit || reset <= 0 || reset > time.Minute {
				t.Errorf("%s: limit %d remaining %d reset %v out of range", dim, limit, rem, reset)
			}
		}
		if want := int64(500 - i - 1); r.header.Get("x-ratelimit-remaining-requests") != strconv.FormatInt(want, 10) {
			t.Errorf("request %d: remaining requests %s, want %d", i, r.header.Get("x-ratelimit-remaining-requests"), want)
		}
		if _, err := strconv.Atoi(r.header.Get("openai-processing-ms")); err != nil {
			t.Errorf("openai-processing-ms %q: %v", r.header.Get("openai-processing-ms"), err)
		}
		id := r.header.Get("x-request-id")
		if !strings.HasPrefix(id, "req_") || ids[id] {
			t.Errorf("x-request-id %q is not a fresh req_ id", id)
		}
		ids[id] = true
	}
}

func TestServerConcurrentAdmission(t *testing.T) {
	const rpm, clients = 5, 20
	h := newHarness(t, Config{RPM: rpm})
	var wg sync.WaitGroup
	statuses := make(chan int, clients)
	for range clients {
		wg.Go(func() {
			statuses <- h.post("k", "/v1/chat/completions", chatBody("")).status
		})
	}
	wg.Wait()
	close(statuses)
	counts := map[int]int{}
	for s := range statuses {
		counts[s]++
	}
	if counts[200] != rpm || counts[429] != clients-rpm {
		t.Fatalf("statuses %v, want %d x 200 and %d x 429", counts, rpm, clients-rpm)
	}
	st := h.srv.Stats().Keys["k"]
	if st.Requests != clients || st.Admitted != rpm || st.Rejected[ReasonRequests] != clients-rpm {
		t.Fatalf("stats %+v", st)
	}
}

func TestServerErrors(t *testing.T) {
	tests := []struct {
		name     string
		method   string
		key      string
		path     string
		body     string
		cfg      Config
		status   int
		wantType string
		wantCode any
	}{
		{name: "no key", key: "", path: "/v1/chat/completions", body: chatBody(""), status: 401,
			wantType: "invalid_request_error", wantCode: "invalid_api_key"},
		{name: "unknown path", key: "k", path: "/v1/nope", body: chatBody(""), status: 404,
			wantType: "invalid_request_error", wantCode: "unknown_url"},
		{name: "malformed json", key: "k", path: "/v1/chat/completions", body: `{"model":"m",`, status: 400,
			wantType: "invalid_request_error"},
		{name: "wrong method", method: http.MethodGet, key: "k", path: "/v1/responses", status: 405,
			wantType: "invalid_request_error"},
		{name: "body too large", key: "k", path: "/v1/chat/completions", body: chatBody(""), cfg: Config{MaxBodyBytes: 16},
			status: 413, wantType: "invalid_request_error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, tt.cfg)
			method := tt.method
			if method == "" {
				method = http.MethodPost
			}
			r := h.do(method, tt.key, tt.path, tt.body)
			if r.status != tt.status {
				t.Fatalf("status %d, want %d: %s", r.status, tt.status, r.body)
			}
			if ct := r.header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("content-type %q", ct)
			}
			if r.header.Get("x-request-id") == "" {
				t.Errorf("no x-request-id")
			}
			e := errorOf(t, r.body)
			if e["type"] != tt.wantType || e["code"] != tt.wantCode {
				t.Errorf("error %v, want type %v code %v", e, tt.wantType, tt.wantCode)
			}
			st := h.srv.Stats()
			if tt.key == "" {
				if st.Unauthorized != 1 || len(st.Keys) != 0 {
					t.Errorf("stats %+v, want one unauthorized request", st)
				}
				return
			}
			if k := st.Keys[tt.key]; k.Requests != 1 || k.Invalid != 1 || k.Admitted != 0 {
				t.Errorf("key stats %+v, want one invalid request", k)
			}
		})
	}
}

func TestServerJSONAnswers(t *testing.T) {
	tests := []struct {
		name  string
		cfg   Config
		path  string
		body  string
		check func(t *testing.T, m map[string]any)
	}{
		{
			name: "chat completion",
			cfg:  Config{OutputTokens: 5},
			path: "/v1/chat/completions",
			body: chatBody(`"max_tokens":20,"n":2`),
			check: func(t *testing.T, m map[string]any) {
				if m["object"] != "chat.completion" || !strings.HasPrefix(m["id"].(string), "chatcmpl-") || m["model"] != "gpt-4o" {
					t.Errorf("header fields wrong: %v", m)
				}
				choices := m["choices"].([]any)
				if len(choices) != 2 {
					t.Fatalf("%d choices, want 2", len(choices))
				}
				for i, c := range choices {
					c := c.(map[string]any)
					msg := c["message"].(map[string]any)
					if c["index"] != float64(i) || msg["role"] != "assistant" || c["finish_reason"] != "stop" {
						t.Errorf("choice %d: %v", i, c)
					}
					if n := len(strings.Fields(msg["content"].(string))); n != 5 {
						t.Errorf("choice %d has %d words, want 5", i, n)
					}
				}
				wantUsage(t, m["usage"], "prompt_tokens", 10, "completion_tokens", 10, "total_tokens", 20)
			},
		},
		{
			name: "chat completion cut by max_tokens, at an Azure deployment",
			cfg:  Config{OutputTokens: 50, Dialect: Azure{}},
			path: "/openai/deployments/dep/chat/completions?api-version=2024-10-21",
			body: `{"messages":[{"role":"user","content":"abcd"}],"max_tokens":3}`,
			check: func(t *testing.T, m map[string]any) {
				c := m["choices"].([]any)[0].(map[string]any)
				if c["finish_reason"] != "length" || m["model"] != "dep" {
					t.Errorf("finish_reason %v model %v, want length dep", c["finish_reason"], m["model"])
				}
				wantUsage(t, m["usage"], "prompt_tokens", 1, "completion_tokens", 3, "total_tokens", 4)
			},
		},
		{
			name: "legacy completion",
			cfg:  Config{OutputTokens: 4},
			path: "/v1/completions",
			body: `{"model":"davinci","prompt":"abcdabcd"}`,
			check: func(t *testing.T, m map[string]any) {
				c := m["choices"].([]any)[0].(map[string]any)
				if m["object"] != "text_completion" || len(strings.Fields(c["text"].(string))) != 4 {
					t.Errorf("completion %v", m)
				}
				wantUsage(t, m["usage"], "prompt_tokens", 2, "completion_tokens", 4, "total_tokens", 6)
			},
		},
		{
			name: "embeddings as floats",
			cfg:  Config{EmbeddingDimensions: 6},
			path: "/v1/embeddings",
			body: `{"model":"text-embedding-3-small","input":["abcd","abcdabcd"]}`,
			check: func(t *testing.T, m map[string]any) {
				data := m["data"].([]any)
				if m["object"] != "list" || len(data) != 2 {
					t.Fatalf("embeddings %v", m)
				}
				for i, d := range data {
					d := d.(map[string]any)
					if d["object"] != "embedding" || d["index"] != float64(i) || len(d["embedding"].([]any)) != 6 {
						t.Errorf("embedding %d: %v", i, d)
					}
				}
				wantUsage(t, m["usage"], "prompt_tokens", 3, "total_tokens", 3)
			},
		},
		{
			name: "embeddings as base64 with dimensions",
			path: "/v1/embeddings",
			body: `{"model":"e","input":"abcd","dimensions":3,"encoding_format":"base64"}`,
			check: func(t *testing.T, m map[string]any) {
				d := m["data"].([]any)[0].(map[string]any)
				raw, err := base64.StdEncoding.DecodeString(d["embedding"].(string))
				if err != nil || len(raw) != 3*4 {
					t.Errorf("base64 embedding %v: %d bytes, %v", d["embedding"], len(raw), err)
				}
			},
		},
		{
			name: "responses completed",
			cfg:  Config{OutputTokens: 7},
			path: "/v1/responses",
			body: `{"model":"gpt-4.1","input":"abcdabcdabcd","max_output_tokens":16}`,
			check: func(t *testing.T, m map[string]any) {
				if m["object"] != "response" || m["status"] != "completed" || !strings.HasPrefix(m["id"].(string), "resp_") {
					t.Errorf("response %v", m)
				}
				out := m["output"].([]any)[0].(map[string]any)
				text := out["content"].([]any)[0].(map[string]any)["text"].(string)
				if out["type"] != "message" || len(strings.Fields(text)) != 7 {
					t.Errorf("output %v", out)
				}
				wantUsage(t, m["usage"], "input_tokens", 3, "output_tokens", 7, "total_tokens", 10)
			},
		},
		{
			name: "responses incomplete",
			cfg:  Config{OutputTokens: 40},
			path: "/v1/responses",
			body: `{"model":"gpt-4.1","input":[{"role":"user","content":"abcd"}],"max_output_tokens":16}`,
			check: func(t *testing.T, m map[string]any) {
				details, _ := m["incomplete_details"].(map[string]any)
				if m["status"] != "incomplete" || details["reason"] != "max_output_tokens" {
					t.Errorf("status %v details %v, want incomplete max_output_tokens", m["status"], m["incomplete_details"])
				}
				wantUsage(t, m["usage"], "input_tokens", 1, "output_tokens", 16, "total_tokens", 17)
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, tt.cfg)
			r := h.post("k", tt.path, tt.body)
			if r.status != http.StatusOK {
				t.Fatalf("status %d: %s", r.status, r.body)
			}
			if ct := r.header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("content-type %q", ct)
			}
			m := decode(t, r.body)
			tt.check(t, m)
			usage, _ := m["usage"].(map[string]any)
			out, _ := usage["completion_tokens"].(float64)
			if o, ok := usage["output_tokens"].(float64); ok {
				out = o
			}
			if got := h.srv.Stats().Keys["k"].TokensGenerated; got != int64(out) {
				t.Errorf("stats TokensGenerated %d, want %v", got, out)
			}
		})
	}
}

// wantUsage checks fields of a usage object given as name, value pairs.
func wantUsage(t *testing.T, usage any, pairs ...any) {
	t.Helper()
	u, ok := usage.(map[string]any)
	if !ok {
		t.Fatalf("usage %v is not an object", usage)
	}
	for i := 0; i < len(pairs); i += 2 {
		name, want := pairs[i].(string), pairs[i+1].(int)
		if got, _ := u[name].(float64); got != float64(want) {
			t.Errorf("usage.%s = %v, want %d (usage %v)", name, u[name], want, u)
		}
	}
}

func TestServerSetLimits(t *testing.T) {
	h := newHarness(t, Config{RPM: 10})
	for range 5 {
		h.post("k", "/v1/chat/completions", chatBody(""))
	}
	h.srv.SetLimits(3, 1000)
	r := h.post("k", "/v1/chat/completions", chatBody(`"max_tokens":10`))
	want := map[string]string{
		"x-ratelimit-limit-requests": "3", "x-ratelimit-remaining-requests": "2",
		"x-ratelimit-limit-tokens": "1000", "x-ratelimit-remaining-tokens": "980",
	}
	for name, v := range want {
		if got := r.header.Get(name); got != v {
			t.Errorf("%s = %q, want %q", name, got, v)
		}
	}
	h.srv.SetLimits(0, 0)
	r = h.post("k", "/v1/chat/completions", chatBody(""))
	if r.status != http.StatusOK || r.header.Get("x-ratelimit-limit-requests") != "" {
		t.Errorf("after removing limits: status %d headers %v", r.status, r.header)
	}
}

func TestServerHugeBudget(t *testing.T) {
	h := newHarness(t, Config{TPM: 1000, OutputTokens: 2})
	r := h.post("k", "/v1/chat/completions", chatBody(`"max_tokens":9223372036854775807,"n":128`))
	if r.status != http.StatusTooManyRequests {
		t.Fatalf("status %d, want 429 for a request that can never fit: %s", r.status, r.body)
	}
	h2 := newHarness(t, Config{OutputTokens: 2})
	r = h2.post("k", "/v1/chat/completions", chatBody(`"max_tokens":9223372036854775807,"n":2`))
	if r.status != http.StatusOK {
		t.Fatalf("unlimited: status %d: %s", r.status, r.body)
	}
	wantUsage(t, decode(t, r.body)["usage"], "completion_tokens", 4)
	if got := h2.srv.Stats().Keys["k"].TokensCharged; got <= 0 {
		t.Errorf("TokensCharged = %d, want a positive saturated charge", got)
	}
}

// counter returns a NewID that counts from 1.
func counter() func() string {
	var mu sync.Mutex
	n := 0
	return func() string {
		mu.Lock()
		defer mu.Unlock()
		n++
		return "id" + strconv.Itoa(n)
	}
}

// TestServerReproducible: with a fixed clock and counting ids, two servers
// answer the same requests with the same bytes.
func TestServerReproducible(t *testing.T) {
	stream := `{"model":"m","max_tokens":20,"stream":true,"messages":[{"role":"user","content":"hi"}]}`
	var answers [2][]string
	for i := range answers {
		h := newHarness(t, Config{NewID: counter()})
		for _, path := range []string{"/v1/chat/completions", "/v1/completions", "/v1/responses"} {
			body := stream
			if path == "/v1/responses" {
				body = `{"model":"m","stream":true,"input":"hi"}`
			}
			r := h.do(http.MethodPost, "sk-1", path, body)
			answers[i] = append(answers[i], r.header.Get("x-request-id")+"\n"+string(r.body))
		}
	}
	for k := range answers[0] {
		if answers[0][k] != answers[1][k] {
			t.Fatalf("answer %d differs:\n%s\n%s", k, answers[0][k], answers[1][k])
		}
		if !strings.HasPrefix(answers[0][k], "req_id") {
			t.Fatalf("answer %d without a counted request id: %s", k, answers[0][k])
		}
	}
}
