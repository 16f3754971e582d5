package simprovider

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Server is the simulated provider, an [http.Handler]. Every API key has its
// own hidden quotas (see [Config] and [Quota]), each a continuously refilling
// token bucket. A request is charged on arrival, as OpenAI charges it: one
// request in the request quotas, its estimated prompt tokens plus its output
// budget (the request's max tokens, or Config.DefaultMaxTokens) times the
// number of choices in the token quotas, its prompt in the input tokens
// quota and its output budget in the output tokens quota. A request that
// does not fit in every quota is answered 429 with the dialect's retry hints
// and nothing is charged. What the answer really generates is never refunded
// against the token quotas; the output tokens quota is settled when the
// answer ends, as the dialect's [Enforcement] says.
//
// All methods are safe for concurrent use.
type Server struct {
	cfg Config
	enf Enforcement

	mu           sync.Mutex
	amounts      amounts // configured amount of each quota
	limits       map[string]*keyLimits
	stats        map[string]*KeyStats
	unauthorized int64
	overrides    []Override
	gate         *Gate
}

// New returns a Server configured by cfg (zero fields take their defaults).
func New(cfg Config) *Server {
	cfg = cfg.withDefaults()
	s := &Server{
		cfg:    cfg,
		enf:    cfg.Dialect.Enforcement(),
		limits: make(map[string]*keyLimits),
		stats:  make(map[string]*KeyStats),
	}
	for q := range NumQuotas {
		s.amounts[q] = cfg.amount(q)
	}
	return s
}

// Stats returns a snapshot of the server's statistics.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Stats{Keys: make(map[string]KeyStats, len(s.stats)), Unauthorized: s.unauthorized}
	for k, v := range s.stats {
		st.Keys[k] = v.clone()
		st.Total.add(*v)
	}
	return st
}

// HoldStreams installs a new [Gate]: every stream that starts from now on
// sends its first content event, then waits at the gate until the gate is
// released or its client goes away. Streams already waiting at a previous gate
// keep waiting for that one.
func (s *Server) HoldStreams() *Gate {
	g := newGate()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gate = g
	return g
}

// SetLimits changes the requests and tokens quotas (Config.RPM and
// Config.TPM) of every key, as when an account changes tier (0 means
// unlimited); see SetQuota.
func (s *Server) SetLimits(rpm, tpm int64) {
	s.SetQuota(QuotaRequests, rpm)
	s.SetQuota(QuotaTokens, tpm)
}

// SetQuota changes the configured amount of quota q for every key (0 means
// unlimited), as when an account changes tier. Each bucket keeps its level,
// capped at the new capacity; a quota that was unlimited starts full.
func (s *Server) SetQuota(q Quota, amount int64) {
	if q >= NumQuotas {
		return
	}
	now := s.cfg.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.amounts[q] = max(amount, 0)
	capacity, window := s.shape(q)
	for _, k := range s.limits {
		k.buckets[q] = resize(k.buckets[q], capacity, window, now)
	}
}

// shape returns the capacity and window of quota q; requires s.mu held.
func (s *Server) shape(q Quota) (int64, time.Duration) {
	return shape(q, s.amounts[q], s.cfg.Window, s.enf)
}

// resize returns a bucket of the new capacity and window that keeps b's
// level, capped.
func resize(b *bucket, capacity int64, window time.Duration, now time.Time) *bucket {
	nb := newBucket(capacity, window, now)
	if !b.unlimited() && !nb.unlimited() {
		b.advance(now)
		nb.level = min(b.level, nb.capacity)
	}
	return nb
}

// keyLimits returns key's buckets, creating full ones; requires s.mu held.
func (s *Server) keyLimits(key string, now time.Time) *keyLimits {
	k, ok := s.limits[key]
	if !ok {
		k = &keyLimits{}
		for q := range NumQuotas {
			capacity, window := s.shape(q)
			k.buckets[q] = newBucket(capacity, window, now)
		}
		s.limits[key] = k
	}
	return k
}

// keyStats returns key's statistics, creating them; requires s.mu held.
func (s *Server) keyStats(key string) *KeyStats {
	k, ok := s.stats[key]
	if !ok {
		k = &KeyStats{Rejected: make(map[string]int64)}
		s.stats[key] = k
	}
	return k
}

