package limiter

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/adaptive-rate-limiter/arl/backend"
	"github.com/adaptive-rate-limiter/arl/limiter/bucket"
	"github.com/adaptive-rate-limiter/arl/limiter/provider"
	"github.com/adaptive-rate-limiter/arl/limiter/usage"
)

// Header gives read access to HTTP headers by lower-case name, including the
// HTTP/2 pseudo-headers (":method", ":path", ":authority", ":status").
type Header = provider.Header

// Verdict tells the protocol layer how to go on after one phase of an
// exchange.
type Verdict struct {
	// Reject, when set, is the answer to give the client instead of
	// forwarding the request. Only the request phases reject.
	Reject *Rejection
	// Done reports that arl needs nothing more of this exchange: the protocol
	// layer should stop sending it bodies (and, after the request headers,
	// the response too).
	Done bool
	// Body, when not nil, replaces the body just received: the request body,
	// or the response chunk (possibly with an empty one).
	Body []byte
	// SetHeaders are request headers to set with a replaced request body
	// (its content-length).
	SetHeaders []HeaderField
	// RemoveHeaders are request headers to remove before the request goes
	// upstream: arl's own trusted headers (namespace, provider), which are
	// for arl, not for the provider.
	RemoveHeaders []string
}

// HeaderField is one response header of a rejection.
type HeaderField struct{ Name, Value string }

// Rejection is an answer arl gives in the provider's place.
type Rejection struct {
	Status     int           // 429, or 503 when the backend failed and the failure mode is closed
	Reason     string        // the x-arl-reason value
	RetryAfter time.Duration // the exact wait; headers carry it rounded up
	Headers    []HeaderField // retry-after, retry-after-ms, content-type, x-arl-reason
	Body       []byte        // an error in the provider's own shape
}

// Reasons for rejections that are not a bucket dimension.
const (
	ReasonBackendUnavailable = "backend_unavailable"
	ReasonCircuitOpen        = "circuit_open"
)

// Settlement kinds, as counted in arl_settlements_total.
const (
	settleExact       = "exact"          // the provider reported usage
	settleEstimated   = "estimated"      // usage estimated from the streamed content
	settleAborted     = "aborted"        // the client went away; usage so far
	settleUpstream    = "upstream_error" // a non-2xx answer: one request, no tokens
	settleUncountable = "uncountable"    // a 2xx answer arl could not read: the estimate stands
)

// Exchange follows one HTTP request through arl. Its methods are called in
// protocol order by one goroutine: RequestHeaders, then RequestBody (unless
// the headers ended the request or the verdict was Done), then
// ResponseHeaders, then ResponseBody for each chunk, and Abort whenever the
// stream ends early. An Exchange is not safe for concurrent use.
type Exchange struct {
	l        *Limiter
	provider string
	dialect  provider.Dialect
	endpoint usage.Endpoint
	key      bucket.Key
	req      usage.Request
	cost     bucket.Vector
	id       string // the open reservation; "" when none is held
	counter  *usage.Counter
	answered bool // response headers seen
	injected bool // stream_options.include_usage was added to the request
	stripper *usageStripper
	probe    bool                // the reservation took nothing: its bucket knew no limits
	lesson   *bucket.Observation // a 2xx answer's lesson, folded into the settlement

	// An error answer whose body the dialect wants to read before its lesson
	// is applied.
	pending *provider.Answer
	status  int
	errBody []byte
}

// maxErrorBody bounds the error body kept for the dialect to read.
const maxErrorBody = 64 << 10

// Begin starts the exchange for one HTTP request.
func (l *Limiter) Begin() *Exchange { return &Exchange{l: l} }

// Reserved reports whether the exchange holds an open reservation.
func (x *Exchange) Reserved() bool { return x.id != "" }

// Key returns the bucket the exchange is accounted in.
func (x *Exchange) Key() bucket.Key { return x.key }

// RequestHeaders classifies the request. Requests that are not LLM API calls
// (another method, an unknown path) pass through untouched with a Done
// verdict. A request without a body is admitted on its headers alone.
func (x *Exchange) RequestHeaders(ctx context.Context, h Header, endOfStream bool) Verdict {
	v := x.requestHeaders(ctx, h, endOfStream)
	if v.Reject == nil {
		v.RemoveHeaders = x.l.ownHeaders(h)
	}
	return v
}

// ownHeaders returns the names of arl's trusted headers that h carries.
func (l *Limiter) ownHeaders(h Header) []string {
	var out []string
	for _, name := range []string{l.cfg.NamespaceHeader, l.cfg.ProviderHeader} {
		if name != "" && h.Get(name) != "" {
			out = append(out, name)
		}
	}
	return out
}

