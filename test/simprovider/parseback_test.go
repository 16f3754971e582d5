package simprovider_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/adaptive-rate-limiter/arl/limiter/bucket"
	"github.com/adaptive-rate-limiter/arl/limiter/provider"
	"github.com/adaptive-rate-limiter/arl/limiter/usage"
	"github.com/adaptive-rate-limiter/arl/test/simprovider"
)

// These tests check the simulator against arl's own readers: every dialect's
// headers and error bodies must teach limiter/provider the limits the
// simulator enforces, and its streams must give limiter/usage the usage it
// reports. The simulator itself imports no arl package.

// clock is a manually advanced clock for simprovider.Config.Now.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// start is a whole second, so that resets written in seconds are exact.
var start = time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)

// client speaks to a simulator in one dialect's terms.
type client struct {
	t       *testing.T
	url     string
	dialect string
	key     string
}

// answer is one fully read response.
type answer struct {
	status int
	header http.Header
	body   []byte
}

// path returns the provider's real path for chat (or messages).
func (c client) path() string {
	switch c.dialect {
	case "anthropic":
		return "/v1/messages"
	case "azure":
		return "/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21"
	case "groq":
		return "/openai/v1/chat/completions"
	case "venice", "openrouter":
		return "/api/v1/chat/completions"
	case "fireworks":
		return "/inference/v1/chat/completions"
	case "gemini":
		return "/v1beta/openai/chat/completions"
	default:
		return "/v1/chat/completions"
	}
}

// body returns a request with a 10-token prompt and an output budget of
// maxTokens.
func (c client) body(maxTokens int, stream bool) string {
	s := `{"model":"m","max_tokens":` + strconv.Itoa(maxTokens) + `,"messages":[{"role":"user","content":"` +
		strings.Repeat("abcd", 10) + `"}]`
	if stream {
		s += `,"stream":true`
	}
	return s + "}"
}

