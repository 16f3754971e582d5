package limiter

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/adaptive-rate-limiter/arl/backend"
	"github.com/adaptive-rate-limiter/arl/backend/memory"
	"github.com/adaptive-rate-limiter/arl/limiter/bucket"
	"github.com/adaptive-rate-limiter/arl/limiter/metrics"
)

type hdr map[string]string

func (h hdr) Get(name string) string { return h[name] }

// clock is a manual clock for tests.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

type rig struct {
	l   *Limiter
	be  backend.Backend
	m   *metrics.Metrics
	clk *clock
}

func newRig(t *testing.T, cfg Config) *rig {
	t.Helper()
	clk := &clock{now: time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)}
	cfg.Clock = clk.Now
	be := memory.New(memory.Options{})
	m := metrics.New(nil)
	l, err := New(cfg, be, m, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return &rig{l: l, be: be, m: m, clk: clk}
}

func reqHeaders(key string, extra ...string) hdr {
	h := hdr{":method": "POST", ":path": "/v1/chat/completions", ":authority": "api.openai.com", "authorization": "Bearer " + key, "content-type": "application/json"}
	for i := 0; i+1 < len(extra); i += 2 {
		h[extra[i]] = extra[i+1]
	}
	return h
}

func chatBody(maxTokens int, stream bool) []byte {
	b, _ := json.Marshal(map[string]any{
		"model": "gpt-4o-mini", "max_tokens": maxTokens, "stream": stream,
		"messages": []map[string]string{{"role": "user", "content": "hi"}},
	})
	return b
}

// send runs the request phases and returns the exchange and the rejection.
func (r *rig) send(t *testing.T, h hdr, body []byte) (*Exchange, *Rejection) {
	t.Helper()
	x := r.l.Begin()
	ctx := context.Background()
	v := x.RequestHeaders(ctx, h, body == nil)
	if v.Reject != nil || v.Done || body == nil {
		return x, v.Reject
	}
	return x, x.RequestBody(ctx, body).Reject
}

func TestPassThroughNonLLM(t *testing.T) {
	r := newRig(t, Config{})
	for _, h := range []hdr{
		{":method": "GET", ":path": "/v1/models", ":authority": "api.openai.com"},
		{":method": "POST", ":path": "/v1/files", ":authority": "api.openai.com"},
		{":method": "GET", ":path": "/v1/chat/completions", ":authority": "api.openai.com"},
	} {
		v := r.l.Begin().RequestHeaders(context.Background(), h, true)
		if !v.Done || v.Reject != nil {
			t.Fatalf("%v: verdict %+v, want pass-through", h, v)
		}
	}
	if got := testutil.ToFloat64(r.m.Requests.WithLabelValues("openai", "passthrough")); got != 3 {
		t.Fatalf("passthrough count %v", got)
	}
}

