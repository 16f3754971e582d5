package standin

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocsvc "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

func TestMessageOrderAndHeaderEncoding(t *testing.T) {
	cases := []struct {
		name      string
		method    string
		body      string
		wantKinds []string
	}{
		{"POST with body", http.MethodPost, `{"model":"gpt-4o","messages":[]}`,
			[]string{"request_headers", "request_body", "response_headers", "response_body"}},
		{"GET without body", http.MethodGet, "",
			[]string{"request_headers", "response_headers", "response_body"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			proc, conn := startProcessor(t, nil)
			up, upGot := startUpstream(t, nil)
			si, srv := startStandIn(t, conn, up.URL, nil)

			code, hdr, body := do(t, tc.method, srv.URL+"/v1/chat/completions?x=1", tc.body, map[string]string{
				"X-Custom":        "a",
				"Authorization":   "Bearer sk-test",
				"Accept-Encoding": "gzip",
			})
			if code != http.StatusOK || body != `{"ok":true}` || hdr.Get("X-Upstream") != "yes" {
				t.Fatalf("response = %d %q %v, want the upstream's 200", code, body, hdr)
			}
			if err := proc.streamEnd(t); err == nil {
				t.Error("stream ended without error")
			}
			if got := proc.kinds(); !slices.Equal(got, tc.wantKinds) {
				t.Fatalf("messages = %v, want %v", got, tc.wantKinds)
			}
			msgs := proc.received()

			// First message: protocol_config, pseudo-headers, lower-case keys, raw_value only.
			first := msgs[0]
			pc := first.GetProtocolConfig()
			if pc.GetRequestBodyMode() != extprocv3.ProcessingMode_BUFFERED || pc.GetResponseBodyMode() != extprocv3.ProcessingMode_STREAMED {
				t.Errorf("protocol_config = %v, want BUFFERED/STREAMED", pc)
			}
			for _, m := range msgs[1:] {
				if m.GetProtocolConfig() != nil {
					t.Errorf("%s carries protocol_config; only the first message may", requestKind(m))
				}
			}
			rh := first.GetRequestHeaders()
			if rh.GetEndOfStream() != (tc.body == "") {
				t.Errorf("request_headers end_of_stream = %v, want %v", rh.GetEndOfStream(), tc.body == "")
			}
			for _, h := range rh.GetHeaders().GetHeaders() {
				if h.GetValue() != "" || len(h.GetRawValue()) == 0 {
					t.Errorf("header %q: value=%q raw_value=%q, want the value in raw_value only", h.GetKey(), h.GetValue(), h.GetRawValue())
				}
				if h.GetKey() != strings.ToLower(h.GetKey()) {
					t.Errorf("header key %q is not lower-case", h.GetKey())
				}
			}
			want := map[string]string{
				":method":           tc.method,
				":path":             "/v1/chat/completions?x=1",
				":scheme":           "http",
				":authority":        strings.TrimPrefix(srv.URL, "http://"),
				"x-custom":          "a",
				"authorization":     "Bearer sk-test",
				"accept-encoding":   "gzip",
				"x-forwarded-proto": "http",
			}
			for k, v := range want {
				if got, ok := headerValue(rh.GetHeaders(), k); !ok || got != v {
					t.Errorf("request header %s = %q (present %v), want %q", k, got, ok, v)
				}
			}
			if id, ok := headerValue(rh.GetHeaders(), "x-request-id"); !ok || len(id) != 36 {
				t.Errorf("x-request-id = %q, want a generated UUID", id)
			}
			if tc.body != "" {
				rb := msgs[1].GetRequestBody()
				if string(rb.GetBody()) != tc.body || !rb.GetEndOfStream() {
					t.Errorf("request_body = %q eos=%v, want the whole body with end_of_stream", rb.GetBody(), rb.GetEndOfStream())
				}
			}
			resp := msgs[len(msgs)-2].GetResponseHeaders()
			if s, _ := headerValue(resp.GetHeaders(), ":status"); s != "200" || resp.GetEndOfStream() {
				t.Errorf("response_headers :status=%q eos=%v, want 200 with a body to come", s, resp.GetEndOfStream())
			}
			if ct, _ := headerValue(resp.GetHeaders(), "content-type"); ct != "application/json" {
				t.Errorf("response content-type = %q", ct)
			}
			last := msgs[len(msgs)-1].GetResponseBody()
			if string(last.GetBody()) != `{"ok":true}` || !last.GetEndOfStream() {
				t.Errorf("response_body = %q eos=%v: a content-length body ends with its last bytes", last.GetBody(), last.GetEndOfStream())
			}

			// The route: host rewritten, accept-encoding removed after processing.
			got := <-upGot
			if got.Host != "api.openai.com" {
				t.Errorf("upstream Host = %q, want api.openai.com", got.Host)
			}
			if got.Header.Get("Accept-Encoding") != "" {
				t.Errorf("upstream got Accept-Encoding %q, want it removed", got.Header.Get("Accept-Encoding"))
			}
			if got.Body != tc.body || got.Header.Get("X-Custom") != "a" || got.Path != "/v1/chat/completions?x=1" {
				t.Errorf("upstream got %+v", got)
			}

			st := si.Stats()
			wantSent := MessageCounts{RequestHeaders: 1, ResponseHeaders: 1, ResponseBody: 1}
			if tc.body != "" {
				wantSent.RequestBody = 1
			}
			if st.Sent != wantSent || st.Received != wantSent || st.StreamsOpened != 1 || st.ProcessingErrors != 0 {
				t.Errorf("stats = %+v", st)
			}
		})
	}
}

