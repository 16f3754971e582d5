// Package limiter is arl's domain core: it decides, for each LLM API request,
// whether it may go to its provider now, and keeps each provider bucket's
// accounting true as the answer comes back.
//
// A [Limiter] holds the configuration, the backend and the metrics. For each
// HTTP request it hands out an [Exchange]: a plain-Go state machine with one
// method per phase (request headers, request body, response headers, response
// body chunks, abort) that takes header values and body bytes and returns a
// [Verdict]. The Envoy protocol layer (package extproc) translates Envoy's
// messages into these calls and verdicts back into Envoy's replies.
//
// Sub-packages: bucket (accounting arithmetic), usage (request estimation and
// response usage), provider (per-provider header dialects and error shapes),
// metrics (the Prometheus collectors).
//
// This package must not import Envoy or gRPC types, nor a concrete backend.
package limiter
