package usage

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
)

// ErrMalformed is wrapped by every error ParseRequest returns: the body is not
// valid JSON, not an object, holds a field of the wrong type, or holds an
// absurd value (a negative or huge output budget, too many choices, an
// over-long model name).
var ErrMalformed = errors.New("malformed request body")

// Bounds beyond which a request field is rejected as absurd.
const (
	// MaxOutputTokens is the largest output budget a request may name.
	MaxOutputTokens = 10_000_000
	// MaxChoices is the largest n (or best_of) a request may ask for.
	MaxChoices = 128
	// MaxModelBytes is the longest model name a request may give. Model
	// names key rate-limit buckets and metrics; real ones are far shorter.
	MaxModelBytes = 512
)

// defaultCompletionsMaxTokens is the legacy completions API's max_tokens when
// the request names none.
const defaultCompletionsMaxTokens = 16

// Request is what a rate limiter needs to know about a request body before it
// is sent.
type Request struct {
	// Endpoint is the endpoint the body was read as.
	Endpoint Endpoint
	// Model is the model the body names, "" when it names none.
	Model string
	// PromptTokens is the estimated number of input tokens.
	PromptTokens int64
	// MaxOutputTokens is the output budget per choice as the body writes it
	// (max_completion_tokens, max_tokens or max_output_tokens; the largest
	// when several are given); 0 when the body names none, or names 0.
	MaxOutputTokens int64
	// Choices is the number of completions the provider generates: n for
	// chat, max(n, best_of) for completions, times the number of prompts in a
	// batched completions request; 1 for the Responses API and Messages,
	// which have no n. Always at least 1.
	Choices int64
	// Stream reports whether the response will be server-sent events.
	Stream bool
	// IncludeUsage reports whether a streamed response will end with usage:
	// stream_options.include_usage for chat and completions; always true for a
	// streamed Responses API request, whose final event carries usage, and
	// for a streamed Messages request (message_start and message_delta).
	IncludeUsage bool
}

// Cost returns the number of tokens to reserve for the request: the prompt
// plus the output budget for every choice. (The request itself, for
// requests-per-minute limits, is the caller's to count.) The output budget is the one the
// body names, or else 16 for completions (the API's own default),
// defaultMaxTokens for chat, the Responses API, Messages (whose max_tokens
// the API requires, but a body without one is still read) and unknown
// endpoints, and nothing for embeddings, which generate no output. The sum saturates at
// math.MaxInt64 instead of overflowing.
func (r Request) Cost(defaultMaxTokens int64) int64 {
	out := r.MaxOutputTokens
	if out <= 0 {
		switch r.Endpoint {
		case Embeddings:
			out = 0
		case Completions:
			out = defaultCompletionsMaxTokens
		default:
			out = max(defaultMaxTokens, 0)
		}
	}
	if r.Endpoint == Embeddings {
		out = 0
	}
	return satAdd(max(r.PromptTokens, 0), satMul(out, max(r.Choices, 1)))
}

// ParseRequest reads a request body for endpoint ep and estimates its prompt
// tokens. Fields the estimate does not use are ignored. The prompt estimate
// (see EstimateTextTokens for text) covers, per endpoint:
//
//   - chat completions: each message's content (a string, or parts: text and
//     refusal text, ImageTokens or LowDetailImageTokens per image, AudioTokens
//     per audio clip, FileTokens per file, the JSON size of unknown parts), name,
//     tool calls (name and arguments) and tool_call_id, a few tokens of framing
//     per message, and the JSON size of tools, functions and response_format;
//   - completions: prompt as a string, strings, token ids or lists of token
//     ids (counted exactly), plus suffix;
//   - embeddings: input in the same shapes;
//   - Responses API: instructions, and input as a string or items (messages
//     with string or part content, function calls and their outputs, reasoning
//     summaries; the JSON size of other items), plus the JSON size of tools and
//     text (the output format);
//   - Messages: system (a string or text blocks) and each message's content,
//     a string or blocks: text and thinking, MessagesImageTokens per image,
//     a document's text (FileTokens for a PDF, URL or file), a tool call's
//     name and the JSON size of its input, a tool result's content, and the
//     JSON size of other blocks; a few tokens of framing per message, and the
//     JSON size of tools plus Anthropic's tool-use system prompt when there
//     are any;
//   - unknown endpoints: the JSON size of the whole body.
//
// Conversation state kept by the provider (a Responses API
// previous_response_id, a stored prompt) is invisible here and not counted.
//
// Every error wraps ErrMalformed.
func ParseRequest(ep Endpoint, body []byte) (Request, error) {
	if !json.Valid(body) {
		return Request{}, fmt.Errorf("parse %s request: %w: invalid JSON", ep, ErrMalformed)
	}
	req, err := formatFor(ep).parseRequest(body)
	if err != nil {
		return Request{}, fmt.Errorf("parse %s request: %w", ep, err)
	}
	req.Endpoint = ep
	return req, nil
}

