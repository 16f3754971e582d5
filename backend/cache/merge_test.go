package cache

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/adaptive-rate-limiter/arl/limiter/bucket"
)

var t0 = time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)

// dimObs builds an observation of one dimension at t0+at.
func dimObs(at time.Duration, d bucket.Dimension, do bucket.DimObservation) bucket.Observation {
	o := bucket.Observation{At: t0.Add(at)}
	o.Dims[d] = do
	return o
}

// withDim adds what o reports of d.
func withDim(o bucket.Observation, d bucket.Dimension, do bucket.DimObservation) bucket.Observation {
	o.Dims[d] = do
	return o
}

func remaining(limit, rem int64) bucket.DimObservation {
	return bucket.DimObservation{Limit: limit, Remaining: rem, HasRemaining: true}
}

// sequential and merged apply o1 then o2, and their merge, to start at now.
func sequential(start bucket.State, now time.Time, o1, o2 bucket.Observation) bucket.State {
	s := start
	s.Observe(now, o1)
	s.Observe(now, o2)
	return s
}

func applied(start bucket.State, now time.Time, m bucket.Observation) bucket.State {
	s := start
	s.Observe(now, m)
	return s
}

// sameExceptLevels reports the first difference between a and b other than
// the levels, or "".
func sameExceptLevels(a, b bucket.State) string {
	switch {
	case !a.Updated.Equal(b.Updated):
		return "Updated"
	case !a.BlockedUntil.Equal(b.BlockedUntil) || a.BlockReason != b.BlockReason:
		return "block"
	case a.Learned != b.Learned:
		return "Learned"
	case a.InFlight != b.InFlight:
		return "InFlight"
	case !a.ObservedAt.Equal(b.ObservedAt):
		return "ObservedAt"
	}
	for i := range a.Dims {
		x, y := a.Dims[i], b.Dims[i]
		if x.Limit != y.Limit || x.Window != y.Window || !x.HoldUntil.Equal(y.HoldUntil) || x.HoldRefill != y.HoldRefill {
			return fmt.Sprintf("%s: %+v vs %+v", bucket.Dimension(i), x, y)
		}
	}
	return ""
}

