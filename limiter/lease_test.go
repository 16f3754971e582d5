package limiter

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/adaptive-rate-limiter/arl/limiter/bucket"
	"github.com/adaptive-rate-limiter/arl/limiter/metrics"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// A stream that runs three times ARL_RESERVATION_TTL keeps its reservation
// while its replica extends the lease, and its usage is charged when it
// ends; the reservation of a replica that stopped extending (a dead one) is
// recovered after the TTL.
func TestLongStreamKeepsItsReservation(t *testing.T) {
	const ttl = 10 * time.Minute
	cfg := Config{ReservationTTL: ttl, Defaults: bucket.Limits{bucket.Requests: 1000, bucket.TokensPerDay: 100_000}}
	r := newRig(t, cfg)
	dead, err := New(Config{ReservationTTL: ttl, Defaults: cfg.Defaults, Clock: r.clk.Now}, r.be, metrics.New(nil), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	long, rej := r.send(t, reqHeaders("sk-a"), chatBody(1000, true))
	if rej != nil {
		t.Fatalf("rejected: %+v", rej)
	}
	orphan := dead.Begin()
	if v := orphan.RequestHeaders(ctx, reqHeaders("sk-a"), false); v.Reject != nil || orphan.RequestBody(ctx, chatBody(1000, true)).Reject != nil {
		t.Fatal("the other replica's request was rejected")
	}
	long.ResponseHeaders(ctx, 200, hdr{":status": "200", "content-type": "text/event-stream"}, false)

	for step := 1; step <= 12; step++ { // 30 minutes in steps of a quarter TTL, as RunRecovery ticks at most
		r.clk.Advance(ttl / 4)
		if _, err := r.l.ExtendLeases(ctx); err != nil {
			t.Fatal(err)
		}
		n, err := r.l.RecoverOrphans(ctx)
		if err != nil {
			t.Fatal(err)
		}
		// Only the dead replica's reservation is an orphan, once, after its TTL.
		if want := map[bool]int{true: 1, false: 0}[step == 5]; n != want {
			t.Fatalf("after %v: recovered %d, want %d", time.Duration(step)*ttl/4, n, want)
		}
	}
	// Extended whenever less than half a TTL was left: at 7.5, 15, 22.5 and 30 minutes.
	if got := testutil.ToFloat64(r.m.LeasesExtended); got != 4 {
		t.Fatalf("%v leases extended, want 4", got)
	}

	level := func() float64 {
		s, _, _ := r.be.Get(ctx, long.key, r.clk.Now())
		return s.Dims[bucket.TokensPerDay].Level
	}
	before := level()
	long.ResponseBody(ctx, sse(`{"choices":[],"usage":{"prompt_tokens":10,"completion_tokens":5000,"total_tokens":5010}}`, `[DONE]`), true)
	if long.Reserved() {
		t.Fatal("still reserved after the end of the stream")
	}
	// The stream reserved about 1,000 tokens and used 5,010: the overrun is
	// charged, as it would be for a short stream.
	if got := before - level(); got < 4000 || got > 4020 {
		t.Fatalf("settling the long stream charged %v tokens, want its overrun of about 4,000", got)
	}
	if n, _ := r.l.ExtendLeases(ctx); n != 0 {
		t.Fatalf("extended %d leases after the stream settled", n)
	}
}
