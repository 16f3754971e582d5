package usage

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// referenceSSE is a direct, unbounded transcription of the WHATWG event
// stream rules over a whole stream, for comparison with SSEParser.
func referenceSSE(stream []byte) (events []parsedEvent, truncated bool) {
	s := strings.TrimPrefix(string(stream), "\ufeff")
	var lines []string
	for {
		i := strings.IndexAny(s, "\r\n")
		if i < 0 {
			break
		}
		lines = append(lines, s[:i])
		if s[i] == '\r' && i+1 < len(s) && s[i+1] == '\n' {
			i++
		}
		s = s[i+1:]
	}
	var data, name string
	inEvent := false
	for _, line := range lines {
		switch {
		case line == "":
			if data != "" {
				ev := parsedEvent{Name: name, Data: strings.TrimSuffix(data, "\n")}
				if ev.Name == "" {
					ev.Name = "message"
				}
				events = append(events, ev)
			}
			data, name, inEvent = "", "", false
			continue
		case line[0] == ':':
			continue
		}
		inEvent = true
		field, value, found := strings.Cut(line, ":")
		if found {
			value = strings.TrimPrefix(value, " ")
		}
		switch field {
		case "data":
			data += value + "\n"
		case "event":
			name = value
		}
	}
	return events, inEvent || s != "" && s[0] != ':'
}

func FuzzSSEParser(f *testing.F) {
	for _, name := range []string{"chat_usage.sse", "responses.sse", "groq.sse"} {
		b, err := readFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, uint16(100), uint16(2000), uint8(0))
	}
	f.Add([]byte("data: a\r\n\r\ndata: b\rdata: c\n\n"), uint16(8), uint16(9), uint8(0))
	f.Add([]byte("\xef\xbb\xbfevent: x\ndata\n\n: c\ndata:  y\n\ndata: z"), uint16(1), uint16(2), uint8(0))
	f.Add([]byte("data: "+strings.Repeat("x", 300)+"\n\nevent: "+strings.Repeat("n", 200)+"\ndata: 1\n\n"), uint16(50), uint16(290), uint8(16))
	f.Fuzz(func(t *testing.T, stream []byte, a, b uint16, maxEvent uint8) {
		i, j := int(a)%(len(stream)+1), int(b)%(len(stream)+1)
		if i > j {
			i, j = j, i
		}
		whole, wholeTruncated := parseSSE(int(maxEvent), stream)
		split, splitTruncated := parseSSE(int(maxEvent), stream[:i], stream[i:j], stream[j:])
		if !slices.Equal(whole, split) || wholeTruncated != splitTruncated {
			t.Fatalf("split at %d and %d:\n got %+v %v\nwant %+v %v", i, j, split, splitTruncated, whole, wholeTruncated)
		}

		// Against the reference: equal where nothing exceeds the bound, and
		// cut to it where something does.
		want, wantTruncated := referenceSSE(stream)
		if len(whole) != len(want) || wholeTruncated != wantTruncated {
			t.Fatalf("parser gives %d events (truncated %v), reference %d (truncated %v)\n got %+v\nwant %+v",
				len(whole), wholeTruncated, len(want), wantTruncated, whole, want)
		}
		limit := int(maxEvent)
		if limit == 0 {
			limit = DefaultMaxEventBytes
		}
		for k, ev := range whole {
			ref := want[k]
			if len(ref.Data) > limit {
				ref.Data, ref.Truncated = ref.Data[:limit], true
			}
			if len(ref.Name) > limit {
				ref.Name = ev.Name // a name this long may be cut with its line; not compared
			}
			if ev != ref {
				t.Fatalf("event %d: got %+v, want %+v", k, ev, ref)
			}
		}
	})
}

