package e2e

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/adaptive-rate-limiter/arl/test/simprovider"
	"github.com/adaptive-rate-limiter/arl/test/standin"
)

// stack is arl behind a gateway (the Envoy stand-in, or real Envoy) in front
// of the simulated provider.
type stack struct {
	arl      arl
	provider *simprovider.Server
	gateway  string // base URL clients send to
	standin  *standin.StandIn
}

// gateways lists the gateways the scenarios run through: always the
// stand-in, and real Envoy when a binary is available.
func gateways() []string {
	g := []string{"standin"}
	if _, ok := standin.EnvoyBinary(); ok {
		g = append(g, "envoy")
	}
	return g
}

// eachGateway runs a scenario through every available gateway.
func eachGateway(t *testing.T, fn func(t *testing.T, gw string)) {
	for _, gw := range gateways() {
		t.Run(gw, func(t *testing.T) { fn(t, gw) })
	}
}

func newStack(t *testing.T, gw string, pcfg simprovider.Config, environ ...string) *stack {
	t.Helper()
	s := &stack{arl: startARL(t, environ...), provider: simprovider.New(pcfg)}
	up := httptest.NewServer(s.provider)
	t.Cleanup(up.Close)
	upstream, _ := url.Parse(up.URL)
	switch gw {
	case "standin":
		conn, err := grpc.NewClient(s.arl.GRPC, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = conn.Close() })
		cfg, err := standin.Default()
		if err != nil {
			t.Fatal(err)
		}
		cfg.Processor, cfg.Upstream = conn, upstream
		si, err := standin.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(si.Close)
		front := httptest.NewServer(si)
		t.Cleanup(front.Close)
		s.gateway, s.standin = front.URL, si
	case "envoy":
		bin, _ := standin.EnvoyBinary()
		e, err := standin.StartEnvoy(context.Background(), bin, "../../envoy/envoy.yaml", s.arl.GRPC, upstream)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = e.Close() })
		s.gateway = e.URL()
	}
	return s
}

// call is one client request.
type call struct {
	key, namespace string
	maxTokens      int
	stream         bool
	path           string
	ctx            context.Context
	extra          string // extra JSON members
	body           string // the whole body, in place of the chat request made of the fields above
	provider       string // x-arl-provider
}

type answer struct {
	status int
	header http.Header
	body   string
	events []string // SSE data lines
}

func (s *stack) do(t *testing.T, c call) answer {
	t.Helper()
	resp, err := s.start(t, c)
	if err != nil {
		t.Fatalf("request: %v", err)
	}
	return s.read(t, resp)
}

func (s *stack) start(t *testing.T, c call) (*http.Response, error) {
	t.Helper()
	if c.path == "" {
		c.path = "/v1/chat/completions"
	}
	if c.ctx == nil {
		c.ctx = context.Background()
	}
	body := c.body
	if body == "" {
		body = fmt.Sprintf(`{"model":"gpt-4o-mini","max_tokens":%d,"stream":%v,%s"messages":[{"role":"user","content":"Say something short."}]}`, c.maxTokens, c.stream, c.extra)
	}
	req, _ := http.NewRequestWithContext(c.ctx, http.MethodPost, s.gateway+c.path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+c.key)
	req.Header.Set("Content-Type", "application/json")
	if c.namespace != "" {
		req.Header.Set("x-arl-namespace", c.namespace)
	}
	if c.provider != "" {
		req.Header.Set("x-arl-provider", c.provider)
	}
	return http.DefaultClient.Do(req)
}

func (s *stack) read(t *testing.T, resp *http.Response) answer {
	t.Helper()
	defer func() { _ = resp.Body.Close() }()
	a := answer{status: resp.StatusCode, header: resp.Header}
	raw, err := io.ReadAll(resp.Body)
	a.body = string(raw)
	if strings.HasPrefix(resp.Header.Get("content-type"), "text/event-stream") {
		// A stream cut short is what the client got.
		for _, line := range strings.FieldsFunc(a.body, func(r rune) bool { return r == '\n' || r == '\r' }) {
			if d, ok := strings.CutPrefix(line, "data: "); ok {
				a.events = append(a.events, d)
			}
		}
		return a
	}
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return a
}