func TestMergeCases(t *testing.T) {
	tpm := bucket.Tokens
	known := bucket.New(t0, bucket.Limits{bucket.Tokens: 60_000, bucket.Requests: 600})
	known.Dims[tpm].Level = 50_000
	known.Updated = t0
	now := t0.Add(300 * time.Millisecond)
	tests := []struct {
		name   string
		start  bucket.State
		o1, o2 bucket.Observation
		ok     bool
		exact  bool // the merged lesson must give the same levels
	}{
		{
			name:  "newer lower remaining wins",
			start: known,
			o1:    dimObs(0, tpm, remaining(60_000, 40_000)),
			o2:    dimObs(100*time.Millisecond, tpm, remaining(60_000, 30_000)),
			ok:    true, exact: true,
		},
		{
			name:  "newer higher remaining: older kept, counted from the newer answer",
			start: known,
			o1:    dimObs(0, tpm, remaining(60_000, 30_000)),
			o2:    dimObs(100*time.Millisecond, tpm, remaining(60_000, 45_000)),
			ok:    true,
		},
		{
			name:  "out of order: the newer call is stale",
			start: known,
			o1:    dimObs(100*time.Millisecond, tpm, remaining(60_000, 45_000)),
			o2:    dimObs(0, tpm, remaining(60_000, 10_000)),
			ok:    true, exact: true,
		},
		{
			name:  "same instant: the lower remaining",
			start: known,
			o1:    dimObs(50*time.Millisecond, tpm, remaining(60_000, 20_000)),
			o2:    dimObs(50*time.Millisecond, tpm, remaining(60_000, 45_000)),
			ok:    true, exact: true,
		},
		{
			name:  "different dimensions both apply",
			start: known,
			o1:    dimObs(0, tpm, remaining(60_000, 40_000)),
			o2:    withDim(dimObs(100*time.Millisecond, bucket.Requests, remaining(600, 100)), tpm, bucket.DimObservation{Limit: 60_000}),
			ok:    true, // tokens: o1's value now counts from o2's At
		},
		{
			name:  "in order, a limit only the older reports does not merge",
			start: known,
			o1:    dimObs(0, tpm, remaining(60_000, 40_000)),
			o2:    dimObs(100*time.Millisecond, bucket.Requests, remaining(600, 100)),
		},
		{
			name:  "out of order, the newer call's limits are stale",
			start: known,
			o1:    dimObs(100*time.Millisecond, tpm, remaining(60_000, 45_000)),
			o2:    withDim(dimObs(0, tpm, remaining(90_000, 10_000)), bucket.Requests, bucket.DimObservation{Limit: 900, Window: time.Hour}),
			ok:    true, exact: true,
		},
		{
			name:  "limits learned in turn on an unknown bucket",
			start: bucket.New(t0, bucket.Limits{}),
			o1:    dimObs(0, tpm, bucket.DimObservation{Limit: 1000}),
			o2:    dimObs(100*time.Millisecond, tpm, remaining(2000, 1500)),
			ok:    true, exact: true,
		},
		{
			name:  "newer block merges in order",
			start: known,
			o1:    dimObs(0, tpm, remaining(60_000, 40_000)),
			o2:    withDim(bucket.Observation{At: t0.Add(100 * time.Millisecond), RetryAfter: 2 * time.Second, Reason: "upstream"}, tpm, bucket.DimObservation{Limit: 60_000}),
			ok:    true, // tokens: o1's value now counts from o2's At
		},
		{
			name:  "newer exhaustion of another dimension merges",
			start: known,
			o1:    dimObs(0, tpm, remaining(60_000, 40_000)),
			o2:    withDim(dimObs(100*time.Millisecond, bucket.Requests, bucket.DimObservation{Limit: 600, HasRemaining: true, Reset: 5 * time.Second}), tpm, bucket.DimObservation{Limit: 60_000}),
			ok:    true, // tokens: o1's value now counts from o2's At
		},
		{
			name:  "limit change after a remaining value does not merge",
			start: known,
			o1:    dimObs(0, tpm, remaining(60_000, 40_000)),
			o2:    dimObs(100*time.Millisecond, tpm, bucket.DimObservation{Limit: 90_000}),
		},
		{
			name:  "window change after a remaining value does not merge",
			start: known,
			o1:    dimObs(0, tpm, remaining(60_000, 40_000)),
			o2:    dimObs(100*time.Millisecond, tpm, bucket.DimObservation{Window: time.Hour}),
		},
		{
			name:  "exhaustion after a remaining value does not merge",
			start: known,
			o1:    dimObs(0, tpm, remaining(60_000, 40_000)),
			o2:    dimObs(100*time.Millisecond, tpm, bucket.DimObservation{Limit: 60_000, HasRemaining: true, Reset: time.Second}),
		},
		{
			name:  "an urgent older lesson does not merge",
			start: known,
			o1:    bucket.Observation{At: t0, RetryAfter: time.Second},
			o2:    dimObs(100*time.Millisecond, tpm, remaining(60_000, 40_000)),
		},
		{
			name:  "a block older than the waiting lesson does not merge",
			start: known,
			o1:    dimObs(100*time.Millisecond, tpm, remaining(60_000, 40_000)),
			o2:    bucket.Observation{At: t0, RetryAfter: time.Second},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, ok := merge(tc.o1, tc.o2)
			if ok != tc.ok {
				t.Fatalf("merge ok = %v, want %v", ok, tc.ok)
			}
			if !ok {
				return
			}
			want := sequential(tc.start, now, tc.o1, tc.o2)
			got := applied(tc.start, now, m)
			if d := sameExceptLevels(got, want); d != "" {
				t.Fatalf("merged lesson differs in %s\nmerged     %+v\nsequential %+v", d, got, want)
			}
			for i := range got.Dims {
				g, w := got.Dims[i].Level, want.Dims[i].Level
				if g > w+1e-6 || (tc.exact && math.Abs(g-w) > 1e-6) {
					t.Fatalf("%s level %v, sequential %v (exact %v)", bucket.Dimension(i), g, w, tc.exact)
				}
			}
		})
	}
}

