// Package memory is the in-process [backend.Backend]: bucket state in a
// sharded map, each bucket behind its own mutex, with the arithmetic of
// limiter/bucket. It is the embedded default, right for a single arl replica;
// replicas that must share limits use the Redis backend.
//
// This package may import backend and limiter/bucket only.
package memory
