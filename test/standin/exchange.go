package standin

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocsvc "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// phase is the message the exchange waits a reply for; Envoy calls it the callback state.
type phase int

const (
	phaseRequestHeaders phase = iota
	phaseRequestBody
	phaseResponseHeaders
	phaseResponseBody
)

func (p phase) String() string {
	switch p {
	case phaseRequestHeaders:
		return "request_headers"
	case phaseRequestBody:
		return "request_body"
	case phaseResponseHeaders:
		return "response_headers"
	case phaseResponseBody:
		return "response_body"
	}
	return "phase(" + strconv.Itoa(int(p)) + ")"
}

// direction tells request-side from response-side state.
type direction int

const (
	dirRequest direction = iota
	dirResponse
)

// failureKind classifies what went wrong with the processor.
type failureKind int

const (
	failTimeout  failureKind = iota // message_timeout expired
	failGRPC                        // the stream failed
	failSpurious                    // a reply that does not match the awaited message
	failInvalid                     // a mutation Envoy refuses
)

// streamChunkSize is the most the stand-in reads from the upstream at once; like Envoy's
// codec it forwards whatever one read returns.
const streamChunkSize = 32 << 10

// recvResult is one Recv of the processor stream.
type recvResult struct {
	resp *extprocsvc.ProcessingResponse
	err  error
}

// procStream is the ext_proc stream of one exchange.
type procStream struct {
	stream extprocsvc.ExternalProcessor_ProcessClient
	cancel context.CancelFunc
	// recv delivers every Recv until the first error; it is read by the exchange until the
	// stream is closed, then by the graceful closer.
	recv   chan recvResult
	ended  bool // the final Recv error has been read
	closed bool // CloseSend or cancel has been called
}

// exchange is one HTTP request through the stand-in: the state Envoy's ext_proc filter keeps
// per stream. Its methods run on the ServeHTTP goroutine only.
type exchange struct {
	s   *StandIn
	w   http.ResponseWriter
	r   *http.Request
	ctx context.Context // the client's request context

	// mode is the processing mode in force; mode_override replaces it.
	mode *extprocv3.ProcessingMode

	ps                 *procStream
	complete           bool // Envoy's processing_complete_: nothing more goes to the processor
	protocolConfigSent bool

	reqHeaders   headerList
	respHeaders  headerList
	reqReplaced  []byte // body set by CONTINUE_AND_REPLACE on the request path, if any
	respReplaced []byte // same on the response path
	reqReplace   bool
	respReplace  bool

	responseStarted bool // response headers went to the client
	done            bool // the client got its answer, was reset, or is gone
}

func newExchange(s *StandIn, w http.ResponseWriter, r *http.Request) *exchange {
	return &exchange{
		s:    s,
		w:    w,
		r:    r,
		ctx:  r.Context(),
		mode: proto.Clone(s.mode).(*extprocv3.ProcessingMode),
	}
}

// run drives the exchange through its phases; any step that answers the client itself
// (local reply, immediate response, reset) ends it.
func (x *exchange) run() {
	x.reqHeaders = requestHeaderList(x.r)
	hasBody := x.r.ContentLength != 0

	if x.mode.GetRequestHeaderMode() == extprocv3.ProcessingMode_SEND {
		req := &extprocsvc.ProcessingRequest{Request: &extprocsvc.ProcessingRequest_RequestHeaders{
			RequestHeaders: &extprocsvc.HttpHeaders{Headers: x.reqHeaders.proto(), EndOfStream: !hasBody},
		}}
		resp, ok := x.call(req, phaseRequestHeaders)
		if !ok {
			return
		}
		if resp != nil {
			if ir := resp.GetImmediateResponse(); ir != nil {
				x.immediate(ir)
				return
			}
			if !x.applyHeadersReply(resp.GetRequestHeaders().GetResponse(), dirRequest) {
				return
			}
		}
	}

	body, length, ok := x.requestBody(hasBody)
	if !ok {
		return
	}
	resp, ok := x.forward(body, length)
	if !ok {
		return
	}
	defer resp.Body.Close()
	x.respond(resp)
}

