package simprovider

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// chatChunk is the part of a chat.completion.chunk the tests look at.
type chatChunk struct {
	Object  string `json:"object"`
	Choices []struct {
		Index int            `json:"index"`
		Delta map[string]any `json:"delta"`
		Text  *string        `json:"text"`
		Fin   *string        `json:"finish_reason"`
	} `json:"choices"`
	Usage json.RawMessage `json:"usage"`
}

func TestServerChatAndCompletionStreams(t *testing.T) {
	tests := []struct {
		name       string
		cfg        Config
		path       string
		body       string
		object     string
		wantUsage  bool
		choices    int
		perChoice  int
		wantFinish string
		wantChunks int // content events per choice
	}{
		{
			name: "chat without usage", cfg: Config{OutputTokens: 5},
			path: "/v1/chat/completions", body: chatBody(`"stream":true`),
			object: "chat.completion.chunk", choices: 1, perChoice: 5, wantFinish: "stop", wantChunks: 5,
		},
		{
			name: "chat with usage, two choices, chunks of two", cfg: Config{OutputTokens: 5, TokensPerChunk: 2},
			path: "/v1/chat/completions", body: chatBody(`"stream":true,"stream_options":{"include_usage":true},"n":2`),
			object: "chat.completion.chunk", wantUsage: true, choices: 2, perChoice: 5, wantFinish: "stop", wantChunks: 3,
		},
		{
			name: "chat cut by max_completion_tokens", cfg: Config{OutputTokens: 30},
			path: "/v1/chat/completions", body: chatBody(`"stream":true,"stream_options":{"include_usage":true},"max_completion_tokens":4`),
			object: "chat.completion.chunk", wantUsage: true, choices: 1, perChoice: 4, wantFinish: "length", wantChunks: 4,
		},
		{
			name: "completion with usage", cfg: Config{OutputTokens: 3},
			path: "/v1/completions", body: `{"model":"davinci","prompt":"abcdefgh","stream":true,"stream_options":{"include_usage":true}}`,
			object: "text_completion", wantUsage: true, choices: 1, perChoice: 3, wantFinish: "stop", wantChunks: 3,
		},
		{
			name: "completion without usage", cfg: Config{OutputTokens: 3},
			path: "/v1/completions", body: `{"model":"davinci","prompt":"abcdefgh","stream":true}`,
			object: "text_completion", choices: 1, perChoice: 3, wantFinish: "stop", wantChunks: 3,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, tt.cfg)
			r := h.post("k", tt.path, tt.body)
			if r.status != http.StatusOK || !strings.HasPrefix(r.header.Get("Content-Type"), "text/event-stream") {
				t.Fatalf("status %d content-type %q: %s", r.status, r.header.Get("Content-Type"), r.body)
			}
			if r.header.Get("x-request-id") == "" {
				t.Errorf("stream answer has no x-request-id")
			}
			events := parseSSE(t, r.body)
			if n := len(events); n == 0 || events[n-1].data != "[DONE]" {
				t.Fatalf("stream does not end with [DONE]: %v", events)
			}
			events = events[:len(events)-1]

			text := make([]string, tt.choices)
			contentEvents := make([]int, tt.choices)
			finish := make([]string, tt.choices)
			sawRole := make([]bool, tt.choices)
			var usage map[string]any
			for i, ev := range events {
				var c chatChunk
				if err := json.Unmarshal([]byte(ev.data), &c); err != nil {
					t.Fatalf("event %d: %v: %s", i, err, ev.data)
				}
				if c.Object != tt.object {
					t.Errorf("event %d: object %q, want %q", i, c.Object, tt.object)
				}
				raw := decode(t, []byte(ev.data))
				_, hasUsageKey := raw["usage"]
				if hasUsageKey != tt.wantUsage {
					t.Errorf("event %d: usage key present = %v, want %v", i, hasUsageKey, tt.wantUsage)
				}
				if len(c.Choices) == 0 {
					if usage != nil || !tt.wantUsage || i != len(events)-1 {
						t.Errorf("event %d: unexpected usage chunk %s", i, ev.data)
					}
					if err := json.Unmarshal(c.Usage, &usage); err != nil || usage == nil {
						t.Fatalf("usage chunk %s: %v", ev.data, err)
					}
					continue
				}
				if string(c.Usage) != "" && string(c.Usage) != "null" {
					t.Errorf("event %d: content chunk carries usage %s", i, c.Usage)
				}
				for _, ch := range c.Choices {
					if finish[ch.Index] != "" {
						t.Errorf("event %d: choice %d continues after finish", i, ch.Index)
					}
					if role, ok := ch.Delta["role"]; ok {
						if role != "assistant" || contentEvents[ch.Index] > 0 {
							t.Errorf("event %d: role %v after content", i, role)
						}
						sawRole[ch.Index] = true
						continue
					}
					piece := ""
					if s, ok := ch.Delta["content"].(string); ok {
						piece = s
					}
					if ch.Text != nil {
						piece = *ch.Text
					}
					if piece != "" {
						if tt.object == "chat.completion.chunk" && !sawRole[ch.Index] {
							t.Errorf("event %d: content before role", i)
						}
						text[ch.Index] += piece
						contentEvents[ch.Index]++
					}
					if ch.Fin != nil {
						finish[ch.Index] = *ch.Fin
					}
				}
			}
			var total int
			for i := range tt.choices {
				words := len(strings.Fields(text[i]))
				total += words
				if words != tt.perChoice || contentEvents[i] != tt.wantChunks || finish[i] != tt.wantFinish {
					t.Errorf("choice %d: %d words in %d events, finish %q; want %d in %d, %q",
						i, words, contentEvents[i], finish[i], tt.perChoice, tt.wantChunks, tt.wantFinish)
				}
			}
			if tt.wantUsage {
				if usage == nil {
					t.Fatalf("no usage chunk")
				}
				if usage["completion_tokens"] != float64(total) ||
					usage["total_tokens"] != usage["prompt_tokens"].(float64)+float64(total) {
					t.Errorf("usage %v does not match %d generated tokens", usage, total)
				}
			} else if usage != nil {
				t.Errorf("usage chunk without include_usage")
			}
			st := h.srv.Stats().Keys["k"]
			if st.StreamsCompleted != 1 || st.StreamsAborted != 0 || st.TokensGenerated != int64(total) {
				t.Errorf("stats %+v, want 1 completed stream of %d tokens", st, total)
			}
		})
	}
}

