package usage

import "bytes"

// Fixed prompt costs for content that is not text. Providers price these by
// properties a proxy cannot see without decoding the media (an image's size in
// tiles, an audio clip's duration, a document's pages), so the estimate charges
// a documented flat amount per part.
const (
	// ImageTokens is charged per image part: OpenAI's cost of one 1024×1024
	// high-detail image (four 512-pixel tiles at 170 tokens plus 85 base).
	ImageTokens = 765
	// LowDetailImageTokens is charged per image part whose detail is "low":
	// OpenAI's flat cost of a low-detail image.
	LowDetailImageTokens = 85
	// AudioTokens is charged per audio input part: about a minute and a half of
	// speech at OpenAI's rate of roughly ten audio tokens a second.
	AudioTokens = 1000
	// FileTokens is charged per file part (for example a PDF given inline or
	// by file id): a few pages of extracted text plus page images. Anthropic
	// document blocks holding a PDF, a URL or a file id are charged the same.
	FileTokens = 2000
	// MessagesImageTokens is charged per image block of an Anthropic Messages
	// request: Anthropic's cost of an image at the largest size it takes
	// without downscaling, about 1.15 megapixels at width × height / 750
	// tokens.
	MessagesImageTokens = 1600
)

// Chat-format framing, after OpenAI's published accounting for chat messages
// (three tokens around each message, one more for a name, three to prime the
// reply), rounded up by one per message to stay on the safe side.
const (
	messageOverheadTokens = 4
	replyPrimingTokens    = 3
)

// punctExtraUnits is the cost of each punctuation character after the first
// in a run of them.
const punctExtraUnits = 1

// unitsPerToken is the resolution of the text estimate: it counts in quarter
// tokens so that common characters can cost a fraction of a token.
const unitsPerToken = 4

// asciiCost holds, for each ASCII byte outside words and numbers, its cost in
// quarter tokens as a digit: space, tab and CR 1; punctuation, symbols and LF
// 2; other control characters 4. (Letters and digits are charged by the run;
// their entries are unused.) TestASCIICost pins the classes.
const asciiCost = "" +
	"44444444412441444444444444444444" + // 0x00-0x1f
	"12222222222222222222222222222222" + // 0x20-0x3f
	"21111111111111111111111111122222" + // 0x40-0x5f
	"21111111111111111111111111122224" //  0x60-0x7f

// asciiUnits returns the cost in quarter tokens of ASCII byte c (c < 0x80).
func asciiUnits(c byte) int64 { return int64(asciiCost[c] - '0') }

// Costs in quarter tokens of a non-ASCII code point by its UTF-8 length, and of
// a byte that is not valid UTF-8.
const (
	twoByteUnits   = 2 // Latin accents, Greek, Cyrillic, Hebrew, Arabic: about 2 per token
	threeByteUnits = 4 // CJK, kana, Hangul, Indic and Thai scripts: about 1 per token
	fourByteUnits  = 8 // emoji and rare ideographs: usually 2 or more tokens
	invalidUnits   = 4 // a stray byte becomes a byte-fallback token of its own
)

// EstimateTextTokens returns a conservative estimate of the number of tokens a
// BPE tokenizer of the cl100k/o200k kind makes of s, without a vocabulary.
//
// The heuristic follows how those tokenizers split text before merging
// (words, numbers, punctuation) and charges each piece in quarter tokens,
// rounding the sum up:
//
//   - a word (a run of ASCII letters, split where a lower-case letter is
//     followed by an upper-case one) costs a quarter per letter and at least a
//     whole token: about four letters per token, one token per short word;
//   - a number (a run of ASCII digits) costs a token per three digits, as
//     the tokenizers split digits into groups of up to three;
//   - a run of punctuation and symbols costs a token for its first character
//     and a quarter for each further one;
//   - a space costs a quarter, nothing when a word or punctuation follows it
//     (their token absorbs it); tabs and carriage returns a quarter; a newline
//     half, a quarter when it follows another; other control characters a
//     whole token;
//   - a code point outside ASCII costs by its UTF-8 length: two bytes (Latin
//     accents, Greek, Cyrillic, Hebrew, Arabic) half a token, three bytes (CJK,
//     kana, Hangul, Indic and Thai scripts) one token, four bytes (emoji, rare
//     ideographs) two tokens; a byte that is not valid UTF-8 costs one token.
//
// Against o200k_base it errs high, by some 5 to 30 percent on English prose,
// code and JSON and by more on non-Latin scripts, which o200k encodes
// densely; it runs below the tokenizer only on unusual text such as base64.
// It is never 0 for non-empty text.
func EstimateTextTokens(s string) int64 {
	return unitsToTokens(textUnits(s))
}

// unitsToTokens rounds a count of quarter tokens up to whole tokens.
func unitsToTokens(u int64) int64 {
	return (u + unitsPerToken - 1) / unitsPerToken
}

// textUnits returns the cost of s in quarter tokens (see EstimateTextTokens).
func textUnits[T string | []byte](s T) int64 {
	var e estimator
	feed(&e, s)
	return e.total()
}

// Kinds of run an estimator can be in.
const (
	noRun = iota
	wordRun
	numberRun
	punctRun
)

// estimator computes the cost of text in quarter tokens, character by
// character (see EstimateTextTokens). The zero value is ready to use.
type estimator struct {
	units int64
	run   int64 // length of the current run
	kind  uint8 // noRun, wordRun, numberRun or punctRun
	lower bool  // the current word's last letter is lower case
	prev  byte  // the last character when it was a space or LF, else 0
}