// record applies f to key's statistics under the lock.
func (s *Server) record(key string, f func(*KeyStats)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(s.keyStats(key))
}

// maxCharge bounds the tokens one request is charged, far above any limit.
const maxCharge = int64(1) << 50

// request is the state of one request as it passes through ServeHTTP.
type request struct {
	w       http.ResponseWriter
	r       *http.Request
	key     string
	arrival time.Time
	meta    Meta
	// outReserved is what the output tokens quota was charged at
	// admission, settled when the answer ends; admitted reports the
	// admission.
	outReserved int64
	admitted    bool
}

// ServeHTTP answers one API request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	req := &request{w: w, r: r, arrival: s.cfg.Now()}
	req.meta.RequestID = "req_" + s.cfg.NewID()
	req.meta.At = req.arrival
	d := s.cfg.Dialect

	req.key = d.APIKey(r)
	if req.key == "" {
		s.mu.Lock()
		s.unauthorized++
		s.mu.Unlock()
		s.writeProblem(req, &Problem{
			Status:  http.StatusUnauthorized,
			Kind:    ProblemAuthentication,
			Message: "You didn't provide an API key.",
		}, nil)
		return
	}

	call, p := s.parse(req)
	if p != nil {
		s.record(req.key, func(k *KeyStats) { k.Requests++; k.Invalid++ })
		s.writeProblem(req, p, nil)
		return
	}
	s.serveCall(req, call)
}

// parse reads the body and lets the dialect decode it.
func (s *Server) parse(req *request) (*Call, *Problem) {
	body, err := io.ReadAll(http.MaxBytesReader(req.w, req.r.Body, s.cfg.MaxBodyBytes))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return nil, &Problem{Status: http.StatusRequestEntityTooLarge, Kind: ProblemTooLarge,
				Message: "Request body too large."}
		}
		return nil, &Problem{Status: http.StatusBadRequest, Kind: ProblemInvalidRequest,
			Message: "Could not read the request body: " + err.Error()}
	}
	call, err := s.cfg.Dialect.ParseRequest(req.r, body)
	if err != nil {
		var p *Problem
		if errors.As(err, &p) {
			return nil, p
		}
		return nil, &Problem{Status: http.StatusBadRequest, Kind: ProblemInvalidRequest, Message: err.Error()}
	}
	if call == nil {
		return nil, &Problem{Status: http.StatusBadRequest, Kind: ProblemInvalidRequest, Message: "Unsupported request."}
	}
	call.Choices = max(call.Choices, 1)
	return call, nil
}

// serveCall charges an authenticated, well-formed call and answers it.
func (s *Server) serveCall(req *request, call *Call) {
	budget := call.MaxOutputTokens
	if budget <= 0 {
		budget = s.cfg.DefaultMaxTokens
	}
	if !call.Kind.Generates() {
		budget = 0
	}
	// Saturate instead of overflowing on absurd budgets: such a request
	// simply never fits a finite limit.
	budget = min(budget, maxCharge/int64(call.Choices))
	prompt := min(max(call.PromptTokens, 0), maxCharge)
	output := budget * int64(call.Choices)
	charge := min(prompt+output, maxCharge)
	need := amounts{
		QuotaRequests:       1,
		QuotaRequestsPerDay: 1,
		QuotaTokens:         charge,
		QuotaInputTokens:    prompt,
		QuotaOutputTokens:   output,
		QuotaTokensPerMonth: charge,
	}
	take := need
	if s.enf.OutputAsGenerated {
		need[QuotaOutputTokens], take[QuotaOutputTokens] = min(output, 1), 0
	}

	s.mu.Lock()
	ov, hasOv := s.takeOverride(req.key)
	forcedError := hasOv && ov.Status >= 400
	limits := s.keyLimits(req.key, req.arrival)
	var dec decision
	if forcedError {
		dec = decision{state: limits.peek(req.arrival)}
	} else {
		dec = limits.admit(req.arrival, need, take, hasOv)
	}
	ks := s.keyStats(req.key)
	ks.Requests++
	switch {
	case forcedError:
		ks.Rejected[ReasonForced]++
	case dec.admitted:
		ks.Admitted++
		ks.TokensCharged += charge
	default:
		ks.Rejected[dec.rejection.Quota.String()]++
	}
	gate := s.gate
	s.mu.Unlock()

	req.meta.Limits = dec.state
	if dec.admitted {
		req.admitted, req.outReserved, req.meta.Charged = true, take[QuotaOutputTokens], charge
	}
	var override *Override
	if hasOv {
		override = &ov
	}
	switch {
	case forcedError:
		p := &Problem{Status: ov.Status, Kind: kindOf(ov.Status), Message: forcedMessage(ov.Status), Model: call.Model}
		s.writeProblem(req, p, override)
	case !dec.admitted:
		s.writeProblem(req, &Problem{
			Status:    http.StatusTooManyRequests,
			Kind:      ProblemRateLimit,
			Message:   "Rate limit reached.",
			Rejection: dec.rejection,
			Model:     call.Model,
		}, nil)
	default:
		out := s.generate(call, budget, override, req.arrival)
		s.answer(req, call, out, override, gate)
	}
}