func TestBufferLimit(t *testing.T) {
	cases := []struct {
		size     int
		wantCode int
		wantMsgs []string
	}{
		{1024, http.StatusOK, []string{"request_headers", "request_body", "response_headers", "response_body"}},
		{1025, http.StatusRequestEntityTooLarge, []string{"request_headers"}},
	}
	for _, tc := range cases {
		t.Run(strconv.Itoa(tc.size), func(t *testing.T) {
			proc, conn := startProcessor(t, nil)
			up, upGot := startUpstream(t, nil)
			si, srv := startStandIn(t, conn, up.URL, func(c *Config) { c.BufferLimit = 1024 })
			code, _, body := do(t, http.MethodPost, srv.URL+"/v1/chat/completions", strings.Repeat("x", tc.size), nil)
			if code != tc.wantCode {
				t.Fatalf("status = %d %q, want %d", code, body, tc.wantCode)
			}
			proc.streamEnd(t)
			if got := proc.kinds(); !slices.Equal(got, tc.wantMsgs) {
				t.Errorf("messages = %v, want %v", got, tc.wantMsgs)
			}
			tooLarge := int64(0)
			if tc.wantCode == http.StatusRequestEntityTooLarge {
				tooLarge = 1
				if len(upGot) != 0 {
					t.Error("a too large request reached the upstream")
				}
			}
			if got := si.Stats().PayloadTooLarge; got != tooLarge {
				t.Errorf("PayloadTooLarge = %d, want %d", got, tooLarge)
			}
		})
	}
}

// rateLimited is an immediate 429 as arl sends it.
func rateLimited() *extprocsvc.ProcessingResponse {
	return &extprocsvc.ProcessingResponse{Response: &extprocsvc.ProcessingResponse_ImmediateResponse{
		ImmediateResponse: &extprocsvc.ImmediateResponse{
			Status: &typev3.HttpStatus{Code: typev3.StatusCode_TooManyRequests},
			Headers: &extprocsvc.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{
				rawHeader("retry-after", "3"),
				rawHeader("content-type", "application/json"),
				rawHeader("x-arl-reason", "tokens"),
			}},
			Body:    []byte(`{"error":{"code":"rate_limit_exceeded"}}`),
			Details: "arl_rate_limited",
		},
	}}
}

func TestImmediateResponse(t *testing.T) {
	cases := []struct {
		phase        string
		wantUpstream bool
		wantMsgs     []string
	}{
		{"request_headers", false, []string{"request_headers"}},
		{"request_body", false, []string{"request_headers", "request_body"}},
		{"response_headers", true, []string{"request_headers", "request_body", "response_headers"}},
	}
	for _, tc := range cases {
		t.Run(tc.phase, func(t *testing.T) {
			proc, conn := startProcessor(t, func(_ context.Context, req *extprocsvc.ProcessingRequest, _ sender) []*extprocsvc.ProcessingResponse {
				if requestKind(req) == tc.phase {
					return []*extprocsvc.ProcessingResponse{rateLimited()}
				}
				return nil
			})
			up, upGot := startUpstream(t, nil)
			si, srv := startStandIn(t, conn, up.URL, nil)
			code, hdr, body := do(t, http.MethodPost, srv.URL+"/v1/chat/completions", `{"model":"m"}`, nil)
			if code != http.StatusTooManyRequests || body != `{"error":{"code":"rate_limit_exceeded"}}` {
				t.Fatalf("response = %d %q, want the immediate 429", code, body)
			}
			for k, v := range map[string]string{"Retry-After": "3", "Content-Type": "application/json", "X-Arl-Reason": "tokens"} {
				if hdr.Get(k) != v {
					t.Errorf("%s = %q, want %q", k, hdr.Get(k), v)
				}
			}
			proc.streamEnd(t)
			if got := proc.kinds(); !slices.Equal(got, tc.wantMsgs) {
				t.Errorf("messages = %v, want %v", got, tc.wantMsgs)
			}
			if reached := len(upGot) > 0; reached != tc.wantUpstream {
				t.Errorf("upstream reached = %v, want %v", reached, tc.wantUpstream)
			}
			if st := si.Stats(); st.ImmediateResponses != 1 || st.Received.ImmediateResponse != 1 {
				t.Errorf("stats = %+v", st)
			}
		})
	}
}

func TestImmediateResponseWhileStreamingResetsClient(t *testing.T) {
	proc, conn := startProcessor(t, func(_ context.Context, req *extprocsvc.ProcessingRequest, _ sender) []*extprocsvc.ProcessingResponse {
		if b := req.GetResponseBody(); b != nil && strings.Contains(string(b.GetBody()), "two") {
			return []*extprocsvc.ProcessingResponse{rateLimited()}
		}
		return nil
	})
	gotOne := make(chan struct{})
	up, _ := startUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = w.Write([]byte("data: one\n\n"))
		w.(http.Flusher).Flush()
		select {
		case <-gotOne:
		case <-r.Context().Done():
			return
		}
		_, _ = w.Write([]byte("data: two\n\n"))
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	})
	si, srv := startStandIn(t, conn, up.URL, nil)

	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/v1/chat/completions", strings.NewReader(`{}`))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status = %d, want the upstream's 200 (headers were already sent)", resp.StatusCode)
	}
	rd := bufio.NewReader(resp.Body)
	line, err := rd.ReadString('\n')
	if err != nil || line != "data: one\n" {
		t.Fatalf("first line = %q, %v", line, err)
	}
	close(gotOne)
	rest, err := io.ReadAll(rd)
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("body ended with %v, want io.ErrUnexpectedEOF (stream reset)", err)
	}
	if strings.Contains(string(rest), "two") || strings.Contains(string(rest), "rate_limit") {
		t.Errorf("client got %q after the first event, want nothing", rest)
	}
	proc.streamEnd(t)
	if st := si.Stats(); st.ClientResets != 1 || st.ImmediateResponses != 1 {
		t.Errorf("stats = %+v", st)
	}
}