// requestState accumulates what a request parser has read. Parsers record a
// field error in err before failing a reader step, so that the caller can tell
// it from a syntax error.
type requestState struct {
	err error

	model        string
	stream       bool
	includeUsage bool
	maxTokens    int64 // the largest output budget named, 0 when none
	n, bestOf    int64 // 0 when unset
	prompts      int64 // completions: the number of prompts in a batch

	units int64 // prompt text, in quarter tokens
	fixed int64 // prompt tokens counted directly: framing, media, token ids
}

// fail records a field error and returns false, for use as a reader step.
func (st *requestState) fail(field, problem string) bool {
	if st.err == nil {
		st.err = fmt.Errorf("%w: %s %s", ErrMalformed, field, problem)
	}
	return false
}

// result turns the state into a Request, or an error when parsing failed.
func (st *requestState) result(ok bool, choices int64) (Request, error) {
	if !ok {
		if st.err != nil {
			return Request{}, st.err
		}
		return Request{}, fmt.Errorf("%w: invalid JSON", ErrMalformed)
	}
	return Request{
		Model:           st.model,
		PromptTokens:    satAdd(st.fixed, unitsToTokens(st.units)),
		MaxOutputTokens: st.maxTokens,
		Choices:         max(choices, 1),
		Stream:          st.stream,
		IncludeUsage:    st.includeUsage,
	}, nil
}

// object starts reading the request body's top-level object.
func (st *requestState) object(r *reader) bool {
	if r.next() != '{' {
		return st.fail("body", "must be a JSON object")
	}
	return true
}

// readModel reads the model field.
func (st *requestState) readModel(r *reader) bool {
	if r.null() {
		return true
	}
	s, ok := r.stringValue()
	if !ok {
		return st.fail(`"model"`, "must be a string")
	}
	if len(s) > MaxModelBytes {
		return st.fail(`"model"`, fmt.Sprintf("must be at most %d bytes long", MaxModelBytes))
	}
	st.model = s
	return true
}

// readMaxTokens reads an output budget field; the largest one read wins.
func (st *requestState) readMaxTokens(r *reader, key []byte) bool {
	if r.null() {
		return true
	}
	v, ok := r.integer()
	if !ok {
		return st.fail(quote(key), "must be an integer")
	}
	if v < 0 || v > MaxOutputTokens {
		return st.fail(quote(key), fmt.Sprintf("must be between 0 and %d", MaxOutputTokens))
	}
	st.maxTokens = max(st.maxTokens, v)
	return true
}

// readChoices reads n or best_of into dst.
func (st *requestState) readChoices(r *reader, key []byte, dst *int64) bool {
	if r.null() {
		return true
	}
	v, ok := r.integer()
	if !ok {
		return st.fail(quote(key), "must be an integer")
	}
	if v < 1 || v > MaxChoices {
		return st.fail(quote(key), fmt.Sprintf("must be between 1 and %d", MaxChoices))
	}
	*dst = v
	return true
}

// readStream reads the stream flag.
func (st *requestState) readStream(r *reader) bool {
	if r.null() {
		return true
	}
	v, ok := r.boolean()
	if !ok {
		return st.fail(`"stream"`, "must be a boolean")
	}
	st.stream = v
	return true
}

// readStreamOptions reads stream_options.include_usage.
func (st *requestState) readStreamOptions(r *reader) bool {
	if r.null() {
		return true
	}
	if r.next() != '{' {
		return st.fail(`"stream_options"`, "must be an object")
	}
	return r.object(func(key []byte) bool {
		if string(key) != "include_usage" || r.null() {
			return r.skip()
		}
		v, ok := r.boolean()
		if !ok {
			return st.fail(`"stream_options.include_usage"`, "must be a boolean")
		}
		st.includeUsage = v
		return true
	})
}

// readText adds a string field's text to the prompt.
func (st *requestState) readText(r *reader, field string) bool {
	if r.null() {
		return true
	}
	raw, ok := r.rawString()
	if !ok {
		return st.fail(field, "must be a string")
	}
	st.units += jsonStringUnits(raw)
	return true
}

// readJSONSize adds the JSON text of a container value to the prompt: tool
// definitions and output schemas reach the model in a form about that size.
// want is '{' or '[', the kind of container the field must hold.
func (st *requestState) readJSONSize(r *reader, key []byte, want byte) bool {
	if r.null() {
		return true
	}
	if r.next() != want {
		if want == '[' {
			return st.fail(quote(key), "must be an array")
		}
		return st.fail(quote(key), "must be an object")
	}
	start := r.i
	if !r.skip() {
		return false
	}
	st.units += textUnits(r.b[start:r.i])
	return true
}

