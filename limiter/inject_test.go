package limiter

import (
	"encoding/json"
	"strings"
	"testing"
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
