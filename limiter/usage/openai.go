package usage

import "encoding/json"

// The OpenAI family of formats. Chat completions, completions and unknown
// OpenAI-compatible endpoints share choicesResponse for their responses;
// embeddings and the Responses API have their own.

// chatFormat reads chat completions (/v1/chat/completions).
type chatFormat struct{ choicesResponse }

// parseRequest implements format.
func (chatFormat) parseRequest(body []byte) (Request, error) {
	st := requestState{fixed: replyPrimingTokens}
	r := reader{b: body}
	ok := st.object(&r) && r.object(func(key []byte) bool {
		switch string(key) {
		case "model":
			return st.readModel(&r)
		case "messages":
			return st.readMessages(&r)
		case "max_tokens", "max_completion_tokens":
			return st.readMaxTokens(&r, key)
		case "n":
			return st.readChoices(&r, key, &st.n)
		case "stream":
			return st.readStream(&r)
		case "stream_options":
			return st.readStreamOptions(&r)
		case "tools", "functions":
			return st.readJSONSize(&r, key, '[')
		case "response_format":
			return st.readJSONSize(&r, key, '{')
		default:
			return r.skip()
		}
	})
	return st.result(ok, st.n)
}

// readMessages reads a chat request's messages.
func (st *requestState) readMessages(r *reader) bool {
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
			switch string(key) {
			case "content":
				return st.readContent(r, `"messages[].content"`)
			case "name":
				return st.readText(r, `"messages[].name"`)
			case "refusal":
				return st.readText(r, `"messages[].refusal"`)
			case "tool_call_id":
				return st.readText(r, `"messages[].tool_call_id"`)
			case "function_call":
				return st.readFunctionCall(r, `"messages[].function_call"`)
			case "tool_calls":
				return st.readToolCalls(r)
			default:
				return r.skip()
			}
		})
	})
}

// readToolCalls reads an assistant message's tool_calls.
func (st *requestState) readToolCalls(r *reader) bool {
	if r.null() {
		return true
	}
	if r.next() != '[' {
		return st.fail(`"messages[].tool_calls"`, "must be an array")
	}
	return r.array(func() bool {
		if r.next() != '{' {
			return st.fail(`"messages[].tool_calls[]"`, "must be an object")
		}
		return r.object(func(key []byte) bool {
			if string(key) != "function" {
				return r.skip()
			}
			return st.readFunctionCall(r, `"messages[].tool_calls[].function"`)
		})
	})
}

// completionsFormat reads legacy completions (/v1/completions).
type completionsFormat struct{ choicesResponse }

// parseRequest implements format.
func (completionsFormat) parseRequest(body []byte) (Request, error) {
	var st requestState
	r := reader{b: body}
	ok := st.object(&r) && r.object(func(key []byte) bool {
		switch string(key) {
		case "model":
			return st.readModel(&r)
		case "prompt":
			n, ok := st.readPromptInput(&r, key)
			st.prompts = n
			return ok
		case "suffix":
			return st.readText(&r, `"suffix"`)
		case "max_tokens":
			return st.readMaxTokens(&r, key)
		case "n":
			return st.readChoices(&r, key, &st.n)
		case "best_of":
			return st.readChoices(&r, key, &st.bestOf)
		case "stream":
			return st.readStream(&r)
		case "stream_options":
			return st.readStreamOptions(&r)
		default:
			return r.skip()
		}
	})
	// Each prompt of a batch gets its own choices; best_of are generated
	// server-side and charged even though only n come back.
	choices := satMul(max(st.n, st.bestOf, 1), max(st.prompts, 1))
	return st.result(ok, choices)
}

// embeddingsFormat reads embeddings (/v1/embeddings).
type embeddingsFormat struct{}

// parseRequest implements format.
func (embeddingsFormat) parseRequest(body []byte) (Request, error) {
	var st requestState
	r := reader{b: body}
	ok := st.object(&r) && r.object(func(key []byte) bool {
		switch string(key) {
		case "model":
			return st.readModel(&r)
		case "input":
			_, ok := st.readPromptInput(&r, key)
			return ok
		default:
			return r.skip()
		}
	})
	return st.result(ok, 1)
}

// readBody implements format: embeddings report prompt_tokens only.
func (embeddingsFormat) readBody(body []byte) (reading, bool) {
	return readWholeBody(body, readUsageOnly)
}

// readEvent implements format. Embeddings are not streamed; an event is read
// for usage alone.
func (embeddingsFormat) readEvent(ev Event) (reading, bool) {
	return readChunkEvent(ev, readUsageOnly)
}

// readWholeBody reads a complete JSON body with read; a body that reads is
// the whole answer, so it is done.
func readWholeBody(body []byte, read func([]byte) (reading, bool)) (reading, bool) {
	rd, ok := read(body)
	rd.done = ok
	return rd, ok
}

// readChunkEvent reads an OpenAI-style stream event: "[DONE]" ends the
// stream, and any other data is one JSON object read with read.
func readChunkEvent(ev Event, read func([]byte) (reading, bool)) (reading, bool) {
	if isDone(ev.Data) {
		return reading{done: true}, true
	}
	if !json.Valid(ev.Data) {
		return reading{}, false
	}
	return read(ev.Data)
}