// feed adds text to the estimate.
func feed[T string | []byte](e *estimator, s T) {
	for i := 0; i < len(s); {
		c := s[i]
		if c < 0x80 {
			e.ascii(c)
			i++
			// Fast path: extend the word or number just started or
			// continued without a call per character.
			switch e.kind {
			case wordRun:
				j := i
				for ; j < len(s); j++ {
					c := s[j]
					if c >= 'a' && c <= 'z' {
						e.lower = true
					} else if c < 'A' || c > 'Z' || e.lower {
						break
					}
				}
				e.run += int64(j - i)
				i = j
			case numberRun:
				j := i
				for j < len(s) && s[j] >= '0' && s[j] <= '9' {
					j++
				}
				e.run += int64(j - i)
				i = j
			}
			continue
		}
		n := utf8SeqLen(s[i:])
		switch n {
		case 2:
			e.add(twoByteUnits)
		case 3:
			e.add(threeByteUnits)
		case 4:
			e.add(fourByteUnits)
		default:
			e.add(invalidUnits)
			n = 1
		}
		i += n
	}
}

// ascii adds ASCII character c.
func (e *estimator) ascii(c byte) {
	switch {
	case c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z':
		lower := c >= 'a'
		if e.kind == wordRun && (lower || !e.lower) {
			e.run++
			e.lower = lower
			return
		}
		e.flush()
		if e.prev == ' ' {
			e.units-- // the word absorbs the space before it
		}
		e.kind, e.run, e.lower, e.prev = wordRun, 1, lower, 0
	case c >= '0' && c <= '9':
		if e.kind == numberRun {
			e.run++
			return
		}
		e.flush()
		e.kind, e.run, e.prev = numberRun, 1, 0
	case c > ' ' && c < 0x7f: // punctuation and symbols
		if e.kind == punctRun {
			e.run++
			return
		}
		e.flush()
		if e.prev == ' ' {
			e.units-- // the run absorbs the space before it
		}
		e.kind, e.run, e.prev = punctRun, 1, 0
	case c == '\n' && e.prev == '\n':
		e.units++ // runs of line ends merge
	default:
		e.add(asciiUnits(c))
		if c == ' ' || c == '\n' {
			e.prev = c
		}
	}
}

// add ends the current run and adds the cost of one other character.
func (e *estimator) add(units int64) {
	e.flush()
	e.units += units
	e.prev = 0
}

// flush charges the current run.
func (e *estimator) flush() {
	switch e.kind {
	case wordRun:
		e.units += max(e.run, unitsPerToken)
	case numberRun:
		e.units += unitsPerToken * ((e.run + 2) / 3)
	case punctRun:
		e.units += unitsPerToken + punctExtraUnits*(e.run-1)
	}
	e.kind, e.run = noRun, 0
}

// total ends the text and returns its cost.
func (e *estimator) total() int64 {
	e.flush()
	return e.units
}

// utf8SeqLen returns the length of the UTF-8 sequence at the start of s, or 0
// when s does not start with a well-formed sequence. It checks the lead byte
// and the continuation bytes; that is enough precision for an estimate.
func utf8SeqLen[T string | []byte](s T) int {
	var n int
	switch c := s[0]; {
	case c >= 0xc2 && c <= 0xdf:
		n = 2
	case c >= 0xe0 && c <= 0xef:
		n = 3
	case c >= 0xf0 && c <= 0xf4:
		n = 4
	default:
		return 0
	}
	if len(s) < n {
		return 0
	}
	for j := 1; j < n; j++ {
		if s[j]&0xc0 != 0x80 {
			return 0
		}
	}
	return n
}

// jsonStringUnits returns the cost in quarter tokens of the text a raw JSON
// string body (the bytes between the quotes, escapes intact) decodes to.
func jsonStringUnits(raw []byte) int64 {
	var e estimator
	for len(raw) > 0 {
		k := bytes.IndexByte(raw, '\\')
		if k < 0 {
			feed(&e, raw)
			break
		}
		feed(&e, raw[:k])
		raw = raw[k:]
		if len(raw) < 2 {
			e.ascii('\\')
			break
		}
		n := 2
		switch c := raw[1]; c {
		case 'u':
			n = unicodeEscape(&e, raw)
		case 'n':
			e.ascii('\n')
		case 't':
			e.ascii('\t')
		case 'r':
			e.ascii('\r')
		case 'b':
			e.ascii('\b')
		case 'f':
			e.ascii('\f')
		default: // \" \\ \/ and anything a validated string cannot hold
			if c < 0x80 {
				e.ascii(c)
			} else {
				e.add(invalidUnits)
			}
		}
		raw = raw[n:]
	}
	return e.total()
}

// unicodeEscape adds the character of the \uXXXX escape (or surrogate pair of
// escapes) at the start of raw and returns the number of bytes it spans.
func unicodeEscape(e *estimator, raw []byte) int {
	cp, ok := hex4(raw[2:])
	switch {
	case !ok:
		e.ascii('u')
		return 2
	case cp < 0x80:
		e.ascii(byte(cp))
	case cp < 0x800:
		e.add(twoByteUnits)
	case cp >= 0xd800 && cp < 0xdc00 && len(raw) >= 12 && raw[6] == '\\' && raw[7] == 'u':
		if lo, ok := hex4(raw[8:]); ok && lo >= 0xdc00 && lo < 0xe000 {
			e.add(fourByteUnits)
			return 12
		}
		e.add(threeByteUnits) // a lone surrogate decodes to U+FFFD
	default:
		e.add(threeByteUnits)
	}
	return 6
}

// hex4 decodes four hexadecimal digits at the start of b.
func hex4(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range b[:4] {
		var d byte
		switch {
		case c >= '0' && c <= '9':
			d = c - '0'
		case c >= 'a' && c <= 'f':
			d = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			d = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(d)
	}
	return r, true
}