func TestImmediateResponseHeaderEncoding(t *testing.T) {
	cases := []struct {
		name        string
		header      *corev3.HeaderValue
		wantValue   string
		wantPresent bool
		wantStats   func(Stats) bool
	}{
		{"raw_value", &corev3.HeaderValue{Key: "x-a", RawValue: []byte("1")}, "1", true,
			func(s Stats) bool { return s.ValueOnlyHeaders == 0 && s.InvalidMutations == 0 }},
		{"value only is applied empty", &corev3.HeaderValue{Key: "x-a", Value: "1"}, "", true,
			func(s Stats) bool { return s.ValueOnlyHeaders == 1 }},
		{"both is refused", &corev3.HeaderValue{Key: "x-a", Value: "1", RawValue: []byte("1")}, "", false,
			func(s Stats) bool { return s.InvalidMutations == 1 && s.RejectedHeaderMutations == 1 }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, conn := startProcessor(t, func(context.Context, *extprocsvc.ProcessingRequest, sender) []*extprocsvc.ProcessingResponse {
				return []*extprocsvc.ProcessingResponse{{Response: &extprocsvc.ProcessingResponse_ImmediateResponse{
					ImmediateResponse: &extprocsvc.ImmediateResponse{
						Status:  &typev3.HttpStatus{Code: typev3.StatusCode_TooManyRequests},
						Headers: &extprocsvc.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{{Header: tc.header}}},
					},
				}}}
			})
			up, _ := startUpstream(t, nil)
			si, srv := startStandIn(t, conn, up.URL, nil)
			code, hdr, _ := do(t, http.MethodGet, srv.URL+"/", "", nil)
			if code != http.StatusTooManyRequests {
				t.Fatalf("status = %d, want 429 (Envoy sends the reply even when a header fails)", code)
			}
			vals, present := hdr["X-A"]
			if present != tc.wantPresent || (present && vals[0] != tc.wantValue) {
				t.Errorf("x-a = %q (present %v), want %q (present %v)", vals, present, tc.wantValue, tc.wantPresent)
			}
			if st := si.Stats(); !tc.wantStats(st) {
				t.Errorf("stats = %+v", st)
			}
		})
	}
}

func TestHeaderMutation(t *testing.T) {
	proc, conn := startProcessor(t, func(_ context.Context, req *extprocsvc.ProcessingRequest, _ sender) []*extprocsvc.ProcessingResponse {
		switch requestKind(req) {
		case "request_headers":
			return []*extprocsvc.ProcessingResponse{withCommon(req, &extprocsvc.CommonResponse{HeaderMutation: &extprocsvc.HeaderMutation{
				SetHeaders: []*corev3.HeaderValueOption{
					rawHeader("x-added", "yes"),
					rawHeader("x-custom", "replaced"),
					{Header: &corev3.HeaderValue{Key: "x-multi", RawValue: []byte("2")}, Append: wrapperspb.Bool(true)},
					{Header: &corev3.HeaderValue{Key: "x-custom", RawValue: []byte("ignored")}, AppendAction: corev3.HeaderValueOption_ADD_IF_ABSENT},
					{Header: &corev3.HeaderValue{Key: "x-absent", RawValue: []byte("ignored")}, AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS},
					rawHeader(":path", "/v1/responses"),
					rawHeader(":authority", "evil.example"), // not allowed by Envoy's default rules
					rawHeader("x-envoy-foo", "1"),           // not allowed either
				},
				RemoveHeaders: []string{"x-remove", ":method"}, // pseudo-headers cannot be removed
			}})}
		case "response_headers":
			return []*extprocsvc.ProcessingResponse{withCommon(req, &extprocsvc.CommonResponse{HeaderMutation: &extprocsvc.HeaderMutation{
				SetHeaders:    []*corev3.HeaderValueOption{rawHeader("x-arl-bucket", "b1")},
				RemoveHeaders: []string{"x-upstream"},
			}})}
		}
		return nil
	})
	up, upGot := startUpstream(t, nil)
	si, srv := startStandIn(t, conn, up.URL, nil)
	code, hdr, _ := do(t, http.MethodPost, srv.URL+"/v1/chat/completions", `{}`, map[string]string{
		"X-Custom": "orig", "X-Remove": "1", "X-Multi": "1",
	})
	if code != http.StatusOK {
		t.Fatalf("status = %d", code)
	}
	got := <-upGot
	checks := []struct {
		name string
		ok   bool
	}{
		{"x-added set", got.Header.Get("X-Added") == "yes"},
		{"x-custom overwritten, ADD_IF_ABSENT kept it", slices.Equal(got.Header["X-Custom"], []string{"replaced"})},
		{"x-multi appended", slices.Equal(got.Header["X-Multi"], []string{"1", "2"})},
		{"OVERWRITE_IF_EXISTS did not add", got.Header.Get("X-Absent") == ""},
		{"x-remove removed", got.Header.Get("X-Remove") == ""},
		{":path rewritten", got.Path == "/v1/responses"},
		{"x-envoy-foo refused", got.Header.Get("X-Envoy-Foo") == ""},
		{":method kept", got.Method == http.MethodPost},
		{"response header added", hdr.Get("X-Arl-Bucket") == "b1"},
		{"response header removed", hdr.Get("X-Upstream") == ""},
	}
	for _, c := range checks {
		if !c.ok {
			t.Errorf("%s: upstream got %+v, client got %v", c.name, got, hdr)
		}
	}
	proc.streamEnd(t)
	if st := si.Stats(); st.RejectedHeaderMutations != 3 || st.ProcessingErrors != 0 {
		t.Errorf("RejectedHeaderMutations = %d, ProcessingErrors = %d, want 3 and 0", st.RejectedHeaderMutations, st.ProcessingErrors)
	}
}

