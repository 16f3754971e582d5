package usage

import (
	"bytes"
	"encoding/json"
	"strings"
)

// DefaultMaxBodyBytes is the bound on a buffered JSON response body when
// CounterOptions.MaxBodyBytes is zero.
const DefaultMaxBodyBytes = 8 << 20

// tailBytes is how much of the end of an over-long JSON body a Counter keeps
// to look for usage in (no more than MaxBodyBytes).
const tailBytes = 64 << 10

// Usage is the token usage of one response.
type Usage struct {
	// InputTokens is the number of prompt tokens, cached ones included. For
	// Anthropic Messages it is input_tokens + cache_creation_input_tokens +
	// cache_read_input_tokens: Anthropic reports the three parts of the
	// prompt apart, and all of them are prompt the provider processed, as the
	// request's estimate (which cannot know what the cache holds) counted
	// them.
	InputTokens int64
	// OutputTokens is the number of generated tokens, reasoning included.
	OutputTokens int64
	// CachedInputTokens is the part of InputTokens read from the provider's
	// prompt cache (OpenAI's cached_tokens, Anthropic's
	// cache_read_input_tokens).
	CachedInputTokens int64
	// Exact reports that the provider reported both the input and the
	// output. What it did not report is estimated: the input is the
	// request's estimate (CounterOptions.PromptTokens), the output is
	// estimated from the generated text seen. (An Anthropic stream cut off
	// before its message_delta has reported its input but not its output.)
	Exact bool
}

// CounterOptions configures a Counter. The zero value is usable.
type CounterOptions struct {
	// PromptTokens is the request's estimated prompt size (Request.
	// PromptTokens), reported as the input when the response carries no usage.
	PromptTokens int64
	// MaxEventBytes bounds one SSE event's data. Zero means
	// DefaultMaxEventBytes.
	MaxEventBytes int
	// MaxBodyBytes bounds the JSON body buffered for reading at Finish. Zero
	// means DefaultMaxBodyBytes.
	MaxBodyBytes int
}

// CounterStats describes what a Counter has seen, for metrics and logs.
type CounterStats struct {
	// Bytes is the number of body bytes written.
	Bytes int64
	// Events is the number of SSE events dispatched, "[DONE]" included.
	Events int64
	// MalformedEvents is the number of events whose data was not JSON of
	// the expected shape (nor the "[DONE]" sentinel); they are ignored.
	MalformedEvents int64
	// OversizedEvents is the number of events whose data exceeded
	// MaxEventBytes; they are ignored.
	OversizedEvents int64
	// Truncated reports that the stream ended in the middle of an event,
	// which was discarded. Set by Finish.
	Truncated bool
	// MalformedBody reports that a JSON body was not a JSON object of the
	// expected shape. Set by Finish.
	MalformedBody bool
	// OversizedBody reports that a JSON body exceeded MaxBodyBytes.
	OversizedBody bool
	// UsageSeen reports that the provider reported usage, all of it or part
	// (see Usage.Exact).
	UsageSeen bool
	// Done reports that the response was seen to the end: "[DONE]", a final
	// Responses API event (response.completed, .incomplete or .failed), an
	// Anthropic message_stop, or a JSON body read whole.
	Done bool
	// StreamError reports that the stream carried an error event (Anthropic
	// sends "event: error", an overloaded_error say, and ends the stream
	// there). Done stays false; the usage reported before the error stands,
	// and the rest is estimated.
	StreamError bool
}

// Counter accumulates the usage of one response body, fed chunk by chunk as
// the proxy streams it. A response of content type text/event-stream is read
// as server-sent events, each event as it completes; any other body is
// buffered up to MaxBodyBytes and read as JSON at Finish.
//
// Streamed usage may appear in several events (it is cumulative): the last one
// wins, count by count where an event reports only some (Anthropic's
// message_start reports the input, its message_delta the output and, in newer
// API versions, the input again). What no event reported, Finish estimates:
// the input from CounterOptions.PromptTokens, the output from the text deltas
// seen.
// A JSON body longer than MaxBodyBytes keeps only its last 64 KiB, where
// providers put usage; when none is found there, its output is estimated at
// one token per four body bytes (embeddings: none).
//
// Memory is bounded by MaxEventBytes for streams and by MaxBodyBytes for JSON
// bodies. A Counter is not safe for concurrent use.
type Counter struct {
	f      format
	sse    bool
	opts   CounterOptions
	parser SSEParser

	body     []byte // the JSON body, while it fits in MaxBodyBytes
	tail     []byte // the end of a JSON body that did not
	overflow bool

	units    int64 // generated text seen, in quarter tokens
	usage    tokenUsage
	reported usageFields // the counts of usage the provider reported
	stats    CounterStats
	finished bool
	result   Usage
}

// NewCounter returns a Counter for a response to a request to endpoint ep,
// with the response's content type.
func NewCounter(ep Endpoint, contentType string, opts CounterOptions) *Counter {
	if opts.MaxEventBytes <= 0 {
		opts.MaxEventBytes = DefaultMaxEventBytes
	}
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = DefaultMaxBodyBytes
	}
	return &Counter{
		f:      formatFor(ep),
		sse:    IsEventStream(contentType),
		opts:   opts,
		parser: SSEParser{MaxEventBytes: opts.MaxEventBytes},
	}
}

