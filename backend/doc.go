// Package backend defines where arl keeps bucket state: the [Backend]
// interface that every store implements, and the request and result types of
// its operations.
//
// Each operation is atomic for one bucket, so that a Redis implementation can
// run each one as a single Lua script and a memory implementation under one
// lock. A denial is part of a result; an error means the store itself failed
// (or, as ErrInvalid, refused a request it must not apply), and callers apply
// the configured failure mode to it.
//
// Sub-packages: memory (the embedded default), redis (shared by replicas),
// fallback (local limits while the shared backend is away), cache (the state
// cache and its write policies), backendtest (the conformance suite every
// implementation must pass). Bulk is an optional interface for backends that
// can read or teach many buckets in one round trip.
//
// This package may import limiter/bucket only; it must not import the limiter,
// the Envoy protocol, or any concrete store.
package backend
