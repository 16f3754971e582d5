package usage

import (
	"bytes"
	"encoding/json"
)

// messagesToolPromptTokens is charged once for a Messages request that
// defines tools: Anthropic adds a tool-use system prompt of its own, 346
// tokens for current models with tool_choice auto or none (fewer for any or
// a named tool), on top of the tool definitions themselves.
const messagesToolPromptTokens = 346

// messagesFormat reads the Anthropic Messages API (/v1/messages).
//
// A response reports usage as input_tokens, cache_creation_input_tokens,
// cache_read_input_tokens and output_tokens; the three input counts are
// apart, and their sum is the input (see Usage.InputTokens). A stream
// reports it in two steps: message_start carries a message whose usage has
// the input counts (and an output_tokens of 1 or so, a placeholder that is
// not read), and message_delta carries the cumulative output_tokens and, in
// newer API versions, the input counts again, which then replace the earlier
// ones (server tools can make the input grow during a response). Generated
// text arrives in content_block_start (a tool's name) and content_block_delta
// events (text_delta, thinking_delta and input_json_delta), counted for the
// estimate when usage is missing. message_stop ends the stream; an error
// event (overloaded_error, say) ends it too, early. ping and unknown events
// are ignored.
type messagesFormat struct{}

// parseRequest implements format.
func (messagesFormat) parseRequest(body []byte) (Request, error) {
	st := requestState{fixed: replyPrimingTokens}
	r := reader{b: body}
	ok := st.object(&r) && r.object(func(key []byte) bool {
		switch string(key) {
		case "model":
			return st.readModel(&r)
		case "system":
			return st.readSystem(&r)
		case "messages":
			return st.readMessagesTurns(&r)
		case "max_tokens":
			return st.readMaxTokens(&r, key)
		case "stream":
			return st.readStream(&r)
		case "tools":
			return st.readMessagesTools(&r)
		default:
			return r.skip()
		}
	})
	// A streamed Message always reports usage (message_start and
	// message_delta); Anthropic has no n.
	st.includeUsage = st.stream
	return st.result(ok, 1)
}

// readSystem reads a Messages system prompt: a string or an array of text
// blocks.
func (st *requestState) readSystem(r *reader) bool {
	switch r.next() {
	case 'n':
		return r.null()
	case '"':
		st.fixed += messageOverheadTokens
		raw, _ := r.rawString()
		st.units += jsonStringUnits(raw)
		return true
	case '[':
		st.fixed += messageOverheadTokens
		return r.array(func() bool { return st.readBlock(r, `"system"`) })
	default:
		return st.fail(`"system"`, "must be a string or an array of text blocks")
	}
}

// readMessagesTurns reads a Messages request's messages.
func (st *requestState) readMessagesTurns(r *reader) bool {
	if r.null() {
		return true
	}
	if r.next() != '[' {
		return st.fail(`"messages"`, "must be an array")
	}
	return r.array(func() bool {
		if r.next() != '{' {
			return st.fail(`"messages[]"`, "must be an object")
		}
		st.fixed += messageOverheadTokens
		return r.object(func(key []byte) bool {
			if string(key) != "content" {
				return r.skip()
			}
			return st.readBlocks(r, `"messages[].content"`)
		})
	})
}

// readMessagesTools reads the tool definitions, charged at their JSON size
// plus, when there are any, Anthropic's tool-use system prompt.
func (st *requestState) readMessagesTools(r *reader) bool {
	if r.null() {
		return true
	}
	if r.next() != '[' {
		return st.fail(`"tools"`, "must be an array")
	}
	start := r.i
	if !r.skip() {
		return false
	}
	st.units += textUnits(r.b[start:r.i])
	if inner := (reader{b: r.b[:r.i], i: start + 1}); inner.next() != ']' {
		st.fixed += messagesToolPromptTokens
	}
	return true
}

// readBlocks reads content: a string or an array of content blocks.
func (st *requestState) readBlocks(r *reader, field string) bool {
	switch r.next() {
	case 'n':
		return r.null()
	case '"':
		raw, _ := r.rawString()
		st.units += jsonStringUnits(raw)
		return true
	case '[':
		return r.array(func() bool { return st.readBlock(r, field) })
	default:
		return st.fail(field, "must be a string or an array of content blocks")
	}
}

