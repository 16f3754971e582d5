package standin

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocsvc "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/durationpb"
)

// waitLimit bounds every wait in these tests; reaching it is a failure, never a pass.
const waitLimit = 5 * time.Second

// handler scripts a fake processor: it gets each message and returns the replies to send.
// nil means the default empty reply of the matching kind; noReply sends nothing. send sends
// a reply at once, for scripts that must send something before they block.
type handler func(ctx context.Context, req *extprocsvc.ProcessingRequest, send sender) []*extprocsvc.ProcessingResponse

// sender sends one reply on the processor stream.
type sender func(*extprocsvc.ProcessingResponse)

var noReply = []*extprocsvc.ProcessingResponse{}

// fakeProcessor is an ext_proc server that records every message and how each stream ended.
type fakeProcessor struct {
	extprocsvc.UnimplementedExternalProcessorServer
	handle handler

	mu   sync.Mutex
	reqs []*extprocsvc.ProcessingRequest
	// ends receives the Recv error that ended each stream (io.EOF for a half-close).
	ends chan error
}

func (f *fakeProcessor) Process(srv extprocsvc.ExternalProcessor_ProcessServer) error {
	for {
		req, err := srv.Recv()
		if err != nil {
			f.ends <- err
			return nil
		}
		f.mu.Lock()
		f.reqs = append(f.reqs, req)
		f.mu.Unlock()
		var sendErr error
		send := func(r *extprocsvc.ProcessingResponse) {
			if err := srv.Send(r); err != nil && sendErr == nil {
				sendErr = err
			}
		}
		replies := f.handle(srv.Context(), req, send)
		if sendErr != nil {
			return sendErr
		}
		if replies == nil {
			replies = []*extprocsvc.ProcessingResponse{continueReply(req)}
		}
		for _, r := range replies {
			if err := srv.Send(r); err != nil {
				return err
			}
		}
	}
}

// received returns the messages recorded so far.
func (f *fakeProcessor) received() []*extprocsvc.ProcessingRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*extprocsvc.ProcessingRequest(nil), f.reqs...)
}

// kinds names the recorded messages in order.
func (f *fakeProcessor) kinds() []string {
	var out []string
	for _, r := range f.received() {
		out = append(out, requestKind(r))
	}
	return out
}

// streamEnd waits for the end of the next stream and returns its Recv error.
func (f *fakeProcessor) streamEnd(t *testing.T) error {
	t.Helper()
	select {
	case err := <-f.ends:
		return err
	case <-time.After(waitLimit):
		t.Fatal("processor stream did not end")
		return nil
	}
}

// startProcessor serves h on a loopback port and returns a client connection to it.
func startProcessor(t *testing.T, h handler) (*fakeProcessor, *grpc.ClientConn) {
	t.Helper()
	if h == nil {
		h = func(context.Context, *extprocsvc.ProcessingRequest, sender) []*extprocsvc.ProcessingResponse {
			return nil
		}
	}
	f := &fakeProcessor{handle: h, ends: make(chan error, 64)}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	extprocsvc.RegisterExternalProcessorServer(srv, f)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return f, conn
}

// upstreamRequest is what the upstream received.
type upstreamRequest struct {
	Method, Path, Host string
	Header             http.Header
	Body               string
}

// startUpstream serves h, or by default a JSON answer, recording every request.
func startUpstream(t *testing.T, h http.HandlerFunc) (*httptest.Server, chan upstreamRequest) {
	t.Helper()
	got := make(chan upstreamRequest, 64)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("upstream: read body: %v", err)
		}
		select {
		case got <- upstreamRequest{r.Method, r.URL.RequestURI(), r.Host, r.Header.Clone(), string(b)}:
		default:
			t.Errorf("upstream: more than %d requests", cap(got))
		}
		if h != nil {
			h(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Upstream", "yes")
		_, _ = io.WriteString(w, `{"ok":true}`)
	}))
	t.Cleanup(srv.Close)
	return srv, got
}

// startStandIn serves a StandIn configured from envoy.yaml, then edit.
func startStandIn(t *testing.T, conn grpc.ClientConnInterface, upstream string, edit func(*Config)) (*StandIn, *httptest.Server) {
	t.Helper()
	cfg, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	cfg.Processor = conn
	cfg.Upstream, err = url.Parse(upstream)
	if err != nil {
		t.Fatal(err)
	}
	// envoy.yaml's 1 s message timeout, but the test machine may be a busy 2-core box under
	// -race: tests about timeouts set their own.
	cfg.Filter.MessageTimeout = durationpb.New(waitLimit)
	if edit != nil {
		edit(&cfg)
	}
	si, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(si)
	t.Cleanup(func() {
		srv.Close()
		si.Close()
	})
	return si, srv
}

// do sends a request to the stand-in and returns status, headers and body.
func do(t *testing.T, method, target, body string, hdr map[string]string) (int, http.Header, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, target, rd)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, target, err)
	}
	return resp.StatusCode, resp.Header, string(b)
}

