// Package simprovider is a simulated LLM provider: a small HTTP server that
// speaks a provider's API (OpenAI-compatible now, other dialects later), keeps
// hidden per-key rate limits, answers with the provider's real rate-limit
// headers and error bodies, and streams completions as server-sent events with
// usage.
//
// It is the upstream behind arl in end-to-end tests, demos, docker-compose and
// the load tool. It is not test-only code: [New] returns an [http.Handler] that
// a test mounts with httptest and that cmd/simprovider serves on a port.
//
// The server side (limits, statistics, overrides, hold gates, pacing of
// streams) is written once in [Server]; what differs between providers (paths,
// credential header, request fields, header names and formats, error and
// response bodies, stream events) lives behind the [Dialect] strategy, of which
// [OpenAI] is the first implementation.
//
// The simulator must stay independent of what it tests: it must not import any
// arl package (limiter, extproc, backend, ...), only the standard library, so
// that a mistake in arl's parsing or accounting cannot be mirrored here.
package simprovider