// generate builds the output of an admitted call.
func (s *Server) generate(call *Call, budget int64, ov *Override, created time.Time) *Output {
	out := &Output{ID: s.cfg.NewID(), Created: created, PromptTokens: call.PromptTokens}
	if !call.Kind.Generates() {
		dims := call.Dimensions
		if dims <= 0 {
			dims = s.cfg.EmbeddingDimensions
		}
		for i := range max(call.Inputs, 1) {
			out.Embeddings = append(out.Embeddings, generateEmbedding(i, dims))
		}
		return out
	}
	want := int64(s.cfg.OutputTokens)
	if ov != nil && ov.OutputTokens > 0 {
		want = int64(ov.OutputTokens)
	}
	n := min(want, budget)
	for i := range call.Choices {
		c := generateChoice(i, n, s.cfg.TokensPerChunk, want > budget)
		out.Choices = append(out.Choices, c)
		out.CompletionTokens += c.Tokens
	}
	return out
}

// answer writes the successful answer of an admitted call.
func (s *Server) answer(req *request, call *Call, out *Output, ov *Override, gate *Gate) {
	status := http.StatusOK
	if ov != nil && ov.Status > 0 {
		status = ov.Status
	}
	h := req.w.Header()
	switch {
	case ov != nil && ov.Body != "":
		s.writeHeaders(req, "application/json", ov)
		req.w.WriteHeader(status)
		_, _ = io.WriteString(req.w, ov.Body)
		s.settle(req, 0)
		s.logAnswer(req, status, "forced body")
	case call.Stream:
		events, err := s.cfg.Dialect.StreamEvents(call, out)
		if err != nil {
			s.fail(req, err)
			return
		}
		s.writeHeaders(req, "text/event-stream; charset=utf-8", ov)
		h.Set("Cache-Control", "no-cache")
		req.w.WriteHeader(status)
		s.stream(req, events, gate)
	default:
		body, err := s.cfg.Dialect.ResponseBody(call, out)
		if err != nil {
			s.fail(req, err)
			return
		}
		s.writeHeaders(req, "application/json", ov)
		req.w.WriteHeader(status)
		_, _ = req.w.Write(body)
		s.record(req.key, func(k *KeyStats) { k.TokensGenerated += out.CompletionTokens })
		s.settle(req, out.CompletionTokens)
		s.logAnswer(req, status, "json")
	}
}

// settle charges the output tokens quota for what an admitted answer
// generated, as the dialect's Enforcement says: the generated tokens, or the
// unused part of the output budget given back.
func (s *Server) settle(req *request, generated int64) {
	if !req.admitted {
		return
	}
	delta := req.outReserved - generated
	if s.enf.OutputAsGenerated {
		delta = -generated
	} else if delta <= 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if k, ok := s.limits[req.key]; ok {
		k.adjust(s.cfg.Now(), QuotaOutputTokens, delta)
	}
}