func (x *Exchange) requestHeaders(ctx context.Context, h Header, endOfStream bool) Verdict {
	cfg := &x.l.cfg
	name, known := provider.Name(h.Get(":authority"), h.Get(cfg.ProviderHeader))
	if !known {
		x.l.metrics.BadInput.WithLabelValues("unknown_provider").Inc()
	}
	x.provider = name
	x.endpoint = usage.ClassifyPath(h.Get(":path"))
	if h.Get(":method") != "POST" || x.endpoint == usage.Unknown {
		x.l.metrics.Requests.WithLabelValues(x.provider, "passthrough").Inc()
		return Verdict{Done: true}
	}
	x.dialect = provider.ForName(x.provider)
	x.key = bucket.Key{
		Namespace: x.l.namespace(h.Get(cfg.NamespaceHeader)),
		Provider:  x.provider,
		Account:   bucket.AccountID(credential(h)),
	}
	if endOfStream {
		x.l.metrics.BadInput.WithLabelValues("no_body").Inc()
		return x.admit(ctx, usage.Request{Endpoint: x.endpoint, Choices: 1})
	}
	return Verdict{}
}

// RequestBody estimates the request's cost from its body and reserves it. A
// body that cannot be read is charged a fallback estimate (its size in
// tokens plus the default output budget) and forwarded: the provider is the
// judge of a malformed request, and its answer settles the reservation.
func (x *Exchange) RequestBody(ctx context.Context, body []byte) Verdict {
	req, err := usage.ParseRequest(x.endpoint, body)
	if err != nil {
		x.l.metrics.BadInput.WithLabelValues("malformed_request").Inc()
		req = x.fallbackRequest(len(body))
	}
	v := x.admit(ctx, req)
	if v.Reject == nil && x.l.cfg.InjectStreamUsage && req.Stream && !req.IncludeUsage &&
		(x.endpoint == usage.ChatCompletions || x.endpoint == usage.Completions) {
		if out, ok := injectIncludeUsage(body); ok {
			x.injected = true
			v.Body = out
			v.SetHeaders = []HeaderField{{"content-length", strconv.Itoa(len(out))}}
		}
	}
	return v
}

// RequestBodyTooLarge reserves a request whose body was too large to keep
// (size bytes in all): like a malformed body, it is charged the fallback
// estimate and forwarded, so that it is neither lost to the accounting nor
// refused on arl's account.
func (x *Exchange) RequestBodyTooLarge(ctx context.Context, size int) Verdict {
	x.l.metrics.BadInput.WithLabelValues("request_too_large").Inc()
	return x.admit(ctx, x.fallbackRequest(size))
}

// fallbackRequest is the estimate for a body that cannot be read: its size in
// tokens (4 bytes each) and the default output budget.
func (x *Exchange) fallbackRequest(size int) usage.Request {
	return usage.Request{Endpoint: x.endpoint, PromptTokens: int64(size/4 + 1), Choices: 1}
}

func (x *Exchange) admit(ctx context.Context, req usage.Request) Verdict {
	l := x.l
	x.req = req
	x.key.Model = l.modelGroup(req.Model)
	if wait := l.breaker.check(x.key, l.cfg.Clock()); wait > 0 {
		l.metrics.Requests.WithLabelValues(x.provider, "rejected").Inc()
		return Verdict{Reject: x.reject(429, ReasonCircuitOpen, wait,
			fmt.Sprintf("arl: too many failed requests on this API key; paused for %s", wait.Round(time.Millisecond)))}
	}
	total := req.Cost(l.cfg.DefaultMaxTokens)
	input := min(max(req.PromptTokens, 0), total)
	x.cost = bucket.Cost(1, input, total-input)

	id, now := l.newID(), l.cfg.Clock()
	var res backend.ReserveResult
	err := l.call(ctx, "reserve", func(ctx context.Context) error {
		var err error
		res, err = l.backend.Reserve(ctx, x.key, backend.ReserveRequest{
			ID: id, Cost: x.cost, Defaults: l.cfg.Defaults, TTL: l.cfg.ReservationTTL, Now: now,
		})
		return err
	})
	switch {
	case err != nil && l.cfg.FailureMode == FailOpen:
		l.metrics.Requests.WithLabelValues(x.provider, "fail_open").Inc()
		return Verdict{}
	case err != nil:
		l.metrics.Requests.WithLabelValues(x.provider, "fail_closed").Inc()
		return Verdict{Reject: x.reject(503, ReasonBackendUnavailable, 0,
			"arl: the rate limiter's state is unavailable; retry shortly")}
	case !res.Allowed:
		l.metrics.Requests.WithLabelValues(x.provider, "rejected").Inc()
		return Verdict{Reject: x.reject(429, res.Reason, res.RetryAfter,
			fmt.Sprintf("arl: rate limit on %s reached for this API key; retry after %s", res.Reason, res.RetryAfter.Round(time.Millisecond)))}
	}
	x.id = id
	l.leases.add(id, x.key, now.Add(l.cfg.ReservationTTL))
	x.probe = res.Taken.IsZero()
	l.metrics.Requests.WithLabelValues(x.provider, "admitted").Inc()
	l.metrics.InFlight.Inc()
	l.metrics.TokensReserved.WithLabelValues(x.provider).Add(float64(x.cost[bucket.Tokens]))
	return Verdict{}
}

