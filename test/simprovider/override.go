package simprovider

import (
	"net/http"
	"slices"
)

// Override forces parts of one answer. Queued with [Server.Enqueue], it is
// consumed by the next authenticated, well-formed request (for Key, if set);
// requests answered 401, 400 or 404 do not consume it.
//
// With Status 0 or below 400 the request still goes through the limiter but
// is admitted even without capacity (it is charged, levels stop at zero) and
// answered normally with Status, the forced Headers and, unless Body is set,
// a normal generated body; this is how a test makes a 200 carry
// x-ratelimit-remaining-requests: 0. With Status 400 or above the limiter is
// skipped (nothing is charged, the answer counts as rejected with
// [ReasonForced]) and the body is the dialect's error body for that status
// unless Body is set. Rate-limit headers reflect the real limits unless Headers
// replaces them; a forced 429 gets retry headers only from Headers.
type Override struct {
	// Key restricts the override to requests with this API key; "" matches
	// any key.
	Key string
	// Status is the HTTP status to answer with; 0 means 200.
	Status int
	// Headers are set on the answer after the dialect's own headers,
	// replacing headers of the same name.
	Headers http.Header
	// Body, if not empty, is sent verbatim instead of the generated body
	// (with content-type application/json unless Headers sets one).
	Body string
	// OutputTokens, if positive, replaces Config.OutputTokens for this
	// answer (still capped by the request's output budget).
	OutputTokens int
}

// Enqueue queues o for a later request. Overrides are consumed in the order
// they were queued: a request takes the first queued override whose Key
// matches.
func (s *Server) Enqueue(o Override) {
	o.Headers = o.Headers.Clone()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.overrides = append(s.overrides, o)
}

// PendingOverrides returns the number of queued overrides not yet consumed.
func (s *Server) PendingOverrides() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.overrides)
}

// takeOverride removes and returns the first queued override matching key;
// requires s.mu held.
func (s *Server) takeOverride(key string) (Override, bool) {
	for i, o := range s.overrides {
		if o.Key == "" || o.Key == key {
			s.overrides = slices.Delete(s.overrides, i, i+1)
			return o, true
		}
	}
	return Override{}, false
}

// applyHeaders sets the override's headers on h, replacing same-named ones.
func (o Override) applyHeaders(h http.Header) {
	for name, values := range o.Headers {
		h.Del(name)
		for _, v := range values {
			h.Add(name, v)
		}
	}
}
