package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/adaptive-rate-limiter/arl/test/simprovider"
	"github.com/adaptive-rate-limiter/arl/test/standin"
)

// providerCase is how one provider is called and what its headers report.
type providerCase struct {
	name  string
	path  string
	auth  string // header carrying the key ("authorization" gets "Bearer ")
	quota simprovider.Quota
}

var providerCases = []providerCase{
	{"openai", "/v1/chat/completions", "authorization", simprovider.QuotaRequests},
	{"azure", "/openai/deployments/gpt-4o-mini/chat/completions?api-version=2024-10-21", "api-key", simprovider.QuotaRequests},
	{"anthropic", "/v1/messages", "x-api-key", simprovider.QuotaRequests},
	{"groq", "/openai/v1/chat/completions", "authorization", simprovider.QuotaRequestsPerDay},
	{"together", "/v1/chat/completions", "authorization", simprovider.QuotaRequests},
	{"venice", "/api/v1/chat/completions", "authorization", simprovider.QuotaRequests},
	{"openrouter", "/api/v1/chat/completions", "authorization", simprovider.QuotaRequests},
	{"mistral", "/v1/chat/completions", "authorization", simprovider.QuotaTokens},
	{"fireworks", "/inference/v1/chat/completions", "authorization", simprovider.QuotaRequests},
	{"gemini", "/v1beta/openai/chat/completions", "authorization", simprovider.QuotaRequests},
	{"generic", "/v1/chat/completions", "authorization", simprovider.QuotaRequests},
}

// providerStack is arl behind the stand-in in front of the simulated
// provider speaking pc's dialect; requests name the provider with
// x-arl-provider, since every upstream here is 127.0.0.1.
type providerStack struct {
	*stack
	pc      providerCase
	dialect simprovider.Dialect
}