// ResponseHeaders learns from the upstream answer. A 2xx answer with a body
// that arl can read is counted chunk by chunk (the verdict asks for the
// body); any other answer settles the reservation at once, and the verdict is
// Done.
func (x *Exchange) ResponseHeaders(ctx context.Context, status int, h Header, endOfStream bool) Verdict {
	if x.dialect == nil {
		return Verdict{Done: true}
	}
	l := x.l
	x.answered = true
	ans := x.dialect.ParseAnswer(status, h, l.cfg.Clock())
	l.metrics.UpstreamResponses.WithLabelValues(x.provider, statusClass(status)).Inc()
	if status == 429 {
		l.metrics.UpstreamRateLimited.WithLabelValues(x.provider).Inc()
	}
	obs := ans.Observation
	ok2xx := status >= 200 && status < 300
	countable := ok2xx && !endOfStream && identityEncoding(h.Get("content-encoding"))
	if !ok2xx && ans.WantBody && !endOfStream {
		// The error body says more than the headers (a billing error is no
		// failure, say): read it first.
		x.pending, x.status = &ans, status
		return Verdict{}
	}
	x.countAnswer(&ans)
	switch {
	case x.id == "":
		x.observe(ctx, obs)
		return Verdict{Done: true}
	case countable:
		if x.probe || obs.Urgent() {
			// Learn now: other requests need the lesson before this stream ends.
			x.observe(ctx, obs)
		} else {
			// A routine lesson rides with the settlement: one backend round
			// trip fewer per request.
			x.lesson = &obs
		}
		x.counter = usage.NewCounter(x.endpoint, h.Get("content-type"), usage.CounterOptions{
			PromptTokens: x.req.PromptTokens, MaxBodyBytes: l.cfg.MaxResponseBytes,
		})
		if x.injected {
			x.stripper = x.newStripper(h.Get("content-type"))
		}
		return Verdict{}
	case ok2xx:
		if !endOfStream {
			l.metrics.BadInput.WithLabelValues("encoded_response").Inc()
		}
		x.settle(ctx, x.cost, &obs, settleUncountable)
	default:
		x.settle(ctx, bucket.Cost(1, 0, 0), &obs, settleUpstream)
	}
	return Verdict{Done: true}
}

// newStripper returns the stripper that removes what usage injection added
// from an answer of the given content type, nil when the answer is not an
// event stream: it passes as sent, and is counted.
func (x *Exchange) newStripper(contentType string) *usageStripper {
	unstripped := x.l.metrics.BadInput.WithLabelValues("unstripped_stream")
	if !usage.IsEventStream(contentType) {
		unstripped.Inc()
		return nil
	}
	return &usageStripper{oversized: unstripped.Inc}
}

// ResponseBody counts one chunk of the response body; at the end of the
// stream it settles the reservation with the usage counted.
func (x *Exchange) ResponseBody(ctx context.Context, chunk []byte, endOfStream bool) Verdict {
	if x.pending != nil {
		if room := maxErrorBody - len(x.errBody); room > 0 {
			x.errBody = append(x.errBody, chunk[:min(len(chunk), room)]...)
		}
		if !endOfStream {
			return Verdict{}
		}
		x.dialect.ParseErrorBody(x.status, x.errBody, x.l.cfg.Clock(), x.pending)
		x.applyPending(ctx)
		return Verdict{Done: true}
	}
	if x.counter == nil {
		return Verdict{Done: true}
	}
	x.counter.Write(chunk)
	var v Verdict
	if x.stripper != nil {
		v.Body = x.stripper.Write(chunk, endOfStream)
	}
	if !endOfStream {
		return v
	}
	u := x.finishCounting()
	kind := settleEstimated
	if u.Exact {
		kind = settleExact
	}
	x.settle(ctx, bucket.Cost(1, u.InputTokens, u.OutputTokens), x.lesson, kind)
	v.Done = true
	return v
}