func TestBothValueAndRawValueIsAProcessingError(t *testing.T) {
	for _, failOpen := range []bool{true, false} {
		t.Run("failure_mode_allow="+strconv.FormatBool(failOpen), func(t *testing.T) {
			proc, conn := startProcessor(t, func(_ context.Context, req *extprocsvc.ProcessingRequest, _ sender) []*extprocsvc.ProcessingResponse {
				return []*extprocsvc.ProcessingResponse{withCommon(req, &extprocsvc.CommonResponse{HeaderMutation: &extprocsvc.HeaderMutation{
					SetHeaders: []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "x-a", Value: "1", RawValue: []byte("1")}}},
				}})}
			})
			up, upGot := startUpstream(t, nil)
			si, srv := startStandIn(t, conn, up.URL, func(c *Config) { c.Filter.FailureModeAllow = failOpen })
			code, _, _ := do(t, http.MethodGet, srv.URL+"/", "", nil)
			if code != http.StatusInternalServerError {
				t.Errorf("status = %d, want 500 whatever failure_mode_allow says", code)
			}
			proc.streamEnd(t)
			if len(upGot) != 0 {
				t.Error("request reached the upstream")
			}
			if st := si.Stats(); st.InvalidMutations != 1 || st.ProcessingErrors != 1 || st.FailOpen != 0 {
				t.Errorf("stats = %+v", st)
			}
		})
	}
}

func TestModeOverride(t *testing.T) {
	noBodies := &extprocv3.ProcessingMode{} // body modes unset: NONE
	cases := []struct {
		name         string
		allow        bool
		overrideIn   string
		override     *extprocv3.ProcessingMode
		wantMsgs     []string
		wantHonoured int64
		wantIgnored  int64
	}{
		{"request headers reply switches bodies off", true, "request_headers", noBodies,
			[]string{"request_headers", "response_headers"}, 1, 0},
		{"not allowed", false, "request_headers", noBodies,
			[]string{"request_headers", "request_body", "response_headers", "response_body"}, 0, 1},
		{"body reply is not a header state", true, "request_body", noBodies,
			[]string{"request_headers", "request_body", "response_headers", "response_body"}, 0, 1},
		{"response headers reply stops response body", true, "response_headers",
			&extprocv3.ProcessingMode{RequestBodyMode: extprocv3.ProcessingMode_BUFFERED},
			[]string{"request_headers", "request_body", "response_headers"}, 1, 0},
		{"skip response headers, keep streaming the body", true, "request_headers",
			&extprocv3.ProcessingMode{ResponseHeaderMode: extprocv3.ProcessingMode_SKIP, RequestBodyMode: extprocv3.ProcessingMode_BUFFERED, ResponseBodyMode: extprocv3.ProcessingMode_STREAMED},
			[]string{"request_headers", "request_body", "response_body"}, 1, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			proc, conn := startProcessor(t, func(_ context.Context, req *extprocsvc.ProcessingRequest, _ sender) []*extprocsvc.ProcessingResponse {
				r := continueReply(req)
				if requestKind(req) == tc.overrideIn {
					r.ModeOverride = tc.override
				}
				return []*extprocsvc.ProcessingResponse{r}
			})
			up, upGot := startUpstream(t, nil)
			si, srv := startStandIn(t, conn, up.URL, func(c *Config) { c.Filter.AllowModeOverride = tc.allow })
			code, _, body := do(t, http.MethodPost, srv.URL+"/v1/embeddings", `{"input":"x"}`, nil)
			if code != http.StatusOK || body != `{"ok":true}` {
				t.Fatalf("response = %d %q", code, body)
			}
			if got := (<-upGot).Body; got != `{"input":"x"}` {
				t.Errorf("upstream body = %q", got)
			}
			proc.streamEnd(t)
			if got := proc.kinds(); !slices.Equal(got, tc.wantMsgs) {
				t.Errorf("messages = %v, want %v", got, tc.wantMsgs)
			}
			if st := si.Stats(); st.ModeOverridesHonoured != tc.wantHonoured || st.ModeOverridesIgnored != tc.wantIgnored {
				t.Errorf("mode overrides honoured/ignored = %d/%d, want %d/%d", st.ModeOverridesHonoured, st.ModeOverridesIgnored, tc.wantHonoured, tc.wantIgnored)
			}
		})
	}
}

// timeoutOverride is a ProcessingResponse carrying only override_message_timeout.
func timeoutOverride(d time.Duration) *extprocsvc.ProcessingResponse {
	return &extprocsvc.ProcessingResponse{OverrideMessageTimeout: durationpb.New(d)}
}

func TestOverrideMessageTimeout(t *testing.T) {
	cases := []struct {
		name string
		// overrides are sent in reply to request_headers, before the real reply.
		overrides []time.Duration
		// events are the clock events expected after the request_headers timer starts.
		events       []string
		wantHonoured int64
		wantIgnored  int64
	}{
		{"honoured", []time.Duration{10 * time.Second}, []string{"reset 10s"}, 1, 0},
		{"once per state", []time.Duration{10 * time.Second, 20 * time.Second, 15 * time.Second}, []string{"reset 10s"}, 1, 2},
		{"above max_message_timeout", []time.Duration{100 * time.Second, 5 * time.Second}, []string{"reset 5s"}, 1, 1},
		{"below 1ms", []time.Duration{time.Microsecond, 5 * time.Second}, []string{"reset 5s"}, 1, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			release := make(chan struct{})
			clock := newFakeClock()
			_, conn := startProcessor(t, func(ctx context.Context, req *extprocsvc.ProcessingRequest, send sender) []*extprocsvc.ProcessingResponse {
				if requestKind(req) != "request_headers" {
					return nil
				}
				// Like arl holding a queued request: extend the timeout, then answer later.
				for _, d := range tc.overrides {
					send(timeoutOverride(d))
				}
				select {
				case <-release:
				case <-ctx.Done():
				}
				return nil
			})
			up, _ := startUpstream(t, nil)
			si, srv := startStandIn(t, conn, up.URL, func(c *Config) { c.Clock = clock })

			done := make(chan int, 1)
			go func() {
				code, _, _ := do(t, http.MethodGet, srv.URL+"/", "", nil)
				done <- code
			}()
			clock.expect(t, "new "+waitLimit.String()) // request_headers sent, message timeout armed
			for _, ev := range tc.events {
				clock.expect(t, ev)
			}
			close(release)
			if code := <-done; code != http.StatusOK {
				t.Fatalf("status = %d", code)
			}
			if st := si.Stats(); st.TimeoutOverridesHonoured != tc.wantHonoured || st.TimeoutOverridesIgnored != tc.wantIgnored || st.MessageTimeouts != 0 {
				t.Errorf("overrides honoured/ignored = %d/%d (timeouts %d), want %d/%d", st.TimeoutOverridesHonoured, st.TimeoutOverridesIgnored, st.MessageTimeouts, tc.wantHonoured, tc.wantIgnored)
			}
		})
	}
}