func want(t *testing.T, a answer, status int, what string) {
	t.Helper()
	if a.status != status {
		t.Fatalf("%s: status %d, want %d (body %s)", what, a.status, status, a.body)
	}
}

// arlRejected asserts a 429 from arl (not from the provider) and returns
// its retry-after in seconds.
func arlRejected(t *testing.T, a answer, reason, what string) int {
	t.Helper()
	want(t, a, 429, what)
	if got := a.header.Get("x-arl-reason"); got != reason {
		t.Fatalf("%s: x-arl-reason %q, want %q (body %s)", what, got, reason, a.body)
	}
	if !strings.Contains(a.body, `"rate_limit_exceeded"`) {
		t.Fatalf("%s: body %s", what, a.body)
	}
	ra, err := strconv.Atoi(a.header.Get("retry-after"))
	if err != nil || ra < 1 {
		t.Fatalf("%s: retry-after %q", what, a.header.Get("retry-after"))
	}
	if ms, err := strconv.Atoi(a.header.Get("retry-after-ms")); err != nil || ms > ra*1000 || ms <= (ra-1)*1000 {
		t.Fatalf("%s: retry-after-ms %q against retry-after %d", what, a.header.Get("retry-after-ms"), ra)
	}
	return ra
}

func providerRequests(s *stack, key string) int64 {
	return s.provider.Stats().Keys[key].Requests
}

func TestStackAdmission(t *testing.T) {
	eachGateway(t, func(t *testing.T, gw string) {
		s := newStack(t, gw, simprovider.Config{OutputTokens: 12})
		a := s.do(t, call{key: "sk-1", maxTokens: 50})
		want(t, a, 200, "JSON completion")
		if !strings.Contains(a.body, `"usage"`) {
			t.Fatalf("body %s", a.body)
		}
		a = s.do(t, call{key: "sk-1", maxTokens: 50, stream: true})
		want(t, a, 200, "streamed completion")
		if len(a.events) < 3 || a.events[len(a.events)-1] != "[DONE]" {
			t.Fatalf("stream %q", a.body)
		}
		// Not an LLM call: passed through untouched (the provider answers 404).
		req, _ := http.NewRequest(http.MethodGet, s.gateway+"/v1/models", nil)
		req.Header.Set("Authorization", "Bearer sk-1")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != 404 || resp.Header.Get("x-arl-reason") != "" {
			t.Fatalf("pass-through: %d %v", resp.StatusCode, resp.Header)
		}
	})
}

func TestStackLearnedLimitThen429(t *testing.T) {
	eachGateway(t, func(t *testing.T, gw string) {
		s := newStack(t, gw, simprovider.Config{})
		s.provider.Enqueue(simprovider.Override{Key: "sk-a", Headers: http.Header{
			"X-Ratelimit-Limit-Requests": {"60"}, "X-Ratelimit-Remaining-Requests": {"0"}, "X-Ratelimit-Reset-Requests": {"20s"},
		}})
		want(t, s.do(t, call{key: "sk-a", maxTokens: 20}), 200, "first request")
		before := providerRequests(s, "sk-a")
		ra := arlRejected(t, s.do(t, call{key: "sk-a", maxTokens: 20}), "requests", "second request")
		if ra != 20 {
			t.Fatalf("retry-after %d, want 20", ra)
		}
		if got := providerRequests(s, "sk-a"); got != before {
			t.Fatalf("the rejected request reached the provider (%d -> %d)", before, got)
		}
		want(t, s.do(t, call{key: "sk-b", maxTokens: 20}), 200, "another API key")
		want(t, s.do(t, call{key: "sk-a", namespace: "team-2", maxTokens: 20}), 200, "another namespace")
	})
}

