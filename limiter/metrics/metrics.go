package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Namespace prefixes every metric name.
const Namespace = "arl"

// Metrics holds arl's collectors. Every field is safe for concurrent use.
type Metrics struct {
	// Decisions and their reasons.
	Requests   *prometheus.CounterVec // provider, outcome: admitted|rejected|passthrough|fail_open|fail_closed
	Rejections *prometheus.CounterVec // provider, reason
	RetryAfter *prometheus.HistogramVec

	// Backend operations.
	BackendOps         *prometheus.HistogramVec // op
	BackendErrors      *prometheus.CounterVec   // op
	BackendCircuitOpen prometheus.Gauge
	PendingSettlements prometheus.Gauge
	PendingEnded       *prometheus.CounterVec // outcome: retried|expired|dropped
	CacheDropped       prometheus.Counter
	OrphansRecovered   prometheus.Counter
	LeasesExtended     prometheus.Counter

	// Reservations and token accounting.
	InFlight       prometheus.Gauge
	Settlements    *prometheus.CounterVec // provider, kind: exact|estimated|aborted|released|upstream_error
	TokensReserved *prometheus.CounterVec // provider
	TokensUsed     *prometheus.CounterVec // provider, direction: input|output
	TokensRefunded *prometheus.CounterVec // provider
	TokensOverrun  *prometheus.CounterVec // provider
	EstimateRatio  *prometheus.HistogramVec

	// What the upstream answered and what arl learned from it.
	UpstreamResponses   *prometheus.CounterVec // provider, class: 2xx|3xx|4xx|429|5xx
	UpstreamRateLimited *prometheus.CounterVec // provider
	UpstreamBilling     *prometheus.CounterVec // provider
	CircuitOpened       *prometheus.CounterVec // provider
	Observations        *prometheus.CounterVec // provider
	InvalidHeaders      *prometheus.CounterVec // provider
	BlockedSeconds      *prometheus.HistogramVec

	// Input that arl could not read.
	BadInput     *prometheus.CounterVec // reason: malformed_json|no_body|...
	StreamEvents *prometheus.CounterVec // kind: events|malformed|oversized|truncated

	// The ext_proc protocol.
	StreamsActive      prometheus.Gauge
	Streams            *prometheus.CounterVec // outcome: completed|cancelled|closed_early|error
	Messages           *prometheus.CounterVec // kind
	ProtocolErrors     *prometheus.CounterVec // reason
	PhaseDuration      *prometheus.HistogramVec
	ModeOverrides      *prometheus.CounterVec // phase
	ImmediateResponses *prometheus.CounterVec // status

	BuildInfo *prometheus.GaugeVec // version, go_version
}