// requestBody returns the body to forward and its length (-1: unknown, streamed from the
// client). BUFFERED mode reads the whole body, enforcing the buffer limit, and sends it to the
// processor as one request_body message with end_of_stream.
func (x *exchange) requestBody(hasBody bool) (io.Reader, int64, bool) {
	switch {
	case x.reqReplace:
		// CONTINUE_AND_REPLACE: the processor's body replaces the client's.
		return bytes.NewReader(x.reqReplaced), int64(len(x.reqReplaced)), true
	case !hasBody:
		return http.NoBody, 0, true
	case x.complete || x.mode.GetRequestBodyMode() == extprocv3.ProcessingMode_NONE:
		// Not buffered by ext_proc: the body streams through, without a size limit.
		return x.r.Body, x.r.ContentLength, true
	case x.mode.GetRequestBodyMode() != extprocv3.ProcessingMode_BUFFERED:
		x.unsupported("request_body_mode " + x.mode.GetRequestBodyMode().String())
		return nil, 0, false
	}

	limit := int64(x.s.cfg.BufferLimit)
	data, err := io.ReadAll(io.LimitReader(x.r.Body, limit+1))
	if err != nil {
		x.clientGone(fmt.Errorf("read request body: %w", err))
		return nil, 0, false
	}
	if int64(len(data)) > limit {
		// Envoy's own reply when a buffering filter exceeds the buffer limit; it is not sent
		// to the processor, whose stream is closed as the request ends.
		x.s.stats.tooLarge.Add(1)
		x.localReply(http.StatusRequestEntityTooLarge, []byte("Payload Too Large"), "request_payload_too_large", nil)
		return nil, 0, false
	}

	req := &extprocsvc.ProcessingRequest{Request: &extprocsvc.ProcessingRequest_RequestBody{
		RequestBody: &extprocsvc.HttpBody{Body: data, EndOfStream: true},
	}}
	resp, ok := x.call(req, phaseRequestBody)
	if !ok {
		return nil, 0, false
	}
	if resp != nil {
		if ir := resp.GetImmediateResponse(); ir != nil {
			x.immediate(ir)
			return nil, 0, false
		}
		data, ok = x.applyBufferedBodyReply(resp.GetRequestBody().GetResponse(), dirRequest, data)
		if !ok {
			return nil, 0, false
		}
	}
	return bytes.NewReader(data), int64(len(data)), true
}

// forward sends the processed request upstream. Connection failures get Envoy's 503 local
// reply, which is not sent to the processor.
func (x *exchange) forward(body io.Reader, length int64) (*http.Response, bool) {
	target := *x.s.cfg.Upstream
	path, _ := x.reqHeaders.get(":path")
	ref, err := url.ParseRequestURI(path)
	if err != nil {
		x.localReply(http.StatusBadRequest, []byte("Bad Request"), "invalid_path", nil)
		return nil, false
	}
	target.Path, target.RawPath, target.RawQuery = ref.Path, ref.RawPath, ref.RawQuery
	method, _ := x.reqHeaders.get(":method")

	req, err := http.NewRequestWithContext(x.ctx, method, target.String(), body)
	if err != nil {
		x.localReply(http.StatusBadRequest, []byte("Bad Request"), "invalid_request", nil)
		return nil, false
	}
	skip := append([]string{"host", "content-length"}, x.s.cfg.RemoveRequestHeaders...)
	req.Header = x.reqHeaders.toHTTP(skip...)
	if _, ok := req.Header["User-Agent"]; !ok {
		req.Header["User-Agent"] = []string{""} // Envoy adds none; stop Go from adding its own
	}
	req.ContentLength = length
	if length == 0 {
		req.Body = http.NoBody
	}
	req.Host, _ = x.reqHeaders.get(":authority")
	if !x.s.cfg.KeepHost && x.s.cfg.HostRewrite != "" {
		req.Host = x.s.cfg.HostRewrite
	}

	start := time.Now()
	resp, err := x.s.http.Do(req)
	if err != nil {
		if x.ctx.Err() != nil {
			x.clientGone(err)
			return nil, false
		}
		x.s.stats.upstreamFailures.Add(1)
		x.s.log.Debug("standin: upstream failed", "err", err)
		x.localReply(http.StatusServiceUnavailable,
			[]byte("upstream connect error or disconnect/reset before headers. reset reason: connection failure"),
			"upstream_reset_before_response_started{connection_failure}", nil)
		return nil, false
	}
	x.respHeaders = headerList{{":status", strconv.Itoa(resp.StatusCode)}}
	x.respHeaders.appendHTTP(resp.Header)
	x.respHeaders.add("x-envoy-upstream-service-time", strconv.FormatInt(time.Since(start).Milliseconds(), 10))
	return resp, true
}