func TestStackUpstream429Blocks(t *testing.T) {
	eachGateway(t, func(t *testing.T, gw string) {
		s := newStack(t, gw, simprovider.Config{})
		s.provider.Enqueue(simprovider.Override{Key: "sk-a", Status: 429,
			Headers: http.Header{"Retry-After": {"7"}}, Body: `{"error":{"message":"Rate limit reached","type":"tokens","param":null,"code":"rate_limit_exceeded"}}`})
		a := s.do(t, call{key: "sk-a", maxTokens: 20})
		want(t, a, 429, "the provider's 429")
		if a.header.Get("x-arl-reason") != "" {
			t.Fatal("the provider's 429 was attributed to arl")
		}
		before := providerRequests(s, "sk-a")
		ra := arlRejected(t, s.do(t, call{key: "sk-a", maxTokens: 20}), "tokens", "request after the provider's 429")
		if ra < 6 || ra > 7 {
			t.Fatalf("retry-after %d, want 7", ra)
		}
		if providerRequests(s, "sk-a") != before {
			t.Fatal("arl let a request through during the provider's block")
		}
	})
}

// teach makes the first (probe) answer of key report a 1000-token limit.
func teach(s *stack, key string) {
	s.provider.Enqueue(simprovider.Override{Key: key, Headers: http.Header{
		"X-Ratelimit-Limit-Tokens": {"1000"}, "X-Ratelimit-Remaining-Tokens": {"1000"},
		"X-Ratelimit-Limit-Requests": {"1000"}, "X-Ratelimit-Remaining-Requests": {"1000"},
	}})
}

func TestStackRefundAfterStream(t *testing.T) {
	eachGateway(t, func(t *testing.T, gw string) {
		s := newStack(t, gw, simprovider.Config{OutputTokens: 8})
		teach(s, "sk-t")
		want(t, s.do(t, call{key: "sk-t", maxTokens: 1}), 200, "probe")

		gate := s.provider.HoldStreams()
		resp, err := s.start(t, call{key: "sk-t", maxTokens: 590, stream: true})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := gate.WaitHeld(ctx, 1); err != nil {
			t.Fatal(err)
		}
		arlRejected(t, s.do(t, call{key: "sk-t", maxTokens: 590}), "tokens", "second 600-token request while the first streams")
		gate.Release()
		first := s.read(t, resp)
		want(t, first, 200, "first stream")
		want(t, s.do(t, call{key: "sk-t", maxTokens: 590}), 200, "second request after the refund")
	})
}

func TestStackDisconnectReleases(t *testing.T) {
	eachGateway(t, func(t *testing.T, gw string) {
		s := newStack(t, gw, simprovider.Config{OutputTokens: 8})
		teach(s, "sk-t")
		want(t, s.do(t, call{key: "sk-t", maxTokens: 1}), 200, "probe")

		gate := s.provider.HoldStreams()
		defer gate.Release()
		ctx, cancel := context.WithCancel(context.Background())
		resp, err := s.start(t, call{key: "sk-t", maxTokens: 590, stream: true, ctx: ctx})
		if err != nil {
			t.Fatal(err)
		}
		wctx, wcancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer wcancel()
		if err := gate.WaitHeld(wctx, 1); err != nil {
			t.Fatal(err)
		}
		arlRejected(t, s.do(t, call{key: "sk-t", maxTokens: 590}), "tokens", "second request while the first streams")
		cancel() // the client goes away mid-stream
		_ = resp.Body.Close()
		eventually(t, 5*time.Second, 20*time.Millisecond, func() (bool, string) {
			a := s.do(t, call{key: "sk-t", maxTokens: 590})
			return a.status == 200, fmt.Sprintf("the disconnected stream's reservation was not released: %d %s", a.status, a.body)
		})
	})
}

// reproducible is a simulated provider's configuration under which the
// same requests get the same answers byte for byte: a fixed clock and ids
// that count.
func reproducible(d simprovider.Dialect) simprovider.Config {
	var mu sync.Mutex
	n := 0
	return simprovider.Config{
		Dialect: d, OutputTokens: 8,
		Now: func() time.Time { return time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC) },
		NewID: func() string {
			mu.Lock()
			defer mu.Unlock()
			n++
			return "id" + strconv.Itoa(n)
		},
	}
}

