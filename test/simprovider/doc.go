// Package simprovider is a simulated LLM provider: a small HTTP server that
// speaks a provider's API, keeps hidden per-key rate limits, answers with the
// provider's real rate-limit headers and error bodies, and streams
// completions as server-sent events with usage.
//
// It is the upstream behind arl in end-to-end tests, demos, docker-compose and
// the load tool. It is not test-only code: [New] returns an [http.Handler] that
// a test mounts with httptest and that cmd/simprovider serves on a port.
//
// The server side (limits, statistics, overrides, hold gates, pacing of
// streams) is written once in [Server]; what differs between providers (paths,
// credential header, request fields, how quotas are enforced, header names
// and formats, error and response bodies, stream events) lives behind the
// [Dialect] strategy. There is one dialect per provider arl knows, picked by
// name with [DialectFor]: [OpenAI], [Azure], [Anthropic] (the Messages API,
// its own bodies and streams), [Groq], [Together], [Venice], [OpenRouter],
// [Mistral], [Fireworks], [Gemini] and [Generic] (the IETF RateLimit fields).
// The OpenAI-compatible ones embed OpenAI for its bodies and override what
// their provider does differently. Limits are [Quota]s: requests and tokens
// per window, requests per day, input and output tokens per window, tokens
// per month; each dialect reports the ones its provider reports, in its
// provider's format, and enforces them as its provider does (over 10 s at
// Azure, per second at Together and Fireworks, see [Enforcement]), so that
// the headers always agree with what the server enforces.
//
// The simulator must stay independent of what it tests: it must not import any
// arl package (limiter, extproc, backend, ...), only the standard library, so
// that a mistake in arl's parsing or accounting cannot be mirrored here. Its
// external tests do import limiter/provider and limiter/usage, to check that
// arl reads every dialect's headers, error bodies and streams as the
// simulator meant them.
package simprovider
