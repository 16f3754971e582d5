// Package provider holds one small dialect type per LLM provider: how to tell
// the provider from a request, how to read its rate-limit headers into a
// bucket.Observation, and how to shape a rejection so that the provider's own
// SDKs recognise it. The limiter picks a dialect per request; nothing here
// knows about Envoy or about storage.
//
// This package may import limiter/bucket and limiter/usage; it must not import
// the limiter itself, backends, Envoy, gRPC or Prometheus.
package provider