func FuzzParseRequest(f *testing.F) {
	seeds := []string{
		`{"model":"gpt-4o","messages":[{"role":"user","content":"Hello"}],"max_tokens":100,"n":2,"stream":true,"stream_options":{"include_usage":true}}`,
		`{"messages":[{"role":"user","content":[{"type":"text","text":"x"},{"type":"image_url","image_url":{"url":"u","detail":"low"}}]}],"tools":[{"type":"function"}]}`,
		`{"messages":[{"role":"assistant","tool_calls":[{"function":{"name":"f","arguments":"{}"}}]}]}`,
		`{"prompt":["a","b"],"best_of":3,"max_tokens":1e3,"suffix":"s"}`,
		`{"prompt":[[1,2],[3]],"input":[1,2,3]}`,
		`{"instructions":"i","input":[{"role":"user","content":"x"},{"type":"function_call","arguments":"{}"},{"type":"x"}],"max_output_tokens":5}`,
		`{"m\u006fdel":"a\u00e9\ud83e\udd84","n":128}`,
		`{"model":"\xff\xfe"}`,
		`{"max_tokens":-1}`,
		`[1,2]`,
		`{"messages":`,
	}
	for _, s := range seeds {
		for ep := range Responses + 1 {
			f.Add(uint8(ep), []byte(s))
		}
	}
	f.Fuzz(func(t *testing.T, epByte uint8, body []byte) {
		ep := Endpoint(epByte % uint8(Responses+1))
		req, err := ParseRequest(ep, body)
		if again, againErr := ParseRequest(ep, body); again != req || (err == nil) != (againErr == nil) {
			t.Fatalf("not deterministic: %+v %v, then %+v %v", req, err, again, againErr)
		}
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		if !json.Valid(body) {
			t.Fatalf("invalid JSON %q accepted: %+v", body, req)
		}
		if req.Endpoint != ep || req.Choices < 1 || req.PromptTokens < 0 ||
			req.MaxOutputTokens < 0 || req.MaxOutputTokens > MaxOutputTokens {
			t.Fatalf("out of range: %+v", req)
		}
		if c0, c1 := req.Cost(0), req.Cost(1000); c0 < req.PromptTokens || c1 < c0 {
			t.Fatalf("Cost(0) = %d, Cost(1000) = %d for %+v", c0, c1, req)
		}
		// The fields read as encoding/json reads them.
		var m map[string]any
		if json.Unmarshal(body, &m) != nil {
			t.Fatalf("accepted %q, which is not a JSON object", body)
		}
		if model, ok := m["model"].(string); ok && req.Model != model {
			t.Fatalf("Model = %q, encoding/json reads %q", req.Model, model)
		}
		if stream, ok := m["stream"].(bool); ok && ep != Embeddings && req.Stream != stream {
			t.Fatalf("Stream = %v, encoding/json reads %v", req.Stream, stream)
		}
	})
}

// referenceUsage finds the usage of an OpenAI-style response body the way the
// counter should, with encoding/json: the last top-level "usage" (or, for
// chat, "x_groq"."usage") member that holds an object. known is false when a
// count is written in a form the reference does not decode (1e3, -0); the
// counts are then not compared.
func referenceUsage(body []byte, groq bool) (u tokenUsage, found, known bool) {
	known = true
	members(body, func(key string, value json.RawMessage) {
		switch {
		case key == "usage" && isObject(value):
			u, found = tokenUsage{}, true
			members(value, func(key string, value json.RawMessage) {
				switch key {
				case "prompt_tokens", "input_tokens":
					known = referenceCount(value, &u.input) && known
				case "completion_tokens", "output_tokens":
					known = referenceCount(value, &u.output) && known
				case "prompt_tokens_details", "input_tokens_details":
					members(value, func(key string, value json.RawMessage) {
						if key == "cached_tokens" {
							known = referenceCount(value, &u.cached) && known
						}
					})
				}
			})
		case key == "x_groq" && groq:
			members(value, func(key string, value json.RawMessage) {
				if key == "usage" && isObject(value) {
					gu, gFound, gKnown := referenceUsage([]byte(`{"usage":`+string(value)+`}`), false)
					u, found, known = gu, gFound, gKnown && known
				}
			})
		}
	})
	return u, found, known
}

// members calls fn for each member of a JSON object, in order, duplicates
// included; it does nothing for other values.
func members(obj []byte, fn func(key string, value json.RawMessage)) {
	if !isObject(obj) {
		return
	}
	dec := json.NewDecoder(bytes.NewReader(obj))
	if _, err := dec.Token(); err != nil {
		return
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return
		}
		var value json.RawMessage
		if dec.Decode(&value) != nil {
			return
		}
		fn(tok.(string), value)
	}
}

func isObject(v []byte) bool {
	v = bytes.TrimLeft(v, " \t\r\n")
	return len(v) > 0 && v[0] == '{'
}

