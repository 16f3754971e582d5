package limiter

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/adaptive-rate-limiter/arl/limiter/bucket"
)

func TestInjectIncludeUsage(t *testing.T) {
	tests := []struct {
		body string
		ok   bool
	}{
		{`{"model":"m","stream":true,"messages":[]}`, true},
		{`{"model":"m","stream":true,"stream_options":{"include_usage":false,"x":1}}`, true},
		{`{"stream":true,"stream_options":null}`, true},
		{`{"stream":true,"stream_options":"yes"}`, false},
		{`[1,2]`, false},
		{`{`, false},
	}
	for _, tc := range tests {
		out, ok := injectIncludeUsage([]byte(tc.body))
		if ok != tc.ok {
			t.Fatalf("%s: ok=%v", tc.body, ok)
		}
		if !ok {
			continue
		}
		var got struct {
			Model         string
			StreamOptions map[string]any `json:"stream_options"`
		}
		if err := json.Unmarshal(out, &got); err != nil || got.StreamOptions["include_usage"] != true {
			t.Fatalf("%s -> %s", tc.body, out)
		}
		if strings.Contains(tc.body, `"x":1`) && got.StreamOptions["x"] != float64(1) {
			t.Fatalf("other stream options lost: %s", out)
		}
	}
}

func TestUsageStripperEveryChunking(t *testing.T) {
	in := "data: {\"id\":\"1\",\"choices\":[{\"delta\":{\"content\":\"say \\\"usage\\\":null\"}}],\"usage\":null}\n\n" +
		": keep-alive\n\n" +
		"data: {\"id\":\"1\",\"usage\":null,\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}]}\r\n\r\n" +
		"data: {\"id\":\"1\",\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2,\"total_tokens\":7}}\n\n" +
		"data: [DONE]\n\n"
	want := "data: {\"id\":\"1\",\"choices\":[{\"delta\":{\"content\":\"say \\\"usage\\\":null\"}}]}\n\n" +
		": keep-alive\n\n" +
		"data: {\"id\":\"1\",\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}]}\r\n\r\n" +
		"data: [DONE]\n\n"
	for i := 0; i <= len(in); i++ {
		for j := i; j <= len(in); j += 7 {
			var s usageStripper
			got := string(s.Write([]byte(in[:i]), false)) + string(s.Write([]byte(in[i:j]), false)) + string(s.Write([]byte(in[j:]), true))
			if got != want {
				t.Fatalf("split at %d,%d:\n got %q\nwant %q", i, j, got, want)
			}
		}
	}
}

func TestUsageStripperKeepsClientUsage(t *testing.T) {
	// Partial trailing data is released at the end of the stream.
	var s usageStripper
	if got := string(s.Write([]byte("data: {\"choices\":[{}]}\n\ndata: trunc"), true)); got != "data: {\"choices\":[{}]}\n\ndata: trunc" {
		t.Fatalf("got %q", got)
	}
}

// longEvent is one SSE event of n bytes without a blank line until its end.
func longEvent(n int) []byte {
	const head, tail = `data: {"choices":[{"delta":{"content":"`, "\"}}],\"usage\":null}\n\n"
	return []byte(head + strings.Repeat("x", n-len(head)-len(tail)) + tail)
}

func TestUsageStripperBoundsAnEvent(t *testing.T) {
	usageChunk := "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2}}\n\n"
	big := longEvent(maxHeldEvent + maxHeldEvent/2)
	in := string(big) + usageChunk + "data: {\"choices\":[{}],\"usage\":null}\r\n\r\ndata: [DONE]\n\n"
	// The long event passes unchanged; stripping resumes after it.
	want := string(big) + "data: {\"choices\":[{}]}\r\n\r\ndata: [DONE]\n\n"
	oversized := 0
	s := usageStripper{oversized: func() { oversized++ }}
	const chunk = 1 << 10
	var out []byte
	for off := 0; off < len(in); off += chunk {
		end := min(off+chunk, len(in))
		out = append(out, s.Write([]byte(in[off:end]), end == len(in))...)
		if held := end - len(out); held > maxHeldEvent {
			t.Fatalf("after %d bytes, %d are held back", end, held)
		}
	}
	if string(out) != want {
		t.Fatalf("got %d bytes, want %d; the end:\n got %q\nwant %q", len(out), len(want), out[max(len(out)-200, 0):], want[len(want)-200:])
	}
	if oversized != 1 {
		t.Fatalf("oversized reported %d times, want once", oversized)
	}
}

// BenchmarkUsageStripperLongEvent feeds one event without a blank line until
// its end in 1 KiB chunks, as a stream of a long tool call arrives: the work
// per byte must not grow with the event.
func BenchmarkUsageStripperLongEvent(b *testing.B) {
	for _, size := range []int{64 << 10, 512 << 10, 1536 << 10} {
		ev := longEvent(size)
		b.Run(strconv.Itoa(size>>10)+"KiB", func(b *testing.B) {
			b.SetBytes(int64(len(ev)))
			b.ReportAllocs()
			for b.Loop() {
				var s usageStripper
				for off := 0; off < len(ev); off += 1 << 10 {
					end := min(off+1<<10, len(ev))
					s.Write(ev[off:end], end == len(ev))
				}
			}
		})
	}
}

// TestUnstrippedStreamCounted: an answer to an injected request that is not
// an event stream passes as sent, and one whose event outgrows the bound
// passes that event as sent; each answer is counted once.
func TestUnstrippedStreamCounted(t *testing.T) {
	r := newRig(t, Config{InjectStreamUsage: true, Defaults: bucket.Limits{bucket.Requests: 10, bucket.Tokens: 100_000}})
	ctx := context.Background()
	unstripped := r.m.BadInput.WithLabelValues("unstripped_stream")

	x, rej := r.send(t, reqHeaders("sk-u"), chatBody(10, true))
	if rej != nil || !x.injected {
		t.Fatalf("rejected %v, injected %v", rej, x.injected)
	}
	x.ResponseHeaders(ctx, 200, hdr{":status": "200", "content-type": "application/json"}, false)
	body := []byte(`{"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":1}}`)
	if v := x.ResponseBody(ctx, body, true); v.Body != nil {
		t.Fatalf("a JSON answer was rewritten to %q", v.Body)
	}
	if got := testutil.ToFloat64(unstripped); got != 1 {
		t.Fatalf("unstripped_stream %v after a JSON answer, want 1", got)
	}

	x, _ = r.send(t, reqHeaders("sk-u"), chatBody(10, true))
	x.ResponseHeaders(ctx, 200, hdr{":status": "200", "content-type": "text/event-stream"}, false)
	big := longEvent(2*maxHeldEvent + 10)
	for off := 0; off < len(big); off += maxHeldEvent / 4 {
		x.ResponseBody(ctx, big[off:min(off+maxHeldEvent/4, len(big))], false)
	}
	x.ResponseBody(ctx, longEvent(3*maxHeldEvent/2), false)
	x.ResponseBody(ctx, []byte("data: [DONE]\n\n"), true)
	if got := testutil.ToFloat64(unstripped); got != 2 {
		t.Fatalf("unstripped_stream %v after a stream with two long events, want 2", got)
	}
}
