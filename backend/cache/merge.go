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
//   - A stale lesson (At before the bucket's newest observation) teaches no
//     limit, window or remaining value, only its block. Out of order (o2.At
//     before o1.At), o2 is stale once o1 has applied: the merged lesson
//     keeps o1's limits and windows and o1's At. Exact. In order, o2's limit
//     and window win where it reports them; whether o1 was stale for the
//     bucket is not known when merging (another writer's observation may
//     have come between the two answers), so lessons merge in order only
//     where o2 reports every limit and window that o1 reports, and the
//     merged lesson, with o2's At, teaches exactly o2's. Two limit changes
//     compose to the last one (the level moves by the total difference
//     either way).
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
// o2 carries a block but is older than o1, when o1 reports a limit or window
// that an in-order o2 does not (above), when o2 changes the limit or window
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
	if newer.At.Before(older.At) {
		// Out of order: newer is stale once older has applied, and teaches
		// nothing but its block, which cannot count from older's At.
		if newer.RetryAfter > 0 {
			return bucket.Observation{}, false
		}
		return older, true
	}
	m := older
	m.At = newer.At
	m.RetryAfter, m.Reason = newer.RetryAfter, newer.Reason
	for i := range m.Dims {
		o, n, d := &older.Dims[i], &newer.Dims[i], &m.Dims[i]
		changes := (n.Limit > 0 && n.Limit != o.Limit) || (n.Window > 0 && n.Window != o.Window)
		if o.HasRemaining && changes {
			return bucket.Observation{}, false
		}
		if (o.Limit > 0 && n.Limit == 0) || (o.Window > 0 && n.Window == 0) {
			return bucket.Observation{}, false
		}
		d.Limit, d.Window = n.Limit, n.Window
		if !n.HasRemaining {
			continue
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
