package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// The tests in this file speak only the ext_proc protocol, as any Envoy
// would, and know nothing of arl's packages beyond how to start it.

type client struct {
	t *testing.T
	c extprocv3.ExternalProcessorClient
}

func dial(t *testing.T, addr string) *client {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	hc, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{})
	if err != nil || hc.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("grpc health: %v %v", hc, err)
	}
	return &client{t: t, c: extprocv3.NewExternalProcessorClient(conn)}
}

// stream is one HTTP request's ext_proc stream.
type stream struct {
	t      *testing.T
	s      extprocv3.ExternalProcessor_ProcessClient
	cancel context.CancelFunc
}

func (c *client) open() *stream {
	ctx, cancel := context.WithCancel(context.Background())
	s, err := c.c.Process(ctx)
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(cancel)
	return &stream{t: c.t, s: s, cancel: cancel}
}

func hmap(kv ...string) *corev3.HeaderMap {
	hm := &corev3.HeaderMap{}
	for i := 0; i+1 < len(kv); i += 2 {
		hm.Headers = append(hm.Headers, &corev3.HeaderValue{Key: kv[i], RawValue: []byte(kv[i+1])})
	}
	return hm
}

func (s *stream) roundTrip(req *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
	s.t.Helper()
	if err := s.s.Send(req); err != nil {
		s.t.Fatalf("send: %v", err)
	}
	resp, err := s.s.Recv()
	if err != nil {
		s.t.Fatalf("recv: %v", err)
	}
	return resp
}

// request sends request headers and body for a chat completion with the
// given API key, namespace and output budget (and extra headers as
// name/value pairs), and returns the reply to the body (or to the headers,
// when they were answered immediately).
func (s *stream) request(apiKey, namespace string, maxTokens int, extra ...string) *extprocv3.ProcessingResponse {
	s.t.Helper()
	h := []string{":method", "POST", ":path", "/v1/chat/completions", ":authority", "api.openai.com", ":scheme", "https",
		"authorization", "Bearer " + apiKey, "content-type", "application/json"}
	h = append(h, extra...)
	if namespace != "" {
		h = append(h, "x-arl-namespace", namespace)
	}
	r := s.roundTrip(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestHeaders{
		RequestHeaders: &extprocv3.HttpHeaders{Headers: hmap(h...)}}})
	if r.GetImmediateResponse() != nil {
		return r
	}
	if r.GetRequestHeaders() == nil {
		s.t.Fatalf("request headers answered with %v", r)
	}
	body := fmt.Sprintf(`{"model":"gpt-4o-mini","stream":true,"max_tokens":%d,"messages":[{"role":"user","content":"hi"}]}`, maxTokens)
	return s.roundTrip(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestBody{
		RequestBody: &extprocv3.HttpBody{Body: []byte(body), EndOfStream: true}}})
}

func (s *stream) responseHeaders(kv ...string) {
	s.t.Helper()
	r := s.roundTrip(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseHeaders{
		ResponseHeaders: &extprocv3.HttpHeaders{Headers: hmap(kv...)}}})
	if r.GetResponseHeaders() == nil {
		s.t.Fatalf("response headers answered with %v", r)
	}
}

func (s *stream) responseChunk(data string, eos bool) {
	s.t.Helper()
	r := s.roundTrip(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseBody{
		ResponseBody: &extprocv3.HttpBody{Body: []byte(data), EndOfStream: eos}}})
	if r.GetResponseBody() == nil {
		s.t.Fatalf("response body answered with %v", r)
	}
}

func (s *stream) finish() {
	s.t.Helper()
	_ = s.s.CloseSend()
	if _, err := s.s.Recv(); err != io.EOF {
		s.t.Fatalf("end of stream: %v", err)
	}
}

func admitted(t *testing.T, r *extprocv3.ProcessingResponse, what string) {
	t.Helper()
	if r.GetRequestBody() == nil {
		t.Fatalf("%s: not admitted: %v", what, r)
	}
}

// rejected asserts a 429 immediate response and returns its headers.
func rejected(t *testing.T, r *extprocv3.ProcessingResponse, what string) map[string]string {
	t.Helper()
	ir := r.GetImmediateResponse()
	if ir == nil || ir.GetStatus().GetCode() != 429 {
		t.Fatalf("%s: want a 429 immediate response, got %v", what, r)
	}
	h := map[string]string{}
	for _, o := range ir.GetHeaders().GetSetHeaders() {
		if o.GetHeader().GetValue() != "" && len(o.GetHeader().GetRawValue()) > 0 {
			t.Fatalf("%s: header %s sets both value and raw_value", what, o.GetHeader().GetKey())
		}
		h[o.GetHeader().GetKey()] = string(o.GetHeader().GetRawValue()) + o.GetHeader().GetValue()
	}
	var body struct{ Error struct{ Code string } }
	if err := json.Unmarshal(ir.GetBody(), &body); err != nil || body.Error.Code != "rate_limit_exceeded" {
		t.Fatalf("%s: body %q", what, ir.GetBody())
	}
	return h
}

