package extproc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	filterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/adaptive-rate-limiter/arl/limiter"
	"github.com/adaptive-rate-limiter/arl/limiter/metrics"
)

// DefaultMaxRequestBytes bounds the request body arl accumulates when Envoy
// sends it in several chunks; a longer body is reserved on its size alone. It
// matches the gRPC receive limit main sets.
const DefaultMaxRequestBytes = 32 << 20

// Server is the ext_proc gRPC service. It is safe for concurrent use; each
// stream runs its own state machine.
type Server struct {
	extprocv3.UnimplementedExternalProcessorServer

	limiter         *limiter.Limiter
	metrics         *metrics.Metrics
	log             *slog.Logger
	maxRequestBytes int
}

var _ extprocv3.ExternalProcessorServer = (*Server)(nil)

// Options configures a Server. The zero value of each field selects its
// default.
type Options struct {
	// MaxRequestBytes bounds an accumulated request body; default
	// DefaultMaxRequestBytes.
	MaxRequestBytes int
}

// NewServer returns an ext_proc server deciding with l.
func NewServer(l *limiter.Limiter, m *metrics.Metrics, log *slog.Logger, opts Options) *Server {
	if opts.MaxRequestBytes <= 0 {
		opts.MaxRequestBytes = DefaultMaxRequestBytes
	}
	return &Server{limiter: l, metrics: m, log: log, maxRequestBytes: opts.MaxRequestBytes}
}

// phase is where a stream stands in the HTTP exchange.
type phase uint8

const (
	expectRequestHeaders phase = iota
	expectRequestBody
	expectResponseHeaders
	expectResponseBody
	passThrough // arl is done: every further message is acknowledged unchanged
)

var phaseNames = [...]string{"request_headers", "request_body", "response_headers", "response_body", "pass_through"}

func (p phase) String() string { return phaseNames[p] }

// errProtocol marks stream failures caused by Envoy's messages.
var errProtocol = errors.New("ext_proc protocol violation")

// Process implements the ext_proc service: one call per HTTP request.
func (s *Server) Process(stream extprocv3.ExternalProcessor_ProcessServer) error {
	s.metrics.StreamsActive.Inc()
	defer s.metrics.StreamsActive.Dec()
	p := &processor{s: s, x: s.limiter.Begin(), ctx: stream.Context()}
	err := p.run(stream)
	// Envoy ends a finished exchange by half-closing and resetting the
	// stream together, so an EOF or a cancellation after the last reply is
	// a normal end.
	finished := p.phase == passThrough || p.phase == expectRequestHeaders
	outcome := "completed"
	switch {
	case errors.Is(err, errProtocol):
		outcome = "protocol_error"
	case finished && (err == nil || isCancel(err)):
		err = nil
	case err == nil:
		outcome = "closed_early"
	case isCancel(err):
		outcome = "cancelled"
	default:
		outcome = "error"
	}
	if outcome != "completed" {
		p.x.Abort(p.ctx)
	}
	s.metrics.Streams.WithLabelValues(outcome).Inc()
	if errors.Is(err, errProtocol) {
		return status.Error(codes.FailedPrecondition, err.Error())
	}
	if outcome == "cancelled" {
		return nil // Envoy went away; there is nobody to tell
	}
	return err
}

func isCancel(err error) bool {
	return status.Code(err) == codes.Canceled || errors.Is(err, context.Canceled)
}

// processor is the state machine of one stream.
type processor struct {
	s     *Server
	x     *limiter.Exchange
	ctx   context.Context
	phase phase
	body  []byte // request body chunks accumulated until end_of_stream

	bodySize int // the request body's length so far, kept or not
}

func (p *processor) run(stream extprocv3.ExternalProcessor_ProcessServer) error {
	for {
		req, err := stream.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		start := time.Now()
		kind, resp, err := p.handle(req)
		if err != nil {
			p.s.metrics.ProtocolErrors.WithLabelValues(kind).Inc()
			p.s.log.Warn("ext_proc stream ended on a protocol violation", "err", err)
			return err
		}
		p.s.metrics.Messages.WithLabelValues(kind).Inc()
		if resp == nil || req.GetObservabilityMode() {
			continue
		}
		if err := stream.Send(resp); err != nil {
			return err
		}
		p.s.metrics.PhaseDuration.WithLabelValues(kind).Observe(time.Since(start).Seconds())
	}
}