// IsEventStream reports whether a Content-Type header names text/event-stream.
func IsEventStream(contentType string) bool {
	mediaType, _, _ := strings.Cut(contentType, ";")
	return strings.EqualFold(strings.TrimSpace(mediaType), "text/event-stream")
}

// Write feeds the next chunk of the response body. It never fails; after
// Finish it does nothing. The chunk is not retained.
func (c *Counter) Write(chunk []byte) {
	if c.finished || len(chunk) == 0 {
		return
	}
	c.stats.Bytes += int64(len(chunk))
	if c.sse {
		c.parser.Feed(chunk, c.onEvent)
		return
	}
	c.bufferJSON(chunk)
}

// onEvent reads one SSE event.
func (c *Counter) onEvent(ev Event) {
	c.stats.Events++
	if ev.Truncated {
		c.stats.OversizedEvents++
		return
	}
	if len(bytes.TrimSpace(ev.Data)) == 0 {
		return
	}
	rd, ok := c.f.readEvent(ev)
	if !ok {
		c.stats.MalformedEvents++
		return
	}
	c.add(rd)
}

// add merges what a body or event contributed.
func (c *Counter) add(rd reading) {
	c.units = satAdd(c.units, rd.units)
	if rd.fields != 0 {
		c.usage.merge(rd.usage, rd.fields)
		c.reported |= rd.fields
		c.stats.UsageSeen = true
	}
	c.stats.Done = c.stats.Done || rd.done
	c.stats.StreamError = c.stats.StreamError || rd.streamError
}

// bufferJSON buffers a chunk of a JSON body: all of it up to MaxBodyBytes,
// and past that only the tail.
func (c *Counter) bufferJSON(chunk []byte) {
	keep := min(tailBytes, c.opts.MaxBodyBytes)
	if !c.overflow {
		if len(c.body)+len(chunk) <= c.opts.MaxBodyBytes {
			c.body = append(c.body, chunk...)
			return
		}
		c.overflow = true
		c.stats.OversizedBody = true
		c.tail = appendTail(make([]byte, 0, 2*keep), c.body, keep)
		c.body = nil
	}
	c.tail = appendTail(c.tail, chunk, keep)
}

// appendTail appends b to buf, which has capacity 2*keep, dropping older bytes
// as needed but always keeping at least the last keep bytes written (once that
// many have been).
func appendTail(buf, b []byte, keep int) []byte {
	if len(b) >= keep {
		return append(buf[:0], b[len(b)-keep:]...)
	}
	if len(buf)+len(b) > 2*keep {
		n := copy(buf, buf[len(buf)-keep:])
		buf = buf[:n]
	}
	return append(buf, b...)
}

// Finish ends the response, whether complete or aborted, and returns its
// usage: the provider's, as far as the body reported it, and for the rest an
// estimate, with InputTokens from CounterOptions.PromptTokens and
// OutputTokens from the generated text seen. An SSE event cut off by the end
// is discarded. Calling Finish again returns the same result.
func (c *Counter) Finish() Usage {
	if c.finished {
		return c.result
	}
	c.finished = true
	if c.sse {
		c.stats.Truncated = c.parser.Close()
	} else {
		c.finishJSON()
	}
	inputKnown, outputKnown := c.reported&inputFields != 0, c.reported&fieldOutput != 0
	c.result = Usage{Exact: inputKnown && outputKnown}
	if inputKnown {
		c.result.InputTokens, c.result.CachedInputTokens = c.usage.inputTotal(), c.usage.cached
	} else {
		c.result.InputTokens = max(c.opts.PromptTokens, 0)
	}
	if outputKnown {
		c.result.OutputTokens = c.usage.output
	} else {
		c.result.OutputTokens = unitsToTokens(c.units)
	}
	return c.result
}

// finishJSON reads the buffered JSON body, or the tail of an over-long one.
func (c *Counter) finishJSON() {
	defer func() { c.body, c.tail = nil, nil }()
	if c.overflow {
		keep := min(tailBytes, c.opts.MaxBodyBytes)
		if u, ok := c.f.tailUsage(c.tail[max(len(c.tail)-keep, 0):]); ok {
			c.add(reading{usage: u, fields: allFields})
		} else {
			c.estimateUnread()
		}
		return
	}
	if len(c.body) == 0 {
		return
	}
	if json.Valid(c.body) {
		if rd, ok := c.f.readBody(c.body); ok {
			c.add(rd)
			return
		}
	}
	c.stats.MalformedBody = true
	c.estimateUnread()
}

// estimateUnread estimates the output of a body that could not be read at one
// token per four bytes: every byte could be generated text.
func (c *Counter) estimateUnread() {
	if c.f.generates() {
		c.units = c.stats.Bytes // quarter tokens: one per byte
	}
}

// Stats returns what the Counter has seen so far.
func (c *Counter) Stats() CounterStats {
	return c.stats
}
