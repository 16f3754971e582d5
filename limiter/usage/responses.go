package usage

import "encoding/json"

// responsesFormat reads the OpenAI Responses API (/v1/responses).
type responsesFormat struct{}

// parseRequest implements format.
func (responsesFormat) parseRequest(body []byte) (Request, error) {
	st := requestState{fixed: replyPrimingTokens}
	r := reader{b: body}
	ok := st.object(&r) && r.object(func(key []byte) bool {
		switch string(key) {
		case "model":
			return st.readModel(&r)
		case "instructions":
			if r.next() == '"' {
				st.fixed += messageOverheadTokens
			}
			return st.readText(&r, `"instructions"`)
		case "input":
			return st.readResponsesInput(&r)
		case "max_output_tokens":
			return st.readMaxTokens(&r, key)
		case "stream":
			return st.readStream(&r)
		case "tools":
			return st.readJSONSize(&r, key, '[')
		case "text":
			return st.readJSONSize(&r, key, '{')
		default:
			return r.skip()
		}
	})
	// A streamed response always ends with response.completed (or
	// .incomplete, .failed), which carries usage.
	st.includeUsage = st.stream
	return st.result(ok, 1)
}

// readResponsesInput reads a Responses API input: a string, or an array of
// items.
func (st *requestState) readResponsesInput(r *reader) bool {
	switch r.next() {
	case 'n':
		return r.null()
	case '"':
		st.fixed += messageOverheadTokens
		raw, _ := r.rawString()
		st.units += jsonStringUnits(raw)
		return true
	case '[':
		return r.array(func() bool { return st.readInputItem(r) })
	default:
		return st.fail(`"input"`, "must be a string or an array of items")
	}
}

// readInputItem reads one Responses API input item. Messages (with or without
// "type": "message"), function and custom tool calls and their outputs, and
// reasoning items count their text; an item of any other type counts its JSON
// size. Members other than message content are read leniently, since their
// shape depends on the item's type.
func (st *requestState) readInputItem(r *reader) bool {
	if r.next() != '{' {
		return st.fail(`"input[]"`, "must be an object")
	}
	start := r.i
	units, fixed := st.units, st.fixed
	var typ []byte
	ok := r.object(func(key []byte) bool {
		switch string(key) {
		case "type":
			s, ok := r.rawString()
			if !ok {
				return st.fail(`"input[].type"`, "must be a string")
			}
			typ = s
			return true
		case "content", "output":
			if c := r.next(); c != '"' && c != '[' {
				return r.skip()
			}
			return st.readContent(r, `"input[].content"`)
		case "name", "arguments", "input":
			u, ok := r.stringUnits()
			st.units += u
			return ok
		case "summary":
			return readPartsText(r, &st.units)
		default:
			return r.skip()
		}
	})
	if !ok {
		return false
	}
	st.fixed += messageOverheadTokens
	switch string(typ) {
	case "", "message", "function_call", "function_call_output", "custom_tool_call",
		"custom_tool_call_output", "reasoning", "item_reference":
	default:
		st.units, st.fixed = units+textUnits(r.b[start:r.i]), fixed+messageOverheadTokens
	}
	return true
}

// readBody implements format: a response object with usage and output items.
func (responsesFormat) readBody(body []byte) (reading, bool) {
	var rd reading
	r := reader{b: body}
	ok := r.next() == '{' && r.object(func(key []byte) bool {
		switch string(key) {
		case "usage":
			return readUsageField(&r, &rd)
		case "output":
			return readOutputItems(&r, &rd.units)
		default:
			return r.skip()
		}
	})
	rd.done = ok
	return rd, ok
}

// readOutputItems adds the generated text of a Responses API output array to
// units: message text and refusals, tool call arguments and inputs, reasoning
// summaries and text.
func readOutputItems(r *reader, units *int64) bool {
	if r.next() != '[' {
		return r.skip()
	}
	return r.array(func() bool {
		if r.next() != '{' {
			return r.skip()
		}
		return r.object(func(key []byte) bool {
			switch string(key) {
			case "content", "summary":
				return readPartsText(r, units)
			case "arguments", "input":
				u, ok := r.stringUnits()
				*units += u
				return ok
			default:
				return r.skip()
			}
		})
	})
}

// readEvent implements format. Text arrives in the delta of the delta events
// (responsesTextDelta); usage in response.usage of the final event, which is
// response.completed, response.incomplete or response.failed. The event type
// is taken from the data's type member, or else from the SSE event name.
func (responsesFormat) readEvent(ev Event) (reading, bool) {
	var rd reading
	if isDone(ev.Data) {
		rd.done = true
		return rd, true
	}
	if !json.Valid(ev.Data) {
		return rd, false
	}
	var typ, delta []byte
	r := reader{b: ev.Data}
	ok := r.next() == '{' && r.object(func(key []byte) bool {
		switch string(key) {
		case "type":
			if s, ok := r.rawString(); ok {
				typ = s
				return true
			}
			return r.skip()
		case "delta":
			if s, ok := r.rawString(); ok {
				delta = s
				return true
			}
			return r.skip()
		case "response":
			if r.next() != '{' {
				return r.skip()
			}
			return r.object(func(key []byte) bool {
				if string(key) == "usage" {
					return readUsageField(&r, &rd)
				}
				return r.skip()
			})
		default:
			return r.skip()
		}
	})
	if !ok {
		return reading{}, false
	}
	if typ != nil {
		classifyResponsesEvent(typ, delta, &rd)
	} else {
		classifyResponsesEvent(ev.Name, delta, &rd)
	}
	return rd, true
}

// classifyResponsesEvent counts the delta of a text delta event and marks the
// final events done.
func classifyResponsesEvent[T string | []byte](typ T, delta []byte, rd *reading) {
	switch string(typ) {
	case "response.completed", "response.incomplete", "response.failed":
		rd.done = true
	case "response.output_text.delta",
		"response.refusal.delta",
		"response.function_call_arguments.delta",
		"response.custom_tool_call_input.delta",
		"response.reasoning_text.delta",
		"response.reasoning_summary_text.delta":
		rd.units = jsonStringUnits(delta)
	default:
		// Other tools' argument deltas, such as response.mcp_call_arguments.delta.
		const prefix, suffix = "response.", "_arguments.delta"
		if len(typ) > len(prefix)+len(suffix) && string(typ[:len(prefix)]) == prefix &&
			string(typ[len(typ)-len(suffix):]) == suffix {
			rd.units = jsonStringUnits(delta)
		}
	}
}

// tailUsage implements format.
func (responsesFormat) tailUsage(tail []byte) (tokenUsage, bool) { return openAITailUsage(tail) }

// generates implements format.
func (responsesFormat) generates() bool { return true }
