// Package cache keeps learned bucket state close to the limiter: it wraps a
// shared [backend.Backend] (Redis, or the fallback wrapper around it) and
// itself implements backend.Backend, with one of three policies for the
// lessons providers teach (Observe) and the reads of the admin API and of
// warm starts (Get, List).
//
// The cache never answers for reservations: Reserve, Settle and
// RecoverOrphans go to the shared backend, where they are atomic, and drop
// (invalidate) the cached copies they make stale.
//
// Reads are served from a copy fetched within the last TTL (default 1s),
// else fetched from the shared backend (List refreshes only the buckets whose
// copies went stale, with one [backend.Bulk] GetMany when the shared backend
// has it). A copy is never stored when a write through this cache may have
// overtaken the fetch that read it, so this replica reads its own writes;
// other replicas' writes show within TTL.
//
// The policies differ in how a lesson travels:
//
//   - [WriteThrough] (the default): the shared backend learns it at once, and
//     the cached copy learns it too, so reads stay warm.
//   - [WriteBack]: routine lessons wait in the cache, merged per bucket, and
//     go to the shared backend every FlushInterval in one ObserveMany. An
//     urgent lesson (a retry-after, or a dimension reported exhausted) goes at
//     once, after the bucket's waiting lessons, so write-back never delays a
//     block or an exhaustion. A Reserve on a bucket with waiting lessons
//     writes them first, and a Settle carries them folded into its own
//     observation, so this replica never reserves against a bucket that
//     misses its own lessons. Waiting lessons show in Get and List, applied to
//     the copy they return. A failed write is retried at the next flushes, at
//     most Retries times, then dropped (reported through OnDrop); Close
//     flushes what waits.
//   - [WriteAround]: the shared backend learns it at once and the cached copy
//     is dropped, for deployments that read more than they learn.
//
// Merging two lessons of one bucket (the older one o1, then o2) yields one
// observation that teaches what applying o1 and then o2 would; merge.go
// states the rule and its one approximation (a merged lesson may cap a level
// lower than applying both would, never higher, usually by at most the
// refill between the two answers).
// Lessons that cannot merge (a limit changed) wait side by side, in order.
//
// Errors of the shared backend are returned as it gave them (they name the
// operation and the bucket); errors of the cache's own making start with
// "cache:". All state sits behind one mutex, held only for map and field
// updates, never across a call to the shared backend.
//
// This package may import backend and limiter/bucket only; it must not import
// a concrete backend, the limiter or the Envoy protocol.
package cache