// Abort ends an exchange whose stream closed before the response did (a
// client disconnect, an Envoy reset). A held reservation is settled with what
// is known to be used: the tokens streamed so far, or, when no answer came,
// the request and its prompt (the provider may have received it), so that
// the unused output budget returns to the bucket. Abort after completion does
// nothing.
func (x *Exchange) Abort(ctx context.Context) {
	if x.pending != nil {
		x.applyPending(ctx) // the headers' lesson, without the body's
		return
	}
	if x.id == "" {
		return
	}
	actual := bucket.Cost(1, x.cost[bucket.InputTokens], 0)
	if x.counter != nil {
		u := x.finishCounting()
		actual = bucket.Cost(1, u.InputTokens, u.OutputTokens)
	}
	x.settle(ctx, actual, x.lesson, settleAborted)
}

// applyPending applies the lesson of an error answer and settles its
// reservation: one request, no tokens.
func (x *Exchange) applyPending(ctx context.Context) {
	a := x.pending
	x.pending, x.errBody = nil, nil
	x.countAnswer(a)
	if x.id == "" {
		x.observe(ctx, a.Observation)
		return
	}
	x.settle(ctx, bucket.Cost(1, 0, 0), &a.Observation, settleUpstream)
}

// countAnswer counts what an answer's final lesson (its headers, and its
// error body when that was read) holds: invalid values, billing, a block,
// and a failure for the circuit breaker.
func (x *Exchange) countAnswer(a *provider.Answer) {
	x.recordFailure(a)
	m := x.l.metrics
	if a.Invalid > 0 {
		m.InvalidHeaders.WithLabelValues(x.provider).Add(float64(a.Invalid))
	}
	if a.Billing {
		m.UpstreamBilling.WithLabelValues(x.provider).Inc()
	}
	if a.Observation.RetryAfter > 0 {
		m.BlockedSeconds.WithLabelValues(x.provider).Observe(a.Observation.RetryAfter.Seconds())
	}
}

func (x *Exchange) finishCounting() usage.Usage {
	u := x.counter.Finish()
	st := x.counter.Stats()
	m := x.l.metrics.StreamEvents
	m.WithLabelValues("events").Add(float64(st.Events))
	if st.MalformedEvents > 0 {
		m.WithLabelValues("malformed").Add(float64(st.MalformedEvents))
	}
	if st.OversizedEvents > 0 {
		m.WithLabelValues("oversized").Add(float64(st.OversizedEvents))
	}
	if st.Truncated {
		m.WithLabelValues("truncated").Inc()
	}
	if st.MalformedBody {
		x.l.metrics.BadInput.WithLabelValues("malformed_response").Inc()
	}
	if st.OversizedBody {
		x.l.metrics.BadInput.WithLabelValues("oversized_response").Inc()
	}
	x.counter = nil
	if !u.Exact && u.InputTokens == 0 {
		u.InputTokens = x.req.PromptTokens
	}
	return u
}

// recordFailure feeds a failed upstream answer to the circuit breaker.
func (x *Exchange) recordFailure(a *provider.Answer) {
	if !a.Failure {
		return
	}
	l := x.l
	if l.breaker.fail(x.key, l.breaker.policyFor(x.dialect), l.cfg.Clock()) {
		l.metrics.CircuitOpened.WithLabelValues(x.provider).Inc()
		l.log.Warn("circuit opened: too many failed upstream requests", "bucket", x.key.String())
	}
}

func (x *Exchange) observe(ctx context.Context, obs bucket.Observation) {
	l := x.l
	err := l.call(ctx, "observe", func(ctx context.Context) error {
		return l.backend.Observe(ctx, x.key, backend.ObserveRequest{Observation: obs, Defaults: l.cfg.Defaults, Now: l.cfg.Clock()})
	})
	if err == nil {
		l.metrics.Observations.WithLabelValues(x.provider).Inc()
	}
}

