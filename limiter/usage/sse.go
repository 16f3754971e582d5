package usage

import "bytes"

// DefaultMaxEventBytes is the bound on one event's data when
// SSEParser.MaxEventBytes and CounterOptions.MaxEventBytes are zero.
const DefaultMaxEventBytes = 1 << 20

// lineSlack is how far past MaxEventBytes a single line may run before the
// parser stops storing it: room for a field name and colon, so that a data
// line that overflows the line store has overflowed the event's data too.
const lineSlack = 64

// Event is one server-sent event.
type Event struct {
	// Name is the event type: the last "event:" field, or "message" when the
	// event has none.
	Name string
	// Data is the event's data lines joined with "\n", cut at the parser's
	// MaxEventBytes. It aliases the parser's buffer and is valid only until
	// the emit callback returns.
	Data []byte
	// Truncated reports that the data was longer than MaxEventBytes and was
	// cut.
	Truncated bool
}

// SSEParser parses a server-sent event stream as the WHATWG HTML standard
// defines it ("Interpreting an event stream"), fed in chunks of any size split
// at any byte: the events are the same however the stream is split.
//
// Lines end with "\n", "\r\n" or "\r" (a "\r\n" split across chunks is one line
// end). A line starting with ":" is a comment. Otherwise the field name runs to
// the first colon and the value follows it, less one leading space. "data"
// fields append their value and a "\n" to the event's data; "event" sets its
// name; "id", "retry" and unknown fields are ignored. A blank line dispatches
// the event, unless no data field was seen, and drops the final "\n" of its
// data. A leading byte order mark is ignored. At the end of the stream an event
// not closed by a blank line is discarded (see Close).
//
// Memory is bounded: an event's data is kept up to MaxEventBytes, and a single
// line up to a little more; the excess is dropped and the event is emitted with
// Truncated set.
//
// The zero value is ready to use. An SSEParser is not safe for concurrent use.
type SSEParser struct {
	// MaxEventBytes bounds the data kept for one event. Zero means
	// DefaultMaxEventBytes.
	MaxEventBytes int

	line     []byte // the incomplete line carried over from earlier chunks
	lineOver bool   // the incomplete line outgrew the line bound
	data     []byte // the data buffer, up to MaxEventBytes+1 bytes of it
	dataLen  int    // the data buffer's full length
	dataOver bool   // a data line was cut by the line bound
	name     []byte // the event type buffer
	inEvent  bool   // a field line has been seen since the last blank line
	nameStr  string // the last event name handed out, reused while unchanged
	sawCR    bool   // the last byte fed was "\r": a "\n" right after it is part of that line end
	started  bool   // a line has been processed, so a byte order mark is no longer stripped
}

// utf8BOM is the UTF-8 encoding of U+FEFF, ignored at the start of a stream.
const utf8BOM = "\xef\xbb\xbf"

// maxEvent returns the bound on one event's data.
func (p *SSEParser) maxEvent() int {
	if p.MaxEventBytes > 0 {
		return p.MaxEventBytes
	}
	return DefaultMaxEventBytes
}

// Feed parses the next chunk of the stream, calling emit for each event it
// completes, in order.
func (p *SSEParser) Feed(chunk []byte, emit func(Event)) {
	maxLine := p.maxEvent() + lineSlack
	// nl is the index of the first "\n" at or after off (len(chunk) when there
	// is none), found once and reused while lines end in "\r", so that a chunk
	// of "\r"-terminated lines is scanned in linear time.
	nl := -1
	for off := 0; off < len(chunk); {
		if p.sawCR {
			p.sawCR = false
			if chunk[off] == '\n' {
				off++
				continue
			}
		}
		if nl < off {
			nl = len(chunk)
			if i := bytes.IndexByte(chunk[off:], '\n'); i >= 0 {
				nl = off + i
			}
		}
		end := nl
		if cr := bytes.IndexByte(chunk[off:end], '\r'); cr >= 0 {
			end = off + cr
		}
		if end == len(chunk) { // no line end in this chunk: carry the line over
			p.line, p.lineOver = appendBounded(p.line, p.lineOver, chunk[off:], maxLine)
			return
		}
		p.sawCR = chunk[end] == '\r'
		if len(p.line) == 0 && !p.lineOver {
			line, over := chunk[off:end], false
			if len(line) > maxLine {
				line, over = line[:maxLine], true
			}
			p.processLine(line, over, emit)
		} else {
			p.line, p.lineOver = appendBounded(p.line, p.lineOver, chunk[off:end], maxLine)
			p.processLine(p.line, p.lineOver, emit)
			p.line, p.lineOver = p.line[:0], false
		}
		off = end + 1
	}
}

// Close ends the stream. Per the standard, an event not closed by a blank line
// is discarded; Close reports whether there was one (any field line, complete
// or not, since the last blank line), that is, whether the stream was cut off
// mid-event. Close resets the parser for a new stream.
func (p *SSEParser) Close() (truncated bool) {
	line := p.line
	if !p.started {
		line = bytes.TrimPrefix(line, []byte(utf8BOM))
	}
	truncated = p.inEvent || len(line) > 0 && line[0] != ':'
	*p = SSEParser{
		MaxEventBytes: p.MaxEventBytes,
		line:          p.line[:0],
		data:          p.data[:0],
		name:          p.name[:0],
		nameStr:       p.nameStr,
	}
	return truncated
}

// processLine interprets one complete line. over reports that the line was
// longer than the line bound and has been cut.
func (p *SSEParser) processLine(line []byte, over bool, emit func(Event)) {
	if !p.started {
		p.started = true
		line = bytes.TrimPrefix(line, []byte(utf8BOM))
	}
	if len(line) == 0 {
		p.dispatch(emit)
		return
	}
	if line[0] == ':' {
		return
	}
	p.inEvent = true
	field, value := line, []byte(nil)
	if i := bytes.IndexByte(line, ':'); i >= 0 {
		field, value = line[:i], line[i+1:]
		if len(value) > 0 && value[0] == ' ' {
			value = value[1:]
		}
	}
	switch string(field) {
	case "data":
		p.appendData(value)
		p.appendData([]byte{'\n'})
		p.dataOver = p.dataOver || over
	case "event":
		p.name = append(p.name[:0], value...)
	}
}

// appendData appends to the data buffer, storing no more than MaxEventBytes+1
// bytes of it.
func (p *SSEParser) appendData(b []byte) {
	p.dataLen += len(b)
	if room := p.maxEvent() + 1 - len(p.data); room > 0 {
		p.data = append(p.data, b[:min(len(b), room)]...)
	}
}

// dispatch emits the pending event, if it has data, and clears the buffers.
func (p *SSEParser) dispatch(emit func(Event)) {
	if p.dataLen > 0 {
		n := p.dataLen - 1 // drop the "\n" every data line ends with
		limit := p.maxEvent()
		ev := Event{Name: "message", Data: p.data[:min(n, limit)], Truncated: p.dataOver || n > limit}
		if len(p.name) > 0 {
			if string(p.name) != p.nameStr {
				p.nameStr = string(p.name)
			}
			ev.Name = p.nameStr
		}
		emit(ev)
	}
	p.data, p.dataLen, p.dataOver = p.data[:0], 0, false
	p.name, p.inEvent = p.name[:0], false
}

// appendBounded appends src to dst, keeping at most limit bytes; over records
// whether anything has been dropped.
func appendBounded(dst []byte, over bool, src []byte, limit int) ([]byte, bool) {
	room := limit - len(dst)
	if len(src) > room {
		return append(dst, src[:max(room, 0)]...), true
	}
	return append(dst, src...), over
}
