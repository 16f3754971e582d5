// Package redistest starts real redis-server processes for tests: a single
// node ([StartServer]) or a Redis Cluster of several masters, with or without
// replicas ([StartCluster]). Each process listens on a free loopback port,
// keeps its files in a temporary directory, persists nothing (--save ""
// --appendonly no), and is killed when the test ends.
//
// Tests skip, with a message saying what to install, when redis-server (or,
// for a cluster, redis-cli) is not on PATH. The machine's own Redis (port
// 6379) is never used.
//
// This is a non-test package so that tests of several packages can share it.
// It may import go-redis and the standard library only; it must not import
// any arl package.
package redistest