// respond runs the response phases and writes the response to the client.
func (x *exchange) respond(resp *http.Response) {
	method, _ := x.reqHeaders.get(":method")
	noBody := method == http.MethodHead || resp.StatusCode == http.StatusNoContent ||
		resp.StatusCode == http.StatusNotModified || resp.ContentLength == 0

	// Envoy drops content-length right after sending the headers when the body mode cannot
	// keep it right (STREAMED: the response goes out chunked).
	removeCL := !x.complete && shouldRemoveContentLength(x.mode.GetResponseBodyMode(), x.mode.GetResponseHeaderMode())
	if !x.complete && x.mode.GetResponseHeaderMode() == extprocv3.ProcessingMode_SEND {
		req := &extprocsvc.ProcessingRequest{Request: &extprocsvc.ProcessingRequest_ResponseHeaders{
			ResponseHeaders: &extprocsvc.HttpHeaders{Headers: x.respHeaders.proto(), EndOfStream: noBody},
		}}
		reply, ok := x.call(req, phaseResponseHeaders)
		if !ok {
			return
		}
		if reply != nil {
			if ir := reply.GetImmediateResponse(); ir != nil {
				x.immediate(ir)
				return
			}
			if !x.applyHeadersReply(reply.GetResponseHeaders().GetResponse(), dirResponse) {
				return
			}
		}
	}
	if removeCL {
		x.respHeaders.del("content-length")
	}

	switch {
	case x.respReplace:
		x.writeResponseHeaders()
		x.write(x.respReplaced)
	case noBody:
		x.writeResponseHeaders()
	case x.complete || x.mode.GetResponseBodyMode() == extprocv3.ProcessingMode_NONE:
		x.writeResponseHeaders()
		x.passThrough(resp.Body)
	case x.mode.GetResponseBodyMode() == extprocv3.ProcessingMode_STREAMED:
		x.writeResponseHeaders()
		x.streamBody(resp)
	case x.mode.GetResponseBodyMode() == extprocv3.ProcessingMode_BUFFERED:
		x.bufferedResponse(resp)
	default:
		x.unsupported("response_body_mode " + x.mode.GetResponseBodyMode().String())
	}
}

// streamBody sends each upstream chunk to the processor, waits for its reply and only then
// writes (and flushes) the possibly mutated chunk to the client. Envoy's HTTP/1 codec hands
// over the last bytes of a content-length body with end_stream; a chunked body ends with a
// separate empty end_of_stream message.
func (x *exchange) streamBody(resp *http.Response) {
	buf := make([]byte, streamChunkSize)
	var total int64
	for {
		n, err := resp.Body.Read(buf)
		if n > 0 {
			total += int64(n)
			eos := resp.ContentLength >= 0 && total >= resp.ContentLength
			if !x.streamChunk(bytes.Clone(buf[:n]), eos) || eos {
				return
			}
		}
		switch {
		case err == io.EOF:
			x.streamChunk(nil, true)
			return
		case err != nil:
			x.upstreamBodyFailed(err)
			return
		}
	}
}

// streamChunk processes one response chunk; false means the exchange is over.
func (x *exchange) streamChunk(chunk []byte, eos bool) bool {
	if !x.complete {
		req := &extprocsvc.ProcessingRequest{Request: &extprocsvc.ProcessingRequest_ResponseBody{
			ResponseBody: &extprocsvc.HttpBody{Body: chunk, EndOfStream: eos},
		}}
		reply, ok := x.call(req, phaseResponseBody)
		if !ok {
			return false
		}
		if reply != nil {
			if ir := reply.GetImmediateResponse(); ir != nil {
				x.immediate(ir) // the response has started: Envoy resets the client stream
				return false
			}
			// Header mutations in a streamed body reply are ignored: the headers are gone.
			chunk = applyBodyMutation(reply.GetResponseBody().GetResponse().GetBodyMutation(), chunk)
		}
	}
	return x.write(chunk)
}

// bufferedResponse reads the whole upstream body, sends it as one response_body message and
// writes headers and body after the reply (header mutations still apply).
func (x *exchange) bufferedResponse(resp *http.Response) {
	limit := int64(x.s.cfg.BufferLimit)
	data, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		x.upstreamBodyFailed(err)
		return
	}
	if int64(len(data)) > limit {
		x.localReply(http.StatusInternalServerError, []byte("Internal Server Error"), "response_payload_too_large", nil)
		return
	}
	req := &extprocsvc.ProcessingRequest{Request: &extprocsvc.ProcessingRequest_ResponseBody{
		ResponseBody: &extprocsvc.HttpBody{Body: data, EndOfStream: true},
	}}
	reply, ok := x.call(req, phaseResponseBody)
	if !ok {
		return
	}
	if reply != nil {
		if ir := reply.GetImmediateResponse(); ir != nil {
			x.immediate(ir)
			return
		}
		if data, ok = x.applyBufferedBodyReply(reply.GetResponseBody().GetResponse(), dirResponse, data); !ok {
			return
		}
	}
	if _, ok := x.respHeaders.get("content-length"); ok {
		x.respHeaders.set("content-length", strconv.Itoa(len(data)))
	}
	x.writeResponseHeaders()
	x.write(data)
}

// passThrough copies the upstream body to the client unprocessed, flushing each read.
func (x *exchange) passThrough(body io.Reader) {
	buf := make([]byte, streamChunkSize)
	for {
		n, err := body.Read(buf)
		if n > 0 && !x.write(buf[:n]) {
			return
		}
		switch {
		case err == io.EOF:
			return
		case err != nil:
			x.upstreamBodyFailed(err)
			return
		}
	}
}

