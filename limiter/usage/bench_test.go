package usage

import (
	"fmt"
	"strings"
	"testing"
)

// chatBody builds a realistic chat request of about size bytes: a system
// prompt, alternating user and assistant turns, and a tool definition.
func chatBody(size int) []byte {
	var b strings.Builder
	b.WriteString(`{"model":"gpt-4o-mini","temperature":0.7,"max_completion_tokens":1024,"stream":true,` +
		`"stream_options":{"include_usage":true},"tools":[{"type":"function","function":{"name":"get_weather",` +
		`"description":"Get the current weather in a given location","parameters":{"type":"object","properties":` +
		`{"location":{"type":"string","description":"The city and state, e.g. San Francisco, CA"}},"required":["location"]}}}],` +
		`"messages":[{"role":"system","content":"You are a helpful assistant. Answer concisely and cite sources when you can."}`)
	turns := []string{
		"Can you explain how token bucket rate limiting works, and why it is preferred over fixed windows?",
		"A token bucket holds up to a fixed number of tokens and refills at a constant rate.\nEach request takes tokens; when the bucket is empty, requests wait or are rejected.\nUnlike fixed windows, it smooths bursts at window boundaries.",
	}
	for i := 0; b.Len() < size-200; i++ {
		role := "user"
		if i%2 == 1 {
			role = "assistant"
		}
		fmt.Fprintf(&b, `,{"role":%q,"content":%q}`, role, turns[i%2])
	}
	b.WriteString(`]}`)
	return []byte(b.String())
}

func BenchmarkParseRequest(b *testing.B) {
	for _, size := range []int{2 << 10, 100 << 10} {
		body := chatBody(size)
		b.Run(fmt.Sprintf("chat_%dKB", len(body)>>10), func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := ParseRequest(ChatCompletions, body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// sseStream builds a chat completion stream of n content chunks followed by
// a usage chunk and [DONE], as OpenAI sends it.
func sseStream(n int) []byte {
	var b strings.Builder
	words := []string{" The", " bucket", " refills", " at", " a", " steady", " rate", "."}
	for i := range n {
		fmt.Fprintf(&b, `data: {"id":"chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT","object":"chat.completion.chunk","created":1741569952,`+
			`"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_06737a9306","choices":[{"index":0,"delta":{"content":%q},`+
			`"logprobs":null,"finish_reason":null}],"usage":null}`+"\n\n", words[i%len(words)])
	}
	b.WriteString(`data: {"id":"chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT","object":"chat.completion.chunk","created":1741569952,` +
		`"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_06737a9306","choices":[],"usage":{"prompt_tokens":250,` +
		`"completion_tokens":200,"total_tokens":450,"prompt_tokens_details":{"cached_tokens":0}}}` + "\n\ndata: [DONE]\n\n")
	return []byte(b.String())
}

func BenchmarkCounterSSE(b *testing.B) {
	stream := sseStream(200)
	// Envoy delivers the stream in chunks that do not follow event bounds.
	var chunks [][]byte
	for s := stream; len(s) > 0; s = s[min(1000, len(s)):] {
		chunks = append(chunks, s[:min(1000, len(s))])
	}
	b.SetBytes(int64(len(stream)))
	b.ReportAllocs()
	for b.Loop() {
		c := NewCounter(ChatCompletions, "text/event-stream", CounterOptions{PromptTokens: 250})
		for _, chunk := range chunks {
			c.Write(chunk)
		}
		if u := c.Finish(); !u.Exact {
			b.Fatal("no usage")
		}
	}
}

func BenchmarkCounterJSON(b *testing.B) {
	body := []byte(`{"id":"chatcmpl-123","object":"chat.completion","created":1741569952,"model":"gpt-4o-mini",` +
		`"choices":[{"index":0,"message":{"role":"assistant","content":` + fmt.Sprintf("%q", strings.Repeat("The bucket refills at a steady rate. ", 50)) +
		`,"refusal":null},"finish_reason":"stop"}],"usage":{"prompt_tokens":19,"completion_tokens":400,"total_tokens":419}}`)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		c := NewCounter(ChatCompletions, "application/json", CounterOptions{})
		c.Write(body[:len(body)/2])
		c.Write(body[len(body)/2:])
		if u := c.Finish(); !u.Exact {
			b.Fatal("no usage")
		}
	}
}

// messagesStream builds an Anthropic Messages stream of n text deltas, as
// Anthropic sends it.
func messagesStream(n int) []byte {
	var b strings.Builder
	b.WriteString("event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_01XFDUDYJgAACzvnptvVoYEL\"," +
		"\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"claude-sonnet-4-5-20250929\",\"stop_reason\":null," +
		"\"stop_sequence\":null,\"usage\":{\"input_tokens\":250,\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":0,\"output_tokens\":1}}}\n\n" +
		"event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n" +
		"event: ping\ndata: {\"type\": \"ping\"}\n\n")
	words := []string{" The", " bucket", " refills", " at", " a", " steady", " rate", "."}
	for i := range n {
		fmt.Fprintf(&b, "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":%q}}\n\n",
			words[i%len(words)])
	}
	b.WriteString("event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n" +
		"event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":200}}\n\n" +
		"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n")
	return []byte(b.String())
}

func BenchmarkCounterMessagesSSE(b *testing.B) {
	stream := messagesStream(200)
	var chunks [][]byte
	for s := stream; len(s) > 0; s = s[min(1000, len(s)):] {
		chunks = append(chunks, s[:min(1000, len(s))])
	}
	b.SetBytes(int64(len(stream)))
	b.ReportAllocs()
	for b.Loop() {
		c := NewCounter(Messages, "text/event-stream", CounterOptions{PromptTokens: 250})
		for _, chunk := range chunks {
			c.Write(chunk)
		}
		if u := c.Finish(); !u.Exact || u.OutputTokens != 200 {
			b.Fatalf("usage %+v", u)
		}
	}
}
