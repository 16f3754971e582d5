package standin

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"sync/atomic"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocsvc "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/adaptive-rate-limiter/arl/envoy"
)

// Envoy's defaults where neither Config nor the bootstrap says otherwise.
const (
	// DefaultMessageTimeout is ext_proc's message_timeout when the filter sets none.
	DefaultMessageTimeout = 200 * time.Millisecond
	// DefaultRemoteCloseTimeout is how long a graceful close waits for the processor to end
	// its side of the stream (Envoy's remote_close_timeout_milliseconds default).
	DefaultRemoteCloseTimeout = time.Second
	// defaultStatusOnError is ext_proc's status_on_error default.
	defaultStatusOnError = http.StatusInternalServerError
)

// Config configures a StandIn. Zero-valued Filter, BufferLimit, HostRewrite and
// RemoveRequestHeaders take their values from envoy/envoy.yaml (embedded in package envoy);
// FromEnvoyYAML and FromBootstrap fill them from another bootstrap.
type Config struct {
	// Processor is the connection to the ext_proc gRPC server (a *grpc.ClientConn). The
	// stand-in opens one ExternalProcessor.Process stream on it per HTTP request. Required.
	Processor grpc.ClientConnInterface

	// Upstream is where processed requests go: its scheme and host are used, the path and
	// query come from the request's (possibly mutated) :path. Required.
	Upstream *url.URL

	// Filter is the ext_proc filter configuration (processing modes, timeouts,
	// failure_mode_allow, allow_mode_override...). Nil means envoy.yaml's filter.
	Filter *extprocv3.ExternalProcessor

	// BufferLimit is the largest request body, in bytes, buffered for the processor (the
	// listener's per_connection_buffer_limit_bytes); larger bodies get Envoy's own 413 and
	// never reach the processor. Zero means envoy.yaml's limit.
	BufferLimit int

	// HostRewrite replaces the Host of upstream requests (the route's host_rewrite_literal).
	// Empty means envoy.yaml's value, unless KeepHost is set.
	HostRewrite string

	// KeepHost forwards the request's own :authority as Host, ignoring HostRewrite.
	KeepHost bool

	// RemoveRequestHeaders are removed from upstream requests after processing (the route's
	// request_headers_to_remove). Nil means envoy.yaml's list; an empty non-nil slice removes
	// nothing.
	RemoveRequestHeaders []string

	// GracefulClose makes the stand-in close the ext_proc stream as Envoy does with
	// envoy.reloadable_features.ext_proc_graceful_grpc_close: half-close it and wait up to
	// RemoteCloseTimeout for the processor to end the stream, then cancel. Without it (Envoy's
	// default), a client disconnect cancels the stream at once (the processor sees
	// codes.Canceled) and a finished exchange half-closes and cancels together.
	GracefulClose bool

	// RemoteCloseTimeout bounds a graceful close. Zero means DefaultRemoteCloseTimeout.
	RemoteCloseTimeout time.Duration

	// Transport sends upstream requests. Nil means a dedicated *http.Transport that, like
	// Envoy, never adds Accept-Encoding or decompresses. Redirects are never followed and
	// there is no overall timeout.
	Transport http.RoundTripper

	// Clock makes the message timers. Nil means the real clock.
	Clock Clock

	// Logger receives one debug line per processing event. Nil discards.
	Logger *slog.Logger
}

// Default returns a Config holding envoy/envoy.yaml's filter, buffer limit and route settings.
// Set Processor and Upstream before calling New.
func Default() (Config, error) {
	b, err := envoy.DefaultBootstrap()
	if err != nil {
		return Config{}, fmt.Errorf("standin: %w", err)
	}
	return FromBootstrap(b)
}

// FromEnvoyYAML returns a Config holding the ext_proc filter, buffer limit and first route's
// settings of the bootstrap at path (loaded and validated by package envoy).
func FromEnvoyYAML(path string) (Config, error) {
	b, err := envoy.LoadBootstrap(path)
	if err != nil {
		return Config{}, fmt.Errorf("standin: %w", err)
	}
	return FromBootstrap(b)
}