// upstreamBodyFailed handles a read error on the upstream body: a gone client, or an
// upstream reset that Envoy passes on by resetting the client stream.
func (x *exchange) upstreamBodyFailed(err error) {
	if x.ctx.Err() != nil {
		x.clientGone(err)
		return
	}
	x.s.log.Debug("standin: upstream body failed", "err", err)
	x.resetClient()
}

// call sends req (adding protocol_config to the stream's first message) and waits for its
// reply. It returns the reply (matching or immediate_response) and true; nil and true when
// processing is complete (fail open, or the processor closed the stream) and the exchange
// goes on without the processor; false when the exchange is over.
func (x *exchange) call(req *extprocsvc.ProcessingRequest, ph phase) (*extprocsvc.ProcessingResponse, bool) {
	if x.complete {
		return nil, true
	}
	if x.ps == nil && !x.open() {
		return nil, !x.done // failed to open: fail open (continue) or a local reply was sent
	}
	if !x.drainIdle() {
		return nil, false
	}
	if x.complete {
		return nil, true
	}
	if !x.protocolConfigSent {
		req.ProtocolConfig = &extprocsvc.ProtocolConfiguration{
			RequestBodyMode:  x.mode.GetRequestBodyMode(),
			ResponseBodyMode: x.mode.GetResponseBodyMode(),
		}
		x.protocolConfigSent = true
	}
	countRequest(&x.s.stats.sent, req)
	if err := x.ps.stream.Send(req); err != nil {
		// The stream is broken; its Recv side reports why, so wait for that.
		x.s.log.Debug("standin: send failed", "phase", ph, "err", err)
	}
	return x.await(ph)
}

// open starts the exchange's ext_proc stream and reports whether it did. A failure is handled
// like any stream error (see failure).
func (x *exchange) open() bool {
	// The stream outlives the client's request context: on a disconnect, Envoy decides how
	// to end it (reset or graceful half-close).
	ctx, cancel := context.WithCancel(context.WithoutCancel(x.ctx))
	stream, err := x.s.client.Process(ctx,
		grpc.MaxCallRecvMsgSize(math.MaxInt32), grpc.MaxCallSendMsgSize(math.MaxInt32))
	if err != nil {
		cancel()
		x.failure(failGRPC, fmt.Errorf("open ext_proc stream: %w", err))
		return false
	}
	x.s.stats.streamsOpened.Add(1)
	x.ps = &procStream{stream: stream, cancel: cancel, recv: make(chan recvResult, 1)}
	go receive(ctx, stream, x.ps.recv)
	return true
}

// receive feeds every Recv into out until the first error or until the stream is cancelled.
func receive(ctx context.Context, stream extprocsvc.ExternalProcessor_ProcessClient, out chan<- recvResult) {
	for {
		resp, err := stream.Recv()
		select {
		case out <- recvResult{resp, err}:
		case <-ctx.Done():
			return
		}
		if err != nil {
			return
		}
	}
}

// await waits for the reply to the message of phase ph within message_timeout, honouring
// one override_message_timeout and mode_override as Envoy does.
func (x *exchange) await(ph phase) (*extprocsvc.ProcessingResponse, bool) {
	timer := x.s.clock.NewTimer(x.s.msgTimeout)
	defer timer.Stop()
	overridden := false
	for {
		select {
		case res := <-x.ps.recv:
			if res.err != nil {
				return nil, x.streamEnded(res.err)
			}
			resp := res.resp
			if d := resp.GetOverrideMessageTimeout(); d != nil {
				// Envoy ignores every other field of such a message.
				x.overrideTimeout(timer, d.AsDuration(), d.IsValid(), &overridden, ph)
				continue
			}
			countResponse(&x.s.stats.received, resp)
			x.modeOverride(resp, ph)
			if resp.GetImmediateResponse() != nil {
				if x.s.cfg.Filter.GetDisableImmediateResponse() {
					return nil, x.failure(failSpurious, errors.New("immediate response while disable_immediate_response is set"))
				}
				return resp, true
			}
			if !matches(resp, ph) {
				return nil, x.failure(failSpurious, fmt.Errorf("reply %s while awaiting %s", responseKind(resp), ph))
			}
			return resp, true
		case <-timer.C():
			return nil, x.failure(failTimeout, fmt.Errorf("no reply to %s within the message timeout", ph))
		case <-x.ctx.Done():
			x.clientGone(x.ctx.Err())
			return nil, false
		}
	}
}

