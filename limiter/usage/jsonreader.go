package usage

import (
	"bytes"
	"encoding/json"
	"math"
	"strconv"
	"unicode/utf8"
)

// reader walks a JSON document in place, without decoding it into Go values
// and without allocating. It is meant for documents json.Valid accepted: it
// checks structure only as far as it needs to find its way, and reports any
// surprise as a failed step (never a panic), which callers treat as malformed
// input.
//
// Strings are handed out raw: the bytes between the quotes, escapes intact.
type reader struct {
	b []byte
	i int
}

// next skips white space and returns the next byte without consuming it, or 0
// at the end of the input.
func (r *reader) next() byte {
	for r.i < len(r.b) {
		switch c := r.b[r.i]; c {
		case ' ', '\t', '\n', '\r':
			r.i++
		default:
			return c
		}
	}
	return 0
}

// null consumes a null literal if one comes next.
func (r *reader) null() bool {
	if r.next() == 'n' && bytes.HasPrefix(r.b[r.i:], []byte("null")) {
		r.i += len("null")
		return true
	}
	return false
}

// rawString consumes a string and returns its raw body.
func (r *reader) rawString() ([]byte, bool) {
	if r.next() != '"' {
		return nil, false
	}
	start := r.i + 1
	for j := start; ; j++ {
		k := bytes.IndexByte(r.b[j:], '"')
		if k < 0 {
			return nil, false
		}
		j += k
		backslashes := 0
		for p := j - 1; p >= start && r.b[p] == '\\'; p-- {
			backslashes++
		}
		if backslashes%2 == 0 {
			r.i = j + 1
			return r.b[start:j], true
		}
	}
}

// stringValue consumes a string and returns it decoded, as encoding/json
// decodes it (invalid UTF-8 becomes U+FFFD). Only a string with escapes or
// invalid UTF-8 costs more than the one allocation of the result.
func (r *reader) stringValue() (string, bool) {
	start := r.i
	raw, ok := r.rawString()
	if !ok {
		return "", false
	}
	if bytes.IndexByte(raw, '\\') < 0 && utf8.Valid(raw) {
		return string(raw), true
	}
	var s string
	if err := json.Unmarshal(r.b[start:r.i], &s); err != nil {
		return "", false
	}
	return s, true
}

// boolean consumes true or false.
func (r *reader) boolean() (v, ok bool) {
	switch r.next() {
	case 't':
		if bytes.HasPrefix(r.b[r.i:], []byte("true")) {
			r.i += len("true")
			return true, true
		}
	case 'f':
		if bytes.HasPrefix(r.b[r.i:], []byte("false")) {
			r.i += len("false")
			return false, true
		}
	}
	return false, false
}

// number consumes a number and returns its text.
func (r *reader) number() ([]byte, bool) {
	c := r.next()
	if c != '-' && (c < '0' || c > '9') {
		return nil, false
	}
	start := r.i
	r.scalar()
	return r.b[start:r.i], true
}

// integer consumes a number with an integral value (100, 1e3, 2.0).
// Magnitudes beyond 2^62 saturate, so that callers' range checks reject them
// rather than see them wrap.
func (r *reader) integer() (int64, bool) {
	tok, ok := r.number()
	if !ok {
		return 0, false
	}
	return parseInteger(tok)
}

// parseInteger parses the text of a JSON number holding an integral value.
func parseInteger(tok []byte) (int64, bool) {
	const limit = 1 << 62
	digits, neg := tok, false
	if len(digits) > 0 && digits[0] == '-' {
		digits, neg = digits[1:], true
	}
	if len(digits) > 0 && len(digits) <= 18 {
		var v int64
		plain := true
		for _, c := range digits {
			if c < '0' || c > '9' {
				plain = false
				break
			}
			v = v*10 + int64(c-'0')
		}
		if plain {
			if neg {
				v = -v
			}
			return v, true
		}
	}
	f, err := strconv.ParseFloat(string(tok), 64)
	if err != nil && f == 0 || math.IsNaN(f) || f != math.Trunc(f) {
		return 0, false
	}
	switch {
	case f >= limit:
		return limit, true
	case f <= -limit:
		return -limit, true
	}
	return int64(f), true
}

// scalar consumes a number or literal: everything up to the next delimiter.
func (r *reader) scalar() {
	for r.i < len(r.b) {
		switch r.b[r.i] {
		case ',', ']', '}', ':', ' ', '\t', '\n', '\r', '"', '[', '{':
			return
		}
		r.i++
	}
}

// skip consumes one value of any kind.
func (r *reader) skip() bool {
	switch c := r.next(); c {
	case '"':
		_, ok := r.rawString()
		return ok
	case '{', '[':
		return r.skipContainer()
	case 0, ',', ']', '}', ':':
		return false
	default:
		start := r.i
		r.scalar()
		return r.i > start
	}
}

// skipContainer consumes the object or array that starts at r.i.
func (r *reader) skipContainer() bool {
	depth := 0
	for r.i < len(r.b) {
		switch r.b[r.i] {
		case '"':
			if _, ok := r.rawString(); !ok {
				return false
			}
			continue
		case '{', '[':
			depth++
		case '}', ']':
			depth--
			if depth == 0 {
				r.i++
				return true
			}
		}
		r.i++
	}
	return false
}

// object consumes an object, calling member for each member with r positioned
// at its value. member must consume the value (or fail). A key that holds
// escapes (or invalid UTF-8) is decoded first, the only case that allocates.
func (r *reader) object(member func(key []byte) bool) bool {
	if r.next() != '{' {
		return false
	}
	r.i++
	if r.next() == '}' {
		r.i++
		return true
	}
	for {
		start := r.i
		key, ok := r.rawString()
		if !ok {
			return false
		}
		if bytes.IndexByte(key, '\\') >= 0 || !utf8.Valid(key) {
			var s string
			if json.Unmarshal(r.b[start:r.i], &s) != nil {
				return false
			}
			key = []byte(s)
		}
		if r.next() != ':' {
			return false
		}
		r.i++
		if !member(key) {
			return false
		}
		switch r.next() {
		case ',':
			r.i++
		case '}':
			r.i++
			return true
		default:
			return false
		}
	}
}

// array consumes an array, calling element with r positioned at each element.
// element must consume the element (or fail).
func (r *reader) array(element func() bool) bool {
	if r.next() != '[' {
		return false
	}
	r.i++
	if r.next() == ']' {
		r.i++
		return true
	}
	for {
		if !element() {
			return false
		}
		switch r.next() {
		case ',':
			r.i++
		case ']':
			r.i++
			return true
		default:
			return false
		}
	}
}

// stringUnits consumes a value and returns the quarter-token cost of its text
// when it is a string, and 0 for any other kind of value.
func (r *reader) stringUnits() (int64, bool) {
	if r.next() != '"' {
		return 0, r.skip()
	}
	raw, ok := r.rawString()
	return jsonStringUnits(raw), ok
}
