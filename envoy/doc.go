// Package envoy holds arl's Envoy configuration (envoy.yaml, an Istio EnvoyFilter and an Envoy
// Gateway EnvoyExtensionPolicy) and the Go code that loads and validates the bootstrap against
// go-control-plane's protobuf types.
//
// LoadBootstrap parses an Envoy v3 bootstrap written in YAML, resolves every typed_config that
// arl's configuration uses and runs the protoc-gen-validate rules, so a typo in a field name, an
// unknown extension type or an invalid enum value is an error here rather than at Envoy's start.
// Helpers such as ExtProcFilter and FirstRoute read the settings arl depends on; the Envoy
// stand-in in test/standin uses them to behave exactly as the bootstrap configures Envoy.
//
// Envoy types are the point of this package, but it must not import arl's own packages
// (extproc, limiter, backend, cmd): it describes the proxy, not the rate limiter.
package envoy