const usageChunk = "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":8,\"completion_tokens\":12,\"total_tokens\":20}}\n\ndata: [DONE]\n\n"

// completeStream answers s with 200, the given rate-limit headers and a
// short SSE stream that ends with usage.
func completeStream(s *stream, headers ...string) {
	s.responseHeaders(append([]string{":status", "200", "content-type", "text/event-stream"}, headers...)...)
	s.responseChunk("data: {\"choices\":[{\"delta\":{\"content\":\"Hello\"}}]}\n\n", false)
	s.responseChunk(usageChunk, true)
	s.finish()
}

func TestProtocolLearnedRequestLimit(t *testing.T) {
	c := dial(t, startARL(t).GRPC)

	s := c.open()
	admitted(t, s.request("sk-alpha", "", 10), "first request")
	completeStream(s, "x-ratelimit-limit-requests", "100", "x-ratelimit-remaining-requests", "0", "x-ratelimit-reset-requests", "20s")

	h := rejected(t, c.open().request("sk-alpha", "", 10), "same key after remaining-requests 0")
	if ra, _ := strconv.Atoi(h["retry-after"]); ra < 19 || ra > 20 {
		t.Fatalf("retry-after %q, want 20", h["retry-after"])
	}
	if ms, _ := strconv.Atoi(h["retry-after-ms"]); ms < 19000 || ms > 20000 {
		t.Fatalf("retry-after-ms %q, want about 20000", h["retry-after-ms"])
	}
	if h["x-arl-reason"] != "requests" || h["content-type"] != "application/json" {
		t.Fatalf("headers %v", h)
	}

	s = c.open()
	admitted(t, s.request("sk-beta", "", 10), "another API key")
	completeStream(s)
	s = c.open()
	admitted(t, s.request("sk-alpha", "team-b", 10), "same key in another namespace")
	completeStream(s)
}

// learn1000 teaches the sk-tokens bucket a 1000-token limit.
func learn1000(t *testing.T, c *client) {
	s := c.open()
	admitted(t, s.request("sk-tokens", "", 1), "probe")
	completeStream(s, "x-ratelimit-limit-tokens", "1000", "x-ratelimit-remaining-tokens", "1000",
		"x-ratelimit-limit-requests", "1000", "x-ratelimit-remaining-requests", "1000")
}

func TestProtocolTokenReservationHeldThenRefunded(t *testing.T) {
	c := dial(t, startARL(t).GRPC)
	learn1000(t, c)

	first := c.open()
	admitted(t, first.request("sk-tokens", "", 590), "first 600-token request")
	first.responseHeaders(":status", "200", "content-type", "text/event-stream")
	first.responseChunk("data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\n", false)

	h := rejected(t, c.open().request("sk-tokens", "", 590), "second 600-token request while the first streams")
	if h["x-arl-reason"] != "tokens" {
		t.Fatalf("reason %q", h["x-arl-reason"])
	}
	first.responseChunk(usageChunk, true)
	first.finish()

	s := c.open()
	admitted(t, s.request("sk-tokens", "", 590), "second request after the first settled with small usage")
	completeStream(s)
}

func TestProtocolDisconnectReleases(t *testing.T) {
	for _, graceful := range []bool{false, true} {
		t.Run(fmt.Sprintf("graceful=%v", graceful), func(t *testing.T) {
			c := dial(t, startARL(t).GRPC)
			learn1000(t, c)
			first := c.open()
			admitted(t, first.request("sk-tokens", "", 590), "first request")
			first.responseHeaders(":status", "200", "content-type", "text/event-stream")
			first.responseChunk("data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\n", false)
			rejected(t, c.open().request("sk-tokens", "", 590), "second request while the first streams")
			if graceful {
				_ = first.s.CloseSend() // Envoy with graceful close: half-close
			} else {
				first.cancel() // Envoy resets the stream when the client disconnects
			}
			// The server settles asynchronously to the client's reset.
			eventually(t, 5*time.Second, 10*time.Millisecond, func() (bool, string) {
				s := c.open()
				r := s.request("sk-tokens", "", 590)
				if r.GetRequestBody() != nil {
					completeStream(s)
					return true, ""
				}
				s.cancel()
				return false, fmt.Sprintf("still rejected after the disconnect: %v", r)
			})
		})
	}
}