// overrideTimeout restarts the message timer as Envoy's onNewTimeout does: the new value must
// lie in [1ms, max_message_timeout] and only the first override per message counts.
func (x *exchange) overrideTimeout(timer Timer, d time.Duration, valid bool, overridden *bool, ph phase) {
	if !valid || d < time.Millisecond || d > x.s.maxOverride || *overridden {
		x.s.stats.toIgnored.Add(1)
		x.s.log.Debug("standin: override_message_timeout ignored", "phase", ph, "timeout", d)
		return
	}
	timer.Stop()
	timer.Reset(d)
	*overridden = true
	x.s.stats.toHonoured.Add(1)
	x.s.log.Debug("standin: message timeout overridden", "phase", ph, "timeout", d)
}

// modeOverride applies resp.mode_override where Envoy would: with allow_mode_override, while
// waiting for a headers reply. Header modes left DEFAULT keep the filter's; body modes are
// taken as given (unset means NONE).
func (x *exchange) modeOverride(resp *extprocsvc.ProcessingResponse, ph phase) {
	mo := resp.GetModeOverride()
	if mo == nil {
		return
	}
	f := x.s.cfg.Filter
	inHeaders := ph == phaseRequestHeaders || ph == phaseResponseHeaders
	if !f.GetAllowModeOverride() || f.GetSendBodyWithoutWaitingForHeaderResponse() || !inHeaders {
		x.s.stats.modeIgnored.Add(1)
		return
	}
	base := x.s.mode
	m := proto.Clone(base).(*extprocv3.ProcessingMode)
	if mo.GetRequestHeaderMode() != extprocv3.ProcessingMode_DEFAULT {
		m.RequestHeaderMode = mo.GetRequestHeaderMode()
	}
	if mo.GetResponseHeaderMode() != extprocv3.ProcessingMode_DEFAULT {
		m.ResponseHeaderMode = mo.GetResponseHeaderMode()
	}
	if mo.GetRequestTrailerMode() != extprocv3.ProcessingMode_DEFAULT {
		m.RequestTrailerMode = mo.GetRequestTrailerMode()
	}
	if mo.GetResponseTrailerMode() != extprocv3.ProcessingMode_DEFAULT {
		m.ResponseTrailerMode = mo.GetResponseTrailerMode()
	}
	m.RequestBodyMode = mo.GetRequestBodyMode()
	m.ResponseBodyMode = mo.GetResponseBodyMode()
	if allowed := f.GetAllowedOverrideModes(); len(allowed) > 0 && !modeAllowed(m, allowed) {
		x.s.stats.modeIgnored.Add(1)
		return
	}
	x.mode = m
	x.s.stats.modeHonoured.Add(1)
	x.s.log.Debug("standin: processing mode overridden", "phase", ph, "mode", m.String())
}

// modeAllowed matches m against allowed_override_modes, ignoring request_header_mode.
func modeAllowed(m *extprocv3.ProcessingMode, allowed []*extprocv3.ProcessingMode) bool {
	for _, a := range allowed {
		if m.GetRequestBodyMode() == a.GetRequestBodyMode() &&
			m.GetRequestTrailerMode() == a.GetRequestTrailerMode() &&
			m.GetResponseHeaderMode() == a.GetResponseHeaderMode() &&
			m.GetResponseBodyMode() == a.GetResponseBodyMode() &&
			m.GetResponseTrailerMode() == a.GetResponseTrailerMode() {
			return true
		}
	}
	return false
}

// drainIdle handles messages that arrived while no reply was awaited: a timeout override is
// ignored, a stream end is handled, anything else is spurious. False means the exchange is over.
func (x *exchange) drainIdle() bool {
	for {
		select {
		case res := <-x.ps.recv:
			if res.err != nil {
				return x.streamEnded(res.err)
			}
			if res.resp.GetOverrideMessageTimeout() != nil {
				x.s.stats.toIgnored.Add(1)
				continue
			}
			countResponse(&x.s.stats.received, res.resp)
			return x.failure(failSpurious, fmt.Errorf("unsolicited %s reply", responseKind(res.resp)))
		default:
			return true
		}
	}
}

// streamEnded handles the end of the processor's side of the stream. A clean close (the
// server returned OK) ends processing and the exchange goes on; any other end is a gRPC error.
func (x *exchange) streamEnded(err error) bool {
	x.ps.ended = true
	if errors.Is(err, io.EOF) {
		x.s.stats.closedByProcessor.Add(1)
		x.s.log.Debug("standin: processor closed the stream")
		x.closeStream(false)
		return true
	}
	return x.failure(failGRPC, err)
}