// TestStackInjectStreamUsage: with ARL_INJECT_STREAM_USAGE, the client
// receives exactly the bytes it would receive without it, from a provider
// that adds usage only when asked, while arl settles on the provider's usage.
func TestStackInjectStreamUsage(t *testing.T) {
	const chat = `{"model":"gpt-4o-mini","max_tokens":100,"stream":true,"messages":[{"role":"user","content":"Say something short."}]}`
	cases := []struct {
		name, provider, path, body string
		dialect                    simprovider.Dialect
	}{
		{"chat", "", "/v1/chat/completions", chat, simprovider.OpenAI{}},
		{"completions", "", "/v1/completions",
			`{"model":"gpt-3.5-turbo-instruct","max_tokens":100,"stream":true,"prompt":"Say something short."}`, simprovider.OpenAI{}},
		// Groq reports usage in x_groq whatever the request asks; asked, it
		// adds OpenAI's usage chunk and "usage":null members too.
		{"groq", "groq", "/openai/v1/chat/completions", chat, simprovider.Groq{}},
	}
	env := []string{"ARL_DEFAULT_RPM=100", "ARL_DEFAULT_TPM=100000"}
	eachGateway(t, func(t *testing.T, gw string) {
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				plain := newStack(t, gw, reproducible(tc.dialect), env...)
				injecting := newStack(t, gw, reproducible(tc.dialect), append(env, "ARL_INJECT_STREAM_USAGE=true")...)
				c := call{key: "sk-i", path: tc.path, body: tc.body, provider: tc.provider}
				want := plain.do(t, c)
				got := injecting.do(t, c)
				if want.status != 200 || len(want.events) < 3 || want.events[len(want.events)-1] != "[DONE]" {
					t.Fatalf("stream without injection: %d %q", want.status, want.body)
				}
				if got.status != want.status || got.body != want.body {
					g, w := strings.SplitAfter(got.body, "\n"), strings.SplitAfter(want.body, "\n")
					i := 0
					for i < min(len(g), len(w)) && g[i] == w[i] {
						i++
					}
					g, w = append(g, ""), append(w, "") // past the end: nothing
					t.Fatalf("status %d, want %d; line %d of the stream differs:\nwith injection    %q\nwithout injection %q",
						got.status, want.status, i+1, g[i], w[i])
				}
				// arl read one event more than the client got (the usage
				// chunk), and settled on the provider's usage.
				events := func(s *stack) string { return s.arl.metrics(t, `arl_stream_events_total{kind="events"}`) }
				if n := len(want.events); events(plain) != fmt.Sprintf(`arl_stream_events_total{kind="events"} %d`, n) ||
					events(injecting) != fmt.Sprintf(`arl_stream_events_total{kind="events"} %d`, n+1) {
					t.Fatalf("%d events sent; arl read\n%s without injection,\n%s with it", n, events(plain), events(injecting))
				}
				provider := cmp.Or(tc.provider, "generic")
				if m := injecting.arl.metrics(t, "arl_settlements_total{"); m != fmt.Sprintf(`arl_settlements_total{kind="exact",provider=%q} 1`, provider) {
					t.Fatalf("settlements with injection:\n%s", m)
				}
			})
		}
		// A client that asked for usage gets it.
		s := newStack(t, gw, reproducible(simprovider.OpenAI{}), append(env, "ARL_INJECT_STREAM_USAGE=true")...)
		a := s.do(t, call{key: "sk-i", maxTokens: 100, stream: true, extra: `"stream_options":{"include_usage":true},`})
		if !strings.Contains(a.body, `"prompt_tokens"`) || !strings.Contains(a.body, `"usage":null`) {
			t.Fatalf("requested usage missing: %s", a.body)
		}
	})
}

func grep(s, substr string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
