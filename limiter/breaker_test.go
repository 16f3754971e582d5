package limiter

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/adaptive-rate-limiter/arl/limiter/bucket"
)

func failOnce(t *testing.T, r *rig, h hdr, status string) {
	t.Helper()
	x, rej := r.send(t, h, chatBody(10, false))
	if rej != nil {
		t.Fatalf("rejected before the breaker opened: %+v", rej)
	}
	x.ResponseHeaders(context.Background(), 500, hdr{":status": status}, true)
}

func TestBreakerOpensBeforeVeniceLockout(t *testing.T) {
	r := newRig(t, Config{Defaults: bucket.Limits{bucket.Requests: 1000}})
	venice := reqHeaders("sk-v", ":authority", "api.venice.ai")
	for range 14 {
		failOnce(t, r, venice, "500")
		r.clk.Advance(time.Second)
	}
	failOnce(t, r, venice, "500") // the 15th failure in 30 s opens it
	_, rej := r.send(t, venice, chatBody(10, false))
	if rej == nil || rej.Reason != ReasonCircuitOpen || rej.Status != 429 || rej.RetryAfter != 30*time.Second {
		t.Fatalf("after 15 failures: %+v", rej)
	}
	if got := testutil.ToFloat64(r.m.CircuitOpened.WithLabelValues("venice")); got != 1 {
		t.Fatalf("opened %v times", got)
	}
	// Other keys are not affected; the breaker closes after the cool-down.
	if _, rej := r.send(t, reqHeaders("sk-w", ":authority", "api.venice.ai"), chatBody(10, false)); rej != nil {
		t.Fatalf("another key: %+v", rej)
	}
	r.clk.Advance(30 * time.Second)
	if _, rej := r.send(t, venice, chatBody(10, false)); rej != nil {
		t.Fatalf("after the cool-down: %+v", rej)
	}
}

func TestBreakerFailuresAgeOut(t *testing.T) {
	r := newRig(t, Config{Defaults: bucket.Limits{bucket.Requests: 1000}})
	venice := reqHeaders("sk-v", ":authority", "api.venice.ai")
	for range 40 { // one failure every 3 s: never 15 within 30 s
		failOnce(t, r, venice, "500")
		r.clk.Advance(3 * time.Second)
	}
}

func TestBreakerConfiguredDefault(t *testing.T) {
	r := newRig(t, Config{Defaults: bucket.Limits{bucket.Requests: 1000}, Breaker: Breaker{Failures: 3, Window: 10 * time.Second, Cooldown: 5 * time.Second}})
	h := reqHeaders("sk-a")
	for range 3 {
		failOnce(t, r, h, "503")
	}
	if _, rej := r.send(t, h, chatBody(10, false)); rej == nil || rej.Reason != ReasonCircuitOpen {
		t.Fatalf("after 3 failures: %+v", rej)
	}
	if _, err := New(Config{Breaker: Breaker{Failures: 3}}, r.be, r.m, r.l.log); err == nil {
		t.Fatal("a threshold without window accepted")
	}
}