func newProviderStack(t *testing.T, pc providerCase, environ ...string) *providerStack {
	t.Helper()
	d, ok := simprovider.DialectFor(pc.name)
	if !ok {
		t.Fatalf("no simulated dialect for %s", pc.name)
	}
	s := &stack{arl: startARL(t, environ...), provider: simprovider.New(simprovider.Config{Dialect: d, OutputTokens: 8})}
	up := httptest.NewServer(s.provider)
	t.Cleanup(up.Close)
	upstream, _ := url.Parse(up.URL)
	conn, err := grpc.NewClient(s.arl.GRPC, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	cfg, err := standin.Default()
	if err != nil {
		t.Fatal(err)
	}
	cfg.Processor, cfg.Upstream, cfg.KeepHost = conn, upstream, true
	si, err := standin.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(si.Close)
	front := httptest.NewServer(si)
	t.Cleanup(front.Close)
	s.gateway, s.standin = front.URL, si
	return &providerStack{stack: s, pc: pc, dialect: d}
}

// send makes one request in the provider's own API shape.
func (p *providerStack) send(t *testing.T, key string, maxTokens int, stream bool) answer {
	t.Helper()
	var body string
	if p.pc.name == "anthropic" {
		body = fmt.Sprintf(`{"model":"claude-sonnet-4-5","max_tokens":%d,"stream":%v,"messages":[{"role":"user","content":"Say something short."}]}`, maxTokens, stream)
	} else {
		opts := ""
		if stream {
			opts = `"stream_options":{"include_usage":true},`
		}
		body = fmt.Sprintf(`{"model":"m-1","max_tokens":%d,"stream":%v,%s"messages":[{"role":"user","content":"Say something short."}]}`, maxTokens, stream, opts)
	}
	req, _ := http.NewRequest(http.MethodPost, p.gateway+p.pc.path, strings.NewReader(body))
	v := key
	if p.pc.auth == "authorization" {
		v = "Bearer " + key
	}
	req.Header.Set(p.pc.auth, v)
	req.Header.Set("content-type", "application/json")
	req.Header.Set("x-arl-provider", p.pc.name)
	if p.pc.name == "anthropic" {
		req.Header.Set("anthropic-version", "2023-06-01")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return p.read(t, resp)
}

// exhausted renders, in the provider's own header format, an answer saying
// that the quota is used up and full again in 20 seconds.
func (p *providerStack) exhausted() http.Header {
	h := http.Header{}
	var ls simprovider.LimitState
	window := time.Minute
	if p.pc.quota == simprovider.QuotaRequestsPerDay {
		window = simprovider.Day
	}
	ls.Quotas[p.pc.quota] = simprovider.Dimension{Limit: 100, Remaining: 0, Reset: 20 * time.Second, Window: window}
	p.dialect.SetHeaders(h, simprovider.Meta{RequestID: "req-1", At: time.Now(), Limits: ls})
	return h
}

// geminiRateLimited is Gemini's 429 body: a JSON array whose RetryInfo names
// the wait.
const geminiRateLimited = `[{"error":{"code":429,"message":"You exceeded your current quota.","status":"RESOURCE_EXHAUSTED","details":[` +
	`{"@type":"type.googleapis.com/google.rpc.QuotaFailure","violations":[{"quotaMetric":"generativelanguage.googleapis.com/generate_content_free_tier_requests","quotaId":"GenerateRequestsPerMinutePerProjectPerModel-FreeTier","quotaValue":"15"}]},` +
	`{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"20s"}]}}]`

// TestProviderLearnedLimitRetryAfter: for every provider, a limit learned
// from the provider's own headers (Gemini: its 429 body) makes arl answer the
// next request with a 429 whose retry-after is the provider's reset.
func TestProviderLearnedLimitRetryAfter(t *testing.T) {
	for _, pc := range providerCases {
		t.Run(pc.name, func(t *testing.T) {
			p := newProviderStack(t, pc)
			key := "sk-" + pc.name
			if pc.name == "gemini" {
				p.provider.Enqueue(simprovider.Override{Key: key, Status: 429, Body: geminiRateLimited})
				want(t, p.send(t, key, 20, false), 429, "the provider's own 429")
			} else {
				p.provider.Enqueue(simprovider.Override{Key: key, Headers: p.exhausted()})
				want(t, p.send(t, key, 20, false), 200, "the answer that reports exhaustion")
			}
			before := providerRequests(p.stack, key)
			a := p.send(t, key, 20, false)
			want(t, a, 429, "the next request")
			if a.header.Get("x-arl-reason") == "" {
				t.Fatalf("the 429 did not come from arl: %v %s", a.header, a.body)
			}
			// Resets written as instants (RFC 3339, Unix seconds) are whole
			// seconds, rounded up by the provider: 20 or 21.
			ra, _ := strconv.Atoi(a.header.Get("retry-after"))
			if ra < 19 || ra > 21 {
				t.Fatalf("retry-after %q (reason %s), want 20", a.header.Get("retry-after"), a.header.Get("x-arl-reason"))
			}
			if providerRequests(p.stack, key) != before {
				t.Fatal("the rejected request reached the provider")
			}
			// The rejection speaks the provider's error shape.
			var shape map[string]any
			if err := json.Unmarshal([]byte(a.body), &shape); err != nil {
				t.Fatalf("body %s", a.body)
			}
			if pc.name == "anthropic" {
				if shape["type"] != "error" || shape["error"].(map[string]any)["type"] != "rate_limit_error" {
					t.Fatalf("anthropic rejection body %s", a.body)
				}
			} else if _, ok := shape["error"]; !ok {
				t.Fatalf("rejection body %s", a.body)
			}
		})
	}
}

// TestProviderStreamingUsageSettles: for every provider, a streamed answer
// in the provider's format settles the reservation with the usage it
// reports: nothing stays in flight and the unused output budget returns.
func TestProviderStreamingUsageSettles(t *testing.T) {
	for _, pc := range providerCases {
		t.Run(pc.name, func(t *testing.T) {
			p := newProviderStack(t, pc, "ARL_DEFAULT_RPM=1000", "ARL_DEFAULT_TPM=100000")
			a := p.send(t, "sk-s-"+pc.name, 500, true)
			want(t, a, 200, "stream")
			if len(a.events) < 2 {
				t.Fatalf("not a stream: %s", a.body)
			}
			var view struct {
				Buckets []struct {
					Key struct {
						Provider string `json:"Provider"`
					} `json:"key"`
					InFlight   int64 `json:"in_flight"`
					Dimensions map[string]struct {
						Limit     int64   `json:"limit"`
						Available float64 `json:"available"`
					} `json:"dimensions"`
				} `json:"buckets"`
			}
			resp, err := http.Get(p.arl.Admin + "/v1/buckets")
			if err != nil {
				t.Fatal(err)
			}
			raw, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			if err := json.Unmarshal(raw, &view); err != nil || len(view.Buckets) != 1 {
				t.Fatalf("buckets %s (%v)", raw, err)
			}
			b := view.Buckets[0]
			if b.InFlight != 0 {
				t.Fatalf("in flight %d after the stream ended", b.InFlight)
			}
			// 500 tokens were reserved for output; 8 were generated.
			if got := b.Dimensions["tokens"].Available; got < 100_000-100 {
				t.Fatalf("tokens available %v: the unused output budget did not return (%s)", got, raw)
			}
			if m := p.arl.metrics(t, "arl_settlements_total{"); !strings.Contains(m, fmt.Sprintf(`arl_settlements_total{kind="exact",provider=%q} 1`, pc.name)) {
				t.Fatalf("no exact settlement:\n%s", m)
			}
		})
	}
}