func TestLearnedExhaustionRejectsWithRetryAfter(t *testing.T) {
	r := newRig(t, Config{})
	ctx := context.Background()
	x, rej := r.send(t, reqHeaders("sk-a"), chatBody(10, false))
	if rej != nil {
		t.Fatalf("first request rejected: %+v", rej)
	}
	v := x.ResponseHeaders(ctx, 200, hdr{":status": "200", "content-type": "application/json",
		"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "20s"}, false)
	if v.Done {
		t.Fatal("a 2xx JSON answer must be counted")
	}
	x.ResponseBody(ctx, []byte(`{"usage":{"prompt_tokens":5,"completion_tokens":3,"total_tokens":8}}`), true)

	_, rej = r.send(t, reqHeaders("sk-a"), chatBody(10, false))
	if rej == nil {
		t.Fatal("request admitted after remaining-requests 0")
	}
	want := map[string]string{"retry-after": "20", "retry-after-ms": "20000", "x-arl-reason": "requests", "content-type": "application/json"}
	for _, h := range rej.Headers {
		if w, ok := want[h.Name]; ok && w != h.Value {
			t.Errorf("%s = %q, want %q", h.Name, h.Value, w)
		}
		delete(want, h.Name)
	}
	if len(want) > 0 || rej.Status != 429 {
		t.Fatalf("status %d, missing headers %v", rej.Status, want)
	}
	var body struct{ Error struct{ Type, Code string } }
	if err := json.Unmarshal(rej.Body, &body); err != nil || body.Error.Code != "rate_limit_exceeded" {
		t.Fatalf("body %s (%v)", rej.Body, err)
	}
	// Another key, another namespace: other buckets.
	if _, rej := r.send(t, reqHeaders("sk-b"), chatBody(10, false)); rej != nil {
		t.Fatalf("other key rejected: %+v", rej)
	}
	if _, rej := r.send(t, reqHeaders("sk-a", "x-arl-namespace", "team-2"), chatBody(10, false)); rej != nil {
		t.Fatalf("other namespace rejected: %+v", rej)
	}
	r.clk.Advance(20 * time.Second)
	if _, rej := r.send(t, reqHeaders("sk-a"), chatBody(10, false)); rej != nil {
		t.Fatalf("rejected after the reset: %+v", rej)
	}
}

// learnTokens teaches the bucket of key a 1000-token limit through a probe.
func learnTokens(t *testing.T, r *rig, key string) {
	t.Helper()
	ctx := context.Background()
	x, rej := r.send(t, reqHeaders(key), chatBody(1, false))
	if rej != nil {
		t.Fatal(rej)
	}
	x.ResponseHeaders(ctx, 200, hdr{":status": "200", "content-type": "application/json",
		"x-ratelimit-limit-tokens": "1000", "x-ratelimit-remaining-tokens": "1000", "x-ratelimit-limit-requests": "100", "x-ratelimit-remaining-requests": "100"}, false)
	x.ResponseBody(ctx, []byte(`{"usage":{"prompt_tokens":0,"completion_tokens":0}}`), true)
}

func sse(events ...string) []byte {
	var b strings.Builder
	for _, e := range events {
		b.WriteString("data: " + e + "\n\n")
	}
	return []byte(b.String())
}

func TestStreamRefundAdmitsNext(t *testing.T) {
	r := newRig(t, Config{})
	ctx := context.Background()
	learnTokens(t, r, "sk-a")
	first, rej := r.send(t, reqHeaders("sk-a"), chatBody(590, true))
	if rej != nil {
		t.Fatalf("first 600-token request rejected: %+v", rej)
	}
	if v := first.ResponseHeaders(ctx, 200, hdr{":status": "200", "content-type": "text/event-stream"}, false); v.Done {
		t.Fatal("stream not counted")
	}
	first.ResponseBody(ctx, sse(`{"choices":[{"delta":{"content":"Hel"}}]}`), false)
	if _, rej := r.send(t, reqHeaders("sk-a"), chatBody(590, true)); rej == nil || rej.Reason != "tokens" {
		t.Fatalf("second request while the first holds 600: %+v", rej)
	}
	first.ResponseBody(ctx, sse(`{"choices":[{"delta":{"content":"lo"}}]}`, `{"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11}}`, `[DONE]`), true)
	if first.Reserved() {
		t.Fatal("reservation still held after the end of stream")
	}
	if _, rej := r.send(t, reqHeaders("sk-a"), chatBody(590, true)); rej != nil {
		t.Fatalf("second request after the refund: %+v", rej)
	}
	if got := testutil.ToFloat64(r.m.Settlements.WithLabelValues("openai", "exact")); got != 2 { // the probe and the stream
		t.Fatalf("exact settlements %v", got)
	}
}

func TestAbortReleasesUnusedBudget(t *testing.T) {
	for _, answered := range []bool{false, true} {
		r := newRig(t, Config{})
		ctx := context.Background()
		learnTokens(t, r, "sk-a")
		x, rej := r.send(t, reqHeaders("sk-a"), chatBody(590, true))
		if rej != nil {
			t.Fatal(rej)
		}
		if answered {
			x.ResponseHeaders(ctx, 200, hdr{":status": "200", "content-type": "text/event-stream"}, false)
			x.ResponseBody(ctx, sse(`{"choices":[{"delta":{"content":"partial answer"}}]}`)[:30], false)
		}
		x.Abort(ctx)
		x.Abort(ctx) // idempotent
		if x.Reserved() {
			t.Fatal("reservation held after abort")
		}
		if _, rej := r.send(t, reqHeaders("sk-a"), chatBody(590, true)); rej != nil {
			t.Fatalf("answered=%v: request after abort rejected: %+v", answered, rej)
		}
		if got := testutil.ToFloat64(r.m.Settlements.WithLabelValues("openai", "aborted")); got != 1 {
			t.Fatalf("aborted settlements %v", got)
		}
	}
}

func TestUpstreamErrorSettlesAtHeaders(t *testing.T) {
	r := newRig(t, Config{Defaults: bucket.Limits{bucket.Requests: 10, bucket.Tokens: 1000}})
	ctx := context.Background()
	x, _ := r.send(t, reqHeaders("sk-a"), chatBody(590, false))
	v := x.ResponseHeaders(ctx, 503, hdr{":status": "503", "retry-after": "3"}, false)
	if !v.Done || x.Reserved() {
		t.Fatalf("503: verdict %+v reserved %v", v, x.Reserved())
	}
	_, rej := r.send(t, reqHeaders("sk-a"), chatBody(1, false))
	if rej == nil || rej.Reason != "upstream" || rej.RetryAfter != 3*time.Second {
		t.Fatalf("after upstream 503: %+v", rej)
	}
	r.clk.Advance(3 * time.Second)
	s, _, _ := r.be.Get(ctx, x.Key(), r.clk.Now())
	// The 503 cost one request and no tokens: all 600 tokens came back.
	if got := s.Dims[bucket.Tokens].Level; got < 999 {
		t.Fatalf("tokens level %v after an upstream error", got)
	}
}

func TestMalformedBodyChargedFallback(t *testing.T) {
	r := newRig(t, Config{Defaults: bucket.Limits{bucket.Tokens: 100_000}})
	x, rej := r.send(t, reqHeaders("sk-a"), []byte(`{"model": "gpt-4o", "messages": [`))
	if rej != nil || !x.Reserved() {
		t.Fatalf("malformed body: rejection %+v reserved %v", rej, x.Reserved())
	}
	if got := testutil.ToFloat64(r.m.BadInput.WithLabelValues("malformed_request")); got != 1 {
		t.Fatalf("bad input count %v", got)
	}
	// Charged the body size plus the default output budget.
	if got := x.cost[bucket.Tokens]; got < 4096 {
		t.Fatalf("fallback cost %d", got)
	}
}

type failing struct{ backend.Backend }

func (failing) Reserve(context.Context, bucket.Key, backend.ReserveRequest) (backend.ReserveResult, error) {
	return backend.ReserveResult{}, io.ErrUnexpectedEOF
}

func TestFailureModes(t *testing.T) {
	for _, mode := range []FailureMode{FailOpen, FailClosed} {
		r := newRig(t, Config{FailureMode: mode})
		r.l.backend = failing{r.be}
		_, rej := r.send(t, reqHeaders("sk-a"), chatBody(1, false))
		switch {
		case mode == FailOpen && rej != nil:
			t.Fatalf("fail open rejected: %+v", rej)
		case mode == FailClosed && (rej == nil || rej.Status != 503 || rej.Reason != ReasonBackendUnavailable):
			t.Fatalf("fail closed: %+v", rej)
		}
		if got := testutil.ToFloat64(r.m.Requests.WithLabelValues("openai", "fail_"+string(mode))); got != 1 {
			t.Fatalf("%s count %v", mode, got)
		}
	}
}

func TestInvalidNamespaceFallsBackToDefault(t *testing.T) {
	r := newRig(t, Config{})
	x, _ := r.send(t, reqHeaders("sk-a", "x-arl-namespace", strings.Repeat("n", 500)), chatBody(1, false))
	if x.Key().Namespace != DefaultNamespace {
		t.Fatalf("namespace %q", x.Key().Namespace)
	}
	if got := testutil.ToFloat64(r.m.BadInput.WithLabelValues("invalid_namespace")); got != 1 {
		t.Fatalf("count %v", got)
	}
}

func TestConfigRefusesUnimplementedModes(t *testing.T) {
	for _, m := range []Mode{ModeIntelligent, ModeAccount, "bogus"} {
		if _, err := New(Config{Mode: m}, memory.New(memory.Options{}), metrics.New(nil), slog.Default()); err == nil {
			t.Fatalf("mode %q accepted", m)
		}
	}
}

func TestErrorBodyRefinesAnswer(t *testing.T) {
	tests := []struct {
		name       string
		body       string
		wantBlock  bool
		wantReason string
		billing    float64
	}{
		{"tokens limit", `{"error":{"message":"Rate limit reached","type":"tokens","param":null,"code":"rate_limit_exceeded"}}`, true, "tokens", 0},
		{"insufficient quota is billing", `{"error":{"message":"You exceeded your current quota","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}`, false, "", 1},
		{"malformed body keeps the headers' lesson", `{"error":`, true, "upstream", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, Config{Defaults: bucket.Limits{bucket.Requests: 100, bucket.Tokens: 100_000}})
			ctx := context.Background()
			x, _ := r.send(t, reqHeaders("sk-a"), chatBody(10, false))
			if v := x.ResponseHeaders(ctx, 429, hdr{":status": "429", "retry-after": "7", "content-type": "application/json"}, false); v.Done {
				t.Fatal("the 429 body was not asked for")
			}
			if !x.Reserved() {
				t.Fatal("settled before the body was read")
			}
			x.ResponseBody(ctx, []byte(tc.body[:len(tc.body)/2]), false)
			x.ResponseBody(ctx, []byte(tc.body[len(tc.body)/2:]), true)
			if x.Reserved() {
				t.Fatal("not settled at the end of the error body")
			}
			_, rej := r.send(t, reqHeaders("sk-a"), chatBody(10, false))
			if tc.wantBlock != (rej != nil) || (rej != nil && (rej.Reason != tc.wantReason || rej.RetryAfter != 7*time.Second)) {
				t.Fatalf("next request: %+v, want blocked=%v reason %q", rej, tc.wantBlock, tc.wantReason)
			}
			if got := testutil.ToFloat64(r.m.UpstreamBilling.WithLabelValues("openai")); got != tc.billing {
				t.Fatalf("billing errors %v", got)
			}
		})
	}
}