// TestMergeMatchesSequential checks the rule on random lessons: whenever two
// lessons merge, applying the merged one leaves the bucket as applying both in
// order would, except that a known dimension's level may be lower (never
// higher) by at most the refill between the two answers.
func TestMergeMatchesSequential(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	limits := []int64{0, 600, 1000, 60_000}
	windows := []time.Duration{0, time.Minute, 10 * time.Second}
	randDim := func(urgentOK bool) bucket.DimObservation {
		var d bucket.DimObservation
		if rng.IntN(2) == 0 {
			d.Limit = limits[rng.IntN(len(limits))]
		}
		if rng.IntN(4) == 0 {
			d.Window = windows[rng.IntN(len(windows))]
		}
		if rng.IntN(2) == 0 {
			d.HasRemaining = true
			d.Remaining = 1 + rng.Int64N(1000)
			if urgentOK && rng.IntN(4) == 0 {
				d.Remaining = 0
			}
			if rng.IntN(2) == 0 {
				d.Reset = time.Duration(rng.IntN(3000)) * time.Millisecond
			}
		}
		return d
	}
	randObs := func(urgentOK bool) bucket.Observation {
		o := bucket.Observation{At: t0.Add(time.Duration(rng.IntN(200)) * time.Millisecond)}
		for _, d := range []bucket.Dimension{bucket.Requests, bucket.Tokens} {
			if rng.IntN(3) > 0 {
				o.Dims[d] = randDim(urgentOK)
			}
		}
		if urgentOK && rng.IntN(5) == 0 {
			o.RetryAfter, o.Reason = time.Duration(1+rng.IntN(3000))*time.Millisecond, "upstream"
		}
		return o
	}
	merged := 0
	for i := range 20000 {
		start := bucket.New(t0.Add(-time.Second), bucket.Limits{bucket.Requests: limits[rng.IntN(len(limits))], bucket.Tokens: limits[rng.IntN(len(limits))]})
		for d := range start.Dims {
			start.Dims[d].Level *= rng.Float64()
		}
		if rng.IntN(3) == 0 { // another writer's observation
			start.ObservedAt = t0.Add(time.Duration(rng.IntN(250)) * time.Millisecond)
			start.Learned = true
		}
		o1, o2 := randObs(false), randObs(true)
		if o1.Urgent() {
			continue
		}
		m, ok := merge(o1, o2)
		if !ok {
			continue
		}
		merged++
		now := later(o1.At, o2.At).Add(time.Duration(rng.IntN(500)) * time.Millisecond)
		want := sequential(start, now, o1, o2)
		got := applied(start, now, m)
		if d := sameExceptLevels(got, want); d != "" {
			t.Fatalf("case %d: merged lesson differs in %s\no1 %+v\no2 %+v\nmerged     %+v\nsequential %+v", i, d, o1, o2, got, want)
		}
		gap := 0.0
		if o2.At.After(o1.At) {
			gap = float64(o2.At.Sub(o1.At))
		}
		// Another writer's observation between the two answers made o1
		// stale for sequential application, not for the merged lesson: the
		// merged level may then be lower by any amount, never higher.
		between := o1.At.Before(start.ObservedAt) && !m.At.Before(start.ObservedAt)
		for d := range got.Dims {
			gd, wd := got.Dims[d], want.Dims[d]
			if gd.Limit == 0 {
				continue // an unknown dimension's level constrains nothing
			}
			slack := float64(gd.Limit)/float64(gd.Window)*gap + 1e-6
			if gd.Level > wd.Level+1e-6 || (!between && gd.Level < wd.Level-slack) {
				t.Fatalf("case %d: %s level %v, sequential %v (slack %v)\no1 %+v\no2 %+v\nmerged %+v", i, bucket.Dimension(d), gd.Level, wd.Level, slack, o1, o2, m)
			}
		}
	}
	if merged < 2000 {
		t.Fatalf("only %d random pairs merged: the generator tests too little", merged)
	}
}