// failure applies Envoy's error handling: fail open (continue without the processor) when
// failure_mode_allow is set, else a local reply (504 for a timeout, status_on_error for the
// rest). A refused mutation always gets the local reply. The stream is closed either way.
func (x *exchange) failure(kind failureKind, err error) bool {
	st := &x.s.stats
	st.processingErrs.Add(1)
	code, details := x.s.statusOnError, ""
	switch kind {
	case failTimeout:
		st.timeouts.Add(1)
		code, details = http.StatusGatewayTimeout, "ext_proc_error_per-message_timeout_exceeded"
	case failGRPC:
		st.grpcErrors.Add(1)
		s := status.Convert(err)
		details = fmt.Sprintf("ext_proc_error_gRPC_error_%d{%s}", s.Code(), s.Message())
	case failSpurious:
		st.spurious.Add(1)
		details = "ext_proc_error_spurious_message"
	case failInvalid:
		st.invalidMutations.Add(1)
		details = "ext_proc_error_" + err.Error()
	}
	x.s.log.Debug("standin: processing error", "err", err)
	if x.ps != nil {
		x.closeStream(false)
	}
	x.complete = true
	if kind != failInvalid && x.s.cfg.Filter.GetFailureModeAllow() {
		st.failOpen.Add(1)
		return true
	}
	x.localReply(code, nil, details, nil)
	return false
}

// unsupported refuses an exchange that a mode_override steered into a mode the stand-in does
// not emulate.
func (x *exchange) unsupported(what string) {
	x.s.stats.unsupported.Add(1)
	if x.ps != nil {
		x.closeStream(false)
	}
	x.complete = true
	x.localReply(http.StatusInternalServerError, []byte("standin: unsupported "+what), "standin_unsupported", nil)
}

// applyHeadersReply applies the CommonResponse of a headers reply in direction d.
func (x *exchange) applyHeadersReply(cr *extprocsvc.CommonResponse, d direction) bool {
	l, bodyMode, headerMode := x.state(d)
	replacing := cr.GetStatus() == extprocsvc.CommonResponse_CONTINUE_AND_REPLACE
	opt := mutationOptions{replacing: replacing, removeContentLength: shouldRemoveContentLength(bodyMode, headerMode)}
	if !x.mutate(l, cr.GetHeaderMutation(), opt) {
		return false
	}
	if !replacing {
		return true
	}
	// CONTINUE_AND_REPLACE: nothing more goes to the processor in this direction; a body
	// mutation replaces the whole body.
	if bm := cr.GetBodyMutation(); bm != nil {
		l.del("content-length")
		body := applyBodyMutation(bm, nil)
		if d == dirRequest {
			x.reqReplace, x.reqReplaced = true, body
		} else {
			x.respReplace, x.respReplaced = true, body
		}
	}
	if d == dirRequest {
		x.mode.RequestBodyMode = extprocv3.ProcessingMode_NONE
	} else {
		x.mode.ResponseBodyMode = extprocv3.ProcessingMode_NONE
	}
	return true
}

// applyBufferedBodyReply applies a reply to a BUFFERED body: header mutations (the headers are
// still held), then the body mutation, which Envoy refuses when it contradicts content-length.
func (x *exchange) applyBufferedBodyReply(cr *extprocsvc.CommonResponse, d direction, data []byte) ([]byte, bool) {
	l, bodyMode, headerMode := x.state(d)
	opt := mutationOptions{removeContentLength: shouldRemoveContentLength(bodyMode, headerMode)}
	if !x.mutate(l, cr.GetHeaderMutation(), opt) {
		return nil, false
	}
	bm := cr.GetBodyMutation()
	if bm == nil {
		return data, true
	}
	if cl, ok := l.get("content-length"); ok {
		if n, err := strconv.Atoi(cl); err == nil && n != len(bm.GetBody()) {
			x.failure(failInvalid, errors.New("mismatch between content length and the length of the mutated body"))
			return nil, false
		}
	}
	return applyBodyMutation(bm, data), true
}

// state returns the headers and modes of direction d.
func (x *exchange) state(d direction) (*headerList, extprocv3.ProcessingMode_BodySendMode, extprocv3.ProcessingMode_HeaderSendMode) {
	if d == dirRequest {
		return &x.reqHeaders, x.mode.GetRequestBodyMode(), x.mode.GetRequestHeaderMode()
	}
	return &x.respHeaders, x.mode.GetResponseBodyMode(), x.mode.GetResponseHeaderMode()
}

// mutate applies a header mutation, counting what Envoy would reject; a refused mutation
// fails the exchange.
func (x *exchange) mutate(l *headerList, m *extprocsvc.HeaderMutation, opt mutationOptions) bool {
	res, err := applyHeaderMutation(l, m, opt)
	x.s.stats.rejected.Add(int64(res.rejected))
	x.s.stats.valueOnly.Add(int64(res.valueOnly))
	if err != nil {
		return x.failure(failInvalid, err)
	}
	return true
}

// immediate answers the client with the processor's ImmediateResponse. Once the response has
// started, Envoy can only reset the client stream.
func (x *exchange) immediate(ir *extprocsvc.ImmediateResponse) {
	x.s.stats.immediate.Add(1)
	x.closeStream(x.s.cfg.GracefulClose)
	code := int(ir.GetStatus().GetCode())
	if code < 200 {
		code = http.StatusOK // Envoy's default for a missing or invalid status
	}
	x.localReply(code, ir.GetBody(), ir.GetDetails(), ir.GetHeaders())
}

