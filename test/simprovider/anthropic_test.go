package simprovider

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestAnthropicParseRequest(t *testing.T) {
	text40 := strings.Repeat("abcd", 10) // 10 tokens
	tests := []struct {
		name   string
		method string
		path   string
		body   string
		want   Call
		status int
		param  string
	}{
		{
			name: "string content",
			body: `{"model":"claude-sonnet-4-5","max_tokens":1024,"messages":[{"role":"user","content":"` + text40 + `"}]}`,
			want: Call{Kind: KindMessage, Model: "claude-sonnet-4-5", PromptTokens: 10, MaxOutputTokens: 1024, Choices: 1, IncludeUsage: true},
		},
		{
			name: "system blocks, content blocks, stream",
			body: `{"model":"m","max_tokens":5,"stream":true,"system":[{"type":"text","text":"abcd"}],"messages":[` +
				`{"role":"user","content":[{"type":"text","text":"efgh"},{"type":"image","source":{"type":"base64","data":"AAAA"}}]},` +
				`{"role":"assistant","content":"ijkl"}]}`,
			want: Call{Kind: KindMessage, Model: "m", PromptTokens: 3, MaxOutputTokens: 5, Choices: 1, Stream: true, IncludeUsage: true},
		},
		{
			name: "system string, under a gateway prefix",
			path: "/anthropic/v1/messages",
			body: `{"model":"m","max_tokens":5,"system":"abcd","messages":[{"role":"user","content":"x"}]}`,
			want: Call{Kind: KindMessage, Model: "m", PromptTokens: 2, MaxOutputTokens: 5, Choices: 1, IncludeUsage: true},
		},
		{name: "chat path", path: "/v1/chat/completions", body: `{}`, status: 404},
		{name: "count_tokens", path: "/v1/messages/count_tokens", body: `{}`, status: 404},
		{name: "wrong method", method: http.MethodGet, status: 405},
		{name: "malformed", body: `{"model":`, status: 400},
		{name: "wrong type", body: `{"model":"m","max_tokens":"many","messages":[]}`, status: 400, param: "max_tokens"},
		{name: "no model", body: `{"max_tokens":5,"messages":[{"role":"user","content":"x"}]}`, status: 400, param: "model"},
		{name: "no max_tokens", body: `{"model":"m","messages":[{"role":"user","content":"x"}]}`, status: 400, param: "max_tokens"},
		{name: "zero max_tokens", body: `{"model":"m","max_tokens":0,"messages":[{"role":"user","content":"x"}]}`, status: 400, param: "max_tokens"},
		{name: "no messages", body: `{"model":"m","max_tokens":5,"messages":[]}`, status: 400, param: "messages"},
		{name: "bad content", body: `{"model":"m","max_tokens":5,"messages":[{"content":5}]}`, status: 400, param: "messages.0.content"},
		{name: "bad system", body: `{"model":"m","max_tokens":5,"system":5,"messages":[{"content":"x"}]}`, status: 400, param: "system"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			method, path := tt.method, tt.path
			if method == "" {
				method = http.MethodPost
			}
			if path == "" {
				path = "/v1/messages"
			}
			call, err := (Anthropic{}).ParseRequest(httptest.NewRequest(method, path, nil), []byte(tt.body))
			if tt.status != 0 {
				var p *Problem
				if !errors.As(err, &p) || p.Status != tt.status || p.Param != tt.param {
					t.Fatalf("err = %v, want a problem with status %d param %q", err, tt.status, tt.param)
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

// messagesBody returns a Messages request with a 10-token prompt.
func messagesBody(extra string) string {
	b := `{"model":"claude-sonnet-4-5","messages":[{"role":"user","content":"` + strings.Repeat("abcd", 10) + `"}]`
	if extra != "" {
		b += "," + extra
	}
	return b + "}"
}

func TestAnthropicJSONAnswer(t *testing.T) {
	tests := []struct {
		name      string
		maxTokens string
		stop      string
		output    int
	}{
		{"end_turn", `"max_tokens":100`, "end_turn", 6},
		{"max_tokens", `"max_tokens":4`, "max_tokens", 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, Config{Dialect: Anthropic{}, OutputTokens: 6})
			r := h.post("sk-ant", "/v1/messages", messagesBody(tt.maxTokens))
			if r.status != http.StatusOK || r.header.Get("Content-Type") != "application/json" {
				t.Fatalf("status %d, content type %q: %s", r.status, r.header.Get("Content-Type"), r.body)
			}
			m := decode(t, r.body)
			if m["type"] != "message" || m["role"] != "assistant" || !strings.HasPrefix(m["id"].(string), "msg_") ||
				m["model"] != "claude-sonnet-4-5" || m["stop_reason"] != tt.stop || m["stop_sequence"] != nil {
				t.Errorf("message fields: %v", m)
			}
			content := m["content"].([]any)
			block := content[0].(map[string]any)
			if len(content) != 1 || block["type"] != "text" || len(strings.Fields(block["text"].(string))) != tt.output {
				t.Errorf("content %v, want one text block of %d words", content, tt.output)
			}
			wantUsage(t, m["usage"], "input_tokens", 10, "cache_creation_input_tokens", 0, "cache_read_input_tokens", 0,
				"output_tokens", tt.output)
			if got := h.srv.Stats().Keys["sk-ant"].TokensGenerated; got != int64(tt.output) {
				t.Errorf("TokensGenerated = %d, want %d", got, tt.output)
			}
		})
	}
}

func TestAnthropicStream(t *testing.T) {
	h := newHarness(t, Config{Dialect: Anthropic{}, OutputTokens: 20, TokensPerChunk: 1})
	r := h.post("sk-ant", "/v1/messages", messagesBody(`"max_tokens":100,"stream":true`))
	if r.status != http.StatusOK || !strings.HasPrefix(r.header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("status %d, content type %q: %s", r.status, r.header.Get("Content-Type"), r.body)
	}
	events := parseSSE(t, r.body)
	var names []string
	var text strings.Builder
	for _, ev := range events {
		m := decode(t, []byte(ev.data))
		if m["type"] != ev.name {
			t.Errorf("event %q carries type %v", ev.name, m["type"])
		}
		names = append(names, ev.name)
		switch ev.name {
		case "message_start":
			msg := m["message"].(map[string]any)
			if msg["type"] != "message" || len(msg["content"].([]any)) != 0 || msg["stop_reason"] != nil {
				t.Errorf("message_start message %v", msg)
			}
			wantUsage(t, msg["usage"], "input_tokens", 10, "cache_creation_input_tokens", 0, "cache_read_input_tokens", 0, "output_tokens", 1)
		case "content_block_start":
			if m["index"] != 0.0 || m["content_block"].(map[string]any)["type"] != "text" {
				t.Errorf("content_block_start %v", m)
			}
		case "content_block_delta":
			delta := m["delta"].(map[string]any)
			if m["index"] != 0.0 || delta["type"] != "text_delta" {
				t.Errorf("content_block_delta %v", m)
			}
			text.WriteString(delta["text"].(string))
		case "message_delta":
			if m["delta"].(map[string]any)["stop_reason"] != "end_turn" {
				t.Errorf("message_delta %v", m)
			}
			wantUsage(t, m["usage"], "output_tokens", 20)
		}
	}
	// One ping after the block starts, and one every 8 deltas after that.
	want := []string{"message_start", "content_block_start", "ping"}
	for k := range 20 {
		if k > 0 && k%anthropicPingEvery == 0 {
			want = append(want, "ping")
		}
		want = append(want, "content_block_delta")
	}
	want = append(want, "content_block_stop", "message_delta", "message_stop")
	if strings.Join(names, " ") != strings.Join(want, " ") {
		t.Errorf("events\n%v\nwant\n%v", names, want)
	}
	if n := len(strings.Fields(text.String())); n != 20 {
		t.Errorf("deltas make %d words, want 20: %q", n, text.String())
	}
	if st := h.srv.Stats().Keys["sk-ant"]; st.TokensGenerated != 20 || st.StreamsCompleted != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestOutputTokensSettlement(t *testing.T) {
	level := func(h *harness, key string) float64 {
		h.srv.mu.Lock()
		defer h.srv.mu.Unlock()
		return h.srv.limits[key].buckets[QuotaOutputTokens].level
	}
	t.Run("anthropic gives back the unused budget", func(t *testing.T) {
		h := newHarness(t, Config{Dialect: Anthropic{}, OutputTPM: 1000, OutputTokens: 20})
		if r := h.post("k", "/v1/messages", messagesBody(`"max_tokens":300`)); r.status != http.StatusOK {
			t.Fatalf("status %d: %s", r.status, r.body)
		}
		if got := level(h, "k"); got != 980 {
			t.Errorf("after a JSON answer: output level %v, want 980", got)
		}
		h.waitFinished(1)
		if r := h.post("k", "/v1/messages", messagesBody(`"max_tokens":300,"stream":true`)); r.status != http.StatusOK {
			t.Fatalf("status %d: %s", r.status, r.body)
		}
		h.waitFinished(1)
		if got := level(h, "k"); got != 960 {
			t.Errorf("after a stream: output level %v, want 960", got)
		}
		// A budget larger than what is left is refused, although the answer
		// would use little of it: the estimate is what is charged.
		r := h.post("k", "/v1/messages", messagesBody(`"max_tokens":961`))
		if r.status != http.StatusTooManyRequests || h.srv.Stats().Keys["k"].Rejected[QuotaOutputTokens.String()] != 1 {
			t.Errorf("status %d, stats %+v; want a 429 for output tokens", r.status, h.srv.Stats().Keys["k"])
		}
	})
	t.Run("an aborted stream gives back what it did not send", func(t *testing.T) {
		h := newHarness(t, Config{Dialect: Anthropic{}, OutputTPM: 1000, OutputTokens: 20})
		gate := h.srv.HoldStreams()
		defer gate.Release()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		resp := h.open(ctx, http.MethodPost, "k", "/v1/messages", messagesBody(`"max_tokens":300,"stream":true`))
		defer resp.Body.Close()
		if err := gate.WaitHeld(ctx, 1); err != nil {
			t.Fatal(err)
		}
		cancel()
		h.waitFinished(1)
		if got := level(h, "k"); got != 999 {
			t.Errorf("after an abort past the first token: output level %v, want 999", got)
		}
	})
	t.Run("fireworks charges what is generated", func(t *testing.T) {
		h := newHarness(t, Config{Dialect: Fireworks{}, OutputTPM: 600, OutputTokens: 20}) // 10 per second
		r := h.post("k", "/inference/v1/chat/completions", chatBody(`"max_tokens":5000`))
		if r.status != http.StatusOK {
			t.Fatalf("a budget above the limit is admitted while the quota is not exhausted: status %d: %s", r.status, r.body)
		}
		if got := level(h, "k"); got != 0 {
			t.Errorf("output level %v, want 0 after generating 20 of 10", got)
		}
		r = h.post("k", "/inference/v1/chat/completions", chatBody(""))
		if r.status != http.StatusTooManyRequests || r.header.Get("x-ratelimit-over-limit") != "yes" || r.header.Get("retry-after") != "1" {
			t.Errorf("exhausted: status %d headers %v", r.status, r.header)
		}
		h.clock.Advance(100 * time.Millisecond)
		if r := h.post("k", "/inference/v1/chat/completions", chatBody("")); r.status != http.StatusOK {
			t.Errorf("a token later: status %d: %s", r.status, r.body)
		}
	})
}

func TestServerSetQuota(t *testing.T) {
	h := newHarness(t, Config{Dialect: Groq{}, RPD: 10})
	for range 4 {
		h.post("k", "/openai/v1/chat/completions", chatBody(""))
	}
	// 6 left, capped at the new capacity of 2.
	h.srv.SetQuota(QuotaRequestsPerDay, 2)
	r := h.post("k", "/openai/v1/chat/completions", chatBody(""))
	if r.header.Get("x-ratelimit-limit-requests") != "2" || r.header.Get("x-ratelimit-remaining-requests") != "1" {
		t.Errorf("after lowering the daily quota: headers %v", r.header)
	}
	h.post("k", "/openai/v1/chat/completions", chatBody(""))
	r = h.post("k", "/openai/v1/chat/completions", chatBody(""))
	if r.status != http.StatusTooManyRequests || h.srv.Stats().Keys["k"].Rejected["requests_per_day"] != 1 {
		t.Errorf("status %d stats %+v, want a 429 for requests per day", r.status, h.srv.Stats().Keys["k"])
	}
	e := errorOf(t, r.body)
	if msg, _ := e["message"].(string); e["type"] != "requests_per_day" || !strings.Contains(msg, "on requests per day (RPD): Limit 2, Used 2") {
		t.Errorf("error %v", e)
	}
	h.srv.SetQuota(NumQuotas, 1) // ignored
}

func TestGroqStreamCarriesUsage(t *testing.T) {
	h := newHarness(t, Config{Dialect: Groq{}, OutputTokens: 3})
	r := h.post("k", "/openai/v1/chat/completions", chatBody(`"stream":true`))
	events := parseSSE(t, r.body)
	first := decode(t, []byte(events[0].data))
	if x, _ := first["x_groq"].(map[string]any); x == nil || x["id"] == "" || x["usage"] != nil {
		t.Errorf("first chunk x_groq %v, want an id only", first["x_groq"])
	}
	last := decode(t, []byte(events[len(events)-2].data)) // before [DONE]
	x, _ := last["x_groq"].(map[string]any)
	if x == nil || last["choices"].([]any)[0].(map[string]any)["finish_reason"] != "stop" {
		t.Fatalf("last chunk %v, want the finish chunk with x_groq", last)
	}
	wantUsage(t, x["usage"], "prompt_tokens", 10, "completion_tokens", 3, "total_tokens", 13)
	if _, ok := last["usage"]; ok {
		t.Errorf("a top-level usage without include_usage: %v", last)
	}
}

func TestAnthropicOverrides(t *testing.T) {
	h := newHarness(t, Config{Dialect: Anthropic{}, RPM: 10})
	h.srv.Enqueue(Override{Status: 529, Headers: http.Header{"Retry-After": {"3"}}})
	h.srv.Enqueue(Override{Status: http.StatusTooManyRequests})
	r := h.post("k", "/v1/messages", messagesBody(`"max_tokens":10`))
	e := decode(t, r.body)
	inner, _ := e["error"].(map[string]any)
	if r.status != 529 || e["type"] != "error" || inner["type"] != "overloaded_error" || r.header.Get("retry-after") != "3" ||
		r.header.Get("anthropic-ratelimit-requests-remaining") != "10" {
		t.Errorf("forced 529: status %d headers %v body %s", r.status, r.header, r.body)
	}
	r = h.post("k", "/v1/messages", messagesBody(`"max_tokens":10`))
	inner, _ = decode(t, r.body)["error"].(map[string]any)
	if r.status != http.StatusTooManyRequests || inner["type"] != "rate_limit_error" || r.header.Get("retry-after") != "" {
		t.Errorf("forced 429: status %d headers %v body %s", r.status, r.header, r.body)
	}
	if st := h.srv.Stats().Keys["k"]; st.Rejected[ReasonForced] != 2 || st.Admitted != 0 {
		t.Errorf("stats %+v", st)
	}
}