// handle answers one message. It returns the message kind (for metrics), the
// reply (nil when none is due), or a protocol error.
func (p *processor) handle(req *extprocv3.ProcessingRequest) (string, *extprocv3.ProcessingResponse, error) {
	switch r := req.Request.(type) {
	case *extprocv3.ProcessingRequest_RequestHeaders:
		const kind = "request_headers"
		if p.phase != expectRequestHeaders {
			return kind, nil, p.outOfOrder(kind)
		}
		h := r.RequestHeaders
		eos := h.GetEndOfStream()
		v := p.x.RequestHeaders(p.ctx, headerMap(h.GetHeaders().GetHeaders()), eos)
		switch {
		case v.Reject != nil:
			p.phase = passThrough
			return kind, immediate(v.Reject), nil
		case v.Done:
			p.phase = passThrough
			p.s.metrics.ModeOverrides.WithLabelValues(kind).Inc()
			return kind, &extprocv3.ProcessingResponse{
				Response: &extprocv3.ProcessingResponse_RequestHeaders{RequestHeaders: headersReply(v)},
				// Body modes in an override are taken as given: NONE stops both bodies.
				ModeOverride: &filterv3.ProcessingMode{
					RequestBodyMode:    filterv3.ProcessingMode_NONE,
					ResponseHeaderMode: filterv3.ProcessingMode_SKIP,
					ResponseBodyMode:   filterv3.ProcessingMode_NONE,
				},
			}, nil
		case eos:
			p.phase = expectResponseHeaders
		default:
			p.phase = expectRequestBody
		}
		if len(v.RemoveHeaders) > 0 {
			return kind, &extprocv3.ProcessingResponse{
				Response: &extprocv3.ProcessingResponse_RequestHeaders{RequestHeaders: headersReply(v)},
			}, nil
		}
		return kind, requestHeadersContinue, nil

	case *extprocv3.ProcessingRequest_RequestBody:
		const kind = "request_body"
		if p.phase == passThrough {
			return kind, requestBodyContinue, nil
		}
		if p.phase != expectRequestBody {
			return kind, nil, p.outOfOrder(kind)
		}
		b := r.RequestBody
		p.bodySize += len(b.GetBody())
		if !b.GetEndOfStream() {
			// Envoy streams the body (a STREAMED or BUFFERED_PARTIAL
			// configuration): keep the chunk until the end, within bounds.
			if p.bodySize <= p.s.maxRequestBytes {
				p.body = append(p.body, b.GetBody()...)
			} else {
				p.body = nil
			}
			return kind, requestBodyContinue, nil
		}
		v := p.endRequestBody(b.GetBody())
		if v.Reject != nil {
			p.phase = passThrough
			return kind, immediate(v.Reject), nil
		}
		p.phase = expectResponseHeaders
		if v.Body != nil {
			// In BUFFERED mode with request headers sent, Envoy keeps
			// content-length and leaves it to the processor to match the body.
			return kind, &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestBody{
				RequestBody: &extprocv3.BodyResponse{Response: mutation(v)}}}, nil
		}
		return kind, requestBodyContinue, nil

	case *extprocv3.ProcessingRequest_ResponseHeaders:
		const kind = "response_headers"
		if p.phase == passThrough {
			return kind, responseHeadersContinue, nil
		}
		if p.phase != expectResponseHeaders {
			return kind, nil, p.outOfOrder(kind)
		}
		h := r.ResponseHeaders
		hm := headerMap(h.GetHeaders().GetHeaders())
		code, err := strconv.Atoi(hm.Get(":status"))
		if err != nil || code < 100 || code > 999 {
			p.s.metrics.BadInput.WithLabelValues("invalid_status").Inc()
			code = 0
		}
		eos := h.GetEndOfStream()
		v := p.x.ResponseHeaders(p.ctx, code, hm, eos)
		if eos {
			p.phase = passThrough
			return kind, responseHeadersContinue, nil
		}
		if v.Done {
			p.phase = passThrough
			p.s.metrics.ModeOverrides.WithLabelValues(kind).Inc()
			return kind, &extprocv3.ProcessingResponse{
				Response:     &extprocv3.ProcessingResponse_ResponseHeaders{ResponseHeaders: &extprocv3.HeadersResponse{}},
				ModeOverride: &filterv3.ProcessingMode{ResponseBodyMode: filterv3.ProcessingMode_NONE},
			}, nil
		}
		p.phase = expectResponseBody
		return kind, responseHeadersContinue, nil

	case *extprocv3.ProcessingRequest_ResponseBody:
		const kind = "response_body"
		if p.phase == passThrough {
			return kind, responseBodyContinue, nil
		}
		if p.phase != expectResponseBody {
			return kind, nil, p.outOfOrder(kind)
		}
		b := r.ResponseBody
		v := p.x.ResponseBody(p.ctx, b.GetBody(), b.GetEndOfStream())
		if b.GetEndOfStream() || v.Done {
			p.phase = passThrough
		}
		if v.Body != nil {
			return kind, &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseBody{
				ResponseBody: &extprocv3.BodyResponse{Response: mutation(v)}}}, nil
		}
		return kind, responseBodyContinue, nil

	case *extprocv3.ProcessingRequest_RequestTrailers:
		const kind = "request_trailers"
		if p.phase == expectRequestBody {
			// Trailers end the request: a body whose last chunk came
			// without end_of_stream is complete. Its chunks have been
			// answered already, so a rewrite of it is no longer possible.
			if v := p.endRequestBody(nil); v.Reject != nil {
				p.phase = passThrough
				return kind, immediate(v.Reject), nil
			}
			p.phase = expectResponseHeaders
		}
		return kind, &extprocv3.ProcessingResponse{
			Response: &extprocv3.ProcessingResponse_RequestTrailers{RequestTrailers: &extprocv3.TrailersResponse{}},
		}, nil

	case *extprocv3.ProcessingRequest_ResponseTrailers:
		// Trailers end the response: settle a body that ended without
		// end_of_stream on its last chunk.
		if p.phase == expectResponseBody {
			p.x.ResponseBody(p.ctx, nil, true)
			p.phase = passThrough
		}
		return "response_trailers", &extprocv3.ProcessingResponse{
			Response: &extprocv3.ProcessingResponse_ResponseTrailers{ResponseTrailers: &extprocv3.TrailersResponse{}},
		}, nil

	default:
		// A message without a phase (flow control, future fields): nothing to answer.
		return "empty", nil, nil
	}
}