// FromBootstrap is FromEnvoyYAML for a parsed bootstrap.
func FromBootstrap(b *bootstrapv3.Bootstrap) (Config, error) {
	f, err := envoy.ExtProcFilter(b)
	if err != nil {
		return Config{}, fmt.Errorf("standin: %w", err)
	}
	l, err := envoy.FirstListener(b)
	if err != nil {
		return Config{}, fmt.Errorf("standin: %w", err)
	}
	r, err := envoy.FirstRoute(b)
	if err != nil {
		return Config{}, fmt.Errorf("standin: %w", err)
	}
	cfg := Config{
		Filter:               f,
		BufferLimit:          1 << 20, // Envoy's per_connection_buffer_limit_bytes default
		HostRewrite:          r.GetRoute().GetHostRewriteLiteral(),
		KeepHost:             r.GetRoute().GetHostRewriteLiteral() == "",
		RemoveRequestHeaders: append([]string{}, r.GetRequestHeadersToRemove()...),
	}
	if v := l.GetPerConnectionBufferLimitBytes(); v != nil {
		cfg.BufferLimit = int(v.GetValue())
	}
	return cfg, nil
}

// StandIn is an http.Handler that processes each request through the ext_proc server as
// Envoy would and forwards it to the upstream. It is safe for concurrent use.
type StandIn struct {
	cfg           Config
	mode          *extprocv3.ProcessingMode
	client        extprocsvc.ExternalProcessorClient
	http          *http.Client
	ownTransport  *http.Transport
	clock         Clock
	log           *slog.Logger
	msgTimeout    time.Duration
	maxOverride   time.Duration
	statusOnError int
	stats         counters
}

