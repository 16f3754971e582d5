// Package backendtest is the conformance suite for [backend.Backend]: one set
// of behavioural tests that every backend (memory, Redis single node, Redis
// Cluster) must pass unchanged.
//
// The suite runs on the wall clock, because distributed backends keep their
// own clock (Redis TIME); its assertions on durations allow for the time the
// test itself takes, and its limits are chosen so refill during a test is
// negligible.
//
// This package may import backend and limiter/bucket; it must not import a
// concrete backend.
package backendtest