// endRequestBody hands the whole request body, the chunks kept and last, to
// the limiter; a body above the bound was not kept and is reserved on its
// size alone.
func (p *processor) endRequestBody(last []byte) limiter.Verdict {
	body := last
	if len(p.body) > 0 {
		body = append(p.body, last...)
	}
	p.body = nil
	if p.bodySize > p.s.maxRequestBytes {
		return p.x.RequestBodyTooLarge(p.ctx, p.bodySize)
	}
	return p.x.RequestBody(p.ctx, body)
}

func (p *processor) outOfOrder(got string) error {
	return fmt.Errorf("%w: %s received while expecting %s", errProtocol, got, p.phase)
}

// Replies that carry no change are shared: protobuf messages are only read
// when marshalled.
var (
	requestHeadersContinue = &extprocv3.ProcessingResponse{
		Response: &extprocv3.ProcessingResponse_RequestHeaders{RequestHeaders: &extprocv3.HeadersResponse{}},
	}
	requestBodyContinue = &extprocv3.ProcessingResponse{
		Response: &extprocv3.ProcessingResponse_RequestBody{RequestBody: &extprocv3.BodyResponse{}},
	}
	responseHeadersContinue = &extprocv3.ProcessingResponse{
		Response: &extprocv3.ProcessingResponse_ResponseHeaders{ResponseHeaders: &extprocv3.HeadersResponse{}},
	}
	responseBodyContinue = &extprocv3.ProcessingResponse{
		Response: &extprocv3.ProcessingResponse_ResponseBody{ResponseBody: &extprocv3.BodyResponse{}},
	}
)

// headersReply continues after the request headers, removing the headers
// the verdict names.
func headersReply(v limiter.Verdict) *extprocv3.HeadersResponse {
	if len(v.RemoveHeaders) == 0 {
		return &extprocv3.HeadersResponse{}
	}
	return &extprocv3.HeadersResponse{Response: &extprocv3.CommonResponse{
		HeaderMutation: &extprocv3.HeaderMutation{RemoveHeaders: v.RemoveHeaders},
	}}
}

// mutation replaces a body (an empty replacement clears it) and sets the
// verdict's headers.
func mutation(v limiter.Verdict) *extprocv3.CommonResponse {
	c := &extprocv3.CommonResponse{Status: extprocv3.CommonResponse_CONTINUE}
	if len(v.Body) == 0 {
		c.BodyMutation = &extprocv3.BodyMutation{Mutation: &extprocv3.BodyMutation_ClearBody{ClearBody: true}}
	} else {
		c.BodyMutation = &extprocv3.BodyMutation{Mutation: &extprocv3.BodyMutation_Body{Body: v.Body}}
	}
	if len(v.SetHeaders) > 0 {
		c.HeaderMutation = &extprocv3.HeaderMutation{SetHeaders: headerOptions(v.SetHeaders)}
	}
	return c
}

// headerOptions sets each header, replacing any value it had. Values go in
// raw_value only: Envoy refuses a header that sets value and raw_value.
func headerOptions(fields []limiter.HeaderField) []*corev3.HeaderValueOption {
	set := make([]*corev3.HeaderValueOption, len(fields))
	for i, h := range fields {
		set[i] = &corev3.HeaderValueOption{
			Header:       &corev3.HeaderValue{Key: h.Name, RawValue: []byte(h.Value)},
			AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
		}
	}
	return set
}

// immediate turns a rejection into Envoy's ImmediateResponse.
func immediate(r *limiter.Rejection) *extprocv3.ProcessingResponse {
	set := headerOptions(r.Headers)
	return &extprocv3.ProcessingResponse{
		Response: &extprocv3.ProcessingResponse_ImmediateResponse{ImmediateResponse: &extprocv3.ImmediateResponse{
			Status:  &typev3.HttpStatus{Code: typev3.StatusCode(r.Status)},
			Headers: &extprocv3.HeaderMutation{SetHeaders: set},
			Body:    r.Body,
			Details: "arl_" + r.Reason,
		}},
	}
}
