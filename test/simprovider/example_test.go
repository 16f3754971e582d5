package simprovider_test

import (
	"context"
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