func TestOverriddenTimerStillExpires(t *testing.T) {
	clock := newFakeClock()
	proc, conn := startProcessor(t, func(ctx context.Context, req *extprocsvc.ProcessingRequest, send sender) []*extprocsvc.ProcessingResponse {
		send(timeoutOverride(10 * time.Second))
		<-ctx.Done() // holds the request past the extended timeout
		return noReply
	})
	up, upGot := startUpstream(t, nil)
	si, srv := startStandIn(t, conn, up.URL, func(c *Config) {
		c.Clock = clock
		c.Filter.FailureModeAllow = false
	})
	done := make(chan int, 1)
	go func() {
		code, _, _ := do(t, http.MethodGet, srv.URL+"/", "", nil)
		done <- code
	}()
	clock.expect(t, "new "+waitLimit.String())
	clock.expect(t, "reset 10s")
	clock.fire() // the extended timer expires
	if code := <-done; code != http.StatusGatewayTimeout {
		t.Errorf("status = %d, want 504", code)
	}
	proc.streamEnd(t)
	if len(upGot) != 0 {
		t.Error("request reached the upstream")
	}
	if st := si.Stats(); st.TimeoutOverridesHonoured != 1 || st.MessageTimeouts != 1 {
		t.Errorf("stats = %+v", st)
	}
}

func TestMessageTimeout(t *testing.T) {
	cases := []struct {
		failOpen     bool
		wantCode     int
		wantUpstream bool
	}{
		{true, http.StatusOK, true},
		{false, http.StatusGatewayTimeout, false},
	}
	for _, tc := range cases {
		t.Run("failure_mode_allow="+strconv.FormatBool(tc.failOpen), func(t *testing.T) {
			proc, conn := startProcessor(t, func(ctx context.Context, req *extprocsvc.ProcessingRequest, _ sender) []*extprocsvc.ProcessingResponse {
				<-ctx.Done() // never answers
				return noReply
			})
			up, upGot := startUpstream(t, nil)
			si, srv := startStandIn(t, conn, up.URL, func(c *Config) {
				c.Filter.FailureModeAllow = tc.failOpen
				c.Filter.MessageTimeout = durationpb.New(20 * time.Millisecond)
			})
			code, _, _ := do(t, http.MethodPost, srv.URL+"/v1/chat/completions", `{}`, nil)
			if code != tc.wantCode {
				t.Fatalf("status = %d, want %d", code, tc.wantCode)
			}
			if reached := len(upGot) > 0; reached != tc.wantUpstream {
				t.Errorf("upstream reached = %v, want %v", reached, tc.wantUpstream)
			}
			if err := proc.streamEnd(t); status.Code(err) != codes.Canceled && !isEOF(err) {
				t.Errorf("processor saw %v", err)
			}
			if got := proc.kinds(); !slices.Equal(got, []string{"request_headers"}) {
				t.Errorf("messages = %v: after a timeout nothing more goes to the processor", got)
			}
			failOpen := int64(0)
			if tc.failOpen {
				failOpen = 1
			}
			if st := si.Stats(); st.MessageTimeouts != 1 || st.FailOpen != failOpen || st.ProcessingErrors != 1 {
				t.Errorf("stats = %+v", st)
			}
		})
	}
}

