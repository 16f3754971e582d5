// Package bucket is arl's accounting model: the identity of a provider rate-limit
// bucket, its dimensions (requests and tokens per minute, per day, input and
// output tokens), and the pure arithmetic that reserves, settles and learns
// capacity in each of them.
//
// Everything here is a value computed from inputs that include the current time,
// so the same code serves every backend that can run Go (the memory backend) and
// documents what the Redis scripts must compute. Time is always a parameter;
// nothing in this package reads a clock, sleeps, or performs I/O.
//
// This package must not import any other arl package, Envoy, gRPC, Redis or
// Prometheus types: it is the bottom of the dependency graph.
package bucket
