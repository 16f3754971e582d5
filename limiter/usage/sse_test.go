package usage

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"testing"
)

// parsedEvent is an Event with its data copied out of the parser's buffer.
type parsedEvent struct {
	Name      string
	Data      string
	Truncated bool
}

// parseSSE feeds chunks to a fresh parser and returns the events and Close's
// result.
func parseSSE(maxEvent int, chunks ...[]byte) ([]parsedEvent, bool) {
	p := SSEParser{MaxEventBytes: maxEvent}
	var events []parsedEvent
	emit := func(ev Event) {
		events = append(events, parsedEvent{ev.Name, string(ev.Data), ev.Truncated})
	}
	for _, c := range chunks {
		p.Feed(c, emit)
	}
	return events, p.Close()
}

func TestSSEParser(t *testing.T) {
	tests := []struct {
		name      string
		in        string
		max       int
		want      []parsedEvent
		truncated bool
	}{
		{name: "empty", in: ""},
		{
			name: "one event LF",
			in:   "data: hello\n\n",
			want: []parsedEvent{{"message", "hello", false}},
		},
		{
			name: "CRLF",
			in:   "data: a\r\n\r\ndata: b\r\n\r\n",
			want: []parsedEvent{{"message", "a", false}, {"message", "b", false}},
		},
		{
			name: "CR only",
			in:   "event: x\rdata: a\r\r",
			want: []parsedEvent{{"x", "a", false}},
		},
		{
			name: "mixed line ends",
			in:   "data: a\r\ndata: b\rdata: c\n\r\n",
			want: []parsedEvent{{"message", "a\nb\nc", false}},
		},
		{
			name: "multi-line data joined with LF",
			in:   "data: {\"a\":\ndata: 1}\n\n",
			want: []parsedEvent{{"message", "{\"a\":\n1}", false}},
		},
		{
			name: "no space after colon, only one space stripped",
			in:   "data:x\n\ndata:  y\n\n",
			want: []parsedEvent{{"message", "x", false}, {"message", " y", false}},
		},
		{
			name: "comments and unknown fields ignored",
			in:   ": keep-alive\nid: 7\nretry: 100\nfoo: bar\ndata: z\n: tail comment\n\n",
			want: []parsedEvent{{"message", "z", false}},
		},
		{
			name: "event name applies to one event only",
			in:   "event: response.created\ndata: 1\n\ndata: 2\n\n",
			want: []parsedEvent{{"response.created", "1", false}, {"message", "2", false}},
		},
		{
			name: "blank lines without data dispatch nothing",
			in:   "\n\nevent: ping\n\n\n",
		},
		{
			name: "empty data field gives an empty event",
			in:   "data\n\ndata:\n\n",
			want: []parsedEvent{{"message", "", false}, {"message", "", false}},
		},
		{
			name: "field name without colon",
			in:   "data\ndata\n\n",
			want: []parsedEvent{{"message", "\n", false}},
		},
		{
			name: "colon in value kept",
			in:   "data: a: b\n\n",
			want: []parsedEvent{{"message", "a: b", false}},
		},
		{
			name: "leading BOM stripped once",
			in:   "\xef\xbb\xbfdata: a\n\n\xef\xbb\xbfdata: b\n\n",
			want: []parsedEvent{{"message", "a", false}},
		},
		{
			name: "case-sensitive field names",
			in:   "Data: a\nDATA: b\n\n",
		},
		{
			name:      "trailing event without blank line discarded",
			in:        "data: a\n\ndata: b\n",
			want:      []parsedEvent{{"message", "a", false}},
			truncated: true,
		},
		{
			name:      "partial last line discarded",
			in:        "data: a\n\ndata: {\"choi",
			want:      []parsedEvent{{"message", "a", false}},
			truncated: true,
		},
		{
			name: "partial comment at the end is not an event",
			in:   "data: a\n\n: keep-al",
			want: []parsedEvent{{"message", "a", false}},
		},
		{
			name: "event name alone at the end is pending",
			in:   "data: a\n\nevent: x\n",
			want: []parsedEvent{{"message", "a", false}},
			// A field line of an unfinished event was seen.
			truncated: true,
		},
		{
			name: "data at the bound is kept whole",
			in:   "data: 12345678\n\n",
			max:  8,
			want: []parsedEvent{{"message", "12345678", false}},
		},
		{
			name: "data over the bound is cut",
			in:   "data: 123456789\n\ndata: ok\n\n",
			max:  8,
			want: []parsedEvent{{"message", "12345678", true}, {"message", "ok", false}},
		},
		{
			name: "joined data lines over the bound are cut",
			in:   "data: 1234\ndata: 5678\n\n",
			max:  8,
			want: []parsedEvent{{"message", "1234\n567", true}},
		},
		{
			name: "a line far over the bound is cut",
			in:   "data: " + strings.Repeat("x", 200) + "\n\ndata: ok\n\n",
			max:  8,
			want: []parsedEvent{{"message", "xxxxxxxx", true}, {"message", "ok", false}},
		},
		{
			name: "an over-long comment is ignored",
			in:   ":" + strings.Repeat("x", 200) + "\ndata: ok\n\n",
			max:  8,
			want: []parsedEvent{{"message", "ok", false}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := []byte(tt.in)
			got, truncated := parseSSE(tt.max, in)
			if !slices.Equal(got, tt.want) || truncated != tt.truncated {
				t.Fatalf("whole: got %+v truncated=%v, want %+v truncated=%v", got, truncated, tt.want, tt.truncated)
			}
			// Every split into two chunks, and byte by byte, gives the same.
			for i := 0; i <= len(in); i++ {
				got, truncated := parseSSE(tt.max, in[:i], in[i:])
				if !slices.Equal(got, tt.want) || truncated != tt.truncated {
					t.Fatalf("split at %d: got %+v truncated=%v, want %+v truncated=%v", i, got, truncated, tt.want, tt.truncated)
				}
			}
			got, truncated = parseSSE(tt.max, bytesOneByOne(in)...)
			if !slices.Equal(got, tt.want) || truncated != tt.truncated {
				t.Fatalf("byte by byte: got %+v truncated=%v, want %+v truncated=%v", got, truncated, tt.want, tt.truncated)
			}
		})
	}
}