func TestStreamedChunksWaitForReplies(t *testing.T) {
	var (
		mu     sync.Mutex
		events []string
	)
	logEvent := func(e string) {
		mu.Lock()
		events = append(events, e)
		mu.Unlock()
	}
	clientRead := make(chan struct{}, 4)
	proc, conn := startProcessor(t, func(_ context.Context, req *extprocsvc.ProcessingRequest, _ sender) []*extprocsvc.ProcessingResponse {
		b := req.GetResponseBody()
		if b == nil {
			return nil
		}
		logEvent("processor:" + strings.TrimSpace(string(b.GetBody())) + ":" + strconv.FormatBool(b.GetEndOfStream()))
		if strings.Contains(string(b.GetBody()), "two") {
			return []*extprocsvc.ProcessingResponse{withCommon(req, &extprocsvc.CommonResponse{
				BodyMutation: &extprocsvc.BodyMutation{Mutation: &extprocsvc.BodyMutation_Body{Body: []byte("data: TWO\n\n")}},
			})}
		}
		return nil
	})
	up, _ := startUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for _, ev := range []string{"data: one\n\n", "data: two\n\n"} {
			_, _ = w.Write([]byte(ev))
			w.(http.Flusher).Flush()
			select { // the next event only after the client saw this one: proves the flush
			case <-clientRead:
			case <-r.Context().Done():
				return
			}
		}
	})
	si, srv := startStandIn(t, conn, up.URL, nil)

	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/v1/chat/completions", strings.NewReader(`{"stream":true}`))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.ContentLength != -1 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Errorf("content-length %d, type %q: want a chunked event stream", resp.ContentLength, resp.Header.Get("Content-Type"))
	}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if line := sc.Text(); line != "" {
			logEvent("client:" + line)
			clientRead <- struct{}{}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	proc.streamEnd(t)

	want := []string{
		"processor:data: one:false", "client:data: one",
		"processor:data: two:false", "client:data: TWO",
		"processor::true",
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(events, want) {
		t.Errorf("events = %q, want %q", events, want)
	}
	if st := si.Stats(); st.Sent.ResponseBody != 3 || st.Received.ResponseBody != 3 {
		t.Errorf("stats = %+v", st)
	}
}

func TestClientDisconnect(t *testing.T) {
	cases := []struct {
		graceful bool
		check    func(error) bool
		want     string
	}{
		{false, func(err error) bool { return status.Code(err) == codes.Canceled }, "codes.Canceled"},
		{true, isEOF, "io.EOF"},
	}
	for _, tc := range cases {
		t.Run("graceful="+strconv.FormatBool(tc.graceful), func(t *testing.T) {
			held := make(chan struct{})
			proc, conn := startProcessor(t, func(ctx context.Context, req *extprocsvc.ProcessingRequest, _ sender) []*extprocsvc.ProcessingResponse {
				if requestKind(req) == "request_body" {
					close(held) // arl queues the request: no reply yet
					return noReply
				}
				return nil
			})
			up, upGot := startUpstream(t, nil)
			si, srv := startStandIn(t, conn, up.URL, func(c *Config) { c.GracefulClose = tc.graceful })

			ctx, cancel := context.WithCancel(context.Background())
			errc := make(chan error, 1)
			go func() {
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/v1/chat/completions", strings.NewReader(`{}`))
				resp, err := http.DefaultClient.Do(req)
				if err == nil {
					resp.Body.Close()
				}
				errc <- err
			}()
			select {
			case <-held:
			case <-time.After(waitLimit):
				t.Fatal("request body never reached the processor")
			}
			cancel()
			if err := <-errc; err == nil {
				t.Error("client request succeeded after cancel")
			}
			if err := proc.streamEnd(t); !tc.check(err) {
				t.Errorf("processor saw %v, want %s", err, tc.want)
			}
			if len(upGot) != 0 {
				t.Error("a cancelled request reached the upstream")
			}
			if st := si.Stats(); st.ClientDisconnects != 1 {
				t.Errorf("ClientDisconnects = %d, want 1", st.ClientDisconnects)
			}
		})
	}
}

func TestSpuriousReply(t *testing.T) {
	cases := []struct {
		name     string
		failOpen bool
		reply    func(req *extprocsvc.ProcessingRequest) []*extprocsvc.ProcessingResponse
		wantCode int
	}{
		{"mismatched kind, fail closed", false, func(*extprocsvc.ProcessingRequest) []*extprocsvc.ProcessingResponse {
			return []*extprocsvc.ProcessingResponse{continueReply(&extprocsvc.ProcessingRequest{Request: &extprocsvc.ProcessingRequest_ResponseBody{}})}
		}, http.StatusInternalServerError},
		{"mismatched kind, fail open", true, func(*extprocsvc.ProcessingRequest) []*extprocsvc.ProcessingResponse {
			return []*extprocsvc.ProcessingResponse{continueReply(&extprocsvc.ProcessingRequest{Request: &extprocsvc.ProcessingRequest_ResponseBody{}})}
		}, http.StatusOK},
		{"empty reply, fail closed", false, func(*extprocsvc.ProcessingRequest) []*extprocsvc.ProcessingResponse {
			return []*extprocsvc.ProcessingResponse{{}}
		}, http.StatusInternalServerError},
		{"two replies to one message, fail closed", false, func(req *extprocsvc.ProcessingRequest) []*extprocsvc.ProcessingResponse {
			return []*extprocsvc.ProcessingResponse{continueReply(req), continueReply(req)}
		}, http.StatusInternalServerError},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			proc, conn := startProcessor(t, func(_ context.Context, req *extprocsvc.ProcessingRequest, _ sender) []*extprocsvc.ProcessingResponse {
				if requestKind(req) == "request_headers" {
					return tc.reply(req)
				}
				return nil
			})
			up, _ := startUpstream(t, nil)
			si, srv := startStandIn(t, conn, up.URL, func(c *Config) { c.Filter.FailureModeAllow = tc.failOpen })
			code, _, _ := do(t, http.MethodPost, srv.URL+"/v1/chat/completions", `{}`, nil)
			if code != tc.wantCode {
				t.Errorf("status = %d, want %d", code, tc.wantCode)
			}
			proc.streamEnd(t)
			if st := si.Stats(); st.SpuriousReplies != 1 || st.ProcessingErrors != 1 {
				t.Errorf("stats = %+v", st)
			}
		})
	}
}

func TestProcessorClosesStreamEarly(t *testing.T) {
	for _, failOpen := range []bool{true, false} {
		t.Run("failure_mode_allow="+strconv.FormatBool(failOpen), func(t *testing.T) {
			lis, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			srv := grpc.NewServer()
			extprocsvc.RegisterExternalProcessorServer(srv, closer{})
			go func() { _ = srv.Serve(lis) }()
			t.Cleanup(srv.Stop)
			conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = conn.Close() })
			up, upGot := startUpstream(t, nil)
			si, hs := startStandIn(t, conn, up.URL, func(c *Config) { c.Filter.FailureModeAllow = failOpen })
			code, _, _ := do(t, http.MethodPost, hs.URL+"/v1/chat/completions", `{}`, nil)
			if code != http.StatusOK || len(upGot) != 1 {
				t.Errorf("status = %d, upstream hits %d: a clean close by the processor lets the request through", code, len(upGot))
			}
			if st := si.Stats(); st.StreamsClosedByProcessor != 1 || st.ProcessingErrors != 0 {
				t.Errorf("stats = %+v", st)
			}
		})
	}
}

// closer is a processor that reads one message and ends the stream with OK.
type closer struct {
	extprocsvc.UnimplementedExternalProcessorServer
}

func (closer) Process(srv extprocsvc.ExternalProcessor_ProcessServer) error {
	_, err := srv.Recv()
	return err
}

func TestProcessorUnreachable(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close() // nothing listens there any more
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	cases := []struct {
		failOpen bool
		wantCode int
	}{
		{true, http.StatusOK},
		{false, http.StatusInternalServerError},
	}
	for _, tc := range cases {
		t.Run("failure_mode_allow="+strconv.FormatBool(tc.failOpen), func(t *testing.T) {
			up, _ := startUpstream(t, nil)
			si, srv := startStandIn(t, conn, up.URL, func(c *Config) { c.Filter.FailureModeAllow = tc.failOpen })
			code, _, _ := do(t, http.MethodPost, srv.URL+"/v1/chat/completions", `{}`, nil)
			if code != tc.wantCode {
				t.Errorf("status = %d, want %d", code, tc.wantCode)
			}
			if st := si.Stats(); st.GRPCErrors != 1 {
				t.Errorf("stats = %+v", st)
			}
		})
	}
}