// readBlock reads one content block. Text counts as text: text, thinking, a
// tool's name and input (its JSON size), a tool result's content (blocks in
// turn), a document's title and context, and a search result's content. An
// image costs MessagesImageTokens; a document its text when its source is
// text or content blocks, and FileTokens when it is a PDF, a URL or a file id.
// A block of any other type (redacted thinking, server tool results, ...)
// counts its JSON size. Members other than the type are read leniently, since
// their shape depends on the type.
func (st *requestState) readBlock(r *reader, field string) bool {
	if r.next() != '{' {
		return st.fail(field+"[]", "must be an object")
	}
	start := r.i
	units, fixed := st.units, st.fixed
	var typ, srcType, srcData []byte
	ok := r.object(func(key []byte) bool {
		switch string(key) {
		case "type":
			s, ok := r.rawString()
			if !ok {
				return st.fail(field+"[].type", "must be a string")
			}
			typ = s
			return true
		case "text", "thinking", "name", "tool_use_id", "title", "context":
			u, ok := r.stringUnits()
			st.units += u
			return ok
		case "input":
			if r.null() {
				return true
			}
			begin := r.i
			if !r.skip() {
				return false
			}
			st.units += textUnits(r.b[begin:r.i])
			return true
		case "content":
			if c := r.next(); c != '"' && c != '[' {
				return r.skip()
			}
			return st.readBlocks(r, field+"[].content")
		case "source":
			if r.next() != '{' {
				return r.skip()
			}
			return r.object(func(key []byte) bool {
				switch string(key) {
				case "type", "data":
					s, ok := r.rawString()
					if !ok {
						return r.skip()
					}
					if string(key) == "type" {
						srcType = s
					} else {
						srcData = s
					}
					return true
				case "content":
					if c := r.next(); c != '"' && c != '[' {
						return r.skip()
					}
					return st.readBlocks(r, field+"[].source.content")
				default:
					return r.skip()
				}
			})
		default:
			return r.skip()
		}
	})
	if !ok {
		return false
	}
	switch string(typ) {
	case "text", "thinking", "tool_use", "server_tool_use", "tool_result", "search_result":
	case "image":
		st.units, st.fixed = units, fixed+MessagesImageTokens
	case "document":
		switch string(srcType) {
		case "text":
			st.units += jsonStringUnits(srcData)
		case "content":
		default:
			st.fixed += FileTokens
		}
	default:
		st.units, st.fixed = units+textUnits(r.b[start:r.i]), fixed
	}
	return true
}

// readBody implements format: a message object.
func (messagesFormat) readBody(body []byte) (reading, bool) {
	var rd reading
	r := reader{b: body}
	ok := r.next() == '{' && readMessageObject(&r, &rd)
	rd.done = ok
	return rd, ok
}

// readMessageObject reads a message object: the generated text of its
// content, and its usage, which is whole (a count it does not name is 0).
func readMessageObject(r *reader, rd *reading) bool {
	return r.object(func(key []byte) bool {
		switch string(key) {
		case "content":
			if r.next() != '[' {
				return r.skip()
			}
			return r.array(func() bool { return readBlockText(r, &rd.units) })
		case "usage":
			if r.next() != '{' {
				return r.skip()
			}
			u, _, ok := readMessagesUsage(r)
			if ok {
				rd.usage, rd.fields = u, allFields
			}
			return ok
		default:
			return r.skip()
		}
	})
}

// readBlockText adds the generated text of a content block, or of a
// content_block_delta's delta, to units: text, thinking, partial_json, a
// tool's name, and a tool's input when it is not empty (a streamed tool_use
// starts with "input": {} and sends its input as partial_json). Other
// members, and values of other kinds, count nothing.
func readBlockText(r *reader, units *int64) bool {
	if r.next() != '{' {
		return r.skip()
	}
	return r.object(func(key []byte) bool {
		switch string(key) {
		case "text", "thinking", "partial_json", "name":
			u, ok := r.stringUnits()
			*units += u
			return ok
		case "input":
			if r.next() != '{' {
				return r.skip()
			}
			start := r.i
			if !r.skip() {
				return false
			}
			if inner := (reader{b: r.b[:r.i], i: start + 1}); inner.next() != '}' {
				*units += textUnits(r.b[start:r.i])
			}
			return true
		default:
			return r.skip()
		}
	})
}

