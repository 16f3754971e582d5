package extproc

import (
	"context"
	"io"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	filterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/adaptive-rate-limiter/arl/backend/memory"
	"github.com/adaptive-rate-limiter/arl/limiter"
	"github.com/adaptive-rate-limiter/arl/limiter/bucket"
	"github.com/adaptive-rate-limiter/arl/limiter/metrics"
)

type env struct {
	client extprocv3.ExternalProcessorClient
	be     *memory.Backend
}

func start(t *testing.T, cfg limiter.Config) *env {
	t.Helper()
	return startWith(t, cfg, Options{})
}

func startWith(t *testing.T, cfg limiter.Config, opts Options) *env {
	t.Helper()
	be := memory.New(memory.Options{})
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	m := metrics.New(nil)
	l, err := limiter.New(cfg, be, m, log)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	extprocv3.RegisterExternalProcessorServer(gs, NewServer(l, m, log, opts))
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return &env{client: extprocv3.NewExternalProcessorClient(conn), be: be}
}

func headers(kv ...string) *corev3.HeaderMap {
	hm := &corev3.HeaderMap{}
	for i := 0; i+1 < len(kv); i += 2 {
		hm.Headers = append(hm.Headers, &corev3.HeaderValue{Key: kv[i], RawValue: []byte(kv[i+1])})
	}
	return hm
}

func reqHeaders(eos bool, kv ...string) *extprocv3.ProcessingRequest {
	base := []string{":method", "POST", ":path", "/v1/chat/completions", ":authority", "api.openai.com", ":scheme", "https", "authorization", "Bearer sk-test"}
	return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestHeaders{
		RequestHeaders: &extprocv3.HttpHeaders{Headers: headers(append(base, kv...)...), EndOfStream: eos}}}
}

func reqBody(body string) *extprocv3.ProcessingRequest {
	return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestBody{
		RequestBody: &extprocv3.HttpBody{Body: []byte(body), EndOfStream: true}}}
}

func respHeaders(status string, kv ...string) *extprocv3.ProcessingRequest {
	return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseHeaders{
		ResponseHeaders: &extprocv3.HttpHeaders{Headers: headers(append([]string{":status", status}, kv...)...)}}}
}

func respBody(body string, eos bool) *extprocv3.ProcessingRequest {
	return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseBody{
		ResponseBody: &extprocv3.HttpBody{Body: []byte(body), EndOfStream: eos}}}
}

func exchange(t *testing.T, s extprocv3.ExternalProcessor_ProcessClient, req *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
	t.Helper()
	if err := s.Send(req); err != nil {
		t.Fatalf("send: %v", err)
	}
	resp, err := s.Recv()
	if err != nil {
		t.Fatalf("recv: %v", err)
	}
	return resp
}

const chat = `{"model":"gpt-4o-mini","max_tokens":590,"stream":true,"messages":[{"role":"user","content":"hi"}]}`