func TestInvalidValuesInErrorBodiesCounted(t *testing.T) {
	r := newRig(t, Config{Defaults: bucket.Limits{bucket.Requests: 100}})
	ctx := context.Background()
	x, _ := r.send(t, reqHeaders("sk-a", "x-arl-provider", "gemini"), chatBody(10, false))
	// One invalid value in the headers, two in the body (Gemini's RetryInfo
	// and QuotaFailure).
	x.ResponseHeaders(ctx, 429, hdr{":status": "429", "retry-after": "soon", "content-type": "application/json"}, false)
	x.ResponseBody(ctx, []byte(`[{"error":{"code":429,"status":"RESOURCE_EXHAUSTED","details":[`+
		`{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"soon"},`+
		`{"@type":"type.googleapis.com/google.rpc.QuotaFailure","violations":[{"quotaId":"GenerateRequestsPerMinutePerProjectPerModel","quotaValue":"lots"}]}]}}]`), true)
	if got := testutil.ToFloat64(r.m.InvalidHeaders.WithLabelValues("gemini")); got != 3 {
		t.Fatalf("invalid values counted %v, want 3 (1 in the headers, 2 in the body)", got)
	}
	if _, rej := r.send(t, reqHeaders("sk-a", "x-arl-provider", "gemini"), chatBody(10, false)); rej == nil || rej.RetryAfter != time.Second {
		t.Fatalf("after a 429 with no readable wait: %+v, want the default pause of 1s", rej)
	}
}