func TestServerResponsesStream(t *testing.T) {
	tests := []struct {
		name       string
		maxOutput  int
		output     int
		wantStatus string
		wantTokens int
	}{
		{name: "completed", maxOutput: 64, output: 6, wantStatus: "completed", wantTokens: 6},
		{name: "incomplete", maxOutput: 16, output: 20, wantStatus: "incomplete", wantTokens: 16},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, Config{OutputTokens: tt.output, TokensPerChunk: 4})
			body := `{"model":"gpt-4.1","input":"abcdabcd","stream":true,"max_output_tokens":` + strconv.Itoa(tt.maxOutput) + `}`
			r := h.post("k", "/v1/responses", body)
			if r.status != http.StatusOK {
				t.Fatalf("status %d: %s", r.status, r.body)
			}
			events := parseSSE(t, r.body)
			var names []string
			var deltas, doneText string
			var final map[string]any
			for i, ev := range events {
				m := decode(t, []byte(ev.data))
				if m["type"] != ev.name {
					t.Errorf("event %d: type %v under event %q", i, m["type"], ev.name)
				}
				if m["sequence_number"] != float64(i) {
					t.Errorf("event %d: sequence_number %v", i, m["sequence_number"])
				}
				names = append(names, ev.name)
				switch ev.name {
				case "response.output_text.delta":
					deltas += m["delta"].(string)
				case "response.output_text.done":
					doneText = m["text"].(string)
				case "response.completed", "response.incomplete":
					final = m["response"].(map[string]any)
				}
			}
			wantNames := []string{"response.created", "response.in_progress", "response.output_item.added", "response.content_part.added"}
			for range (tt.wantTokens + 3) / 4 {
				wantNames = append(wantNames, "response.output_text.delta")
			}
			wantNames = append(wantNames, "response.output_text.done", "response.content_part.done",
				"response.output_item.done", "response."+tt.wantStatus)
			if strings.Join(names, " ") != strings.Join(wantNames, " ") {
				t.Errorf("events\n %v\nwant\n %v", names, wantNames)
			}
			if deltas != doneText || len(strings.Fields(deltas)) != tt.wantTokens {
				t.Errorf("deltas %q, done text %q, want %d words", deltas, doneText, tt.wantTokens)
			}
			if final == nil || final["status"] != tt.wantStatus {
				t.Fatalf("final response %v, want status %s", final, tt.wantStatus)
			}
			wantUsage(t, final["usage"], "input_tokens", 2, "output_tokens", tt.wantTokens, "total_tokens", 2+tt.wantTokens)
		})
	}
}