// readMessagesUsage reads an Anthropic usage object; present names the
// counts it holds as non-negative integers (others are ignored).
func readMessagesUsage(r *reader) (u tokenUsage, present usageFields, ok bool) {
	u.split = true
	ok = r.object(func(key []byte) bool {
		var dst *int64
		var field usageFields
		switch string(key) {
		case "input_tokens":
			dst, field = &u.input, fieldInput
		case "output_tokens":
			dst, field = &u.output, fieldOutput
		case "cache_read_input_tokens":
			dst, field = &u.cached, fieldCached
		case "cache_creation_input_tokens":
			dst, field = &u.cacheWrite, fieldCacheWrite
		default:
			return r.skip()
		}
		set, ok := readCountSet(r, dst)
		if set {
			present |= field
		}
		return ok
	})
	return u, present, ok
}

// readEvent implements format. The event type is the data's type member, or
// else the SSE event name.
func (messagesFormat) readEvent(ev Event) (reading, bool) {
	if !json.Valid(ev.Data) {
		return reading{}, false
	}
	var (
		typ     []byte
		msg     reading // message_start's message
		usage   tokenUsage
		present usageFields
		units   int64 // content_block's or delta's text
	)
	r := reader{b: ev.Data}
	ok := r.next() == '{' && r.object(func(key []byte) bool {
		switch string(key) {
		case "type":
			s, ok := r.rawString()
			if !ok {
				return r.skip()
			}
			typ = s
			return true
		case "message":
			if r.next() != '{' {
				return r.skip()
			}
			return readMessageObject(&r, &msg)
		case "usage":
			if r.next() != '{' {
				return r.skip()
			}
			u, p, ok := readMessagesUsage(&r)
			usage, present = u, p
			return ok
		case "delta", "content_block":
			return readBlockText(&r, &units)
		default:
			return r.skip()
		}
	})
	if !ok {
		return reading{}, false
	}
	var kind messagesEvent
	switch {
	case typ == nil:
		kind = classifyMessagesEvent(ev.Name)
	case bytes.IndexByte(typ, '\\') >= 0:
		kind = classifyMessagesEvent(decodedString(typ))
	default:
		kind = classifyMessagesEvent(typ)
	}
	var rd reading
	switch kind {
	case messageStart:
		rd.units = msg.units
		if msg.fields != 0 {
			// The input, whole; its output_tokens is a placeholder.
			rd.usage, rd.fields = msg.usage, inputFields
		}
	case messageDelta:
		rd.usage, rd.fields = usage, present
	case contentBlock:
		rd.units = units
	case messageStop:
		rd.done = true
	case streamError:
		rd.streamError = true
	}
	return rd, true
}

// messagesEvent is the kind of a Messages stream event, as far as counting
// is concerned.
type messagesEvent uint8

// The kinds of Messages stream events.
const (
	otherEvent   messagesEvent = iota // ping, content_block_stop, unknown types
	messageStart                      // message_start
	messageDelta                      // message_delta
	contentBlock                      // content_block_start, content_block_delta
	messageStop                       // message_stop
	streamError                       // error
)

// classifyMessagesEvent returns the kind of an event type.
func classifyMessagesEvent[T string | []byte](typ T) messagesEvent {
	switch string(typ) {
	case "message_start":
		return messageStart
	case "message_delta":
		return messageDelta
	case "content_block_start", "content_block_delta":
		return contentBlock
	case "message_stop":
		return messageStop
	case "error":
		return streamError
	default:
		return otherEvent
	}
}

// decodedString decodes a raw JSON string body that holds escapes.
func decodedString(raw []byte) string {
	var s string
	if json.Unmarshal(append(append([]byte{'"'}, raw...), '"'), &s) != nil {
		return string(raw)
	}
	return s
}

// tailUsage implements format: the message's usage member, which Anthropic
// writes after the content.
func (messagesFormat) tailUsage(tail []byte) (tokenUsage, bool) {
	return findTailUsage(tail, func(r *reader) (tokenUsage, bool) {
		u, _, ok := readMessagesUsage(r)
		return u, ok
	})
}

// generates implements format.
func (messagesFormat) generates() bool { return true }