// bytesOneByOne splits b into one-byte chunks.
func bytesOneByOne(b []byte) [][]byte {
	chunks := make([][]byte, len(b))
	for i := range b {
		chunks[i] = b[i : i+1]
	}
	return chunks
}

func TestSSEParserCloseResets(t *testing.T) {
	var p SSEParser
	var got []string
	emit := func(ev Event) { got = append(got, string(ev.Data)) }
	p.Feed([]byte("\xef\xbb\xbfdata: a\n\ndata: cut"), emit)
	if !p.Close() {
		t.Fatal("Close() = false with a pending event")
	}
	// A new stream: the pending data is gone and a BOM is stripped again.
	p.Feed([]byte("\xef\xbb\xbfdata: b\n\n"), emit)
	if p.Close() {
		t.Fatal("Close() = true after a complete stream")
	}
	if want := []string{"a", "b"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("events %q, want %q", got, want)
	}
}

func TestSSEParserBoundedMemory(t *testing.T) {
	p := SSEParser{MaxEventBytes: 1024}
	line := bytes.Repeat([]byte("x"), 4096)
	p.Feed([]byte("data: "), func(Event) {})
	for range 256 { // 1 MiB of one line, far over the bound
		p.Feed(line, func(Event) {})
	}
	if cap(p.line) > 4*1024 {
		t.Fatalf("line buffer grew to %d bytes for a 1024-byte bound", cap(p.line))
	}
	var ev parsedEvent
	p.Feed([]byte("\n\n"), func(e Event) { ev = parsedEvent{e.Name, string(e.Data), e.Truncated} })
	if !ev.Truncated || len(ev.Data) != 1024 {
		t.Fatalf("event truncated=%v with %d bytes, want truncated with 1024", ev.Truncated, len(ev.Data))
	}
	if cap(p.data) > 4*1024 {
		t.Fatalf("data buffer grew to %d bytes for a 1024-byte bound", cap(p.data))
	}
}

// BenchmarkSSEParserLineEnds feeds one 256 KiB chunk of short events whose
// lines end in "\n", "\r\n" or "\r". The three cost the same per byte: a chunk
// of "\r"-terminated lines, which has no "\n" to find, is scanned once, not
// once per line.
func BenchmarkSSEParserLineEnds(b *testing.B) {
	for _, end := range []struct{ name, eol string }{{"LF", "\n"}, {"CRLF", "\r\n"}, {"CR", "\r"}} {
		var buf bytes.Buffer
		for buf.Len() < 256<<10 {
			buf.WriteString(`data: {"choices":[{"delta":{"content":"hi"}}]}` + end.eol + end.eol)
		}
		chunk := buf.Bytes()
		b.Run(end.name, func(b *testing.B) {
			b.SetBytes(int64(len(chunk)))
			var p SSEParser
			events := 0
			for b.Loop() {
				p.Feed(chunk, func(Event) { events++ })
			}
			if events == 0 {
				b.Fatal("no events parsed")
			}
		})
	}
}
