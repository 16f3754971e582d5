// Package redis is the Redis [backend.Backend]: bucket state shared by every
// arl replica through a single Redis server, Redis Cluster or a Sentinel-managed
// master, on go-redis v9.
//
// Each operation is one Lua script (scripts/*.lua, embedded), so it is atomic
// for its bucket: reserve.lua (check-and-reserve, reclaiming the bucket's
// expired reservations first), settle.lua (refund or overrun, with an optional
// folded observation; an all-zero actual is a release), observe.lua (limits and
// remaining values from a provider's headers, holds until reset, the 429
// block), extend.lua (a new deadline for a reservation still in flight),
// recover.lua (orphan recovery of one bucket) and get.lua (the state,
// read only). Their arithmetic is limiter/bucket's, ported once to
// scripts/prelude.lua, which is concatenated in front of every script after a
// header of constants generated from the bucket package. Scripts run with
// EVALSHA and fall back to EVAL when a node has lost its script cache.
//
// The clock is Redis TIME (microseconds), so every replica agrees on time; the
// Now fields of requests are ignored. Amounts are Lua doubles inside the
// scripts: exact up to 2^53.
//
// Keys: a bucket is three keys that share one cluster hash tag, the whole
// escaped bucket key, so no script can raise CROSSSLOT:
//
//	<prefix>:v1:{<namespace>|<provider>|<account>|<model>}:state  hash
//	<prefix>:v1:{...}:res    sorted set: reservation id -> deadline (µs)
//	<prefix>:v1:{...}:taken  hash: reservation id -> taken vector
//
// '%', '{', '}' and '|' inside a part are percent-encoded. The prefix must
// not contain braces. The three keys expire together, once the bucket has
// gone unwritten for about [IdleTTL] and is at least 50 minutes past its
// longest window and its last hold, block and reservation deadline: a write
// sets the TTL to an hour beyond all of these, and renews it only once it has
// run down by ten minutes. Redis should run with maxmemory-policy noeviction:
// an eviction policy may drop one key of a bucket and not the others.
//
// A reservation ID that is already recorded is admitted again with what it
// took, taking nothing; settling or recovering an ID that is gone changes
// nothing. Calls are bounded by Options.Timeout; a call that times out may
// still have run (its reservation then ends as an orphan); retrying it with the
// same reservation ID is safe.
//
// This package may import backend and limiter/bucket only (and go-redis); it
// must not import the limiter, the Envoy protocol or another backend.
package redis