func TestServerChunkDelay(t *testing.T) {
	const delay = 5 * time.Millisecond
	h := newHarness(t, Config{OutputTokens: 3, ChunkDelay: delay, Now: time.Now})
	start := time.Now()
	r := h.post("k", "/v1/chat/completions", chatBody(`"stream":true`))
	if elapsed := time.Since(start); elapsed < 2*delay {
		t.Errorf("3 content chunks took %v, want at least %v between them", elapsed, 2*delay)
	}
	if r.status != http.StatusOK || !strings.HasSuffix(string(r.body), "data: [DONE]\n\n") {
		t.Errorf("status %d body %s", r.status, r.body)
	}
}

// streamClient reads a stream in the background: it reports the first
// content event on first and the rest of the stream (or the read error) on
// rest.
type streamClient struct {
	cancel context.CancelFunc
	first  chan string
	rest   chan error
}

func startStream(t *testing.T, h *harness, key string) *streamClient {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	resp := h.open(ctx, http.MethodPost, key, "/v1/chat/completions", chatBody(`"stream":true`))
	c := &streamClient{cancel: cancel, first: make(chan string, 1), rest: make(chan error, 1)}
	go func() {
		defer resp.Body.Close()
		br := bufio.NewReader(resp.Body)
		sentFirst := false
		for {
			ev, err := nextSSE(br)
			if err != nil {
				if !sentFirst {
					close(c.first)
				}
				if err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
				c.rest <- err
				return
			}
			if !sentFirst && strings.Contains(ev.data, `"content":"`) && !strings.Contains(ev.data, `"role"`) {
				c.first <- ev.data
				sentFirst = true
			}
			if ev.data == "[DONE]" {
				c.rest <- nil
				return
			}
		}
	}()
	t.Cleanup(cancel)
	return c
}

func TestGateHoldAndRelease(t *testing.T) {
	h := newHarness(t, Config{OutputTokens: 4})
	gate := h.srv.HoldStreams()
	clients := []*streamClient{startStream(t, h, "a"), startStream(t, h, "b")}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := gate.WaitHeld(ctx, 2); err != nil {
		t.Fatal(err)
	}
	for i, c := range clients {
		select {
		case first, ok := <-c.first:
			if !ok {
				t.Fatalf("client %d: stream ended before its first content chunk", i)
			}
			if !strings.Contains(first, `"finish_reason":null`) {
				t.Errorf("client %d: first content chunk %s", i, first)
			}
		case <-ctx.Done():
			t.Fatalf("client %d got no first chunk while held", i)
		}
	}
	if st := h.srv.Stats().Total; st.StreamsCompleted != 0 || st.TokensGenerated != 2 {
		t.Errorf("while held: stats %+v, want 0 completed and 1 token sent per stream", st)
	}

	gate.Release()
	gate.Release() // harmless
	for i, c := range clients {
		if err := <-c.rest; err != nil {
			t.Errorf("client %d: %v", i, err)
		}
	}
	h.waitFinished(2)
	if got := gate.Held(); got != 0 {
		t.Errorf("Held after release = %d", got)
	}
	st := h.srv.Stats().Total
	if st.StreamsCompleted != 2 || st.StreamsAborted != 0 || st.TokensGenerated != 8 {
		t.Errorf("stats %+v, want 2 completed streams of 4 tokens", st)
	}

	// A released gate holds nothing: a new stream runs through.
	r := h.post("c", "/v1/chat/completions", chatBody(`"stream":true`))
	if !strings.HasSuffix(string(r.body), "data: [DONE]\n\n") {
		t.Errorf("stream after release did not complete: %s", r.body)
	}
}

func TestGateAbort(t *testing.T) {
	h := newHarness(t, Config{OutputTokens: 10, TokensPerChunk: 3})
	gate := h.srv.HoldStreams()
	c := startStream(t, h, "a")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := gate.WaitHeld(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if _, ok := <-c.first; !ok {
		t.Fatal("no first chunk")
	}
	c.cancel()
	h.waitFinished(1)
	st := h.srv.Stats().Keys["a"]
	if st.StreamsAborted != 1 || st.StreamsCompleted != 0 || st.TokensGenerated != 3 {
		t.Errorf("stats %+v, want 1 aborted stream that sent 3 tokens", st)
	}
	if got := gate.Held(); got != 0 {
		t.Errorf("Held after abort = %d", got)
	}
	gate.Release()
}

func TestGateWaitHeldTimeout(t *testing.T) {
	g := newGate()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := g.WaitHeld(ctx, 1); err == nil {
		t.Fatal("WaitHeld on a cancelled context with nothing held returned nil")
	}
	if err := g.WaitHeld(ctx, 0); err != nil {
		t.Fatalf("WaitHeld(0) = %v, want nil", err)
	}
}
