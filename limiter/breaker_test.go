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

// insufficientQuota is OpenAI's billing 429 body.
const insufficientQuota = `{"error":{"message":"You exceeded your current quota, please check your plan and billing details.",` +
	`"type":"insufficient_quota","param":null,"code":"insufficient_quota"}}`

// answer429 sends one request and answers it with a 429 whose body arrives
// in two chunks.
func answer429(t *testing.T, r *rig, h hdr, body string) {
	t.Helper()
	ctx := context.Background()
	x, rej := r.send(t, h, chatBody(10, false))
	if rej != nil {
		t.Fatalf("rejected: %+v", rej)
	}
	x.ResponseHeaders(ctx, 429, hdr{":status": "429", "content-type": "application/json"}, false)
	x.ResponseBody(ctx, []byte(body[:len(body)/2]), false)
	x.ResponseBody(ctx, []byte(body[len(body)/2:]), true)
}

// TestBillingIsNoBreakerFailure: billing 429s are counted, not blocked, and
// do not open the breaker however many come; rate-limit 429s still do.
func TestBillingIsNoBreakerFailure(t *testing.T) {
	r := newRig(t, Config{Defaults: bucket.Limits{bucket.Requests: 1000}, Breaker: Breaker{Failures: 3, Window: 10 * time.Second, Cooldown: 5 * time.Second}})
	h := reqHeaders("sk-a")
	for range 10 {
		answer429(t, r, h, insufficientQuota)
	}
	if got := testutil.ToFloat64(r.m.UpstreamBilling.WithLabelValues("openai")); got != 10 {
		t.Fatalf("billing errors %v, want 10", got)
	}
	if got := testutil.ToFloat64(r.m.CircuitOpened.WithLabelValues("openai")); got != 0 {
		t.Fatalf("the breaker opened %v times on billing errors", got)
	}
	rateLimited := `{"error":{"message":"Rate limit reached on requests per min (RPM)","type":"requests","code":"rate_limit_exceeded"}}`
	for range 3 {
		answer429(t, r, h, rateLimited)
		r.clk.Advance(2 * time.Second) // past the 429's default block
	}
	if _, rej := r.send(t, h, chatBody(10, false)); rej == nil || rej.Reason != ReasonCircuitOpen {
		t.Fatalf("after 3 rate-limit 429s: %+v, want the breaker open", rej)
	}
}

// TestVeniceBillingCountsTowardLockout: Venice locks a key out after failed
// requests of any kind, billing errors included, so the breaker counts them.
func TestVeniceBillingCountsTowardLockout(t *testing.T) {
	r := newRig(t, Config{Defaults: bucket.Limits{bucket.Requests: 1000}})
	venice := reqHeaders("sk-v", ":authority", "api.venice.ai")
	for range 15 {
		answer429(t, r, venice, insufficientQuota)
	}
	if _, rej := r.send(t, venice, chatBody(10, false)); rej == nil || rej.Reason != ReasonCircuitOpen {
		t.Fatalf("after 15 billing 429s at Venice: %+v, want the breaker open", rej)
	}
}
