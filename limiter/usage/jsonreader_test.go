package usage

import (
	"math"
	"testing"
)

func TestParseInteger(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"0", 0, true},
		{"7", 7, true},
		{"-7", -7, true},
		{"-0", 0, true},
		{"123456789012345678", 123456789012345678, true},
		{"1e3", 1000, true},
		{"1E+3", 1000, true},
		{"2.0", 2, true},
		{"2.50e1", 25, true},
		{"1.5", 0, false},
		{"1e-3", 0, false},
		{"9223372036854775807", 1 << 62, true}, // saturates
		{"1e300", 1 << 62, true},
		{"-1e300", -(1 << 62), true},
		{"", 0, false},
		{"-", 0, false},
		{"abc", 0, false},
	}
	for _, tt := range tests {
		got, ok := parseInteger([]byte(tt.in))
		if got != tt.want || ok != tt.ok {
			t.Errorf("parseInteger(%q) = %d, %v; want %d, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

func TestReaderSkip(t *testing.T) {
	// Each value is followed by a marker the skip must stop at.
	values := []string{
		`"plain"`,
		`"with \"escaped\" quotes"`,
		`"ends in a backslash \\"`,
		`"three \\\" backslashes"`,
		`""`,
		`123`, `-1.5e+10`, `true`, `false`, `null`,
		`{}`, `[]`,
		`{"a":[1,{"b":"}]"}],"c":"\\"}`,
		`[[[]],{},"]",{"[":"{"}]`,
		` { "spaced" : [ 1 , 2 ] } `,
	}
	for _, v := range values {
		r := reader{b: []byte(v + `,"next"`)}
		if !r.skip() {
			t.Errorf("skip(%s) failed", v)
			continue
		}
		if r.next() != ',' {
			t.Errorf("skip(%s) stopped at offset %d of %q", v, r.i, r.b)
		}
	}
}

func TestReaderRawString(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{`"abc"`, `abc`},
		{`"a\"b"`, `a\"b`},
		{`"a\\"`, `a\\`},
		{`"a\\\"b"`, `a\\\"b`},
		{`"\u00e9"`, `\u00e9`},
	}
	for _, tt := range tests {
		r := reader{b: []byte(tt.in + `x`)}
		got, ok := r.rawString()
		if !ok || string(got) != tt.want || r.b[r.i] != 'x' {
			t.Errorf("rawString(%s) = %q, %v, next at %d; want %q", tt.in, got, ok, r.i, tt.want)
		}
	}
}

func TestReaderObjectKeys(t *testing.T) {
	r := reader{b: []byte(`{"plain":1,"esc\u0061ped":2,"bad` + "\xff" + `utf8":3}`)}
	var keys []string
	ok := r.object(func(key []byte) bool {
		keys = append(keys, string(key))
		return r.skip()
	})
	want := []string{"plain", "escaped", "bad\ufffdutf8"}
	if !ok || len(keys) != len(want) {
		t.Fatalf("object: ok=%v keys=%q, want %q", ok, keys, want)
	}
	for i := range want {
		if keys[i] != want[i] {
			t.Errorf("key %d = %q, want %q", i, keys[i], want[i])
		}
	}
}

// TestReaderCutInput checks that the reader fails cleanly, without a panic,
// on every prefix of a document: it is meant for validated input, but must
// never crash on anything else.
func TestReaderCutInput(t *testing.T) {
	doc := `{"model":"m","n":2,"messages":[{"content":[{"type":"text","text":"a\"b"}]}],"x":[1.5e3,true,null,{"y":"\\"}]}`
	for i := range len(doc) {
		for ep := range Responses + 1 {
			if _, err := formatFor(ep).parseRequest([]byte(doc[:i])); err == nil && i < len(doc)-1 {
				t.Errorf("%s: prefix %q parsed without error", ep, doc[:i])
			}
			formatFor(ep).readBody([]byte(doc[:i]))
		}
		r := reader{b: []byte(doc[:i])}
		r.skip()
		r = reader{b: []byte(doc[:i])}
		r.integer()
		r.stringValue()
	}
	if v, ok := (&reader{b: []byte(`1e400`)}).integer(); !ok || v != 1<<62 {
		t.Errorf("integer(1e400) = %d, %v; want saturation", v, ok)
	}
	if v, ok := (&reader{b: []byte(`-9e18`)}).integer(); !ok || v != -(1<<62) || v == math.MinInt64 {
		t.Errorf("integer(-9e18) = %d, %v; want saturation", v, ok)
	}
}