// New creates arl's collectors and registers them with reg; a nil reg leaves
// them unregistered (for tests).
func New(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Requests:   counter("requests_total", "Requests that reached a rate-limiting decision, by outcome.", "provider", "outcome"),
		Rejections: counter("rejections_total", "Requests rejected with 429 or 503, by x-arl-reason.", "provider", "reason"),
		RetryAfter: histogram("retry_after_seconds", "Retry-after sent with rejections.",
			[]float64{.1, .5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 3600}, "provider"),

		BackendOps: histogram("backend_operation_duration_seconds", "Latency of backend operations.",
			prometheus.ExponentialBuckets(0.00001, 4, 10), "op"),
		BackendErrors:      counter("backend_errors_total", "Backend operations that failed.", "op"),
		BackendCircuitOpen: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: Namespace, Name: "backend_circuit_open", Help: "1 while the shared backend circuit is open (Redis unavailable: fallback or failure mode applies)."}),
		PendingSettlements: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: Namespace, Name: "backend_pending_settlements", Help: "Settlements and releases the shared backend (Redis) owes after calls that failed, waiting to be retried."}),
		PendingEnded:       counter("backend_pending_settlements_ended_total", "Pending settlements ended, by outcome: retried, expired (a release whose reservation never appeared by its deadline), dropped.", "outcome"),
		CacheDropped:       prometheus.NewCounter(prometheus.CounterOpts{Namespace: Namespace, Name: "state_cache_dropped_total", Help: "Write-back lessons dropped after their retries failed."}),
		OrphansRecovered:   prometheus.NewCounter(prometheus.CounterOpts{Namespace: Namespace, Name: "orphans_recovered_total", Help: "Reservations ended by orphan recovery after their deadline."}),
		LeasesExtended:     prometheus.NewCounter(prometheus.CounterOpts{Namespace: Namespace, Name: "reservation_leases_extended_total", Help: "Deadlines of reservations still in flight (long streams) moved forward, so that orphan recovery does not end them."}),

		InFlight:       prometheus.NewGauge(prometheus.GaugeOpts{Namespace: Namespace, Name: "reservations_in_flight", Help: "Reservations held by this replica and not yet settled."}),
		Settlements:    counter("settlements_total", "Reservations settled, by how actual usage was known.", "provider", "kind"),
		TokensReserved: counter("tokens_reserved_total", "Tokens reserved before requests were forwarded.", "provider"),
		TokensUsed:     counter("tokens_used_total", "Tokens used according to settlement.", "provider", "direction"),
		TokensRefunded: counter("tokens_refunded_total", "Reserved tokens given back at settlement.", "provider"),
		TokensOverrun:  counter("tokens_overrun_total", "Tokens used beyond the reservation, charged at settlement.", "provider"),
		EstimateRatio: histogram("estimate_ratio", "Actual tokens used divided by tokens reserved.",
			[]float64{.01, .05, .1, .25, .5, .75, 1, 1.5, 2, 5}, "provider"),

		UpstreamResponses:   counter("upstream_responses_total", "Upstream answers seen, by status class.", "provider", "class"),
		UpstreamRateLimited: counter("upstream_rate_limited_total", "Upstream 429 answers: each one is a limit arl did not prevent.", "provider"),
		UpstreamBilling:     counter("upstream_billing_errors_total", "Upstream quota or billing errors (e.g. insufficient_quota): counted, never a blocked bucket.", "provider"),
		CircuitOpened:       counter("circuit_opened_total", "Circuit breakers opened after too many failed upstream requests in a bucket.", "provider"),
		Observations:        counter("observations_total", "Upstream answers whose rate-limit headers were applied to a bucket.", "provider"),
		InvalidHeaders:      counter("invalid_headers_total", "Rate-limit header values that could not be parsed and were ignored.", "provider"),
		BlockedSeconds: histogram("upstream_block_seconds", "How long upstream retry hints blocked a bucket.",
			[]float64{.1, .5, 1, 5, 10, 30, 60, 300, 3600}, "provider"),

		BadInput:     counter("bad_input_total", "Input arl could not read, by kind; each is handled as documented in docs/bad-input.md.", "kind"),
		StreamEvents: counter("stream_events_total", "Server-sent events parsed from response bodies, by kind.", "kind"),

		StreamsActive:  prometheus.NewGauge(prometheus.GaugeOpts{Namespace: Namespace, Name: "extproc_streams_active", Help: "ext_proc streams currently open."}),
		Streams:        counter("extproc_streams_total", "ext_proc streams ended, by outcome.", "outcome"),
		Messages:       counter("extproc_messages_total", "ext_proc messages received, by kind.", "kind"),
		ProtocolErrors: counter("extproc_protocol_errors_total", "ext_proc streams ended because Envoy's messages broke the protocol.", "reason"),
		PhaseDuration: histogram("extproc_phase_duration_seconds", "Time arl spent answering one ext_proc message, by phase.",
			prometheus.ExponentialBuckets(0.00001, 4, 10), "phase"),
		ModeOverrides:      counter("extproc_mode_overrides_total", "mode_override sent to Envoy, by phase.", "phase"),
		ImmediateResponses: counter("extproc_immediate_responses_total", "Immediate responses sent to Envoy, by HTTP status.", "status"),

		BuildInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: Namespace, Name: "build_info", Help: "Build information; always 1."}, []string{"version", "go_version"}),
	}
	if reg != nil {
		reg.MustRegister(m.collectors()...)
	}
	return m
}

func (m *Metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{
		m.Requests, m.Rejections, m.RetryAfter,
		m.BackendOps, m.BackendErrors, m.BackendCircuitOpen, m.PendingSettlements, m.PendingEnded, m.CacheDropped, m.OrphansRecovered, m.LeasesExtended,
		m.InFlight, m.Settlements, m.TokensReserved, m.TokensUsed, m.TokensRefunded, m.TokensOverrun, m.EstimateRatio,
		m.UpstreamResponses, m.UpstreamRateLimited, m.UpstreamBilling, m.CircuitOpened, m.Observations, m.InvalidHeaders, m.BlockedSeconds,
		m.BadInput, m.StreamEvents,
		m.StreamsActive, m.Streams, m.Messages, m.ProtocolErrors, m.PhaseDuration, m.ModeOverrides, m.ImmediateResponses,
		m.BuildInfo,
	}
}

func counter(name, help string, labels ...string) *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: name, Help: help}, labels)
}

func histogram(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
	return prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: Namespace, Name: name, Help: help, Buckets: buckets}, labels)
}
