// Package provider holds one small dialect type per LLM provider: how to tell
// the provider from a request, how to read its rate-limit headers (and error
// bodies) into a bucket.Observation, and how to shape a rejection so that the
// provider's own SDKs recognise it. The limiter picks a dialect per request;
// nothing here knows about Envoy or about storage.
//
// The dialects are OpenAI, Azure OpenAI, Groq and Venice (one parameterised
// type for OpenAI's header names, openai.go and venice.go), Anthropic,
// Together, OpenRouter, Mistral, Fireworks, Gemini, and a generic one for
// every other host that reads OpenAI's names, the IETF RateLimit fields and
// X-RateLimit-*. Shared machinery: parse.go reads header values within
// bounds, answer.go turns status codes into blocks and keeps an Answer's
// invariants, errors.go decodes every provider's error envelope.
//
// Values a dialect cannot read, or that are absurd (negative, above 2^50,
// resets beyond a month), are ignored and counted in Answer.Invalid: never a
// failure and never a blocked bucket. docs/providers.md describes each
// provider's formats and what arl does with them.
//
// This package may import limiter/bucket and limiter/usage; it must not import
// the limiter itself, backends, Envoy, gRPC or Prometheus.
package provider