// localReply sends a reply made by the stand-in itself, as Envoy's sendLocalReply does:
// header mutations first, then content-length and, for a body, content-type text/plain unless
// set. After the response has started, the client stream is reset instead.
func (x *exchange) localReply(code int, body []byte, details string, m *extprocsvc.HeaderMutation) {
	x.s.stats.localReplies.Add(1)
	x.s.log.Debug("standin: local reply", "status", code, "details", details)
	if x.responseStarted {
		x.resetClient()
		return
	}
	var l headerList
	if m != nil {
		res, err := applyHeaderMutation(&l, m, mutationOptions{})
		x.s.stats.rejected.Add(int64(res.rejected))
		x.s.stats.valueOnly.Add(int64(res.valueOnly))
		if err != nil {
			// Envoy logs the failed mutation and sends the reply with what applied before it.
			x.s.stats.invalidMutations.Add(1)
			x.s.log.Debug("standin: immediate response header mutation failed", "err", err)
		}
	}
	if len(body) > 0 && !l.has("content-type") {
		l.set("content-type", "text/plain")
	}
	l.set("content-length", strconv.Itoa(len(body)))
	x.respHeaders = append(headerList{{":status", strconv.Itoa(code)}}, l...)
	x.writeResponseHeaders()
	x.write(body)
	x.done = true
}

// writeResponseHeaders sends x.respHeaders to the client and flushes them.
func (x *exchange) writeResponseHeaders() {
	code := http.StatusBadGateway
	if v, ok := x.respHeaders.get(":status"); ok {
		if n, err := strconv.Atoi(v); err == nil {
			code = n
		}
	}
	h := x.w.Header()
	for k, v := range x.respHeaders.toHTTP() {
		h[k] = v
	}
	x.w.WriteHeader(code)
	x.responseStarted = true
	_ = http.NewResponseController(x.w).Flush()
}

// write sends p to the client and flushes it (SSE must stream through); false means the
// client is gone.
func (x *exchange) write(p []byte) bool {
	if len(p) == 0 {
		return true
	}
	if _, err := x.w.Write(p); err != nil {
		x.clientGone(err)
		return false
	}
	if err := http.NewResponseController(x.w).Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
		x.clientGone(err)
		return false
	}
	return true
}

// resetClient aborts the client's stream mid-response, as Envoy resets a downstream stream it
// can no longer answer properly: the client sees the connection end before the body does.
func (x *exchange) resetClient() {
	x.s.stats.clientResets.Add(1)
	x.done = true
	rc := http.NewResponseController(x.w)
	_ = rc.Flush()
	if conn, _, err := rc.Hijack(); err == nil {
		_ = conn.Close()
		return
	}
	// HTTP/2 connections cannot be hijacked; ErrAbortHandler is net/http's documented way to
	// reset the stream, recovered by the server without logging.
	panic(http.ErrAbortHandler)
}

// clientGone handles a client that disconnected: Envoy resets the ext_proc stream, or with
// graceful close half-closes it and waits for the processor to finish.
func (x *exchange) clientGone(err error) {
	if x.done {
		return
	}
	x.done = true
	x.s.stats.disconnects.Add(1)
	x.s.log.Debug("standin: client gone", "err", err)
	if x.ps == nil || x.ps.closed {
		return
	}
	if x.s.cfg.GracefulClose {
		x.closeStream(true)
		return
	}
	x.ps.closed = true
	x.complete = true
	x.ps.cancel()
}

// finish ends the exchange's stream if it is still open: Envoy closes it when the HTTP stream
// is destroyed.
func (x *exchange) finish() {
	if x.ps != nil && !x.ps.closed {
		x.closeStream(x.s.cfg.GracefulClose)
	}
}

// closeStream ends the ext_proc stream. Without graceful close it does what Envoy's close()
// does: half-close and reset together. With it, it half-closes and, in the background, waits
// up to RemoteCloseTimeout for the processor to end the stream before cancelling it.
func (x *exchange) closeStream(graceful bool) {
	x.complete = true
	ps := x.ps
	if ps == nil || ps.closed {
		return
	}
	ps.closed = true
	_ = ps.stream.CloseSend()
	if !graceful || ps.ended {
		ps.cancel()
		return
	}
	timer := x.s.clock.NewTimer(x.s.cfg.RemoteCloseTimeout)
	go func() {
		defer ps.cancel()
		defer timer.Stop()
		for {
			select {
			case res := <-ps.recv:
				if res.err != nil {
					return
				}
			case <-timer.C():
				return
			}
		}
	}()
}

