package simprovider_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/adaptive-rate-limiter/arl/test/simprovider"
)

// A provider with 2 requests per minute per key: the third request is refused
// with OpenAI's headers, and a queued override forces the next answer.
func Example() {
	sim := simprovider.New(simprovider.Config{RPM: 2, TPM: 10000})
	ts := httptest.NewServer(sim)
	defer ts.Close()

	post := func() *http.Response {
		req, _ := http.NewRequest(http.MethodPost, ts.URL+"/v1/chat/completions",
			strings.NewReader(`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hello"}],"max_tokens":10}`))
		req.Header.Set("Authorization", "Bearer sk-demo")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return &http.Response{StatusCode: 0, Header: http.Header{}}
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	for range 3 {
		resp := post()
		fmt.Printf("%d remaining=%s retry-after=%q\n",
			resp.StatusCode, resp.Header.Get("x-ratelimit-remaining-requests"), resp.Header.Get("retry-after"))
	}

	sim.Enqueue(simprovider.Override{Status: http.StatusServiceUnavailable})
	fmt.Println(post().StatusCode)

	st := sim.Stats().Keys["sk-demo"]
	fmt.Println(st.Admitted, st.Rejected[simprovider.ReasonRequests], st.Rejected[simprovider.ReasonForced])
	// Output:
	// 200 remaining=1 retry-after=""
	// 200 remaining=0 retry-after=""
	// 429 remaining=0 retry-after="30"
	// 503
	// 2 1 1
}

// Keeping a stream in flight: the stream sends its first content chunk and
// waits until the gate is released.
func ExampleServer_HoldStreams() {
	sim := simprovider.New(simprovider.Config{OutputTokens: 3})
	ts := httptest.NewServer(sim)
	defer ts.Close()

	gate := sim.HoldStreams()
	done := make(chan string)
	go func() {
		req, _ := http.NewRequest(http.MethodPost, ts.URL+"/v1/chat/completions",
			strings.NewReader(`{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true}`))
		req.Header.Set("Authorization", "Bearer sk-demo")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			done <- err.Error()
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		done <- fmt.Sprint(strings.Count(string(b), "data: "), " events")
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := gate.WaitHeld(ctx, 1); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("held:", gate.Held(), "tokens sent:", sim.Stats().Total.TokensGenerated)
	gate.Release()
	fmt.Println(<-done)
	// Output:
	// held: 1 tokens sent: 1
	// 6 events
}

// A provider speaking Anthropic's dialect, with 2 requests per minute: its
// headers are Anthropic's, resets as RFC 3339 instants, and a refused request
// gets Anthropic's error body.
func ExampleDialectFor() {
	dialect, ok := simprovider.DialectFor("anthropic")
	if !ok {
		return
	}
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	sim := simprovider.New(simprovider.Config{Dialect: dialect, RPM: 2, OutputTPM: 8000,
		Now: func() time.Time { return now }})
	ts := httptest.NewServer(sim)
	defer ts.Close()

	for range 3 {
		req, _ := http.NewRequest(http.MethodPost, ts.URL+"/v1/messages",
			strings.NewReader(`{"model":"claude-sonnet-4-5","max_tokens":1024,"messages":[{"role":"user","content":"hello"}]}`))
		req.Header.Set("X-Api-Key", "sk-ant-demo")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			fmt.Println(err)
			return
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		h := resp.Header
		fmt.Printf("%d requests-remaining=%s reset=%s output-tokens-remaining=%s retry-after=%q\n", resp.StatusCode,
			h.Get("anthropic-ratelimit-requests-remaining"), h.Get("anthropic-ratelimit-requests-reset"),
			h.Get("anthropic-ratelimit-output-tokens-remaining"), h.Get("retry-after"))
		if resp.StatusCode != http.StatusOK {
			var e struct {
				Type  string `json:"type"`
				Error struct {
					Type string `json:"type"`
				} `json:"error"`
			}
			_ = json.Unmarshal(body, &e)
			fmt.Println(e.Type, e.Error.Type)
		}
	}
	// Output:
	// 200 requests-remaining=1 reset=2026-01-02T03:04:35Z output-tokens-remaining=7000 retry-after=""
	// 200 requests-remaining=0 reset=2026-01-02T03:05:05Z output-tokens-remaining=7000 retry-after=""
	// 429 requests-remaining=0 reset=2026-01-02T03:05:05Z output-tokens-remaining=8000 retry-after="30"
	// error rate_limit_error
}
