package usage

import (
	"bytes"
	"encoding/json"
)

// format is what differs between API dialects: how a request body is read and
// how a response body or stream event reports usage and generated text. One is
// picked per request by formatFor; everything else is shared. A new dialect
// (Anthropic Messages, say) is one more implementation and one more case in
// formatFor.
type format interface {
	// parseRequest reads a request body that json.Valid accepted.
	parseRequest(body []byte) (Request, error)
	// readBody reads a complete response body that json.Valid accepted. ok
	// is false when it is not a JSON object.
	readBody(body []byte) (rd reading, ok bool)
	// readEvent reads one server-sent event. ok is false when its data is
	// neither a JSON object nor an end-of-stream sentinel.
	readEvent(ev Event) (rd reading, ok bool)
	// tailUsage looks for usage in the last bytes of a body too large to
	// buffer whole.
	tailUsage(tail []byte) (tokenUsage, bool)
	// generates reports whether the endpoint generates output tokens.
	generates() bool
}

// formatFor returns the format that reads bodies of endpoint ep.
func formatFor(ep Endpoint) format {
	switch ep {
	case ChatCompletions:
		return chatFormat{}
	case Completions:
		return completionsFormat{}
	case Embeddings:
		return embeddingsFormat{}
	case Responses:
		return responsesFormat{}
	default:
		return genericFormat{}
	}
}

// tokenUsage is usage as a provider reports it.
type tokenUsage struct {
	input, output, cached int64
}

// reading is what one response body or stream event contributes.
type reading struct {
	units    int64 // generated text, in quarter tokens
	usage    tokenUsage
	hasUsage bool
	done     bool // the body or stream is complete
}

// isDone reports whether event data is OpenAI's end-of-stream sentinel.
func isDone(data []byte) bool {
	return string(bytes.TrimSpace(data)) == "[DONE]"
}

// readOpenAIUsage reads an OpenAI-style usage object: prompt_tokens,
// completion_tokens and prompt_tokens_details.cached_tokens (chat,
// completions, embeddings), or input_tokens, output_tokens and
// input_tokens_details.cached_tokens (Responses API). Counts that are not
// non-negative integers are ignored. ok is false when the value is not an
// object (null, for one, which streamed chunks carry before the last).
func readOpenAIUsage(r *reader) (u tokenUsage, ok bool) {
	if r.next() != '{' {
		return u, false
	}
	ok = r.object(func(key []byte) bool {
		switch string(key) {
		case "prompt_tokens", "input_tokens":
			return readCount(r, &u.input)
		case "completion_tokens", "output_tokens":
			return readCount(r, &u.output)
		case "prompt_tokens_details", "input_tokens_details":
			if r.next() != '{' {
				return r.skip()
			}
			return r.object(func(key []byte) bool {
				if string(key) == "cached_tokens" {
					return readCount(r, &u.cached)
				}
				return r.skip()
			})
		default:
			return r.skip()
		}
	})
	return u, ok
}

// readCount consumes a value and stores it in dst when it is a non-negative
// integer.
func readCount(r *reader, dst *int64) bool {
	if c := r.next(); c != '-' && (c < '0' || c > '9') {
		return r.skip()
	}
	tok, ok := r.number()
	if !ok {
		return false
	}
	if v, ok := parseInteger(tok); ok && v >= 0 {
		*dst = v
	}
	return true
}

// readUsageField reads a "usage" member into rd when it holds an object.
func readUsageField(r *reader, rd *reading) bool {
	if r.next() != '{' {
		return r.skip()
	}
	u, ok := readOpenAIUsage(r)
	if ok {
		rd.usage, rd.hasUsage = u, true
	}
	return ok
}

// openAITailUsage finds the last "usage" member holding a well-formed object
// in the tail of an OpenAI-style body. Providers write usage after the
// generated content, so it sits in the tail of a large body. A quote inside a
// JSON string is escaped, so an unescaped "usage" followed by a colon is a key.
func openAITailUsage(tail []byte) (tokenUsage, bool) {
	key := []byte(`"usage"`)
	for end := len(tail); ; {
		i := bytes.LastIndex(tail[:end], key)
		if i < 0 {
			return tokenUsage{}, false
		}
		end = i
		backslashes := 0
		for p := i - 1; p >= 0 && tail[p] == '\\'; p-- {
			backslashes++
		}
		if backslashes%2 == 1 {
			continue
		}
		r := reader{b: tail, i: i + len(key)}
		if r.next() != ':' {
			continue
		}
		r.i++
		if r.next() != '{' {
			continue
		}
		start := r.i
		if !r.skip() || !json.Valid(tail[start:r.i]) {
			continue
		}
		obj := reader{b: tail[start:r.i]}
		if u, ok := readOpenAIUsage(&obj); ok {
			return u, true
		}
	}
}