// send posts body with the dialect's credential and reads the answer.
func (c client) send(body string) answer {
	c.t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, c.url+c.path(), strings.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	switch c.dialect {
	case "anthropic":
		req.Header.Set("X-Api-Key", c.key)
		req.Header.Set("Anthropic-Version", "2023-06-01")
	case "azure":
		req.Header.Set("Api-Key", c.key)
	case "gemini":
		req.Header.Set("X-Goog-Api-Key", c.key)
	default:
		req.Header.Set("Authorization", "Bearer "+c.key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatal(err)
	}
	return answer{status: resp.StatusCode, header: resp.Header, body: b}
}

// learn reads an answer as arl does: headers, then the error body when the
// dialect asks for it.
func learn(name string, a answer, now time.Time) provider.Answer {
	d := provider.ForName(name)
	got := d.ParseAnswer(a.status, a.header, now)
	if got.WantBody {
		d.ParseErrorBody(a.status, a.body, now, &got)
	}
	return got
}

func TestDialectsTeachArlTheirLimits(t *testing.T) {
	// Each provider is given a small binding request quota of capacity c
	// refilling one request every `unit`, and generous token quotas. It is
	// sent c requests, which arl must read as the limit, the remaining count
	// and the time until the bucket is full again (k × unit after k requests,
	// in every dialect's format), then one more, which the simulator refuses:
	// arl must block the bucket for the right wait and name the right
	// dimension, and after that wait the provider must admit again.
	tests := []struct {
		dialect string
		cfg     simprovider.Config
		dim     bucket.Dimension // where the binding quota is read into
		c       int64
		unit    time.Duration
		window  time.Duration // the Window arl learns, 0 for the default
		others  map[bucket.Dimension]int64
		// retry is arl's block on the 429; 0 means unit (then capped at an
		// hour, as arl caps every wait).
		retry time.Duration
		// drains: the provider flags over-limit when one dimension is
		// exhausted (Fireworks): arl reads the other dimensions drained to
		// zero remaining, while the exhausted one keeps its reset.
		drains bool
		// silent: no rate-limit headers on success (Gemini).
		silent bool
		// noReset: the binding quota's headers have no reset.
		noReset bool
	}{
		{dialect: "openai", cfg: simprovider.Config{RPM: 3, TPM: 100_000}, dim: bucket.Requests, c: 3, unit: 20 * time.Second,
			others: map[bucket.Dimension]int64{bucket.Tokens: 100_000}},
		{dialect: "azure", cfg: simprovider.Config{RPM: 60, TPM: 100_000}, dim: bucket.Requests, c: 10, unit: time.Second,
			window: 10 * time.Second, others: map[bucket.Dimension]int64{bucket.Tokens: 100_000}},
		{dialect: "anthropic", cfg: simprovider.Config{RPM: 3, InputTPM: 80_000, OutputTPM: 16_000}, dim: bucket.Requests, c: 3,
			unit: 20 * time.Second, others: map[bucket.Dimension]int64{bucket.InputTokens: 80_000, bucket.OutputTokens: 16_000}},
		{dialect: "anthropic", cfg: simprovider.Config{RPM: 3, TPM: 90_000}, dim: bucket.Requests, c: 3,
			unit: 20 * time.Second, others: map[bucket.Dimension]int64{bucket.Tokens: 90_000}},
		{dialect: "groq", cfg: simprovider.Config{RPD: 3, TPM: 6000}, dim: bucket.RequestsPerDay, c: 3, unit: 8 * time.Hour,
			others: map[bucket.Dimension]int64{bucket.Tokens: 6000}},
		{dialect: "together", cfg: simprovider.Config{RPM: 4, TPM: 2000, Window: time.Second}, dim: bucket.Requests, c: 4,
			unit: 250 * time.Millisecond, window: time.Second, retry: time.Second,
			others: map[bucket.Dimension]int64{bucket.Tokens: 2000}},
		{dialect: "together", cfg: simprovider.Config{RPM: 240, TPM: 120_000}, dim: bucket.Requests, c: 4,
			unit: 250 * time.Millisecond, window: time.Second, retry: time.Second,
			others: map[bucket.Dimension]int64{bucket.Tokens: 2000}},
		{dialect: "venice", cfg: simprovider.Config{RPM: 3, TPM: 100_000}, dim: bucket.Requests, c: 3, unit: 20 * time.Second,
			others: map[bucket.Dimension]int64{bucket.Tokens: 100_000}},
		{dialect: "openrouter", cfg: simprovider.Config{RPM: 3}, dim: bucket.Requests, c: 3, unit: 20 * time.Second,
			retry: time.Second},
		{dialect: "openrouter", cfg: simprovider.Config{RPD: 3}, dim: bucket.RequestsPerDay, c: 3, unit: 8 * time.Hour,
			retry: time.Second},
		{dialect: "mistral", cfg: simprovider.Config{RPM: 3, TPM: 100_000, TokensPerMonth: 5_000_000}, dim: bucket.Requests, c: 3,
			unit: 20 * time.Second, noReset: true,
			others: map[bucket.Dimension]int64{bucket.Tokens: 100_000, bucket.TokensPerMonth: 5_000_000}},
		{dialect: "fireworks", cfg: simprovider.Config{RPM: 3, InputTPM: 60_000, OutputTPM: 60_000}, dim: bucket.Requests, c: 3,
			unit: 20 * time.Second, drains: true,
			others: map[bucket.Dimension]int64{bucket.InputTokens: 1000, bucket.OutputTokens: 1000}},
		{dialect: "gemini", cfg: simprovider.Config{RPM: 3, InputTPM: 250_000}, dim: bucket.Requests, c: 3, unit: 20 * time.Second,
			silent: true},
		{dialect: "gemini", cfg: simprovider.Config{RPD: 2}, dim: bucket.RequestsPerDay, c: 2, unit: 12 * time.Hour,
			silent: true},
		{dialect: "generic", cfg: simprovider.Config{RPM: 3, TPM: 100_000}, dim: bucket.Requests, c: 3, unit: 20 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.dialect+"/"+tt.dim.String(), func(t *testing.T) {
			d, ok := simprovider.DialectFor(tt.dialect)
			if !ok {
				t.Fatalf("no dialect %q", tt.dialect)
			}
			clk := &clock{now: start}
			cfg := tt.cfg
			cfg.Dialect, cfg.Now, cfg.OutputTokens = d, clk.Now, 4
			sim := simprovider.New(cfg)
			ts := httptest.NewServer(sim)
			defer ts.Close()
			c := client{t: t, url: ts.URL, dialect: tt.dialect, key: "sk-" + tt.dialect}

			for k := int64(1); k <= tt.c; k++ {
				a := c.send(c.body(100, false))
				if a.status != http.StatusOK {
					t.Fatalf("request %d: status %d: %s", k, a.status, a.body)
				}
				got := learn(tt.dialect, a, clk.Now())
				if got.Invalid != 0 || got.Observation.RetryAfter != 0 {
					t.Errorf("request %d: %d invalid values, block %v (headers %v)", k, got.Invalid, got.Observation.RetryAfter, a.header)
				}
				od := got.Observation.Dims[tt.dim]
				if tt.silent {
					if got.Observation.Dims != ([bucket.NumDimensions]bucket.DimObservation{}) {
						t.Errorf("request %d: learned %+v from a provider that sends no headers", k, got.Observation.Dims)
					}
					continue
				}
				want := bucket.DimObservation{Limit: tt.c, Remaining: tt.c - k, HasRemaining: true, Reset: time.Duration(k) * tt.unit,
					Window: tt.window}
				if tt.noReset {
					want.Reset = 0
				}
				if od != want {
					t.Errorf("request %d: arl reads %s %+v, want %+v (headers %v)", k, tt.dim, od, want, a.header)
				}
				for dim, limit := range tt.others {
					if got := got.Observation.Dims[dim]; got.Limit != limit || !got.HasRemaining {
						t.Errorf("request %d: arl reads %s %+v, want limit %d and a remaining value", k, dim, got, limit)
					} else if drained := got.Remaining == 0 && got.Reset == 0; tt.drains && drained != (k == tt.c) {
						t.Errorf("request %d: arl reads %s %+v: drained %v, want %v", k, dim, got, drained, k == tt.c)
					}
				}
			}

			a := c.send(c.body(100, false))
			if a.status != http.StatusTooManyRequests {
				t.Fatalf("request %d: status %d, want 429: %s", tt.c+1, a.status, a.body)
			}
			got := learn(tt.dialect, a, clk.Now())
			retry := tt.retry
			if retry == 0 {
				retry = min(tt.unit, time.Hour)
			}
			if o := got.Observation; o.RetryAfter != retry || o.Reason != tt.dim.String() || !got.Failure || got.Billing || got.Invalid != 0 {
				t.Errorf("429: arl blocks %v for %q (failure %v, billing %v, %d invalid), want %v for %q\nheaders %v\nbody %s",
					o.RetryAfter, o.Reason, got.Failure, got.Billing, got.Invalid, retry, tt.dim, a.header, a.body)
			}
			if od := got.Observation.Dims[tt.dim]; od.Limit != tt.c {
				t.Errorf("429: arl reads %s %+v, want limit %d", tt.dim, od, tt.c)
			}

			// The provider's own wait is one unit: just before it the request
			// is still refused, after it the request is admitted.
			clk.Advance(tt.unit - time.Millisecond)
			if a := c.send(c.body(100, false)); a.status != http.StatusTooManyRequests {
				t.Errorf("1ms before the wait: status %d, want 429", a.status)
			}
			clk.Advance(time.Millisecond)
			if a := c.send(c.body(100, false)); a.status != http.StatusOK {
				t.Errorf("after the wait: status %d, want 200: %s", a.status, a.body)
			}
			if st := sim.Stats().Keys[c.key]; st.Rejected[tt.dim.String()] != 2 || st.Admitted != tt.c+1 {
				t.Errorf("stats %+v, want 2 rejections for %s and %d admitted", st, tt.dim, tt.c+1)
			}
		})
	}
}

func TestDialectsTokenLimitsParseBack(t *testing.T) {
	// Token quotas, binding: a request of prompt 10 and budget 100 is
	// charged 110 tokens (or 10 input and 100 output tokens). arl must read
	// the token dimensions the simulator enforces and name the one a 429 is
	// for.
	tests := []struct {
		dialect string
		cfg     simprovider.Config
		dim     bucket.Dimension
		limit   int64 // as arl reads it
		// remaining after the first request, as arl reads it (Anthropic's
		// are rounded, then read as the top of their interval).
		remaining int64
		// fill is the output budget of the requests that follow, until one
		// is refused; 0 means 100.
		fill int
		// reason is arl's reason for the 429; "" means dim.
		reason string
	}{
		{dialect: "openai", cfg: simprovider.Config{TPM: 300}, dim: bucket.Tokens, limit: 300, remaining: 190},
		{dialect: "azure", cfg: simprovider.Config{TPM: 300}, dim: bucket.Tokens, limit: 300, remaining: 190},
		{dialect: "groq", cfg: simprovider.Config{TPM: 300}, dim: bucket.Tokens, limit: 300, remaining: 190},
		{dialect: "venice", cfg: simprovider.Config{TPM: 300}, dim: bucket.Tokens, limit: 300, remaining: 190},
		{dialect: "mistral", cfg: simprovider.Config{TPM: 300}, dim: bucket.Tokens, limit: 300, remaining: 190},
		// A monthly 429 with tokens left (the request does not fit) names no
		// limit arl knows a phrase for: arl blocks it as an upstream limit.
		{dialect: "mistral", cfg: simprovider.Config{TokensPerMonth: 300}, dim: bucket.TokensPerMonth, limit: 300, remaining: 190,
			reason: provider.ReasonUpstream},
		{dialect: "together", cfg: simprovider.Config{TPM: 300, Window: time.Second}, dim: bucket.Tokens, limit: 300, remaining: 190},
		// 1800 left rounds to 2000, capped at the limit. The unused output
		// budget is given back after each answer, so only a request larger
		// than the limit is refused.
		{dialect: "anthropic", cfg: simprovider.Config{OutputTPM: 1900}, dim: bucket.OutputTokens, limit: 1900, remaining: 1900,
			fill: 2000},
		// 5 left rounds to 0, read as the top of its interval (499), capped
		// at the limit.
		{dialect: "anthropic", cfg: simprovider.Config{InputTPM: 15}, dim: bucket.InputTokens, limit: 15, remaining: 15},
		{dialect: "fireworks", cfg: simprovider.Config{InputTPM: 900}, dim: bucket.InputTokens, limit: 15, remaining: 5},
	}
	for _, tt := range tests {
		t.Run(tt.dialect+"/"+tt.dim.String(), func(t *testing.T) {
			d, _ := simprovider.DialectFor(tt.dialect)
			clk := &clock{now: start}
			cfg := tt.cfg
			cfg.Dialect, cfg.Now, cfg.OutputTokens = d, clk.Now, 4
			ts := httptest.NewServer(simprovider.New(cfg))
			defer ts.Close()
			c := client{t: t, url: ts.URL, dialect: tt.dialect, key: "sk-t"}
			a := c.send(c.body(100, false))
			if a.status != http.StatusOK {
				t.Fatalf("status %d: %s", a.status, a.body)
			}
			got := learn(tt.dialect, a, clk.Now()).Observation.Dims[tt.dim]
			if got.Limit != tt.limit || !got.HasRemaining || got.Remaining != tt.remaining {
				t.Errorf("arl reads %s %+v, want limit %d remaining %d (headers %v)", tt.dim, got, tt.limit, tt.remaining, a.header)
			}
			// Fill the quota until the simulator refuses.
			fill := tt.fill
			if fill == 0 {
				fill = 100
			}
			for i := 0; ; i++ {
				a = c.send(c.body(fill, false))
				if a.status == http.StatusTooManyRequests {
					break
				}
				if i > 20 {
					t.Fatalf("no 429 after %d requests", i)
				}
			}
			res := learn(tt.dialect, a, clk.Now())
			reason := tt.reason
			if reason == "" {
				reason = tt.dim.String()
			}
			if res.Observation.Reason != reason || res.Observation.RetryAfter <= 0 {
				t.Errorf("429: arl blocks %v for %q, want a block for %q\nheaders %v\nbody %s",
					res.Observation.RetryAfter, res.Observation.Reason, reason, a.header, a.body)
			}
		})
	}
}

func TestDialectStreamsCountedByArl(t *testing.T) {
	// arl's usage counter must read every dialect's stream as the simulator
	// reports it: the provider's usage, exactly, and the stream seen to its
	// end.
	tests := []struct {
		dialect string
		ep      usage.Endpoint
		body    string
	}{
		{dialect: "openai", ep: usage.ChatCompletions,
			body: `{"model":"m","messages":[{"role":"user","content":"abcdabcd"}],"stream":true,"stream_options":{"include_usage":true}}`},
		{dialect: "groq", ep: usage.ChatCompletions, // x_groq.usage without include_usage
			body: `{"model":"m","messages":[{"role":"user","content":"abcdabcd"}],"stream":true}`},
		{dialect: "anthropic", ep: usage.Messages,
			body: `{"model":"claude","max_tokens":50,"system":"abcd","messages":[{"role":"user","content":[{"type":"text","text":"abcd"}]}],"stream":true}`},
		{dialect: "anthropic", ep: usage.Messages, // cut by max_tokens
			body: `{"model":"claude","max_tokens":3,"messages":[{"role":"user","content":"abcdabcd"}],"stream":true}`},
	}
	for _, tt := range tests {
		t.Run(tt.dialect, func(t *testing.T) {
			d, _ := simprovider.DialectFor(tt.dialect)
			ts := httptest.NewServer(simprovider.New(simprovider.Config{Dialect: d, OutputTokens: 20, TokensPerChunk: 3}))
			defer ts.Close()
			c := client{t: t, url: ts.URL, dialect: tt.dialect, key: "sk-s"}
			a := c.send(tt.body)
			if a.status != http.StatusOK {
				t.Fatalf("status %d: %s", a.status, a.body)
			}
			req, err := usage.ParseRequest(tt.ep, []byte(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			counter := usage.NewCounter(tt.ep, a.header.Get("Content-Type"), usage.CounterOptions{PromptTokens: req.PromptTokens})
			for b := a.body; len(b) > 0; b = b[min(7, len(b)):] {
				counter.Write(b[:min(7, len(b))])
			}
			got, st := counter.Finish(), counter.Stats()
			out := min(int64(20), req.MaxOutputTokens)
			if req.MaxOutputTokens == 0 {
				out = 20
			}
			want := usage.Usage{InputTokens: 2, OutputTokens: out, Exact: true}
			if got != want || !st.Done || st.MalformedEvents != 0 || st.Truncated || st.StreamError {
				t.Errorf("arl counts %+v (stats %+v), want %+v and a complete stream\n%s", got, st, want, a.body)
			}
		})
	}
}