func TestAbortWhileReadingErrorBodyAppliesHeaders(t *testing.T) {
	r := newRig(t, Config{Defaults: bucket.Limits{bucket.Requests: 100}})
	ctx := context.Background()
	x, _ := r.send(t, reqHeaders("sk-a"), chatBody(10, false))
	x.ResponseHeaders(ctx, 429, hdr{":status": "429", "retry-after": "5"}, false)
	x.Abort(ctx)
	if x.Reserved() {
		t.Fatal("reservation held after abort")
	}
	if _, rej := r.send(t, reqHeaders("sk-a"), chatBody(10, false)); rej == nil || rej.RetryAfter != 5*time.Second {
		t.Fatalf("the headers' block was lost: %+v", rej)
	}
}

func TestEncodedResponseSettlesAtEstimate(t *testing.T) {
	r := newRig(t, Config{Defaults: bucket.Limits{bucket.Requests: 100, bucket.Tokens: 10_000}})
	ctx := context.Background()
	x, _ := r.send(t, reqHeaders("sk-a"), chatBody(1000, false))
	v := x.ResponseHeaders(ctx, 200, hdr{":status": "200", "content-type": "application/json", "content-encoding": "gzip"}, false)
	if !v.Done || x.Reserved() {
		t.Fatalf("gzip answer: verdict %+v reserved %v", v, x.Reserved())
	}
	s, _, _ := r.be.Get(ctx, x.Key(), r.clk.Now())
	if got := s.Dims[bucket.Tokens].Level; got > float64(10_000-x.cost[bucket.Tokens])+0.001 {
		t.Fatalf("level %v: a body arl could not count was refunded", got)
	}
	if got := testutil.ToFloat64(r.m.BadInput.WithLabelValues("encoded_response")); got != 1 {
		t.Fatalf("count %v", got)
	}
}