func TestUpstreamUnreachable(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + lis.Addr().String()
	lis.Close()
	proc, conn := startProcessor(t, nil)
	si, srv := startStandIn(t, conn, dead, nil)
	code, _, body := do(t, http.MethodPost, srv.URL+"/v1/chat/completions", `{}`, nil)
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "upstream connect error") {
		t.Errorf("response = %d %q, want Envoy's 503", code, body)
	}
	proc.streamEnd(t)
	if got := proc.kinds(); !slices.Equal(got, []string{"request_headers", "request_body"}) {
		t.Errorf("messages = %v: Envoy's local reply is not sent to the processor", got)
	}
	if st := si.Stats(); st.UpstreamFailures != 1 {
		t.Errorf("stats = %+v", st)
	}
}

func TestBufferedBodyMutation(t *testing.T) {
	newBody := `{"model":"small"}`
	cases := []struct {
		name          string
		setLength     bool
		wantCode      int
		wantForwarded string
	}{
		{"with matching content-length", true, http.StatusOK, newBody},
		{"content-length left stale", false, http.StatusInternalServerError, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, conn := startProcessor(t, func(_ context.Context, req *extprocsvc.ProcessingRequest, _ sender) []*extprocsvc.ProcessingResponse {
				if requestKind(req) != "request_body" {
					return nil
				}
				cr := &extprocsvc.CommonResponse{BodyMutation: &extprocsvc.BodyMutation{Mutation: &extprocsvc.BodyMutation_Body{Body: []byte(newBody)}}}
				if tc.setLength {
					cr.HeaderMutation = &extprocsvc.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{rawHeader("content-length", strconv.Itoa(len(newBody)))}}
				}
				return []*extprocsvc.ProcessingResponse{withCommon(req, cr)}
			})
			up, upGot := startUpstream(t, nil)
			_, srv := startStandIn(t, conn, up.URL, nil)
			code, _, _ := do(t, http.MethodPost, srv.URL+"/v1/chat/completions", `{"model":"a-much-larger-model"}`, nil)
			if code != tc.wantCode {
				t.Fatalf("status = %d, want %d", code, tc.wantCode)
			}
			if tc.wantForwarded != "" {
				if got := (<-upGot).Body; got != tc.wantForwarded {
					t.Errorf("upstream body = %q, want %q", got, tc.wantForwarded)
				}
			}
		})
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	def, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	_, conn := startProcessor(t, nil)
	up, _ := startUpstream(t, nil)
	base := def
	base.Processor = conn
	base.Upstream, _ = url.Parse(up.URL)
	cases := []struct {
		name string
		edit func(*Config)
	}{
		{"no processor", func(c *Config) { c.Processor = nil }},
		{"no upstream", func(c *Config) { c.Upstream = nil }},
		{"relative upstream", func(c *Config) { c.Upstream, _ = url.Parse("/x") }},
		{"observability mode", func(c *Config) { c.Filter.ObservabilityMode = true }},
		{"streamed request body", func(c *Config) {
			c.Filter.ProcessingMode.RequestBodyMode = extprocv3.ProcessingMode_STREAMED
		}},
		{"full duplex response body", func(c *Config) {
			c.Filter.ProcessingMode.ResponseBodyMode = extprocv3.ProcessingMode_FULL_DUPLEX_STREAMED
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Default()
			if err != nil {
				t.Fatal(err)
			}
			cfg.Processor, cfg.Upstream = base.Processor, base.Upstream
			tc.edit(&cfg)
			if _, err := New(cfg); err == nil {
				t.Error("New accepted the config")
			}
		})
	}
	if _, err := New(base); err != nil {
		t.Errorf("New(base) = %v", err)
	}
}

func TestConfigFromEnvoyYAML(t *testing.T) {
	fromFile, err := FromEnvoyYAML("../../envoy/envoy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	def, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	if fromFile.BufferLimit != 16<<20 || fromFile.HostRewrite != "api.openai.com" ||
		!slices.Equal(fromFile.RemoveRequestHeaders, []string{"accept-encoding"}) || fromFile.KeepHost {
		t.Errorf("config = %+v", fromFile)
	}
	if fromFile.BufferLimit != def.BufferLimit || fromFile.HostRewrite != def.HostRewrite ||
		fromFile.Filter.String() != def.Filter.String() {
		t.Error("FromEnvoyYAML(envoy.yaml) differs from Default()")
	}
}

func TestBufferedResponseBody(t *testing.T) {
	proc, conn := startProcessor(t, func(_ context.Context, req *extprocsvc.ProcessingRequest, _ sender) []*extprocsvc.ProcessingResponse {
		switch requestKind(req) {
		case "response_headers":
			r := continueReply(req)
			r.ModeOverride = &extprocv3.ProcessingMode{
				RequestBodyMode:  extprocv3.ProcessingMode_BUFFERED,
				ResponseBodyMode: extprocv3.ProcessingMode_BUFFERED,
			}
			return []*extprocsvc.ProcessingResponse{r}
		case "response_body":
			// Headers are still held in BUFFERED mode, so this mutation reaches the client.
			return []*extprocsvc.ProcessingResponse{withCommon(req, &extprocsvc.CommonResponse{
				HeaderMutation: &extprocsvc.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{rawHeader("x-usage", "12")}},
			})}
		}
		return nil
	})
	up, _ := startUpstream(t, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		for _, part := range []string{`{"usage":`, `{"total_tokens":12}}`} {
			_, _ = w.Write([]byte(part))
			w.(http.Flusher).Flush()
		}
	})
	_, srv := startStandIn(t, conn, up.URL, nil)
	code, hdr, body := do(t, http.MethodPost, srv.URL+"/v1/chat/completions", `{}`, nil)
	if code != http.StatusOK || body != `{"usage":{"total_tokens":12}}` || hdr.Get("X-Usage") != "12" {
		t.Fatalf("response = %d %q %v", code, body, hdr)
	}
	proc.streamEnd(t)
	msgs := proc.received()
	last := msgs[len(msgs)-1].GetResponseBody()
	if string(last.GetBody()) != body || !last.GetEndOfStream() {
		t.Errorf("last message = %v, want the whole body in one response_body with end_of_stream", last)
	}
	if got := proc.kinds(); !slices.Equal(got, []string{"request_headers", "request_body", "response_headers", "response_body"}) {
		t.Errorf("messages = %v", got)
	}
}

