package cache

import "github.com/adaptive-rate-limiter/arl/limiter/bucket"

// The merge rule.
//
// Write-back keeps one waiting lesson per bucket where it can: a newer lesson
// o2 is merged into the waiting o1, so that applying the merged lesson once
// teaches the bucket what bucket.State.Observe applying o1 and then o2 would.
// Both carry a non-zero At (the cache fills a zero At with the caller's Now).
// Observe's semantics decide each field:
//
//   - Limits and windows are not subject to staleness: the last applied one
//     wins. So o2's limit and window win where it reports them, o1's stay
//     where it does not. Two limit changes compose to the last one (the level
//     moves by the total difference either way).
//   - Remaining values cap the level after being brought forward by the
//     refill from At, and are skipped when stale (At before the bucket's
//     newest observation). Applying o1 then o2 leaves the level at
//     min(level, cap1, cap2).
//   - Out of order (o2.At before o1.At): once o1 has applied, o2 is stale, so
//     its remaining values teach nothing; the merged lesson keeps o1's, and
//     o1's At. Exact.
//   - In order: the merged At is o2's. Where only o2 reports a remaining
//     value, it is taken as is. Exact. Where both do, both caps refill at the
//     same rate, so the lower one is the one with the lower value brought to
//     the same instant: when o2's value is at most o1's, o2's cap is the lower
//     one at every instant and is taken as is. Exact. Otherwise, and where
//     only o1 reports one, o1's value is kept but now counts from o2's At:
//     it caps the level lower than applying o1 would, by at most the refill
//     between the two answers (at most a FlushInterval or so of refill). The
//     same holds when another writer's observation reached the bucket
//     between the two answers (applying o1 would then have been stale). The
//     merged lesson never leaves the level above what applying both would.
//   - Blocks (retry-after) and exhausted dimensions (remaining ≤ 0, with a
//     reset that holds the dimension) count from At; they merge only from
//     an in-order o2, whose At the merged lesson keeps.
//   - ObservedAt ends at the later At either way, and Learned is set.
//
// Lessons do not merge (merge reports false) when o1 is itself urgent, when
// o2 carries a block but is older than o1, when o2 changes the limit or window
// of a dimension for which o1 reports a remaining value (o1's cap would have
// been shifted by the change and refilled at the old rate), or when o2
// reports exhausted a dimension for which o1 reports a remaining value (an
// exhaustion whose reset has passed caps nothing, while o1's cap would
// still apply). The caller then keeps them as two lessons, applied in order.

// merge returns one observation that teaches a bucket what applying older and
// then newer would (see the rule above), and false when no single
// observation can. Both must have a non-zero At.
func merge(older, newer bucket.Observation) (bucket.Observation, bool) {
	if older.Urgent() {
		return bucket.Observation{}, false
	}
	inOrder := !newer.At.Before(older.At)
	if !inOrder && newer.RetryAfter > 0 {
		return bucket.Observation{}, false
	}
	m := older
	if inOrder {
		m.At = newer.At
		m.RetryAfter, m.Reason = newer.RetryAfter, newer.Reason
	}
	for i := range m.Dims {
		o, n, d := &older.Dims[i], &newer.Dims[i], &m.Dims[i]
		changes := (n.Limit > 0 && n.Limit != o.Limit) || (n.Window > 0 && n.Window != o.Window)
		if o.HasRemaining && changes {
			return bucket.Observation{}, false
		}
		if n.Limit > 0 {
			d.Limit = n.Limit
		}
		if n.Window > 0 {
			d.Window = n.Window
		}
		if !n.HasRemaining || !inOrder {
			continue // nothing new, or stale once older has applied
		}
		switch {
		case !o.HasRemaining:
			d.Remaining, d.HasRemaining, d.Reset = n.Remaining, true, n.Reset
		case n.Remaining <= 0:
			return bucket.Observation{}, false
		case n.Remaining <= o.Remaining:
			d.Remaining, d.Reset = n.Remaining, n.Reset
		}
		// Otherwise older's value stays, counted from newer's At.
	}
	return m, true
}