// counting counts backend calls by operation.
type counting struct {
	backend.Backend
	mu    sync.Mutex
	calls map[string]int
}

func (c *counting) count(op string) {
	c.mu.Lock()
	c.calls[op]++
	c.mu.Unlock()
}

func (c *counting) Reserve(ctx context.Context, k bucket.Key, r backend.ReserveRequest) (backend.ReserveResult, error) {
	c.count("reserve")
	return c.Backend.Reserve(ctx, k, r)
}

func (c *counting) Settle(ctx context.Context, k bucket.Key, r backend.SettleRequest) (backend.SettleResult, error) {
	c.count("settle")
	return c.Backend.Settle(ctx, k, r)
}

func (c *counting) Observe(ctx context.Context, k bucket.Key, r backend.ObserveRequest) error {
	c.count("observe")
	return c.Backend.Observe(ctx, k, r)
}

func TestRoutineLessonFoldedIntoSettlement(t *testing.T) {
	tests := []struct {
		name     string
		defaults bucket.Limits
		headers  hdr
		observes int
	}{
		{"routine: two round trips", bucket.Limits{bucket.Requests: 100, bucket.Tokens: 100_000},
			hdr{"x-ratelimit-limit-tokens": "100000", "x-ratelimit-remaining-tokens": "99000"}, 0},
		{"exhausted: at once", bucket.Limits{bucket.Requests: 100, bucket.Tokens: 100_000},
			hdr{"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "1s"}, 1},
		{"probe: at once", bucket.Limits{},
			hdr{"x-ratelimit-limit-tokens": "100000", "x-ratelimit-remaining-tokens": "99000"}, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, Config{Defaults: tc.defaults})
			c := &counting{Backend: r.be, calls: map[string]int{}}
			r.l.backend = c
			ctx := context.Background()
			x, _ := r.send(t, reqHeaders("sk-a"), chatBody(100, true))
			h := hdr{":status": "200", "content-type": "text/event-stream"}
			for k, v := range tc.headers {
				h[k] = v
			}
			x.ResponseHeaders(ctx, 200, h, false)
			if c.calls["observe"] != tc.observes {
				t.Fatalf("observe calls %d at the headers, want %d", c.calls["observe"], tc.observes)
			}
			x.ResponseBody(ctx, sse(`{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4}}`, `[DONE]`), true)
			if got := c.calls["reserve"] + c.calls["settle"] + c.calls["observe"]; got != 2+tc.observes {
				t.Fatalf("backend calls %v", c.calls)
			}
			s, _, _ := r.be.Get(ctx, x.Key(), r.clk.Now())
			if s.Dims[bucket.Tokens].Limit != 100_000 && tc.headers["x-ratelimit-limit-tokens"] != "" {
				t.Fatalf("lesson lost: %+v", s.Dims[bucket.Tokens])
			}
		})
	}
}

