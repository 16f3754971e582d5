package usage

import (
	"bytes"
	"hash/crc32"
	"strings"
	"testing"
)

const (
	eventStream = "text/event-stream; charset=utf-8"
	jsonType    = "application/json"
)

// counted is what a Counter reports at the end.
type counted struct {
	Usage Usage
	Stats CounterStats
}

// count feeds chunks to a new Counter and finishes it.
func count(ep Endpoint, contentType string, opts CounterOptions, chunks ...[]byte) counted {
	c := NewCounter(ep, contentType, opts)
	for _, chunk := range chunks {
		c.Write(chunk)
	}
	u := c.Finish()
	return counted{u, c.Stats()}
}

// checkEverySplit checks that body gives want fed whole, split in two at
// every byte position, and fed byte by byte.
func checkEverySplit(t *testing.T, ep Endpoint, contentType string, opts CounterOptions, body []byte, want counted) {
	t.Helper()
	checkSplits(t, ep, contentType, opts, body, want, 1)
}

// checkSplits checks that body gives want fed whole, split in two at every
// step-th byte position, and fed byte by byte.
func checkSplits(t *testing.T, ep Endpoint, contentType string, opts CounterOptions, body []byte, want counted, step int) {
	t.Helper()
	if got := count(ep, contentType, opts, body); got != want {
		t.Fatalf("whole:\n got %+v\nwant %+v", got, want)
	}
	for i := 0; i <= len(body); i += step {
		if got := count(ep, contentType, opts, body[:i], body[i:]); got != want {
			t.Fatalf("split at %d:\n got %+v\nwant %+v", i, got, want)
		}
	}
	if got := count(ep, contentType, opts, bytesOneByOne(body)...); got != want {
		t.Fatalf("byte by byte:\n got %+v\nwant %+v", got, want)
	}
}

