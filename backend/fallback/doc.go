// Package fallback keeps arl limiting while its shared backend (Redis) is
// away. It wraps the shared backend with a circuit breaker, and while the
// breaker is open, or a call fails, it decides with a local memory backend
// whose buckets get a configured share of the limits learned from the shared
// one (each replica then admits its share of the key's capacity, so the
// replicas together stay near the provider's limit). When the shared backend
// answers again, the breaker closes and service returns to it without a
// restart.
//
// Reservations taken locally are settled locally: a reservation never moves
// between the two backends. A call to the shared backend that fails may still
// happen there (a stalled Redis runs it when it resumes): the settlements and
// releases it leaves owed are kept and retried (see [Backend]).
//
// This package may import backend, backend/memory and limiter/bucket.
package fallback