// continueReply is the empty reply of the kind that matches req.
func continueReply(req *extprocsvc.ProcessingRequest) *extprocsvc.ProcessingResponse {
	cr := &extprocsvc.CommonResponse{}
	switch req.GetRequest().(type) {
	case *extprocsvc.ProcessingRequest_RequestHeaders:
		return &extprocsvc.ProcessingResponse{Response: &extprocsvc.ProcessingResponse_RequestHeaders{RequestHeaders: &extprocsvc.HeadersResponse{Response: cr}}}
	case *extprocsvc.ProcessingRequest_RequestBody:
		return &extprocsvc.ProcessingResponse{Response: &extprocsvc.ProcessingResponse_RequestBody{RequestBody: &extprocsvc.BodyResponse{Response: cr}}}
	case *extprocsvc.ProcessingRequest_ResponseHeaders:
		return &extprocsvc.ProcessingResponse{Response: &extprocsvc.ProcessingResponse_ResponseHeaders{ResponseHeaders: &extprocsvc.HeadersResponse{Response: cr}}}
	case *extprocsvc.ProcessingRequest_ResponseBody:
		return &extprocsvc.ProcessingResponse{Response: &extprocsvc.ProcessingResponse_ResponseBody{ResponseBody: &extprocsvc.BodyResponse{Response: cr}}}
	}
	return &extprocsvc.ProcessingResponse{}
}

// withCommon is continueReply(req) carrying cr.
func withCommon(req *extprocsvc.ProcessingRequest, cr *extprocsvc.CommonResponse) *extprocsvc.ProcessingResponse {
	r := continueReply(req)
	switch v := r.GetResponse().(type) {
	case *extprocsvc.ProcessingResponse_RequestHeaders:
		v.RequestHeaders.Response = cr
	case *extprocsvc.ProcessingResponse_RequestBody:
		v.RequestBody.Response = cr
	case *extprocsvc.ProcessingResponse_ResponseHeaders:
		v.ResponseHeaders.Response = cr
	case *extprocsvc.ProcessingResponse_ResponseBody:
		v.ResponseBody.Response = cr
	}
	return r
}

func requestKind(r *extprocsvc.ProcessingRequest) string {
	switch r.GetRequest().(type) {
	case *extprocsvc.ProcessingRequest_RequestHeaders:
		return "request_headers"
	case *extprocsvc.ProcessingRequest_RequestBody:
		return "request_body"
	case *extprocsvc.ProcessingRequest_ResponseHeaders:
		return "response_headers"
	case *extprocsvc.ProcessingRequest_ResponseBody:
		return "response_body"
	}
	return "other"
}

// rawHeader builds a HeaderValueOption with the value in raw_value.
func rawHeader(key, value string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: key, RawValue: []byte(value)}}
}

// headerValue returns the raw value of key in a header map sent by the stand-in.
func headerValue(m *corev3.HeaderMap, key string) (string, bool) {
	for _, h := range m.GetHeaders() {
		if h.GetKey() == key {
			return string(h.GetRawValue()), true
		}
	}
	return "", false
}

// fakeClock records the timers the stand-in starts and fires them on demand.
type fakeClock struct {
	mu     sync.Mutex
	timers []*fakeTimer
	events chan string
}

func newFakeClock() *fakeClock { return &fakeClock{events: make(chan string, 256)} }

func (c *fakeClock) NewTimer(d time.Duration) Timer {
	t := &fakeTimer{c: make(chan time.Time, 1), clock: c, active: true}
	c.mu.Lock()
	c.timers = append(c.timers, t)
	c.mu.Unlock()
	c.events <- "new " + d.String()
	return t
}

// fire fires every active timer.
func (c *fakeClock) fire() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, t := range c.timers {
		t.mu.Lock()
		if t.active {
			t.active = false
			select {
			case t.c <- time.Now():
			default:
			}
		}
		t.mu.Unlock()
	}
}

// expect waits for the clock's next event and checks it.
func (c *fakeClock) expect(t *testing.T, want string) {
	t.Helper()
	select {
	case got := <-c.events:
		if got != want {
			t.Fatalf("clock event = %q, want %q", got, want)
		}
	case <-time.After(waitLimit):
		t.Fatalf("no clock event, want %q", want)
	}
}

type fakeTimer struct {
	mu     sync.Mutex
	c      chan time.Time
	clock  *fakeClock
	active bool
}

func (t *fakeTimer) C() <-chan time.Time { return t.c }

func (t *fakeTimer) Stop() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	was := t.active
	t.active = false
	return was
}

func (t *fakeTimer) Reset(d time.Duration) bool {
	t.mu.Lock()
	was := t.active
	t.active = true
	t.mu.Unlock()
	t.clock.events <- "reset " + d.String()
	return was
}

// isEOF reports whether err is what a gRPC server sees when the client half-closes.
func isEOF(err error) bool { return errors.Is(err, io.EOF) }