// referenceCount stores a count written as plain non-negative digits; it
// reports false for a number in another form, whose value it leaves to the
// counter.
func referenceCount(v json.RawMessage, dst *int64) bool {
	var n json.Number
	if c := bytes.TrimLeft(v, " \t\r\n"); len(c) == 0 || c[0] != '-' && (c[0] < '0' || c[0] > '9') || json.Unmarshal(v, &n) != nil {
		return true // not a number: ignored by both
	}
	s := n.String()
	if len(s) == 0 || len(s) > 18 || strings.Trim(s, "0123456789") != "" {
		return false
	}
	var x int64
	for _, c := range s {
		x = x*10 + int64(c-'0')
	}
	*dst = x
	return true
}

func FuzzCounterJSON(f *testing.F) {
	seeds := []string{
		`{"choices":[{"message":{"content":"Hello","tool_calls":[{"function":{"name":"f","arguments":"{}"}}]}}],"usage":{"prompt_tokens":19,"completion_tokens":10,"prompt_tokens_details":{"cached_tokens":3}}}`,
		`{"choices":[{"text":"x"}],"usage":null,"x_groq":{"usage":{"prompt_tokens":1,"completion_tokens":2}}}`,
		`{"output":[{"type":"message","content":[{"type":"output_text","text":"hi"}]}],"usage":{"input_tokens":36,"output_tokens":87,"input_tokens_details":{"cached_tokens":0}}}`,
		`{"data":[{"embedding":[0.1,0.2]}],"usage":{"prompt_tokens":8,"total_tokens":8}}`,
		`{"usage":{"prompt_tokens":1},"usage":null,"us\u0061ge":{"prompt_tokens":2e0}}`,
		`{"usage":{"prompt_tokens":-1,"completion_tokens":"7"}}`,
		`{"choices":[{"message":{"content":"` + strings.Repeat("abc ", 50) + `"}}],"usage":{"prompt_tokens":5,"completion_tokens":6}}`,
		`{"choices":`,
		`[]`,
	}
	for _, s := range seeds {
		f.Add([]byte(s), uint16(len(s)/2), uint8(ChatCompletions), false)
		f.Add([]byte(s), uint16(7), uint8(Responses), true)
	}
	f.Fuzz(func(t *testing.T, body []byte, at uint16, epByte uint8, small bool) {
		ep := Endpoint(epByte % uint8(Responses+1))
		opts := CounterOptions{PromptTokens: 42}
		if small {
			opts.MaxBodyBytes = 64 // exercise the tail search
		}
		i := int(at) % (len(body) + 1)
		whole := count(ep, jsonType, opts, body)
		if split := count(ep, jsonType, opts, body[:i], body[i:]); split != whole {
			t.Fatalf("split at %d:\n got %+v\nwant %+v", i, split, whole)
		}
		u, s := whole.Usage, whole.Stats
		if s.Bytes != int64(len(body)) || u.InputTokens < 0 || u.OutputTokens < 0 || u.CachedInputTokens < 0 ||
			u.Exact != s.UsageSeen || !u.Exact && u.InputTokens != opts.PromptTokens {
			t.Fatalf("inconsistent result %+v", whole)
		}
		if ep == Embeddings && !u.Exact && u.OutputTokens != 0 {
			t.Fatalf("embeddings estimated %d output tokens", u.OutputTokens)
		}
		if small && len(body) > opts.MaxBodyBytes || !json.Valid(body) {
			return
		}
		// A valid body is read as encoding/json reads it.
		if s.MalformedBody != !isObject(body) {
			t.Fatalf("MalformedBody = %v for valid JSON %q", s.MalformedBody, body)
		}
		ref, found, known := referenceUsage(body, ep == ChatCompletions || ep == Completions || ep == Unknown)
		if u.Exact != found {
			t.Fatalf("Exact = %v, reference finds usage: %v (%+v)", u.Exact, found, u)
		}
		if found && known && (u.InputTokens != ref.input || u.OutputTokens != ref.output || u.CachedInputTokens != ref.cached) {
			t.Fatalf("usage %+v, reference %+v", u, ref)
		}
	})
}

// readFile reads a file of testdata.
func readFile(name string) ([]byte, error) {
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		return nil, fmt.Errorf("read test data: %w", err)
	}
	return b, nil
}
