// Package app wires arl together: configuration from the environment, the
// backend, the limiter, the ext_proc gRPC server with grpc.health.v1, the
// admin HTTP server (/healthz, /readyz, /metrics, /v1/buckets), JSON logs,
// and graceful shutdown. It lives apart from package main so that tests and
// tools can run the real server in-process.
//
// This is the only package that knows every other arl package.
package app