// readPromptInput reads a completions prompt or embeddings input: a string,
// an array of strings, an array of token ids, or an array of arrays of token
// ids. It returns the number of prompts (1 for a single one).
func (st *requestState) readPromptInput(r *reader, key []byte) (prompts int64, ok bool) {
	switch r.next() {
	case 'n':
		return 0, r.null()
	case '"':
		raw, _ := r.rawString()
		st.units += jsonStringUnits(raw)
		return 1, true
	case '[':
	default:
		return 0, st.fail(quote(key), "must be a string, an array of strings, or token ids")
	}
	// kind is the kind of the first element; the others must match it.
	var kind byte
	var count int64
	ok = r.array(func() bool {
		c := r.next()
		if c == '-' || c >= '0' && c <= '9' {
			c = '0'
		}
		if kind == 0 {
			kind = c
		}
		if c != kind {
			return st.fail(quote(key), "must not mix strings, token ids and token id lists")
		}
		count++
		switch c {
		case '"':
			raw, _ := r.rawString()
			st.units += jsonStringUnits(raw)
			return true
		case '0':
			st.fixed++
			_, ok := r.number()
			return ok
		case '[':
			return r.array(func() bool {
				if _, ok := r.number(); !ok {
					return st.fail(quote(key), "must hold numbers in its token id lists")
				}
				st.fixed++
				return true
			})
		default:
			return st.fail(quote(key), "must be a string, an array of strings, or token ids")
		}
	})
	switch kind {
	case 0:
		return 0, ok // an empty array
	case '0':
		return 1, ok // one prompt of token ids
	default:
		return count, ok
	}
}

// readContent reads message content: a string or an array of parts.
func (st *requestState) readContent(r *reader, field string) bool {
	switch r.next() {
	case 'n':
		return r.null()
	case '"':
		raw, _ := r.rawString()
		st.units += jsonStringUnits(raw)
		return true
	case '[':
		return r.array(func() bool { return st.readPart(r, field) })
	default:
		return st.fail(field, "must be a string or an array of parts")
	}
}

// readPart reads one content part of a chat message or Responses API item.
func (st *requestState) readPart(r *reader, field string) bool {
	if r.next() != '{' {
		return st.fail(field+"[]", "must be an object")
	}
	start := r.i
	var typ, text []byte
	lowDetail := false
	ok := r.object(func(key []byte) bool {
		switch string(key) {
		case "type":
			s, ok := r.rawString()
			if !ok {
				return st.fail(field+`[].type`, "must be a string")
			}
			typ = s
			return true
		case "text", "refusal":
			if r.null() {
				return true
			}
			s, ok := r.rawString()
			if !ok {
				return st.fail(field+"[]."+string(key), "must be a string")
			}
			text = s
			return true
		case "detail": // Responses API input_image
			s, ok := r.rawString()
			if ok && string(s) == "low" {
				lowDetail = true
			}
			return ok || r.skip()
		case "image_url": // chat: {"url": ..., "detail": ...}; Responses: a URL string
			if r.next() != '{' {
				return r.skip()
			}
			return r.object(func(key []byte) bool {
				if string(key) != "detail" {
					return r.skip()
				}
				s, ok := r.rawString()
				if ok && string(s) == "low" {
					lowDetail = true
				}
				return ok || r.skip()
			})
		default:
			return r.skip()
		}
	})
	if !ok {
		return false
	}
	switch string(typ) {
	case "text", "input_text", "output_text", "refusal", "":
		st.units += jsonStringUnits(text)
	case "image_url", "input_image":
		if lowDetail {
			st.fixed += LowDetailImageTokens
		} else {
			st.fixed += ImageTokens
		}
	case "input_audio", "audio":
		st.fixed += AudioTokens
	case "file", "input_file":
		st.fixed += FileTokens
	default:
		st.units += textUnits(r.b[start:r.i])
	}
	return true
}

// readFunctionCall reads a {"name", "arguments"} object (a chat tool call's
// function, or a legacy function_call).
func (st *requestState) readFunctionCall(r *reader, field string) bool {
	if r.null() {
		return true
	}
	if r.next() != '{' {
		return st.fail(field, "must be an object")
	}
	return r.object(func(key []byte) bool {
		switch string(key) {
		case "name", "arguments":
			if r.null() {
				return true
			}
			raw, ok := r.rawString()
			if !ok {
				return st.fail(field, "must hold a string name and arguments")
			}
			st.units += jsonStringUnits(raw)
			return true
		default:
			return r.skip()
		}
	})
}

// quote returns key in double quotes, for error messages.
func quote(key []byte) string { return `"` + string(key) + `"` }

// satAdd returns a+b for non-negative operands, saturating at math.MaxInt64.
func satAdd(a, b int64) int64 {
	if a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}

// satMul returns a*b for non-negative operands, saturating at math.MaxInt64.
func satMul(a, b int64) int64 {
	if a == 0 || b == 0 {
		return 0
	}
	if a > math.MaxInt64/b {
		return math.MaxInt64
	}
	return a * b
}
