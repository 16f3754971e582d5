// Package e2e holds arl's end-to-end tests: the real server (cmd/extproc's
// app.Run, in-process, on loopback ports) driven through the ext_proc
// protocol, either directly by a minimal protocol client (protocol_test.go)
// or by the Envoy stand-in forwarding real HTTP to the simulated provider
// (standin_test.go). When an envoy binary is available (ENVOY_BIN or PATH),
// the stand-in scenarios also run through real Envoy.
//
// The package has only tests; it may import anything in the module.
package e2e
