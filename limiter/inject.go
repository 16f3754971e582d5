package limiter

import (
	"bytes"
	"encoding/json"

	"github.com/adaptive-rate-limiter/arl/limiter/usage"
)

// Usage injection (ARL_INJECT_STREAM_USAGE): OpenAI-style streams report
// usage only when the request sets stream_options.include_usage. Without it,
// arl settles on an estimate counted from the streamed text. With injection
// on, arl adds the option to streaming requests that lack it, so refunds are
// exact, and removes from the stream what the option added, so the client
// sees the stream it asked for: the final usage-only chunk (choices: []), and
// the "usage":null member the provider then adds to every other chunk.

// injectIncludeUsage returns body with stream_options.include_usage set to
// true, keeping every other member as written. ok is false when body is not a
// JSON object or its stream_options is not an object.
func injectIncludeUsage(body []byte) (out []byte, ok bool) {
	var top map[string]json.RawMessage
	if json.Unmarshal(body, &top) != nil || top == nil {
		return nil, false
	}
	opts := map[string]json.RawMessage{}
	if raw, present := top["stream_options"]; present && !bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		if json.Unmarshal(raw, &opts) != nil || opts == nil {
			return nil, false
		}
	}
	opts["include_usage"] = json.RawMessage("true")
	rawOpts, err := json.Marshal(opts)
	if err != nil {
		return nil, false
	}
	top["stream_options"] = rawOpts
	out, err = json.Marshal(top)
	return out, err == nil
}

// usageStripper rewrites a streamed response chunk by chunk, removing what
// usage injection added. It holds back the bytes of an event until the event
// is complete (a blank line ends it), so an event split across chunks is
// judged whole; whatever is held at the end of the stream is released as is.
//
// The scan for an event's end resumes where the last one stopped, so a long
// event costs time linear in its length. An event longer than maxHeldEvent
// is not held back, since holding it would hold the client's stream without
// bound: its bytes pass on unchanged as they come, and stripping resumes
// with the next event.
type usageStripper struct {
	// oversized, when set, is called the first time an event outgrows
	// maxHeldEvent.
	oversized func()

	pending  []byte // the bytes held back: the event in progress
	scanned  int    // how much of pending has been scanned for the event's end
	midLine  bool   // scanned ends inside a line, not at its start
	passing  bool   // the event in progress outgrew maxHeldEvent: pass it on
	reported bool   // oversized has been called
}

// maxHeldEvent bounds the bytes of one event that a usageStripper holds
// back: the bound past which the usage counter ignores an event's data.
const maxHeldEvent = usage.DefaultMaxEventBytes

// usageNull is the member OpenAI adds to every chunk when include_usage is
// set. Inside a JSON string a quote is escaped, so this byte sequence can only
// be a member, never part of a string value.
var usageNull = [...][]byte{[]byte(`,"usage":null`), []byte(`"usage":null,`)}

// Write takes the next chunk and returns the bytes to send on.
func (s *usageStripper) Write(chunk []byte, endOfStream bool) []byte {
	s.pending = append(s.pending, chunk...)
	out := []byte{}
	for {
		n := s.eventEnd()
		if n < 0 {
			break
		}
		if s.passing {
			out = append(out, s.pending[:n]...)
			s.passing = false
		} else {
			out = append(out, stripEvent(s.pending[:n])...)
		}
		s.pending = s.pending[n:]
	}
	if !s.passing && len(s.pending) > maxHeldEvent {
		s.passing = true
		if s.oversized != nil && !s.reported {
			s.reported = true
			s.oversized()
		}
	}
	if s.passing {
		// Everything scanned goes on; a final "\r" waits to learn whether
		// a "\n" follows it.
		out = append(out, s.pending[:s.scanned]...)
		s.pending, s.scanned = s.pending[s.scanned:], 0
	}
	if endOfStream {
		out = append(out, s.pending...)
		s.pending, s.scanned = nil, 0
	}
	return out
}

// eventEnd returns the length of the first complete event in s.pending,
// blank line included, or -1, scanning from where the last call stopped.
// Lines end with \n, \r\n or \r, as in the SSE grammar.
func (s *usageStripper) eventEnd() int {
	b := s.pending
	for i := s.scanned; i < len(b); i++ {
		c := b[i]
		if c != '\n' && c != '\r' {
			s.midLine = true
			continue
		}
		end := i + 1
		if c == '\r' {
			if i+1 == len(b) {
				s.scanned = i // a \r\n may be split: scan this \r again
				return -1
			}
			if b[i+1] == '\n' {
				end++
				i++
			}
		}
		if !s.midLine {
			s.scanned = 0
			return end
		}
		s.midLine = false
	}
	s.scanned = len(b)
	return -1
}

// stripEvent drops an event that only carries injected usage, and removes
// the injected "usage":null member from any other.
func stripEvent(ev []byte) []byte {
	if !bytes.Contains(ev, []byte(`"usage"`)) {
		return ev
	}
	if data := eventData(ev); data != nil {
		var chunk struct {
			Choices []json.RawMessage `json:"choices"`
			Usage   json.RawMessage   `json:"usage"`
		}
		if json.Unmarshal(data, &chunk) == nil && chunk.Choices != nil && len(chunk.Choices) == 0 &&
			len(chunk.Usage) > 0 && !bytes.Equal(chunk.Usage, []byte("null")) {
			return nil
		}
	}
	for _, m := range usageNull {
		if bytes.Contains(ev, m) {
			return bytes.ReplaceAll(ev, m, nil)
		}
	}
	return ev
}

// eventData returns the data of a single-line data event, nil otherwise.
func eventData(ev []byte) []byte {
	line, _, _ := bytes.Cut(bytes.TrimLeft(ev, "\r\n"), []byte("\n"))
	line = bytes.TrimRight(line, "\r")
	data, ok := bytes.CutPrefix(line, []byte("data:"))
	if !ok {
		return nil
	}
	return bytes.TrimPrefix(data, []byte(" "))
}