// stream writes events one by one, flushing after each, pausing
// Config.ChunkDelay between content events and holding at gate after the
// first one. Tokens are counted as generated when their event is written; the
// stream counts as completed or, when the client goes away first, aborted.
// Either way the output tokens quota is settled with the tokens sent.
func (s *Server) stream(req *request, events []Event, gate *Gate) {
	ctx := req.r.Context()
	rc := http.NewResponseController(req.w)
	seenContent := false
	var sent int64
	err := func() error {
		for _, ev := range events {
			if ev.Tokens > 0 && seenContent && s.cfg.ChunkDelay > 0 {
				if err := sleep(ctx, s.cfg.ChunkDelay); err != nil {
					return err
				}
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			if _, err := req.w.Write(ev.Data); err != nil {
				return err
			}
			if err := rc.Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
				return err
			}
			if ev.Tokens <= 0 {
				continue
			}
			sent += ev.Tokens
			s.record(req.key, func(k *KeyStats) { k.TokensGenerated += ev.Tokens })
			if !seenContent {
				seenContent = true
				if gate != nil {
					if err := gate.hold(ctx); err != nil {
						return err
					}
				}
			}
		}
		return nil
	}()
	s.record(req.key, func(k *KeyStats) {
		if err != nil {
			k.StreamsAborted++
		} else {
			k.StreamsCompleted++
		}
	})
	s.settle(req, sent)
	if err != nil {
		s.logAnswer(req, http.StatusOK, "stream aborted", slog.String("error", err.Error()))
		return
	}
	s.logAnswer(req, http.StatusOK, "stream completed")
}

// sleep waits for d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// writeHeaders sets the content type, the dialect's headers and the
// override's headers, in that order.
func (s *Server) writeHeaders(req *request, contentType string, ov *Override) {
	h := req.w.Header()
	h.Set("Content-Type", contentType)
	req.meta.Processing = max(s.cfg.Now().Sub(req.arrival), 0)
	s.cfg.Dialect.SetHeaders(h, req.meta)
	if ov != nil {
		ov.applyHeaders(h)
	}
}

// writeProblem answers with p in the dialect's error shape, or with the
// override's body when it has one.
func (s *Server) writeProblem(req *request, p *Problem, ov *Override) {
	s.writeHeaders(req, "application/json", ov)
	req.w.WriteHeader(p.Status)
	if ov != nil && ov.Body != "" {
		_, _ = io.WriteString(req.w, ov.Body)
	} else {
		_, _ = req.w.Write(s.cfg.Dialect.ErrorBody(p, req.meta))
	}
	s.logAnswer(req, p.Status, string(p.Kind))
}

// fail answers 500 when the dialect cannot render an answer to an admitted
// call, which then generated nothing.
func (s *Server) fail(req *request, err error) {
	s.settle(req, 0)
	s.cfg.Logger.LogAttrs(req.r.Context(), slog.LevelError, "render answer",
		slog.String("dialect", s.cfg.Dialect.Name()), slog.String("error", err.Error()))
	s.writeProblem(req, &Problem{Status: http.StatusInternalServerError, Kind: ProblemServer,
		Message: "The simulator could not render the answer."}, nil)
}

// logAnswer writes one debug line about an answered request.
func (s *Server) logAnswer(req *request, status int, what string, attrs ...slog.Attr) {
	attrs = append(attrs,
		slog.String("method", req.r.Method),
		slog.String("path", req.r.URL.Path),
		slog.String("key", KeyID(req.key)),
		slog.Int("status", status),
		slog.String("answer", what),
		slog.String("request_id", req.meta.RequestID),
		slog.Int64("remaining_requests", req.meta.Limits.Quotas[QuotaRequests].Remaining),
		slog.Int64("remaining_tokens", req.meta.Limits.Quotas[QuotaTokens].Remaining),
	)
	s.cfg.Logger.LogAttrs(req.r.Context(), slog.LevelDebug, "answer", attrs...)
}

// KeyID returns a short, stable identifier of an API key (the first 8 hex
// digits of its SHA-256) for logs and reports that must not print the key.
func KeyID(key string) string {
	if key == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:4])
}

// kindOf classifies a forced error status.
func kindOf(status int) ProblemKind {
	switch {
	case status == http.StatusTooManyRequests:
		return ProblemRateLimit
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		return ProblemAuthentication
	case status == http.StatusNotFound:
		return ProblemNotFound
	case status >= 500:
		return ProblemServer
	default:
		return ProblemInvalidRequest
	}
}

// forcedMessage is the message of a forced error answer.
func forcedMessage(status int) string {
	if status == http.StatusTooManyRequests {
		return "Rate limit reached (forced by the simulator)."
	}
	return strings.TrimSpace(http.StatusText(status) + " (forced by the simulator).")
}

// newID returns a random lower-case identifier.
func newID() string {
	return strings.ToLower(rand.Text())
}