// settle ends the open reservation with actual usage, folding obs into the
// same backend call when set.
func (x *Exchange) settle(ctx context.Context, actual bucket.Vector, obs *bucket.Observation, kind string) {
	l := x.l
	id := x.id
	x.id, x.lesson = "", nil
	l.leases.remove(id)
	l.metrics.InFlight.Dec()
	err := l.call(ctx, "settle", func(ctx context.Context) error {
		_, err := l.backend.Settle(ctx, x.key, backend.SettleRequest{
			ID: id, Actual: actual, Observation: obs, Defaults: l.cfg.Defaults, Now: l.cfg.Clock(),
		})
		return err
	})
	if err != nil {
		// The backend keeps the reservation until its fallback's retry
		// (Redis) or orphan recovery ends it.
		return
	}
	if obs != nil {
		l.metrics.Observations.WithLabelValues(x.provider).Inc()
	}
	l.metrics.Settlements.WithLabelValues(x.provider, kind).Inc()
	l.metrics.TokensUsed.WithLabelValues(x.provider, "input").Add(float64(actual[bucket.InputTokens]))
	l.metrics.TokensUsed.WithLabelValues(x.provider, "output").Add(float64(actual[bucket.OutputTokens]))
	reserved, used := x.cost[bucket.Tokens], actual[bucket.Tokens]
	if used < reserved {
		l.metrics.TokensRefunded.WithLabelValues(x.provider).Add(float64(reserved - used))
	} else if used > reserved {
		l.metrics.TokensOverrun.WithLabelValues(x.provider).Add(float64(used - reserved))
	}
	if reserved > 0 && kind != settleUpstream {
		l.metrics.EstimateRatio.WithLabelValues(x.provider).Observe(float64(used) / float64(reserved))
	}
}

// reject builds a rejection in the provider's error shape.
func (x *Exchange) reject(status int, reason string, wait time.Duration, message string) *Rejection {
	secs := max(int64(math.Ceil(wait.Seconds())), 1)
	ms := max(int64(math.Ceil(float64(wait)/float64(time.Millisecond))), 1)
	if wait <= 0 {
		ms = 1000
	}
	x.l.metrics.Rejections.WithLabelValues(x.provider, reason).Inc()
	x.l.metrics.RetryAfter.WithLabelValues(x.provider).Observe(float64(ms) / 1000)
	x.l.metrics.ImmediateResponses.WithLabelValues(strconv.Itoa(status)).Inc()
	return &Rejection{
		Status:     status,
		Reason:     reason,
		RetryAfter: wait,
		Headers: []HeaderField{
			{"retry-after", strconv.FormatInt(secs, 10)},
			{"retry-after-ms", strconv.FormatInt(ms, 10)},
			{"content-type", "application/json"},
			{"x-arl-reason", reason},
		},
		Body: x.errorShape().ErrorBody(status, reason, message),
	}
}

// errorShape is the dialect whose error envelope a rejection takes: the
// provider's, except that a Messages request gets Anthropic's whatever the
// host (an Anthropic-compatible route elsewhere), since its client is an
// Anthropic SDK.
func (x *Exchange) errorShape() provider.Dialect {
	if x.endpoint == usage.Messages {
		return provider.ForName(provider.Anthropic)
	}
	return x.dialect
}

// credential returns the upstream credential: Authorization, else x-api-key
// (Anthropic), else api-key (Azure OpenAI).
func credential(h Header) string {
	for _, name := range [...]string{"authorization", "x-api-key", "api-key"} {
		if v := h.Get(name); v != "" {
			return v
		}
	}
	return ""
}

// maxNameLen bounds namespace and model names; longer values are not credible.
const maxNameLen = 128

// namespace validates the namespace header. An absent value is the default
// namespace; an invalid one (too long, control characters, spaces) is
// counted and also treated as the default, because the header is set by the
// platform, not by clients, and an invalid value is a misconfiguration that
// must not become an unbounded set of buckets.
func (l *Limiter) namespace(v string) string {
	if v == "" {
		return DefaultNamespace
	}
	if !validName(v) {
		l.metrics.BadInput.WithLabelValues("invalid_namespace").Inc()
		return DefaultNamespace
	}
	return v
}

// modelGroup maps a request's model to its bucket's model group: the model
// name, lower-cased. An invalid name is counted and grouped as "invalid".
func (l *Limiter) modelGroup(model string) string {
	if model == "" {
		return ""
	}
	if !validName(model) {
		l.metrics.BadInput.WithLabelValues("invalid_model").Inc()
		return "invalid"
	}
	return strings.ToLower(model)
}

func validName(s string) bool {
	if len(s) > maxNameLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c == 0x7f {
			return false
		}
	}
	return true
}

func identityEncoding(v string) bool {
	v = strings.TrimSpace(v)
	return v == "" || strings.EqualFold(v, "identity")
}

func statusClass(status int) string {
	switch {
	case status == 429:
		return "429"
	case status >= 200 && status < 600:
		return strconv.Itoa(status/100) + "xx"
	default:
		return "other"
	}
}
