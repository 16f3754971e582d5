package simprovider

import (
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// newTestLimits returns a key's limits with the given requests and tokens
// quotas per minute and no others.
func newTestLimits(rpm, tpm int64) *keyLimits {
	k := &keyLimits{}
	for q := range NumQuotas {
		k.buckets[q] = newBucket(0, time.Minute, t0)
	}
	k.buckets[QuotaRequests] = newBucket(rpm, time.Minute, t0)
	k.buckets[QuotaTokens] = newBucket(tpm, time.Minute, t0)
	return k
}

// requestCharge is the charge of a request of the given tokens.
func requestCharge(tokens int64) amounts {
	return amounts{QuotaRequests: 1, QuotaRequestsPerDay: 1, QuotaTokens: tokens}
}

func TestKeyLimitsAdmit(t *testing.T) {
	type step struct {
		at       time.Duration // since t0
		tokens   int64
		force    bool
		admitted bool
		reason   string        // rejection dimension when not admitted
		wait     time.Duration // expected RetryAfter when not admitted
		remReq   int64
		remTok   int64
	}
	tests := []struct {
		name     string
		rpm, tpm int64
		steps    []step
	}{
		{
			name: "requests exhausted then refilled",
			rpm:  3, tpm: 0,
			steps: []step{
				{at: 0, tokens: 10, admitted: true, remReq: 2},
				{at: 0, tokens: 10, admitted: true, remReq: 1},
				{at: 0, tokens: 10, admitted: true, remReq: 0},
				{at: 0, tokens: 10, reason: ReasonRequests, wait: 20 * time.Second, remReq: 0},
				{at: 19 * time.Second, tokens: 10, reason: ReasonRequests, wait: time.Second, remReq: 0},
				{at: 20 * time.Second, tokens: 10, admitted: true, remReq: 0},
				{at: 80 * time.Second, tokens: 10, admitted: true, remReq: 2},
			},
		},
		{
			name: "tokens exhausted, wait for the missing part only",
			rpm:  0, tpm: 600,
			steps: []step{
				{at: 0, tokens: 500, admitted: true, remTok: 100},
				{at: 0, tokens: 300, reason: ReasonTokens, wait: 20 * time.Second, remTok: 100},
				{at: 10 * time.Second, tokens: 300, reason: ReasonTokens, wait: 10 * time.Second, remTok: 200},
				{at: 20 * time.Second, tokens: 300, admitted: true, remTok: 0},
			},
		},
		{
			name: "both exhausted reports requests and the longer wait",
			rpm:  1, tpm: 60,
			steps: []step{
				{at: 0, tokens: 60, admitted: true},
				{at: 30 * time.Second, tokens: 60, reason: ReasonRequests, wait: 30 * time.Second, remTok: 30},
			},
		},
		{
			name: "request larger than capacity never fits",
			rpm:  0, tpm: 100,
			steps: []step{
				{at: 0, tokens: 101, reason: ReasonTokens, wait: time.Second, remTok: 100},
				{at: 0, tokens: 50, admitted: true, remTok: 50},
				{at: 0, tokens: 101, reason: ReasonTokens, wait: 30 * time.Second, remTok: 50},
			},
		},
		{
			name: "forced admission charges down to zero",
			rpm:  1, tpm: 100,
			steps: []step{
				{at: 0, tokens: 80, admitted: true, remTok: 20},
				{at: 0, tokens: 80, force: true, admitted: true, remTok: 0},
				{at: 0, tokens: 1, reason: ReasonRequests, wait: time.Minute, remTok: 0},
			},
		},
		{
			name: "unlimited admits everything",
			rpm:  0, tpm: 0,
			steps: []step{
				{at: 0, tokens: 1 << 40, admitted: true},
				{at: 0, tokens: 1 << 40, admitted: true},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := newTestLimits(tt.rpm, tt.tpm)
			for i, s := range tt.steps {
				c := requestCharge(s.tokens)
				d := k.admit(t0.Add(s.at), c, c, s.force)
				if d.admitted != s.admitted {
					t.Fatalf("step %d: admitted = %v, want %v (rejection %+v)", i, d.admitted, s.admitted, d.rejection)
				}
				if !s.admitted {
					if d.rejection.Quota.String() != s.reason || d.rejection.RetryAfter != s.wait {
						t.Errorf("step %d: rejection %s after %v, want %s after %v",
							i, d.rejection.Quota, d.rejection.RetryAfter, s.reason, s.wait)
					}
					if d.state.RetryAfter != s.wait {
						t.Errorf("step %d: state RetryAfter = %v, want %v", i, d.state.RetryAfter, s.wait)
					}
				}
				if got := d.state.Quotas[QuotaRequests].Remaining; tt.rpm > 0 && got != s.remReq {
					t.Errorf("step %d: remaining requests = %d, want %d", i, got, s.remReq)
				}
				if got := d.state.Quotas[QuotaTokens].Remaining; tt.tpm > 0 && got != s.remTok {
					t.Errorf("step %d: remaining tokens = %d, want %d", i, got, s.remTok)
				}
			}
		})
	}
}

func TestBucketDimension(t *testing.T) {
	tests := []struct {
		name      string
		capacity  int64
		take      float64
		after     time.Duration
		wantLimit int64
		wantRem   int64
		wantReset time.Duration
	}{
		{name: "full", capacity: 60, wantLimit: 60, wantRem: 60, wantReset: 0},
		{name: "one taken", capacity: 60, take: 1, wantLimit: 60, wantRem: 59, wantReset: time.Second},
		{name: "half refilled", capacity: 60, take: 10, after: 5 * time.Second, wantLimit: 60, wantRem: 55, wantReset: 5 * time.Second},
		{name: "fraction floors", capacity: 3, take: 3, after: 10 * time.Second, wantLimit: 3, wantRem: 0, wantReset: 50 * time.Second},
		{name: "unlimited", capacity: 0, take: 5, wantLimit: 0, wantRem: 0, wantReset: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBucket(tt.capacity, time.Minute, t0)
			b.take(tt.take)
			b.advance(t0.Add(tt.after))
			got := b.dimension()
			want := Dimension{Limit: tt.wantLimit, Remaining: tt.wantRem, Reset: tt.wantReset}
			if tt.capacity > 0 {
				want.Window = time.Minute
			}
			if got != want {
				t.Errorf("dimension = %+v, want %+v", got, want)
			}
		})
	}
}

func TestBucketClockBackwards(t *testing.T) {
	b := newBucket(60, time.Minute, t0)
	b.take(60)
	b.advance(t0.Add(-time.Hour))
	if got := b.dimension().Remaining; got != 0 {
		t.Fatalf("remaining after clock went backwards = %d, want 0", got)
	}
	b.advance(t0.Add(time.Second))
	if got := b.dimension().Remaining; got != 1 {
		t.Fatalf("remaining one second later = %d, want 1", got)
	}
}