func TestFullExchange(t *testing.T) {
	e := start(t, limiter.Config{Defaults: bucket.Limits{bucket.Requests: 10, bucket.Tokens: 1000}})
	s, err := e.client.Process(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if r := exchange(t, s, reqHeaders(false)); r.GetRequestHeaders() == nil || r.ModeOverride != nil {
		t.Fatalf("request headers reply %v", r)
	}
	if r := exchange(t, s, reqBody(chat)); r.GetRequestBody() == nil {
		t.Fatalf("request body reply %v", r)
	}
	if r := exchange(t, s, respHeaders("200", "content-type", "text/event-stream")); r.GetResponseHeaders() == nil || r.ModeOverride != nil {
		t.Fatalf("response headers reply %v", r)
	}
	for i, chunk := range []string{"data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n", "\n", "data: [DONE]\n\n"} {
		if r := exchange(t, s, respBody(chunk, i == 2)); r.GetResponseBody() == nil {
			t.Fatalf("chunk %d reply %v", i, r)
		}
	}
	_ = s.CloseSend()
	if _, err := s.Recv(); err != io.EOF {
		t.Fatalf("stream end: %v", err)
	}
	st, ok, _ := e.be.Get(context.Background(), bucket.Key{Namespace: "default", Provider: "openai", Account: bucket.AccountID("sk-test"), Model: "gpt-4o-mini"}, time.Now())
	if !ok || st.InFlight != 0 {
		t.Fatalf("bucket after the stream: ok=%v in flight %d", ok, st.InFlight)
	}
}

func TestPassThroughOverridesModes(t *testing.T) {
	e := start(t, limiter.Config{})
	s, _ := e.client.Process(context.Background())
	r := exchange(t, s, &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestHeaders{
		RequestHeaders: &extprocv3.HttpHeaders{Headers: headers(":method", "GET", ":path", "/v1/models", ":authority", "api.openai.com"), EndOfStream: true}}})
	mo := r.GetModeOverride()
	if r.GetRequestHeaders() == nil || mo == nil || mo.RequestBodyMode != filterv3.ProcessingMode_NONE ||
		mo.ResponseHeaderMode != filterv3.ProcessingMode_SKIP || mo.ResponseBodyMode != filterv3.ProcessingMode_NONE {
		t.Fatalf("pass-through reply %v", r)
	}
	// Envoy without allow_mode_override keeps sending: everything is acknowledged.
	if r := exchange(t, s, respHeaders("200")); r.GetResponseHeaders() == nil {
		t.Fatalf("reply %v", r)
	}
	if r := exchange(t, s, respBody("{}", true)); r.GetResponseBody() == nil {
		t.Fatalf("reply %v", r)
	}
}

func TestNon2xxStopsResponseBody(t *testing.T) {
	e := start(t, limiter.Config{})
	s, _ := e.client.Process(context.Background())
	exchange(t, s, reqHeaders(false))
	exchange(t, s, reqBody(chat))
	r := exchange(t, s, respHeaders("500", "content-type", "application/json"))
	if r.GetResponseHeaders() == nil || r.GetModeOverride().GetResponseBodyMode() != filterv3.ProcessingMode_NONE {
		t.Fatalf("reply %v", r)
	}
}

func TestRejectionIsImmediateResponse(t *testing.T) {
	e := start(t, limiter.Config{Defaults: bucket.Limits{bucket.Requests: 1}})
	for i := range 2 {
		s, _ := e.client.Process(context.Background())
		exchange(t, s, reqHeaders(false))
		r := exchange(t, s, reqBody(chat))
		if i == 0 {
			if r.GetRequestBody() == nil {
				t.Fatalf("first request: %v", r)
			}
			continue
		}
		ir := r.GetImmediateResponse()
		if ir == nil || ir.GetStatus().GetCode() != 429 {
			t.Fatalf("second request: %v", r)
		}
		got := map[string]string{}
		for _, h := range ir.GetHeaders().GetSetHeaders() {
			if h.GetHeader().GetValue() != "" {
				t.Fatalf("header %s sets value as well as raw_value", h.GetHeader().GetKey())
			}
			got[h.GetHeader().GetKey()] = string(h.GetHeader().GetRawValue())
		}
		ms, _ := strconv.Atoi(got["retry-after-ms"])
		if got["retry-after"] != "60" || got["x-arl-reason"] != "requests" || got["content-type"] != "application/json" || ms < 59000 || ms > 60000 {
			t.Fatalf("headers %v", got)
		}
		if len(ir.GetBody()) == 0 {
			t.Fatal("empty body")
		}
	}
}

func TestOutOfOrderEndsStream(t *testing.T) {
	tests := []struct {
		name string
		msgs []*extprocv3.ProcessingRequest
	}{
		{"body before headers", []*extprocv3.ProcessingRequest{reqBody(chat)}},
		{"response body before response headers", []*extprocv3.ProcessingRequest{reqHeaders(false), reqBody(chat), respBody("x", true)}},
		{"headers twice", []*extprocv3.ProcessingRequest{reqHeaders(false), reqHeaders(false)}},
		{"response headers before the request body", []*extprocv3.ProcessingRequest{reqHeaders(false), respHeaders("200")}},
		{"request headers again after the reservation", []*extprocv3.ProcessingRequest{reqHeaders(false), reqBody(chat), reqHeaders(false)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := start(t, limiter.Config{Defaults: bucket.Limits{bucket.Requests: 100}})
			s, _ := e.client.Process(context.Background())
			var err error
			for _, m := range tc.msgs {
				if err = s.Send(m); err != nil {
					break
				}
				if _, err = s.Recv(); err != nil {
					break
				}
			}
			if status.Code(err) != codes.FailedPrecondition {
				t.Fatalf("err %v, want FailedPrecondition", err)
			}
			// Nothing stays reserved.
			waitInFlight(t, e.be, 0)
		})
	}
}