// requestHeaderList builds the request headers as Envoy's HTTP connection manager hands them
// to ext_proc: pseudo-headers first, lower-case keys, x-forwarded-proto and x-request-id added.
func requestHeaderList(r *http.Request) headerList {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	path := r.RequestURI
	if path == "" || path == "*" {
		path = r.URL.RequestURI()
	}
	l := headerList{{":authority", r.Host}, {":path", path}, {":method", r.Method}, {":scheme", scheme}}
	l.appendHTTP(r.Header)
	if len(r.TransferEncoding) > 0 && !l.has("transfer-encoding") {
		l.add("transfer-encoding", "chunked")
	}
	if r.ContentLength > 0 && !l.has("content-length") {
		l.add("content-length", strconv.FormatInt(r.ContentLength, 10))
	}
	if !l.has("x-forwarded-proto") {
		l.add("x-forwarded-proto", scheme)
	}
	if !l.has("x-request-id") {
		l.add("x-request-id", newRequestID())
	}
	return l
}

// newRequestID returns a random UUID (version 4), as Envoy generates x-request-id.
func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// shouldRemoveContentLength reports whether Envoy drops content-length in this mode because a
// later body mutation could make it wrong.
func shouldRemoveContentLength(body extprocv3.ProcessingMode_BodySendMode, hdr extprocv3.ProcessingMode_HeaderSendMode) bool {
	switch body {
	case extprocv3.ProcessingMode_STREAMED, extprocv3.ProcessingMode_BUFFERED_PARTIAL,
		extprocv3.ProcessingMode_FULL_DUPLEX_STREAMED:
		return true
	case extprocv3.ProcessingMode_BUFFERED:
		return hdr == extprocv3.ProcessingMode_SKIP
	}
	return false
}

// applyBodyMutation returns data after m (replace or clear; nil m keeps it).
func applyBodyMutation(m *extprocsvc.BodyMutation, data []byte) []byte {
	switch mm := m.GetMutation().(type) {
	case *extprocsvc.BodyMutation_Body:
		return bytes.Clone(mm.Body)
	case *extprocsvc.BodyMutation_ClearBody:
		if mm.ClearBody {
			return nil
		}
	}
	return data
}

// matches reports whether resp is the reply kind awaited in phase ph.
func matches(resp *extprocsvc.ProcessingResponse, ph phase) bool {
	switch resp.GetResponse().(type) {
	case *extprocsvc.ProcessingResponse_RequestHeaders:
		return ph == phaseRequestHeaders
	case *extprocsvc.ProcessingResponse_RequestBody:
		return ph == phaseRequestBody
	case *extprocsvc.ProcessingResponse_ResponseHeaders:
		return ph == phaseResponseHeaders
	case *extprocsvc.ProcessingResponse_ResponseBody:
		return ph == phaseResponseBody
	}
	return false
}

// responseKind names the kind of a reply for messages.
func responseKind(resp *extprocsvc.ProcessingResponse) string {
	switch resp.GetResponse().(type) {
	case *extprocsvc.ProcessingResponse_RequestHeaders:
		return "request_headers"
	case *extprocsvc.ProcessingResponse_RequestBody:
		return "request_body"
	case *extprocsvc.ProcessingResponse_ResponseHeaders:
		return "response_headers"
	case *extprocsvc.ProcessingResponse_ResponseBody:
		return "response_body"
	case *extprocsvc.ProcessingResponse_ImmediateResponse:
		return "immediate_response"
	case nil:
		return "empty"
	}
	return fmt.Sprintf("%T", resp.GetResponse())
}

func countRequest(c *messageCounters, req *extprocsvc.ProcessingRequest) {
	switch req.GetRequest().(type) {
	case *extprocsvc.ProcessingRequest_RequestHeaders:
		c.requestHeaders.Add(1)
	case *extprocsvc.ProcessingRequest_RequestBody:
		c.requestBody.Add(1)
	case *extprocsvc.ProcessingRequest_ResponseHeaders:
		c.responseHeaders.Add(1)
	case *extprocsvc.ProcessingRequest_ResponseBody:
		c.responseBody.Add(1)
	default:
		c.other.Add(1)
	}
}

func countResponse(c *messageCounters, resp *extprocsvc.ProcessingResponse) {
	switch resp.GetResponse().(type) {
	case *extprocsvc.ProcessingResponse_RequestHeaders:
		c.requestHeaders.Add(1)
	case *extprocsvc.ProcessingResponse_RequestBody:
		c.requestBody.Add(1)
	case *extprocsvc.ProcessingResponse_ResponseHeaders:
		c.responseHeaders.Add(1)
	case *extprocsvc.ProcessingResponse_ResponseBody:
		c.responseBody.Add(1)
	case *extprocsvc.ProcessingResponse_ImmediateResponse:
		c.immediate.Add(1)
	default:
		c.other.Add(1)
	}
}