// New validates cfg, fills its defaults (see Config) and returns a StandIn.
func New(cfg Config) (*StandIn, error) {
	if cfg.Processor == nil {
		return nil, errors.New("standin: Config.Processor is required")
	}
	if cfg.Upstream == nil || cfg.Upstream.Scheme == "" || cfg.Upstream.Host == "" {
		return nil, fmt.Errorf("standin: Config.Upstream must be an absolute URL, got %v", cfg.Upstream)
	}
	if cfg.Filter == nil || cfg.BufferLimit == 0 || (cfg.HostRewrite == "" && !cfg.KeepHost) || cfg.RemoveRequestHeaders == nil {
		def, err := Default()
		if err != nil {
			return nil, err
		}
		if cfg.Filter == nil {
			cfg.Filter = def.Filter
		}
		if cfg.BufferLimit == 0 {
			cfg.BufferLimit = def.BufferLimit
		}
		if cfg.HostRewrite == "" && !cfg.KeepHost {
			cfg.HostRewrite = def.HostRewrite
		}
		if cfg.RemoveRequestHeaders == nil {
			cfg.RemoveRequestHeaders = def.RemoveRequestHeaders
		}
	}
	if err := checkSupported(cfg.Filter); err != nil {
		return nil, err
	}
	if cfg.BufferLimit < 0 {
		return nil, fmt.Errorf("standin: negative BufferLimit %d", cfg.BufferLimit)
	}
	if cfg.RemoteCloseTimeout == 0 {
		cfg.RemoteCloseTimeout = DefaultRemoteCloseTimeout
	}
	s := &StandIn{
		cfg:           cfg,
		mode:          effectiveConfigMode(cfg.Filter.GetProcessingMode()),
		client:        extprocsvc.NewExternalProcessorClient(cfg.Processor),
		clock:         cfg.Clock,
		log:           cfg.Logger,
		msgTimeout:    DefaultMessageTimeout,
		maxOverride:   cfg.Filter.GetMaxMessageTimeout().AsDuration(),
		statusOnError: defaultStatusOnError,
	}
	if d := cfg.Filter.GetMessageTimeout(); d != nil {
		s.msgTimeout = d.AsDuration()
	}
	if c := int(cfg.Filter.GetStatusOnError().GetCode()); c >= 200 {
		s.statusOnError = c
	}
	if s.clock == nil {
		s.clock = realClock{}
	}
	if s.log == nil {
		s.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	rt := cfg.Transport
	if rt == nil {
		s.ownTransport = &http.Transport{
			Proxy:               nil,
			DisableCompression:  true,
			MaxIdleConnsPerHost: 64,
			IdleConnTimeout:     90 * time.Second,
		}
		rt = s.ownTransport
	}
	s.http = &http.Client{
		Transport:     rt,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return s, nil
}

// checkSupported refuses filter settings the stand-in does not emulate, so that a test never
// passes against behaviour Envoy would not show.
func checkSupported(f *extprocv3.ExternalProcessor) error {
	var bad []string
	if f.GetGrpcService() == nil {
		bad = append(bad, "grpc_service unset (http_service is not emulated)")
	}
	if f.GetObservabilityMode() {
		bad = append(bad, "observability_mode")
	}
	if f.GetSendBodyWithoutWaitingForHeaderResponse() {
		bad = append(bad, "send_body_without_waiting_for_header_response")
	}
	if f.GetMutationRules() != nil {
		bad = append(bad, "mutation_rules (only Envoy's default rules are emulated)")
	}
	if f.GetForwardRules() != nil {
		bad = append(bad, "forward_rules")
	}
	if len(f.GetRequestAttributes()) > 0 || len(f.GetResponseAttributes()) > 0 {
		bad = append(bad, "request/response attributes")
	}
	if f.GetProcessingRequestModifier() != nil || f.GetOnProcessingResponse() != nil {
		bad = append(bad, "processing extensions")
	}
	m := f.GetProcessingMode()
	if !requestBodySupported(m.GetRequestBodyMode()) {
		bad = append(bad, "request_body_mode "+m.GetRequestBodyMode().String())
	}
	if !responseBodySupported(m.GetResponseBodyMode()) {
		bad = append(bad, "response_body_mode "+m.GetResponseBodyMode().String())
	}
	if len(bad) > 0 {
		return fmt.Errorf("standin: unsupported ext_proc settings: %v", bad)
	}
	return nil
}

func requestBodySupported(m extprocv3.ProcessingMode_BodySendMode) bool {
	return m == extprocv3.ProcessingMode_NONE || m == extprocv3.ProcessingMode_BUFFERED
}

func responseBodySupported(m extprocv3.ProcessingMode_BodySendMode) bool {
	return m == extprocv3.ProcessingMode_NONE || m == extprocv3.ProcessingMode_STREAMED ||
		m == extprocv3.ProcessingMode_BUFFERED
}

// effectiveConfigMode resolves DEFAULT header modes in the filter's processing mode to what
// Envoy uses for them (headers are sent, trailers skipped).
func effectiveConfigMode(m *extprocv3.ProcessingMode) *extprocv3.ProcessingMode {
	out := &extprocv3.ProcessingMode{}
	if m != nil {
		out = proto.Clone(m).(*extprocv3.ProcessingMode)
	}
	if out.RequestHeaderMode == extprocv3.ProcessingMode_DEFAULT {
		out.RequestHeaderMode = extprocv3.ProcessingMode_SEND
	}
	if out.ResponseHeaderMode == extprocv3.ProcessingMode_DEFAULT {
		out.ResponseHeaderMode = extprocv3.ProcessingMode_SEND
	}
	if out.RequestTrailerMode == extprocv3.ProcessingMode_DEFAULT {
		out.RequestTrailerMode = extprocv3.ProcessingMode_SKIP
	}
	if out.ResponseTrailerMode == extprocv3.ProcessingMode_DEFAULT {
		out.ResponseTrailerMode = extprocv3.ProcessingMode_SKIP
	}
	return out
}

// Close releases the idle upstream connections of the stand-in's own transport. It does not
// close Config.Processor, which the caller owns.
func (s *StandIn) Close() {
	if s.ownTransport != nil {
		s.ownTransport.CloseIdleConnections()
	}
}

// ServeHTTP processes one request: see the package documentation.
func (s *StandIn) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.stats.requests.Add(1)
	x := newExchange(s, w, r)
	defer x.finish()
	x.run()
}

// MessageCounts counts ext_proc messages by kind.
type MessageCounts struct {
	RequestHeaders    int64
	RequestBody       int64
	ResponseHeaders   int64
	ResponseBody      int64
	ImmediateResponse int64 // replies only
	Other             int64 // replies only: trailers, streamed immediate responses, none set
}

// Stats is a snapshot of a StandIn's counters since New.
type Stats struct {
	Requests      int64 // HTTP requests served
	StreamsOpened int64 // ext_proc streams opened (one per request that reached the processor)

	Sent     MessageCounts // ProcessingRequests sent, by kind
	Received MessageCounts // ProcessingResponses received, by response kind (timeout overrides excluded)

	ImmediateResponses       int64 // immediate responses honoured (sent to the client or reset it)
	ModeOverridesHonoured    int64 // mode_override applied
	ModeOverridesIgnored     int64 // mode_override present but not applicable
	TimeoutOverridesHonoured int64 // override_message_timeout that restarted the timer
	TimeoutOverridesIgnored  int64 // override_message_timeout ignored (repeat, out of range, no timer)

	MessageTimeouts          int64 // message_timeout expiries
	SpuriousReplies          int64 // replies that did not match the message awaited
	GRPCErrors               int64 // stream failures reported by gRPC
	InvalidMutations         int64 // mutations Envoy refuses (in an immediate response only the failed headers are lost)
	ProcessingErrors         int64 // errors that ended processing: timeouts, spurious replies, gRPC errors, refused mutations in replies
	FailOpen                 int64 // exchanges continued without the processor after an error
	StreamsClosedByProcessor int64 // processor ended the stream (OK status) before the exchange was done

	RejectedHeaderMutations int64 // header mutations ignored or refused under Envoy's rules
	ValueOnlyHeaders        int64 // header values sent in `value` only (Envoy applies them as empty)

	PayloadTooLarge   int64 // 413 local replies (request body above BufferLimit)
	UpstreamFailures  int64 // 503 local replies (upstream unreachable)
	LocalReplies      int64 // all replies made by the stand-in itself (immediate responses included)
	ClientResets      int64 // client streams reset because the response had already started
	ClientDisconnects int64 // clients gone before the exchange completed
	Unsupported       int64 // requests refused because a mode_override asked for an unemulated mode
}

// counters holds the live values behind Stats.
type counters struct {
	requests, streamsOpened                                          atomic.Int64
	sent, received                                                   messageCounters
	immediate, modeHonoured, modeIgnored, toHonoured, toIgnored      atomic.Int64
	timeouts, spurious, grpcErrors, invalidMutations, processingErrs atomic.Int64
	failOpen, closedByProcessor, rejected, valueOnly                 atomic.Int64
	tooLarge, upstreamFailures, localReplies, clientResets           atomic.Int64
	disconnects, unsupported                                         atomic.Int64
}

type messageCounters struct {
	requestHeaders, requestBody, responseHeaders, responseBody, immediate, other atomic.Int64
}

func (m *messageCounters) snapshot() MessageCounts {
	return MessageCounts{
		RequestHeaders:    m.requestHeaders.Load(),
		RequestBody:       m.requestBody.Load(),
		ResponseHeaders:   m.responseHeaders.Load(),
		ResponseBody:      m.responseBody.Load(),
		ImmediateResponse: m.immediate.Load(),
		Other:             m.other.Load(),
	}
}

// Stats returns a snapshot of the counters.
func (s *StandIn) Stats() Stats {
	c := &s.stats
	return Stats{
		Requests:                 c.requests.Load(),
		StreamsOpened:            c.streamsOpened.Load(),
		Sent:                     c.sent.snapshot(),
		Received:                 c.received.snapshot(),
		ImmediateResponses:       c.immediate.Load(),
		ModeOverridesHonoured:    c.modeHonoured.Load(),
		ModeOverridesIgnored:     c.modeIgnored.Load(),
		TimeoutOverridesHonoured: c.toHonoured.Load(),
		TimeoutOverridesIgnored:  c.toIgnored.Load(),
		MessageTimeouts:          c.timeouts.Load(),
		SpuriousReplies:          c.spurious.Load(),
		GRPCErrors:               c.grpcErrors.Load(),
		InvalidMutations:         c.invalidMutations.Load(),
		ProcessingErrors:         c.processingErrs.Load(),
		FailOpen:                 c.failOpen.Load(),
		StreamsClosedByProcessor: c.closedByProcessor.Load(),
		RejectedHeaderMutations:  c.rejected.Load(),
		ValueOnlyHeaders:         c.valueOnly.Load(),
		PayloadTooLarge:          c.tooLarge.Load(),
		UpstreamFailures:         c.upstreamFailures.Load(),
		LocalReplies:             c.localReplies.Load(),
		ClientResets:             c.clientResets.Load(),
		ClientDisconnects:        c.disconnects.Load(),
		Unsupported:              c.unsupported.Load(),
	}
}