// tailUsage implements format.
func (embeddingsFormat) tailUsage(tail []byte) (tokenUsage, bool) { return openAITailUsage(tail) }

// generates implements format: embeddings generate no output tokens.
func (embeddingsFormat) generates() bool { return false }

// readUsageOnly reads the top-level usage of a JSON object.
func readUsageOnly(data []byte) (reading, bool) {
	var rd reading
	r := reader{b: data}
	ok := r.next() == '{' && r.object(func(key []byte) bool {
		if string(key) == "usage" {
			return readUsageField(&r, &rd)
		}
		return r.skip()
	})
	return rd, ok
}

// genericFormat reads bodies of unknown endpoints as OpenAI-compatible JSON.
type genericFormat struct{ choicesResponse }

// parseRequest implements format: the common fields are read, and the whole
// body's JSON size stands for the prompt.
func (genericFormat) parseRequest(body []byte) (Request, error) {
	var st requestState
	r := reader{b: body}
	ok := st.object(&r) && r.object(func(key []byte) bool {
		switch string(key) {
		case "model":
			return st.readModel(&r)
		case "max_tokens", "max_completion_tokens", "max_output_tokens":
			return st.readMaxTokens(&r, key)
		case "n":
			return st.readChoices(&r, key, &st.n)
		case "stream":
			return st.readStream(&r)
		case "stream_options":
			return st.readStreamOptions(&r)
		default:
			return r.skip()
		}
	})
	st.units = textUnits(body)
	return st.result(ok, st.n)
}

// choicesResponse reads responses made of choices, as chat completions and
// completions return them, whole or as chunks: generated text in
// choices[].message, choices[].delta or choices[].text, and usage at the top
// level or, at Groq, under x_groq.
type choicesResponse struct{}

// readBody implements format.
func (choicesResponse) readBody(body []byte) (reading, bool) {
	return readWholeBody(body, readChoicesObject)
}

// readEvent implements format.
func (choicesResponse) readEvent(ev Event) (reading, bool) {
	return readChunkEvent(ev, readChoicesObject)
}

// tailUsage implements format.
func (choicesResponse) tailUsage(tail []byte) (tokenUsage, bool) { return openAITailUsage(tail) }

// generates implements format.
func (choicesResponse) generates() bool { return true }

// readChoicesObject reads a chat completion, a completion, or a chunk of
// either.
func readChoicesObject(data []byte) (reading, bool) {
	var rd reading
	r := reader{b: data}
	ok := r.next() == '{' && r.object(func(key []byte) bool {
		switch string(key) {
		case "choices":
			return readChoicesText(&r, &rd.units)
		case "usage":
			return readUsageField(&r, &rd)
		case "x_groq":
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
	return rd, ok
}

// readChoicesText adds the generated text of a choices array to units.
// Members of unexpected types are skipped.
func readChoicesText(r *reader, units *int64) bool {
	if r.next() != '[' {
		return r.skip()
	}
	return r.array(func() bool {
		if r.next() != '{' {
			return r.skip()
		}
		return r.object(func(key []byte) bool {
			switch string(key) {
			case "message", "delta":
				return readMessageText(r, units)
			case "text":
				u, ok := r.stringUnits()
				*units += u
				return ok
			default:
				return r.skip()
			}
		})
	})
}

// readMessageText adds the generated text of a chat message or delta to units:
// content (a string or text parts), refusal, reasoning (reasoning_content at
// DeepSeek, reasoning at Groq and OpenRouter), and tool and function call names
// and arguments.
func readMessageText(r *reader, units *int64) bool {
	if r.next() != '{' {
		return r.skip()
	}
	return r.object(func(key []byte) bool {
		switch string(key) {
		case "content":
			if r.next() == '[' {
				return readPartsText(r, units)
			}
			u, ok := r.stringUnits()
			*units += u
			return ok
		case "refusal", "reasoning_content", "reasoning":
			u, ok := r.stringUnits()
			*units += u
			return ok
		case "function_call":
			return readCallText(r, units)
		case "tool_calls":
			if r.next() != '[' {
				return r.skip()
			}
			return r.array(func() bool {
				if r.next() != '{' {
					return r.skip()
				}
				return r.object(func(key []byte) bool {
					if string(key) == "function" {
						return readCallText(r, units)
					}
					return r.skip()
				})
			})
		default:
			return r.skip()
		}
	})
}

// readCallText adds a function call's name and arguments to units.
func readCallText(r *reader, units *int64) bool {
	if r.next() != '{' {
		return r.skip()
	}
	return r.object(func(key []byte) bool {
		switch string(key) {
		case "name", "arguments", "input":
			u, ok := r.stringUnits()
			*units += u
			return ok
		default:
			return r.skip()
		}
	})
}

// readPartsText adds the text and refusal members of an array of content
// parts to units.
func readPartsText(r *reader, units *int64) bool {
	if r.next() != '[' {
		return r.skip()
	}
	return r.array(func() bool {
		if r.next() != '{' {
			return r.skip()
		}
		return r.object(func(key []byte) bool {
			switch string(key) {
			case "text", "refusal":
				u, ok := r.stringUnits()
				*units += u
				return ok
			default:
				return r.skip()
			}
		})
	})
}