func readTestdata(t *testing.T, name string) []byte {
	t.Helper()
	b, err := readFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// estimated returns the output estimate for a sequence of text deltas, each
// costed on its own as the counter does.
func estimated(deltas ...string) int64 {
	var units int64
	for _, d := range deltas {
		units += textUnits(d)
	}
	return unitsToTokens(units)
}

// Line-ending and framing variants of an SSE transcript; each must count the
// same as the original.
var sseVariants = []struct {
	name string
	fn   func([]byte) []byte
}{
	{"LF", func(b []byte) []byte { return b }},
	{"CRLF", func(b []byte) []byte { return bytes.ReplaceAll(b, []byte("\n"), []byte("\r\n")) }},
	{"CR", func(b []byte) []byte { return bytes.ReplaceAll(b, []byte("\n"), []byte("\r")) }},
	{"multi-line data", func(b []byte) []byte {
		// Break every JSON data line after its first member: the data lines
		// rejoin with "\n", which is JSON white space.
		return bytes.ReplaceAll(b, []byte(`"},`), []byte("\"},\ndata: "))
	}},
	{"BOM and comments", func(b []byte) []byte {
		out := append([]byte("\xef\xbb\xbf: hello\n\n"), bytes.ReplaceAll(b, []byte("\n\n"), []byte("\n: ping\n\n"))...)
		return out
	}},
}

// messagesTexts are the text deltas of testdata/messages_text.sse, the text
// of its content_block_start first.
var messagesTexts = []string{"", "The", " rate", " limiter", " queued", " the request — café, 東京", " 🦄", "."}

func TestCounterSSETranscripts(t *testing.T) {
	chatTexts := []string{"", "Hello", "!", " How", " can", " I", " help", " you", " today", "? café 東京"}
	tests := []struct {
		name   string
		file   string
		ep     Endpoint
		strip  string // if set, lines containing it are removed first, with the blank line after them
		prompt int64
		want   counted
	}{
		{
			name: "chat with include_usage",
			file: "chat_usage.sse", ep: ChatCompletions, prompt: 40,
			want: counted{
				Usage: Usage{InputTokens: 19, OutputTokens: 12, Exact: true},
				Stats: CounterStats{Events: 13, UsageSeen: true, Done: true},
			},
		},
		{
			name: "chat without usage is estimated from deltas",
			file: "chat_usage.sse", ep: ChatCompletions, strip: `"usage":{`, prompt: 40,
			want: counted{
				Usage: Usage{InputTokens: 40, OutputTokens: estimated(chatTexts...)},
				Stats: CounterStats{Events: 12, Done: true},
			},
		},
		{
			name: "chat tool call arguments are counted",
			file: "chat_tools.sse", ep: ChatCompletions, prompt: 7,
			want: counted{
				Usage: Usage{InputTokens: 7, OutputTokens: estimated("get_weather", "", `{"`, "location", `":"`, "Paris", ",", " France", `"}`)},
				Stats: CounterStats{Events: 10, Done: true},
			},
		},
		{
			name: "groq usage under x_groq",
			file: "groq.sse", ep: ChatCompletions, prompt: 30,
			want: counted{
				Usage: Usage{InputTokens: 23, OutputTokens: 5, Exact: true},
				Stats: CounterStats{Events: 8, UsageSeen: true, Done: true},
			},
		},
		{
			name: "groq on an unclassified path",
			file: "groq.sse", ep: Unknown, prompt: 30,
			want: counted{
				Usage: Usage{InputTokens: 23, OutputTokens: 5, Exact: true},
				Stats: CounterStats{Events: 8, UsageSeen: true, Done: true},
			},
		},
		{
			name: "completions with usage",
			file: "completions.sse", ep: Completions,
			want: counted{
				Usage: Usage{InputTokens: 5, OutputTokens: 7, Exact: true},
				Stats: CounterStats{Events: 9, UsageSeen: true, Done: true},
			},
		},
		{
			name: "completions without usage",
			file: "completions.sse", ep: Completions, strip: `"usage":{`, prompt: 3,
			want: counted{
				Usage: Usage{InputTokens: 3, OutputTokens: estimated("\n\n", "This", " is", " a", " test", ".", "")},
				Stats: CounterStats{Events: 8, Done: true},
			},
		},
		{
			name: "responses API",
			file: "responses.sse", ep: Responses, prompt: 50,
			want: counted{
				Usage: Usage{InputTokens: 37, OutputTokens: 11, CachedInputTokens: 5, Exact: true},
				Stats: CounterStats{Events: 18, UsageSeen: true, Done: true},
			},
		},
		{
			name: "messages with cache usage and pings",
			file: "messages_text.sse", ep: Messages, prompt: 40,
			want: counted{
				Usage: Usage{InputTokens: 472 + 1024 + 2048, OutputTokens: 17, CachedInputTokens: 2048, Exact: true},
				Stats: CounterStats{Events: 14, UsageSeen: true, Done: true},
			},
		},
		{
			name: "messages without message_delta: input reported, output estimated",
			file: "messages_text.sse", ep: Messages, strip: `"message_delta"`, prompt: 40,
			want: counted{
				Usage: Usage{InputTokens: 3544, CachedInputTokens: 2048, OutputTokens: estimated(messagesTexts...)},
				Stats: CounterStats{Events: 13, UsageSeen: true, Done: true},
			},
		},
		{
			name: "messages without message_start: output reported, input estimated",
			file: "messages_text.sse", ep: Messages, strip: `"message_start"`, prompt: 40,
			want: counted{
				Usage: Usage{InputTokens: 40, OutputTokens: 17},
				Stats: CounterStats{Events: 13, UsageSeen: true, Done: true},
			},
		},
		{
			name: "messages tool use, input repeated in message_delta",
			file: "messages_tools.sse", ep: Messages, prompt: 500,
			want: counted{
				Usage: Usage{InputTokens: 612, OutputTokens: 58, Exact: true},
				Stats: CounterStats{Events: 19, UsageSeen: true, Done: true},
			},
		},
		{
			name: "messages tool use estimated: text, tool name and input JSON",
			file: "messages_tools.sse", ep: Messages, strip: `"message_delta"`, prompt: 500,
			want: counted{
				Usage: Usage{InputTokens: 612, OutputTokens: estimated("", "I'll", " look", " up", " the", " forecast", ".",
					"get_forecast", "", `{"city": `, `"Lyon`, `", "days"`, `: 3}`)},
				Stats: CounterStats{Events: 18, UsageSeen: true, Done: true},
			},
		},
		{
			name: "messages extended thinking",
			file: "messages_thinking.sse", ep: Messages, prompt: 60,
			want: counted{
				Usage: Usage{InputTokens: 85, OutputTokens: 41, Exact: true},
				Stats: CounterStats{Events: 21, UsageSeen: true, Done: true},
			},
		},
		{
			name: "messages thinking estimated, signature not counted",
			file: "messages_thinking.sse", ep: Messages, strip: `"message_delta"`, prompt: 60,
			want: counted{
				Usage: Usage{InputTokens: 85, OutputTokens: estimated("", "Two", " buckets", " refill", " at", " 10/s;", " 27",
					" tokens", " take", " 2.7s.", "", "About", " 2.7", " seconds", ".")},
				Stats: CounterStats{Events: 20, UsageSeen: true, Done: true},
			},
		},
		{
			name: "messages overloaded mid-stream",
			file: "messages_error.sse", ep: Messages, prompt: 1000,
			want: counted{
				Usage: Usage{InputTokens: 1203, OutputTokens: estimated("", "Once", " upon", " a", " time")},
				Stats: CounterStats{Events: 8, UsageSeen: true, StreamError: true},
			},
		},
		{
			name: "responses API cut before completion",
			file: "responses.sse", ep: Responses, strip: `response.completed`, prompt: 50,
			want: counted{
				Usage: Usage{InputTokens: 50, OutputTokens: estimated("In", " a", " peaceful", " grove", ",", " a", " unicorn",
					" — étoile 🦄 —", " slept", ".")},
				Stats: CounterStats{Events: 17},
			},
		},
	}
	for _, tt := range tests {
		body := readTestdata(t, tt.file)
		if tt.strip != "" {
			body = stripEvents(body, tt.strip)
		}
		for i, v := range sseVariants {
			t.Run(tt.name+"/"+v.name, func(t *testing.T) {
				t.Parallel()
				b := v.fn(bytes.Clone(body))
				want := tt.want
				want.Stats.Bytes = int64(len(b))
				// The counter reads events, so any split gives the same
				// result if it gives the same events. The parser is checked
				// at every split of every variant of each transcript; the
				// counter at every split of each original transcript and at
				// every 13th of the other variants and of the cases derived
				// from them, to keep the suite fast.
				original := tt.strip == "" && tt.ep != Unknown
				if original {
					checkParserSplits(t, b)
				}
				step := 13
				if i == 0 && original {
					step = 1
					if raceEnabled {
						step = 7
					}
				}
				checkSplits(t, tt.ep, eventStream, CounterOptions{PromptTokens: tt.prompt}, b, want, step)
			})
		}
	}
}

// checkParserSplits checks that an SSEParser gives the same events and
// truncation for body split in two at every byte position as whole. It
// compares digests of the events, which keeps it fast enough to run on every
// transcript variant.
func checkParserSplits(t *testing.T, body []byte) {
	t.Helper()
	want := sseDigest(body, len(body))
	for i := 0; i < len(body); i++ {
		if got := sseDigest(body, i); got != want {
			t.Fatalf("parser split at %d: digest %x, want %x", i, got, want)
		}
	}
}

// sseDigest parses body split at i and returns a CRC-32 digest of the events
// and of Close's result.
func sseDigest(body []byte, i int) uint32 {
	var h uint32
	var p SSEParser
	emit := func(ev Event) {
		h = crc32.Update(h, crcTable, []byte(ev.Name))
		h = crc32.Update(h, crcTable, ev.Data)
		h = crc32.Update(h, crcTable, []byte{0, byte(len(ev.Data)), byte(len(ev.Data) >> 8), boolByte(ev.Truncated)})
	}
	p.Feed(body[:i], emit)
	p.Feed(body[i:], emit)
	return crc32.Update(h, crcTable, []byte{boolByte(p.Close())})
}

var crcTable = crc32.MakeTable(crc32.Castagnoli)

func boolByte(b bool) byte {
	if b {
		return 1
	}
	return 0
}

// stripEvents removes the events of an LF-framed transcript that contain s.
func stripEvents(body []byte, s string) []byte {
	var out []byte
	for _, ev := range bytes.SplitAfter(body, []byte("\n\n")) {
		if !bytes.Contains(ev, []byte(s)) {
			out = append(out, ev...)
		}
	}
	return out
}

func TestCounterSSETruncated(t *testing.T) {
	body := readTestdata(t, "chat_tools.sse")
	events := bytes.SplitAfter(body, []byte("\n\n"))
	// Cut the stream halfway through the event carrying "Paris".
	var prefix []byte
	for _, ev := range events {
		if bytes.Contains(ev, []byte("Paris")) {
			prefix = append(prefix, ev[:len(ev)/2]...)
			break
		}
		prefix = append(prefix, ev...)
	}
	want := counted{
		Usage: Usage{InputTokens: 9, OutputTokens: estimated("get_weather", "", `{"`, "location", `":"`)},
		Stats: CounterStats{Bytes: int64(len(prefix)), Events: 4, Truncated: true},
	}
	checkEverySplit(t, ChatCompletions, eventStream, CounterOptions{PromptTokens: 9}, prefix, want)

	// A stream cut after a complete event but before its blank line is cut
	// mid-event too: the event is discarded.
	cut := bytes.TrimSuffix(events[2], []byte("\n"))
	got := count(ChatCompletions, eventStream, CounterOptions{PromptTokens: 9}, events[0], events[1], cut)
	if want := (Usage{InputTokens: 9, OutputTokens: estimated("get_weather", "")}); got.Usage != want || !got.Stats.Truncated {
		t.Errorf("cut before the blank line: %+v, want %+v and truncated", got, want)
	}
}

func TestCounterSSEOversizedAndMalformedEvents(t *testing.T) {
	big := strings.Repeat("x", 2000)
	body := []byte(`data: {"choices":[{"delta":{"content":"ok"}}]}` + "\n\n" +
		`data: {"choices":[{"delta":{"content":"` + big + `"}}]}` + "\n\n" +
		"data: not json\n\n" +
		`data: ["an","array"]` + "\n\n" +
		"data: \n\n" + // empty data is no event worth reading
		`data: {"choices":[{"delta":{"content":"fine"}}],"usage":null}` + "\n\n" +
		`data: {"choices":[{"delta":{"content":5,"refusal":{"x":1}}}],"usage":"none"}` + "\n\n" +
		"data: [DONE]\n\n")
	want := counted{
		Usage: Usage{InputTokens: 1, OutputTokens: estimated("ok", "fine")},
		Stats: CounterStats{Bytes: int64(len(body)), Events: 8, OversizedEvents: 1, MalformedEvents: 2, Done: true},
	}
	checkEverySplit(t, ChatCompletions, eventStream, CounterOptions{PromptTokens: 1, MaxEventBytes: 512}, body, want)
}

func TestCounterSSEUsageLastWins(t *testing.T) {
	// Some providers repeat cumulative usage in every chunk; a null usage
	// later on does not erase it.
	body := []byte(`data: {"choices":[{"delta":{"content":"a"}}],"usage":{"prompt_tokens":10,"completion_tokens":1}}` + "\n\n" +
		`data: {"choices":[{"delta":{"content":"b"}}],"usage":{"prompt_tokens":10,"completion_tokens":2,"prompt_tokens_details":{"cached_tokens":4}}}` + "\n\n" +
		`data: {"choices":[],"usage":null}` + "\n\n")
	want := counted{
		Usage: Usage{InputTokens: 10, OutputTokens: 2, CachedInputTokens: 4, Exact: true},
		Stats: CounterStats{Bytes: int64(len(body)), Events: 3, UsageSeen: true},
	}
	checkEverySplit(t, ChatCompletions, eventStream, CounterOptions{}, body, want)
}

func TestCounterSSEReasoningAndRefusal(t *testing.T) {
	body := []byte(`data: {"choices":[{"delta":{"reasoning_content":"think"}}]}` + "\n\n" +
		`data: {"choices":[{"delta":{"reasoning":"more"}}]}` + "\n\n" +
		`data: {"choices":[{"delta":{"refusal":"no"}}]}` + "\n\n" +
		`data: {"choices":[{"delta":{"content":[{"type":"text","text":"parts"}]}}]}` + "\n\n" +
		`data: {"choices":[{"delta":{"function_call":{"name":"f","arguments":"{}"}}}]}` + "\n\n" +
		`data: {"choices":[{"text":"legacy"}]}` + "\n\n")
	got := count(ChatCompletions, eventStream, CounterOptions{}, body)
	if want := estimated("think", "more", "no", "parts", "f", "{}", "legacy"); got.Usage.OutputTokens != want || got.Usage.Exact {
		t.Errorf("usage %+v, want an estimate of %d output tokens", got.Usage, want)
	}
}

func TestCounterResponsesEvents(t *testing.T) {
	ev := func(name, data string) string { return "event: " + name + "\ndata: " + data + "\n\n" }
	tests := []struct {
		name string
		body string
		want counted
	}{
		{
			name: "every text delta kind counts",
			body: ev("response.output_text.delta", `{"type":"response.output_text.delta","delta":"a"}`) +
				ev("response.refusal.delta", `{"type":"response.refusal.delta","delta":"b"}`) +
				ev("response.function_call_arguments.delta", `{"type":"response.function_call_arguments.delta","delta":"c"}`) +
				ev("response.reasoning_summary_text.delta", `{"type":"response.reasoning_summary_text.delta","delta":"d"}`) +
				ev("response.reasoning_text.delta", `{"type":"response.reasoning_text.delta","delta":"e"}`) +
				ev("response.custom_tool_call_input.delta", `{"type":"response.custom_tool_call_input.delta","delta":"f"}`) +
				ev("response.mcp_call_arguments.delta", `{"type":"response.mcp_call_arguments.delta","delta":"g"}`) +
				// Not generated text: audio, and the done events that repeat text.
				ev("response.audio.delta", `{"type":"response.audio.delta","delta":"UklGRiQAAABXQVZFZm10"}`) +
				ev("response.output_text.done", `{"type":"response.output_text.done","text":"abcdefg"}`),
			want: counted{Usage: Usage{OutputTokens: estimated("a", "b", "c", "d", "e", "f", "g")}, Stats: CounterStats{Events: 9}},
		},
		{
			name: "the event name stands in for a missing type",
			body: ev("response.output_text.delta", `{"delta":"hello"}`) +
				"data: {\"delta\":\"unnamed\"}\n\n",
			want: counted{Usage: Usage{OutputTokens: estimated("hello")}, Stats: CounterStats{Events: 2}},
		},
		{
			name: "incomplete carries usage and ends the stream",
			body: ev("response.incomplete", `{"type":"response.incomplete","response":{"status":"incomplete","usage":{"input_tokens":3,"output_tokens":4}}}`),
			want: counted{Usage: Usage{InputTokens: 3, OutputTokens: 4, Exact: true}, Stats: CounterStats{Events: 1, UsageSeen: true, Done: true}},
		},
		{
			name: "failed ends the stream",
			body: ev("response.failed", `{"type":"response.failed","response":{"status":"failed","usage":null}}`),
			want: counted{Stats: CounterStats{Events: 1, Done: true}},
		},
		{
			name: "malformed event",
			body: ev("response.output_text.delta", `{"type":"response.output_text.delta","delta":"x"`),
			want: counted{Stats: CounterStats{Events: 1, MalformedEvents: 1}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.want.Stats.Bytes = int64(len(tt.body))
			checkEverySplit(t, Responses, eventStream, CounterOptions{}, []byte(tt.body), tt.want)
		})
	}
}

func TestCounterJSON(t *testing.T) {
	chatJSON := `{"id":"chatcmpl-123","object":"chat.completion","created":1741569952,"model":"gpt-4o-2024-08-06",
		"choices":[{"index":0,"message":{"role":"assistant","content":"Hello! How can I help?","refusal":null,"annotations":[]},"logprobs":null,"finish_reason":"stop"}],
		"usage":{"prompt_tokens":19,"completion_tokens":10,"total_tokens":29,"prompt_tokens_details":{"cached_tokens":3,"audio_tokens":0},
		"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}},
		"service_tier":"default","system_fingerprint":"fp_50cad350e4"}`
	chatNoUsage := `{"id":"x","choices":[
		{"index":0,"message":{"role":"assistant","content":"Two","tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{\"a\":1}"}}]}},
		{"index":1,"message":{"role":"assistant","content":[{"type":"text","text":"parts"}],"reasoning_content":"hmm"}}]}`
	completionsJSON := `{"id":"cmpl-1","object":"text_completion","choices":[{"text":"\n\nThis is indeed a test","index":0,"logprobs":null,"finish_reason":"length"}],
		"usage":{"prompt_tokens":5,"completion_tokens":7,"total_tokens":12}}`
	embeddingsJSON := `{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.0023064255,-0.009327292,-0.0028842222]}],
		"model":"text-embedding-3-small","usage":{"prompt_tokens":8,"total_tokens":8}}`
	responsesJSON := `{"id":"resp_1","object":"response","status":"completed","output":[
		{"type":"reasoning","id":"rs_1","summary":[{"type":"summary_text","text":"plan"}]},
		{"type":"function_call","id":"fc_1","call_id":"c","name":"f","arguments":"{}"},
		{"type":"message","id":"msg_1","role":"assistant","content":[{"type":"output_text","text":"Done.","annotations":[]}]}],
		"usage":{"input_tokens":36,"input_tokens_details":{"cached_tokens":0},"output_tokens":87,"output_tokens_details":{"reasoning_tokens":64},"total_tokens":123}}`
	responsesNoUsage := strings.Replace(responsesJSON, `"usage":{`, `"usage_x":{`, 1)
	tests := []struct {
		name   string
		ep     Endpoint
		body   string
		prompt int64
		want   counted
	}{
		{
			name: "chat usage", ep: ChatCompletions, body: chatJSON, prompt: 50,
			want: counted{Usage: Usage{InputTokens: 19, OutputTokens: 10, CachedInputTokens: 3, Exact: true}, Stats: CounterStats{UsageSeen: true, Done: true}},
		},
		{
			name: "chat without usage", ep: ChatCompletions, body: chatNoUsage, prompt: 50,
			want: counted{Usage: Usage{InputTokens: 50, OutputTokens: estimated("Two", "f", `{"a":1}`, "parts", "hmm")}, Stats: CounterStats{Done: true}},
		},
		{
			name: "completions usage", ep: Completions, body: completionsJSON,
			want: counted{Usage: Usage{InputTokens: 5, OutputTokens: 7, Exact: true}, Stats: CounterStats{UsageSeen: true, Done: true}},
		},
		{
			name: "completions without usage", ep: Completions, body: strings.Replace(completionsJSON, `"usage"`, `"u"`, 1), prompt: 2,
			want: counted{Usage: Usage{InputTokens: 2, OutputTokens: estimated("\n\nThis is indeed a test")}, Stats: CounterStats{Done: true}},
		},
		{
			name: "embeddings usage", ep: Embeddings, body: embeddingsJSON, prompt: 3,
			want: counted{Usage: Usage{InputTokens: 8, Exact: true}, Stats: CounterStats{UsageSeen: true, Done: true}},
		},
		{
			name: "embeddings without usage", ep: Embeddings, body: strings.Replace(embeddingsJSON, `"usage"`, `"u"`, 1), prompt: 3,
			want: counted{Usage: Usage{InputTokens: 3}, Stats: CounterStats{Done: true}},
		},
		{
			name: "responses usage", ep: Responses, body: responsesJSON,
			want: counted{Usage: Usage{InputTokens: 36, OutputTokens: 87, Exact: true}, Stats: CounterStats{UsageSeen: true, Done: true}},
		},
		{
			name: "responses without usage", ep: Responses, body: responsesNoUsage, prompt: 4,
			want: counted{Usage: Usage{InputTokens: 4, OutputTokens: estimated("plan", "{}", "Done.")}, Stats: CounterStats{Done: true}},
		},
		{
			name: "null usage is no usage", ep: ChatCompletions, body: `{"choices":[{"message":{"content":"hi"}}],"usage":null}`, prompt: 1,
			want: counted{Usage: Usage{InputTokens: 1, OutputTokens: estimated("hi")}, Stats: CounterStats{Done: true}},
		},
		{
			name: "bad usage counts are ignored", ep: ChatCompletions, body: `{"usage":{"prompt_tokens":-1,"completion_tokens":"7","prompt_tokens_details":null}}`,
			want: counted{Usage: Usage{Exact: true}, Stats: CounterStats{UsageSeen: true, Done: true}},
		},
		{
			name: "truncated JSON is malformed", ep: ChatCompletions, body: chatJSON[:101], prompt: 6,
			// One token per four bytes: 101 bytes.
			want: counted{Usage: Usage{InputTokens: 6, OutputTokens: 26}, Stats: CounterStats{MalformedBody: true}},
		},
		{
			name: "an array is malformed", ep: ChatCompletions, body: `[1,2,3,4]`, prompt: 6,
			want: counted{Usage: Usage{InputTokens: 6, OutputTokens: 3}, Stats: CounterStats{MalformedBody: true}},
		},
		{
			name: "malformed embeddings have no output", ep: Embeddings, body: `{"data":`, prompt: 6,
			want: counted{Usage: Usage{InputTokens: 6}, Stats: CounterStats{MalformedBody: true}},
		},
		{
			name: "empty body", ep: ChatCompletions, body: ``, prompt: 6,
			want: counted{Usage: Usage{InputTokens: 6}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.want.Stats.Bytes = int64(len(tt.body))
			checkEverySplit(t, tt.ep, jsonType, CounterOptions{PromptTokens: tt.prompt}, []byte(tt.body), tt.want)
		})
	}
}

func TestCounterJSONOversized(t *testing.T) {
	content := strings.Repeat("lorem ipsum ", 2000) // 24 KB
	withUsage := `{"choices":[{"message":{"content":"` + content + `"}}],"usage":{"prompt_tokens":11,"completion_tokens":6000}}`
	// The usage key also appears, escaped, inside content near the end; it
	// must not be taken for the real one.
	decoy := `{"choices":[{"message":{"content":"` + content + `\"usage\":{\"prompt_tokens\":1}"}}],"usage":{"prompt_tokens":12,"completion_tokens":7}}`
	noUsage := `{"choices":[{"message":{"content":"` + content + `"}}]}`
	embeddings := `{"data":[{"embedding":[` + strings.TrimSuffix(strings.Repeat("0.0123,", 5000), ",") + `]}],"usage":{"prompt_tokens":9,"total_tokens":9}}`
	embeddingsNoUsage := strings.Replace(embeddings, `"usage"`, `"u"`, 1)
	message := `{"id":"msg_1","type":"message","content":[{"type":"text","text":"` + content + `"}],"stop_reason":"max_tokens",` +
		`"usage":{"input_tokens":11,"cache_read_input_tokens":4,"cache_creation_input_tokens":2,"output_tokens":6000}}`
	tests := []struct {
		name    string
		ep      Endpoint
		body    string
		maxBody int
		want    Usage
	}{
		{"usage found in the tail", ChatCompletions, withUsage, 1024, Usage{InputTokens: 11, OutputTokens: 6000, Exact: true}},
		{"escaped key in content ignored", ChatCompletions, decoy, 1024, Usage{InputTokens: 12, OutputTokens: 7, Exact: true}},
		{"tail bound smaller than the usage object", ChatCompletions, withUsage, 16, Usage{InputTokens: 5, OutputTokens: unitsToTokens(int64(len(withUsage)))}},
		{"no usage: a token per four bytes", ChatCompletions, noUsage, 1024, Usage{InputTokens: 5, OutputTokens: unitsToTokens(int64(len(noUsage)))}},
		{"embeddings usage in the tail", Embeddings, embeddings, 1024, Usage{InputTokens: 9, Exact: true}},
		{"embeddings without usage have no output", Embeddings, embeddingsNoUsage, 1024, Usage{InputTokens: 5}},
		{"messages usage in the tail", Messages, message, 1024, Usage{InputTokens: 17, CachedInputTokens: 4, OutputTokens: 6000, Exact: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := []byte(tt.body)
			opts := CounterOptions{PromptTokens: 5, MaxBodyBytes: tt.maxBody}
			want := counted{Usage: tt.want, Stats: CounterStats{Bytes: int64(len(body)), OversizedBody: true, UsageSeen: tt.want.Exact}}
			// Splitting at every position of a long body is slow; every 97th
			// position and a few chunk sizes cover the tail's bookkeeping.
			if got := count(tt.ep, jsonType, opts, body); got != want {
				t.Fatalf("whole:\n got %+v\nwant %+v", got, want)
			}
			for i := 0; i <= len(body); i += 97 {
				if got := count(tt.ep, jsonType, opts, body[:i], body[i:]); got != want {
					t.Fatalf("split at %d:\n got %+v\nwant %+v", i, got, want)
				}
			}
			for _, size := range []int{1, 7, 100, 1000, 4096} {
				var chunks [][]byte
				for b := body; len(b) > 0; b = b[min(size, len(b)):] {
					chunks = append(chunks, b[:min(size, len(b))])
				}
				if got := count(tt.ep, jsonType, opts, chunks...); got != want {
					t.Fatalf("chunks of %d:\n got %+v\nwant %+v", size, got, want)
				}
			}
		})
	}
}

func TestCounterJSONBoundedMemory(t *testing.T) {
	c := NewCounter(ChatCompletions, jsonType, CounterOptions{MaxBodyBytes: 1 << 10})
	chunk := bytes.Repeat([]byte("a"), 10_000)
	for range 100 { // 1 MB
		c.Write(chunk)
	}
	if len(c.body) != 0 || cap(c.tail) > 2<<10 {
		t.Fatalf("buffered %d body bytes and a %d-byte tail for a 1 KiB bound", len(c.body), cap(c.tail))
	}
}

func TestCounterFinishIsFinal(t *testing.T) {
	c := NewCounter(ChatCompletions, eventStream, CounterOptions{PromptTokens: 3})
	c.Write([]byte(`data: {"choices":[{"delta":{"content":"one"}}]}` + "\n\n"))
	first := c.Finish()
	c.Write([]byte(`data: {"choices":[{"delta":{"content":"two three four"}}],"usage":{"prompt_tokens":1,"completion_tokens":1}}` + "\n\n"))
	if again := c.Finish(); again != first {
		t.Errorf("Finish after Write = %+v, first Finish = %+v", again, first)
	}
	if want := (Usage{InputTokens: 3, OutputTokens: estimated("one")}); first != want {
		t.Errorf("Finish = %+v, want %+v", first, want)
	}
	if s := c.Stats(); s.Events != 1 {
		t.Errorf("Stats().Events = %d after a Write past Finish, want 1", s.Events)
	}
}

func TestCounterContentType(t *testing.T) {
	sse := `data: {"usage":{"prompt_tokens":1,"completion_tokens":2}}` + "\n\n"
	tests := []struct {
		contentType string
		isSSE       bool
	}{
		{"text/event-stream", true},
		{"text/event-stream; charset=utf-8", true},
		{" TEXT/Event-Stream ;charset=UTF-8", true},
		{"application/json", false},
		{"application/json; charset=utf-8", false},
		{"", false},
		{"text/event-streams", false},
	}
	for _, tt := range tests {
		got := count(ChatCompletions, tt.contentType, CounterOptions{}, []byte(sse))
		// Read as SSE, the body has usage; read as JSON, it is malformed.
		if isSSE := got.Usage.Exact; isSSE != tt.isSSE {
			t.Errorf("content type %q: read as SSE = %v, want %v (%+v)", tt.contentType, isSSE, tt.isSSE, got)
		}
	}
}

func TestCounterMessagesEvents(t *testing.T) {
	ev := func(name, data string) string { return "event: " + name + "\ndata: " + data + "\n\n" }
	start := func(usage string) string {
		return ev("message_start", `{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","content":[],"usage":`+usage+`}}`)
	}
	delta := func(usage string) string {
		return ev("message_delta", `{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":`+usage+`}`)
	}
	stop := ev("message_stop", `{"type":"message_stop"}`)
	tests := []struct {
		name string
		body string
		want counted
	}{
		{
			name: "input counts in message_delta replace those of message_start, one by one",
			body: start(`{"input_tokens":10,"cache_read_input_tokens":5,"output_tokens":1}`) +
				delta(`{"input_tokens":10682,"output_tokens":510,"server_tool_use":{"web_search_requests":1}}`) + stop,
			want: counted{Usage: Usage{InputTokens: 10687, CachedInputTokens: 5, OutputTokens: 510, Exact: true},
				Stats: CounterStats{Events: 3, UsageSeen: true, Done: true}},
		},
		{
			name: "a gateway reporting 0 input at the start and the input at the end",
			body: start(`{"input_tokens":0,"output_tokens":0}`) +
				delta(`{"input_tokens":25,"cache_creation_input_tokens":7,"cache_read_input_tokens":0,"output_tokens":9}`),
			want: counted{Usage: Usage{InputTokens: 32, OutputTokens: 9, Exact: true}, Stats: CounterStats{Events: 2, UsageSeen: true}},
		},
		{
			name: "null and invalid counts in message_delta leave the earlier ones",
			body: start(`{"input_tokens":30,"cache_creation_input_tokens":2,"output_tokens":1}`) +
				delta(`{"input_tokens":null,"cache_creation_input_tokens":-4,"cache_read_input_tokens":"9","output_tokens":12}`),
			want: counted{Usage: Usage{InputTokens: 32, OutputTokens: 12, Exact: true}, Stats: CounterStats{Events: 2, UsageSeen: true}},
		},
		{
			name: "cumulative output: the last message_delta wins",
			body: start(`{"input_tokens":3}`) + delta(`{"output_tokens":5}`) + delta(`{"output_tokens":8}`),
			want: counted{Usage: Usage{InputTokens: 3, OutputTokens: 8, Exact: true}, Stats: CounterStats{Events: 3, UsageSeen: true}},
		},
		{
			name: "a message_delta without counts reports nothing",
			body: delta(`{}`) + delta(`null`) + delta(`{"output_tokens":-1}`),
			want: counted{Usage: Usage{InputTokens: 7}, Stats: CounterStats{Events: 3}},
		},
		{
			name: "a message_start with null usage reports nothing",
			body: ev("message_start", `{"type":"message_start","message":{"usage":null}}`),
			want: counted{Usage: Usage{InputTokens: 7}, Stats: CounterStats{Events: 1}},
		},
		{
			name: "usage outside message_start and message_delta is not read",
			body: ev("future_event", `{"type":"future_event","usage":{"input_tokens":1,"output_tokens":99}}`) +
				ev("ping", `{"type":"ping","usage":{"output_tokens":98}}`),
			want: counted{Usage: Usage{InputTokens: 7}, Stats: CounterStats{Events: 2}},
		},
		{
			name: "a tool's name and non-empty input in content_block_start count",
			body: ev("content_block_start", `{"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"toolu_1","name":"f","input":{"a":1}}}`) +
				ev("content_block_start", `{"type":"content_block_start","index":1,"content_block":{"type":"server_tool_use","id":"srvtoolu_1","name":"web_search","input":{ }}}`) +
				ev("content_block_delta", `{"type":"content_block_delta","index":2,"delta":{"type":"citations_delta","citation":{"cited_text":"not generated"}}}`) +
				ev("content_block_delta", `{"type":"content_block_delta","index":2,"delta":{"type":"text_delta","text":5}}`),
			want: counted{Usage: Usage{InputTokens: 7, OutputTokens: estimated("f", `{"a":1}`, "web_search")}, Stats: CounterStats{Events: 4}},
		},
		{
			name: "the event name stands in for a missing type; a type wins over the name",
			body: "event: message_stop\ndata: {}\n\n" +
				ev("content_block_delta", `{"type":"ping","delta":{"text":"not counted"}}`) +
				ev("ping", `{"type":"content_block_delta","delta":{"type":"text_delta","text":"counted"}}`),
			want: counted{Usage: Usage{InputTokens: 7, OutputTokens: estimated("counted")}, Stats: CounterStats{Events: 3, Done: true}},
		},
		{
			name: "an escaped type is decoded",
			body: "data: {\"type\":\"message\\u005fstop\"}\n\n",
			want: counted{Usage: Usage{InputTokens: 7}, Stats: CounterStats{Events: 1, Done: true}},
		},
		{
			name: "events after an error still count",
			body: start(`{"input_tokens":4,"output_tokens":1}`) +
				ev("error", `{"type":"error","error":{"type":"api_error","message":"Internal server error"}}`) +
				delta(`{"output_tokens":2}`),
			want: counted{Usage: Usage{InputTokens: 4, OutputTokens: 2, Exact: true},
				Stats: CounterStats{Events: 3, UsageSeen: true, StreamError: true}},
		},
		{
			name: "malformed events",
			body: ev("content_block_delta", `{"type":"content_block_delta","delta":{"text":"x"`) +
				ev("content_block_delta", `["content_block_delta"]`) +
				ev("message_stop", `[DONE]`),
			want: counted{Usage: Usage{InputTokens: 7}, Stats: CounterStats{Events: 3, MalformedEvents: 3}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.want.Stats.Bytes = int64(len(tt.body))
			checkEverySplit(t, Messages, eventStream, CounterOptions{PromptTokens: 7}, []byte(tt.body), tt.want)
		})
	}
}

func TestCounterMessagesJSON(t *testing.T) {
	message := `{"id":"msg_01","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[
		{"type":"thinking","thinking":"Check the units.","signature":"EqQBCgIYAhIM"},
		{"type":"redacted_thinking","data":"EmwKAhgBEgy3va3pzix"},
		{"type":"text","text":"Use 2.7 s.","citations":[{"type":"char_location","cited_text":"not generated"}]},
		{"type":"tool_use","id":"toolu_01","name":"get_forecast","input":{"city":"Lyon"}},
		{"type":"tool_use","id":"toolu_02","name":"ping","input":{}}],
		"stop_reason":"tool_use","stop_sequence":null,
		"usage":{"input_tokens":20,"cache_creation_input_tokens":3,"cache_read_input_tokens":100,
		"cache_creation":{"ephemeral_5m_input_tokens":3,"ephemeral_1h_input_tokens":0},"output_tokens":55,
		"server_tool_use":{"web_search_requests":0},"service_tier":"standard"}}`
	noUsage := strings.Replace(message, `"usage":{`, `"usage_x":{`, 1)
	generated := estimated("Check the units.", "Use 2.7 s.", "get_forecast", `{"city":"Lyon"}`, "ping")
	tests := []struct {
		name string
		body string
		want counted
	}{
		{
			name: "usage: input is the sum of its three parts",
			body: message,
			want: counted{Usage: Usage{InputTokens: 123, CachedInputTokens: 100, OutputTokens: 55, Exact: true},
				Stats: CounterStats{UsageSeen: true, Done: true}},
		},
		{
			name: "usage without cache counts",
			body: `{"type":"message","content":[],"usage":{"input_tokens":9,"output_tokens":2}}`,
			want: counted{Usage: Usage{InputTokens: 9, OutputTokens: 2, Exact: true}, Stats: CounterStats{UsageSeen: true, Done: true}},
		},
		{
			name: "a whole usage names every count: missing ones are 0",
			body: `{"usage":{"output_tokens":2}}`,
			want: counted{Usage: Usage{OutputTokens: 2, Exact: true}, Stats: CounterStats{UsageSeen: true, Done: true}},
		},
		{
			name: "no usage: estimated from thinking, text and tool calls",
			body: noUsage,
			want: counted{Usage: Usage{InputTokens: 30, OutputTokens: generated}, Stats: CounterStats{Done: true}},
		},
		{
			name: "null usage",
			body: `{"content":[{"type":"text","text":"hi"}],"usage":null}`,
			want: counted{Usage: Usage{InputTokens: 30, OutputTokens: estimated("hi")}, Stats: CounterStats{Done: true}},
		},
		{
			name: "an error body has no usage",
			body: `{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"},"request_id":"req_1"}`,
			want: counted{Usage: Usage{InputTokens: 30}, Stats: CounterStats{Done: true}},
		},
		{
			name: "an OpenAI-style usage is not Anthropic's",
			body: `{"usage":{"prompt_tokens":5,"completion_tokens":6}}`,
			want: counted{Usage: Usage{Exact: true}, Stats: CounterStats{UsageSeen: true, Done: true}},
		},
		{
			name: "truncated",
			body: message[:60],
			want: counted{Usage: Usage{InputTokens: 30, OutputTokens: 15}, Stats: CounterStats{MalformedBody: true}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.want.Stats.Bytes = int64(len(tt.body))
			checkEverySplit(t, Messages, jsonType, CounterOptions{PromptTokens: 30}, []byte(tt.body), tt.want)
		})
	}
}

func TestCounterMessagesTruncated(t *testing.T) {
	body := readTestdata(t, "messages_text.sse")
	events := bytes.SplitAfter(body, []byte("\n\n"))
	// Cut the stream halfway through message_delta, the event with the
	// output count: the input stands, the output is estimated.
	var prefix []byte
	for _, ev := range events {
		if bytes.Contains(ev, []byte(`"message_delta"`)) {
			prefix = append(prefix, ev[:len(ev)/2]...)
			break
		}
		prefix = append(prefix, ev...)
	}
	want := counted{
		Usage: Usage{InputTokens: 3544, CachedInputTokens: 2048, OutputTokens: estimated(messagesTexts...)},
		Stats: CounterStats{Bytes: int64(len(prefix)), Events: 12, UsageSeen: true, Truncated: true},
	}
	checkEverySplit(t, Messages, eventStream, CounterOptions{PromptTokens: 40}, prefix, want)

	// Cut inside message_start: nothing reported, all estimated.
	cut := events[0][:len(events[0])-3]
	want = counted{Usage: Usage{InputTokens: 40}, Stats: CounterStats{Bytes: int64(len(cut)), Truncated: true}}
	checkEverySplit(t, Messages, eventStream, CounterOptions{PromptTokens: 40}, cut, want)
}