func TestContinueAndReplace(t *testing.T) {
	proc, conn := startProcessor(t, func(_ context.Context, req *extprocsvc.ProcessingRequest, _ sender) []*extprocsvc.ProcessingResponse {
		if requestKind(req) != "request_headers" {
			return nil
		}
		return []*extprocsvc.ProcessingResponse{withCommon(req, &extprocsvc.CommonResponse{
			Status:         extprocsvc.CommonResponse_CONTINUE_AND_REPLACE,
			HeaderMutation: &extprocsvc.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{rawHeader(":method", "PUT")}},
			BodyMutation:   &extprocsvc.BodyMutation{Mutation: &extprocsvc.BodyMutation_Body{Body: []byte("replaced")}},
		})}
	})
	up, upGot := startUpstream(t, nil)
	_, srv := startStandIn(t, conn, up.URL, nil)
	code, _, _ := do(t, http.MethodPost, srv.URL+"/v1/chat/completions", `{"original":true}`, nil)
	if code != http.StatusOK {
		t.Fatalf("status = %d", code)
	}
	got := <-upGot
	if got.Body != "replaced" || got.Method != http.MethodPut {
		t.Errorf("upstream got %s %q, want PUT \"replaced\"", got.Method, got.Body)
	}
	proc.streamEnd(t)
	if kinds := proc.kinds(); slices.Contains(kinds, "request_body") {
		t.Errorf("messages = %v: after CONTINUE_AND_REPLACE the request body is not sent", kinds)
	}
}

func TestTimeoutWhileStreamingFailClosedResetsClient(t *testing.T) {
	_, conn := startProcessor(t, func(ctx context.Context, req *extprocsvc.ProcessingRequest, _ sender) []*extprocsvc.ProcessingResponse {
		if requestKind(req) == "response_body" {
			<-ctx.Done() // stalls on the first chunk
			return noReply
		}
		return nil
	})
	up, _ := startUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = w.Write([]byte("data: one\n\n"))
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	})
	si, srv := startStandIn(t, conn, up.URL, func(c *Config) {
		c.Filter.FailureModeAllow = false
		c.Filter.MessageTimeout = durationpb.New(50 * time.Millisecond)
	})
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/v1/chat/completions", strings.NewReader(`{}`))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status = %d: headers went out before the body stalled", resp.StatusCode)
	}
	if _, err := io.ReadAll(resp.Body); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("body ended with %v, want a reset", err)
	}
	if st := si.Stats(); st.MessageTimeouts != 1 || st.ClientResets != 1 {
		t.Errorf("stats = %+v", st)
	}
}

func TestRequestIDIsKept(t *testing.T) {
	proc, conn := startProcessor(t, nil)
	up, _ := startUpstream(t, nil)
	_, srv := startStandIn(t, conn, up.URL, nil)
	do(t, http.MethodGet, srv.URL+"/v1/models", "", map[string]string{"X-Request-Id": "req-1"})
	proc.streamEnd(t)
	if id, _ := headerValue(proc.received()[0].GetRequestHeaders().GetHeaders(), "x-request-id"); id != "req-1" {
		t.Errorf("x-request-id = %q, want the client's", id)
	}
}

func TestConcurrentRequests(t *testing.T) {
	const n = 8
	proc, conn := startProcessor(t, nil)
	up, _ := startUpstream(t, nil)
	si, srv := startStandIn(t, conn, up.URL, nil)
	var wg sync.WaitGroup
	codes := make(chan int, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, _, _ := do(t, http.MethodPost, srv.URL+"/v1/chat/completions", `{"model":"m"}`, nil)
			codes <- code
		}()
	}
	wg.Wait()
	close(codes)
	for c := range codes {
		if c != http.StatusOK {
			t.Errorf("status = %d", c)
		}
	}
	for range n {
		proc.streamEnd(t)
	}
	if st := si.Stats(); st.StreamsOpened != n || st.Sent.RequestBody != n || st.Received.ResponseBody != n {
		t.Errorf("stats = %+v", st)
	}
}

// A processor with gRPC's default 4 MiB receive limit cannot take a bigger buffered body: the
// stream fails and, with failure_mode_allow, the request bypasses the processor. arl's server
// must raise its limit to the listener's buffer limit.
func TestBodyAboveProcessorReceiveLimit(t *testing.T) {
	proc, conn := startProcessor(t, nil)
	up, upGot := startUpstream(t, nil)
	si, srv := startStandIn(t, conn, up.URL, nil)
	big := strings.Repeat("x", 5<<20)
	code, _, _ := do(t, http.MethodPost, srv.URL+"/v1/chat/completions", big, nil)
	if code != http.StatusOK {
		t.Fatalf("status = %d, want 200 (fail open)", code)
	}
	if got := <-upGot; len(got.Body) != len(big) {
		t.Errorf("upstream body = %d bytes, want %d", len(got.Body), len(big))
	}
	if err := proc.streamEnd(t); status.Code(err) != codes.ResourceExhausted {
		t.Errorf("processor saw %v, want ResourceExhausted", err)
	}
	if st := si.Stats(); st.GRPCErrors != 1 || st.FailOpen != 1 {
		t.Errorf("stats = %+v", st)
	}
}