// TestTrailersEndRequestBody: a request whose body ends with trailers (its
// last chunk without end_of_stream) is reserved when the trailers arrive, and
// rejected there when it does not fit.
func TestTrailersEndRequestBody(t *testing.T) {
	e := start(t, limiter.Config{Defaults: bucket.Limits{bucket.Requests: 1, bucket.Tokens: 1000}})
	trailers := &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestTrailers{
		RequestTrailers: &extprocv3.HttpTrailers{Trailers: headers("x-checksum", "1")}}}
	partial := &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestBody{
		RequestBody: &extprocv3.HttpBody{Body: []byte(chat), EndOfStream: false}}}

	s, err := e.client.Process(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	exchange(t, s, reqHeaders(false))
	if r := exchange(t, s, partial); r.GetRequestBody() == nil {
		t.Fatalf("body chunk reply %v", r)
	}
	waitInFlight(t, e.be, 0)
	if r := exchange(t, s, trailers); r.GetRequestTrailers() == nil {
		t.Fatalf("trailers reply %v", r)
	}
	waitInFlight(t, e.be, 1)
	if r := exchange(t, s, respHeaders("200", "content-type", "application/json")); r.GetResponseHeaders() == nil {
		t.Fatalf("response headers reply %v", r)
	}

	// The one request a minute is taken: the next is rejected at its trailers.
	s2, err := e.client.Process(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	exchange(t, s2, reqHeaders(false))
	exchange(t, s2, partial)
	if r := exchange(t, s2, trailers); r.GetImmediateResponse().GetStatus().GetCode() != 429 {
		t.Fatalf("second request's trailers reply %v, want a 429", r)
	}
	exchange(t, s, respBody(`{"usage":{"prompt_tokens":3,"completion_tokens":2}}`, true))
	waitInFlight(t, e.be, 0)
}

// TestRequestBodyAboveBound: a body sent in chunks past MaxRequestBytes is
// not kept, but it is reserved on its size (bytes / 4 tokens plus the default
// output budget) and forwarded: the stream does not fail, so Envoy's
// failure_mode_allow cannot let it bypass the accounting.
func TestRequestBodyAboveBound(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	e := startWith(t, limiter.Config{Defaults: bucket.Limits{bucket.Requests: 10, bucket.Tokens: 100000}, DefaultMaxTokens: 100,
		Clock: func() time.Time { return t0 }}, Options{MaxRequestBytes: 1000})
	s, err := e.client.Process(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	exchange(t, s, reqHeaders(false))
	chunk := strings.Repeat("x", 800)
	for i, eos := range []bool{false, false, true} {
		r := exchange(t, s, &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestBody{
			RequestBody: &extprocv3.HttpBody{Body: []byte(chunk), EndOfStream: eos}}})
		if r.GetRequestBody() == nil {
			t.Fatalf("chunk %d reply %v", i, r)
		}
	}
	// The reservation is made before the last chunk's reply.
	entries, err := e.be.List(context.Background(), t0)
	if err != nil || len(entries) != 1 || entries[0].State.InFlight != 1 {
		t.Fatalf("buckets %+v, %v; want one with one reservation", entries, err)
	}
	// 2400 bytes: 601 prompt tokens and 100 of output budget.
	if taken := 100000 - entries[0].State.Dims[bucket.Tokens].Level; taken != 701 {
		t.Fatalf("reserved %v tokens, want 701", taken)
	}
}

func waitInFlight(t *testing.T, be *memory.Backend, want int64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		var total int64
		entries, _ := be.List(context.Background(), time.Now())
		for _, e := range entries {
			total += e.State.InFlight
		}
		if total == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("in flight %d, want %d", total, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestCancelReleasesReservation(t *testing.T) {
	for _, graceful := range []bool{false, true} {
		e := start(t, limiter.Config{Defaults: bucket.Limits{bucket.Requests: 100, bucket.Tokens: 1000}})
		ctx, cancel := context.WithCancel(context.Background())
		s, _ := e.client.Process(ctx)
		exchange(t, s, reqHeaders(false))
		exchange(t, s, reqBody(chat))
		exchange(t, s, respHeaders("200", "content-type", "text/event-stream"))
		exchange(t, s, respBody("data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\n", false))
		waitInFlight(t, e.be, 1)
		if graceful {
			_ = s.CloseSend()
		} else {
			cancel()
		}
		waitInFlight(t, e.be, 0)
		cancel()
		entries, _ := e.be.List(context.Background(), time.Now())
		if lvl := entries[0].State.Dims[bucket.Tokens].Level; lvl < 950 {
			t.Fatalf("graceful=%v: tokens level %v: the unused budget was not returned", graceful, lvl)
		}
	}
}

func TestInjectStreamUsage(t *testing.T) {
	e := start(t, limiter.Config{InjectStreamUsage: true, Defaults: bucket.Limits{bucket.Requests: 10, bucket.Tokens: 10_000}})
	s, _ := e.client.Process(context.Background())
	exchange(t, s, reqHeaders(false))
	r := exchange(t, s, reqBody(chat))
	common := r.GetRequestBody().GetResponse()
	body := common.GetBodyMutation().GetBody()
	if !strings.Contains(string(body), `"include_usage":true`) {
		t.Fatalf("request body not rewritten: %v", r)
	}
	hs := common.GetHeaderMutation().GetSetHeaders()
	if len(hs) != 1 || hs[0].GetHeader().GetKey() != "content-length" || string(hs[0].GetHeader().GetRawValue()) != strconv.Itoa(len(body)) {
		t.Fatalf("content-length not set to %d: %v", len(body), hs)
	}
	exchange(t, s, respHeaders("200", "content-type", "text/event-stream"))
	r = exchange(t, s, respBody("data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}],\"usage\":null}\n\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,", false))
	if got := string(r.GetResponseBody().GetResponse().GetBodyMutation().GetBody()); got != "data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\n" {
		t.Fatalf("first chunk rewritten to %q", got)
	}
	r = exchange(t, s, respBody("\"completion_tokens\":1,\"total_tokens\":4}}\n\n", false))
	if !r.GetResponseBody().GetResponse().GetBodyMutation().GetClearBody() {
		t.Fatalf("usage-only chunk not removed: %v", r)
	}
	r = exchange(t, s, respBody("data: [DONE]\n\n", true))
	if got := string(r.GetResponseBody().GetResponse().GetBodyMutation().GetBody()); got != "data: [DONE]\n\n" {
		t.Fatalf("last chunk %q", got)
	}
}

func TestTrustedHeadersRemovedBeforeUpstream(t *testing.T) {
	e := start(t, limiter.Config{})
	for _, tc := range []struct {
		name string
		req  *extprocv3.ProcessingRequest
	}{
		{"LLM request", reqHeaders(false, "x-arl-namespace", "team-a", "x-arl-provider", "openai")},
		{"pass-through", &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestHeaders{RequestHeaders: &extprocv3.HttpHeaders{
			Headers: headers(":method", "GET", ":path", "/v1/models", ":authority", "api.openai.com", "x-arl-namespace", "team-a", "x-arl-provider", "openai"), EndOfStream: true}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := e.client.Process(context.Background())
			r := exchange(t, s, tc.req)
			got := r.GetRequestHeaders().GetResponse().GetHeaderMutation().GetRemoveHeaders()
			if !slices.Equal(got, []string{"x-arl-namespace", "x-arl-provider"}) {
				t.Fatalf("remove_headers %v, want arl's two trusted headers (reply %v)", got, r)
			}
		})
	}
	// Without them, the reply mutates nothing.
	s, _ := e.client.Process(context.Background())
	if r := exchange(t, s, reqHeaders(false)); r.GetRequestHeaders().GetResponse() != nil {
		t.Fatalf("reply %v mutates a request without trusted headers", r)
	}
}
