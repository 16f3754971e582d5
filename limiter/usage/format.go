package usage

import (
	"bytes"
	"encoding/json"
)

// format is what differs between API dialects: how a request body is read and
// how a response body or stream event reports usage and generated text. One is
// picked per request by formatFor; everything else is shared. A new dialect is
// one more implementation and one more case in formatFor (messages.go, the
// Anthropic Messages API, is the example of a dialect outside the OpenAI
// family).
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
	case Messages:
		return messagesFormat{}
	default:
		return genericFormat{}
	}
}

// tokenUsage is usage as a provider reports it.
//
// OpenAI counts every prompt token in input (prompt_tokens, input_tokens),
// cached ones included, and reports the cached part beside it. Anthropic
// splits the prompt: input_tokens counts only what was neither read from nor
// written to the prompt cache, and cache_read_input_tokens and
// cache_creation_input_tokens come on top; split marks that form.
type tokenUsage struct {
	input, output, cached int64
	cacheWrite            int64 // Anthropic's cache_creation_input_tokens
	split                 bool  // cached and cacheWrite are not part of input
}

// inputTotal returns every prompt token the provider processed: input, plus
// the cache reads and writes when they are reported apart from it.
func (u tokenUsage) inputTotal() int64 {
	if u.split {
		return satAdd(satAdd(u.input, u.cached), u.cacheWrite)
	}
	return u.input
}

// usageFields is a set of the counts of a tokenUsage.
type usageFields uint8

// The counts of a tokenUsage, as a set.
const (
	fieldInput usageFields = 1 << iota
	fieldOutput
	fieldCached
	fieldCacheWrite

	// inputFields are the counts that make up the prompt.
	inputFields = fieldInput | fieldCached | fieldCacheWrite
	// allFields is a whole usage report: a count it does not name is 0.
	allFields = inputFields | fieldOutput
)

// merge sets the counts of u named in fields to those of v.
func (u *tokenUsage) merge(v tokenUsage, fields usageFields) {
	if fields&fieldInput != 0 {
		u.input = v.input
	}
	if fields&fieldOutput != 0 {
		u.output = v.output
	}
	if fields&fieldCached != 0 {
		u.cached = v.cached
	}
	if fields&fieldCacheWrite != 0 {
		u.cacheWrite = v.cacheWrite
	}
	u.split = v.split
}

// reading is what one response body or stream event contributes.
type reading struct {
	units int64 // generated text, in quarter tokens
	// usage holds the counts named in fields; they replace the counts seen
	// before. OpenAI-style usage is always whole (allFields); an Anthropic
	// message_delta names only the counts it carries.
	usage       tokenUsage
	fields      usageFields
	done        bool // the body or stream is complete
	streamError bool // the stream reported an error and ends with it
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
	_, ok := readCountSet(r, dst)
	return ok
}

// readCountSet consumes a value and stores it in dst when it is a
// non-negative integer; set reports whether it was.
func readCountSet(r *reader, dst *int64) (set, ok bool) {
	if c := r.next(); c != '-' && (c < '0' || c > '9') {
		return false, r.skip()
	}
	tok, ok := r.number()
	if !ok {
		return false, false
	}
	if v, ok := parseInteger(tok); ok && v >= 0 {
		*dst = v
		return true, true
	}
	return false, true
}

// readUsageField reads an OpenAI-style "usage" member into rd when it holds
// an object.
func readUsageField(r *reader, rd *reading) bool {
	if r.next() != '{' {
		return r.skip()
	}
	u, ok := readOpenAIUsage(r)
	if ok {
		rd.usage, rd.fields = u, allFields
	}
	return ok
}

// openAITailUsage finds the last "usage" member holding a well-formed object
// in the tail of an OpenAI-style body.
func openAITailUsage(tail []byte) (tokenUsage, bool) {
	return findTailUsage(tail, readOpenAIUsage)
}

// findTailUsage finds the last "usage" member holding a well-formed object in
// the tail of a body and reads it with read. Providers write usage after the
// generated content, so it sits in the tail of a large body. A quote inside a
// JSON string is escaped, so an unescaped "usage" followed by a colon is a key.
func findTailUsage(tail []byte, read func(*reader) (tokenUsage, bool)) (tokenUsage, bool) {
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
		if u, ok := read(&obj); ok {
			return u, true
		}
	}
}
