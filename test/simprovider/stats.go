package simprovider

import "maps"

// Stats is a snapshot of what a [Server] has seen, per API key and in total.
type Stats struct {
	// Total sums the statistics of all keys.
	Total KeyStats `json:"total"`
	// Keys holds the statistics of each API key seen.
	Keys map[string]KeyStats `json:"keys"`
	// Unauthorized counts requests refused for lack of an API key; they
	// belong to no key and are not in Total.
	Unauthorized int64 `json:"unauthorized"`
}

// KeyStats counts what happened to one API key's requests.
type KeyStats struct {
	// Requests counts every request that carried the key.
	Requests int64 `json:"requests"`
	// Invalid counts requests answered 400, 404, 405 or 413 before the
	// limiter saw them.
	Invalid int64 `json:"invalid"`
	// Admitted counts requests the limiter admitted (forced successes
	// included).
	Admitted int64 `json:"admitted"`
	// Rejected counts refused requests by reason: the exhausted quota's name
	// ([Quota.String]: [ReasonRequests], [ReasonTokens], "requests_per_day",
	// "input_tokens", ...) for limiter 429s, [ReasonForced] for error answers
	// forced by an [Override].
	Rejected map[string]int64 `json:"rejected"`
	// TokensCharged is the total charged to the tokens quotas at admission:
	// prompt tokens plus output budget times choices. Nothing of it is
	// refunded after the answer (OpenAI does not refund either; only the
	// output tokens quota is settled, see [Enforcement]).
	TokensCharged int64 `json:"tokens_charged"`
	// TokensGenerated counts completion tokens sent: the full completion of
	// JSON answers, and for streams the content events actually written.
	TokensGenerated int64 `json:"tokens_generated"`
	// StreamsCompleted counts streams written to their end.
	StreamsCompleted int64 `json:"streams_completed"`
	// StreamsAborted counts streams whose client went away before the end.
	StreamsAborted int64 `json:"streams_aborted"`
}

// RejectedTotal returns the number of rejected requests over all reasons.
func (k KeyStats) RejectedTotal() int64 {
	var n int64
	for _, v := range k.Rejected {
		n += v
	}
	return n
}

// add accumulates o into k.
func (k *KeyStats) add(o KeyStats) {
	k.Requests += o.Requests
	k.Invalid += o.Invalid
	k.Admitted += o.Admitted
	for r, n := range o.Rejected {
		if k.Rejected == nil {
			k.Rejected = make(map[string]int64)
		}
		k.Rejected[r] += n
	}
	k.TokensCharged += o.TokensCharged
	k.TokensGenerated += o.TokensGenerated
	k.StreamsCompleted += o.StreamsCompleted
	k.StreamsAborted += o.StreamsAborted
}

// clone returns a deep copy of k.
func (k KeyStats) clone() KeyStats {
	k.Rejected = maps.Clone(k.Rejected)
	return k
}