func TestMessagesRejectionsInAnthropicShapeOnAnyHost(t *testing.T) {
	r := newRig(t, Config{Defaults: bucket.Limits{bucket.Requests: 1}})
	body := []byte(`{"model":"claude-sonnet-4-5","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}`)
	h := hdr{":method": "POST", ":path": "/v1/messages", ":authority": "llm-gateway.internal", "x-api-key": "sk-ant-a", "content-type": "application/json"}
	if _, rej := r.send(t, h, body); rej != nil {
		t.Fatalf("first request rejected: %+v", rej)
	}
	_, rej := r.send(t, h, body)
	if rej == nil {
		t.Fatal("second request admitted past a limit of 1")
	}
	var e struct {
		Type  string `json:"type"`
		Error struct {
			Type string `json:"type"`
		} `json:"error"`
	}
	if err := json.Unmarshal(rej.Body, &e); err != nil || e.Type != "error" || e.Error.Type != "rate_limit_error" {
		t.Fatalf("rejection body %s: want Anthropic's envelope with rate_limit_error (%v)", rej.Body, err)
	}
}

// TestUnknownProviderHeader: a provider header naming no provider arl knows
// is counted, and the request is accounted as generic, so the header cannot
// mint metric labels or bucket keys.
func TestUnknownProviderHeader(t *testing.T) {
	r := newRig(t, Config{Defaults: bucket.Limits{bucket.Requests: 100}})
	for _, name := range []string{"deepseek", "openai\x00", `x"} 1`, strings.Repeat("p", 4096)} {
		x, rej := r.send(t, reqHeaders("sk-a", "x-arl-provider", name), chatBody(10, false))
		if rej != nil {
			t.Fatalf("%q: rejected %+v", name, rej)
		}
		if x.provider != "generic" || x.key.Provider != "generic" || x.dialect.Name() != "generic" {
			t.Fatalf("%q: provider %q, key %v, dialect %q; want generic", name, x.provider, x.key, x.dialect.Name())
		}
	}
	if got := testutil.ToFloat64(r.m.BadInput.WithLabelValues("unknown_provider")); got != 4 {
		t.Fatalf("unknown_provider %v, want 4", got)
	}
	if got := testutil.CollectAndCount(r.m.Requests); got != 1 {
		t.Fatalf("%d request series, want 1 (generic, admitted)", got)
	}
	// A known name, in any case, is no bad input.
	if x, _ := r.send(t, reqHeaders("sk-a", "x-arl-provider", " Groq "), chatBody(10, false)); x.provider != "groq" {
		t.Fatalf("provider %q, want groq", x.provider)
	}
	if got := testutil.ToFloat64(r.m.BadInput.WithLabelValues("unknown_provider")); got != 4 {
		t.Fatalf("unknown_provider %v after a known name, want 4", got)
	}
}
