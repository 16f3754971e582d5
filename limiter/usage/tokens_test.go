package usage

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestEstimateTextTokens(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want int64
	}{
		{"empty", "", 0},
		{"one letter is a whole token", "a", 1},
		{"short word", "word", 1},
		{"long word costs a quarter per letter", "internationalization", 5},
		{"a space before a word is free", " word", 1},
		{"a lone space costs a quarter", " ", 1},
		{"words split at a case change", "camelCase", 3}, // 5 + 4 quarters
		{"upper-case runs stay one word", "HTTP", 1},
		{"sentence", "The quick brown fox jumps over the lazy dog.", 11},
		{"three digits per token", "1234567", 3},
		{"one punctuation mark is a token", "!", 1},
		{"punctuation runs merge", "!!!!!", 2}, // 4 + 4 × 1 quarters
		{"a newline costs half", "\n", 1},
		{"runs of newlines merge", "\n\n\n\n\n\n", 2}, // 2 + 5 × 1 quarters
		{"control characters cost one", "\x00\x01", 2},
		{"two-byte runes cost half", "éèêë", 2},
		{"CJK costs one per rune", "東京都庁", 4},
		{"kana costs one per rune", "ひらがな", 4},
		{"emoji cost two", "🦄🦄", 4},
		{"invalid UTF-8 costs one per byte", "\xff\xfe", 2},
		{"truncated sequence costs one per byte", "\xe6\x9d", 2},
		{"mixed", "Hi 東京!", 5}, // Hi 4, space 1, 東京 8, ! 4: 17 quarters
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := EstimateTextTokens(tt.in); got != tt.want {
				t.Errorf("EstimateTextTokens(%q) = %d, want %d", tt.in, got, tt.want)
			}
		})
	}
}

func TestEstimateTextTokensNeverZero(t *testing.T) {
	for _, s := range []string{"a", " ", "\t", "\r", ".", "\xff", "é", "\x00", "0", "\n"} {
		if got := EstimateTextTokens(s); got < 1 {
			t.Errorf("EstimateTextTokens(%q) = %d, want >= 1", s, got)
		}
	}
}

// TestEstimateTextTokensAgainstTokenizer compares the estimate with token
// counts under OpenAI's o200k_base encoding (GPT-4o and later), counted with
// the gpt-tokenizer 4.0.0 npm package. The estimate must not fall below the
// tokenizer, nor run more than two and a half times above it. (It does fall
// below on base64, which tokenizes at about 1.5 bytes a token; see
// EstimateTextTokens.)
func TestEstimateTextTokensAgainstTokenizer(t *testing.T) {
	tests := []struct {
		text   string
		tokens int64
	}{
		{"Hello, world! How are you?", 8},
		{"The quick brown fox jumps over the lazy dog.", 10},
		{"func main() { fmt.Println(\"hi\") }", 10},
		{"2024-05-13T10:00:00Z", 13},
		{"東京は日本の首都です。", 8},
		{"Привет, как дела? Я хочу узнать больше о машинном обучении.", 16},
		{"Ich möchte gerne wissen, wie das Wetter morgen in München wird.", 13},
		{"😀🎉🦄👍🏽", 9},
		{"नमस्ते, आप कैसे हैं?", 9},
		{"สวัสดีครับ คุณสบายดีไหม", 10},
		{"안녕하세요, 만나서 반갑습니다.", 9},
		{"{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"description\":\"Get the current weather in a given location\",\"parameters\":{\"type\":\"object\",\"properties\":{\"location\":{\"type\":\"string\",\"description\":\"The city and state, e.g. San Francisco, CA\"},\"unit\":{\"type\":\"string\",\"enum\":[\"celsius\",\"fahrenheit\"]}},\"required\":[\"location\"]}}}", 75},
		{"    def fibonacci(n):\n        if n < 2:\n            return n\n        return fibonacci(n - 1) + fibonacci(n - 2)\n", 31},
		{"3.14159265358979323846264338327950288419716939937510", 19},
		{"In the beginning God created the heaven and the earth. And the earth was without form, and void; and darkness was upon the face of the deep. And the Spirit of God moved upon the face of the waters.", 44},
		{"SELECT id, name, email FROM users WHERE created_at > '2024-01-01' ORDER BY name LIMIT 100;", 27},
		{"https://example.com/path/to/resource?query=value&other=123#fragment", 16},
		{"!!!???...,,,;;;:::", 6},
		{"a b c d e f g h i j k l m n o p", 16},
		{"\n\n\n\n\n\n", 1},
		{"Rate limits are restrictions that our API imposes on the number of times a user or client can access our services within a specified period of time. They help protect against abuse or misuse of the API, ensure that everyone has fair access, and help us manage the aggregate load on our infrastructure.", 58},
		{"El zorro marrón rápido salta sobre el perro perezoso. ¿Dónde está la biblioteca? Me gustaría aprender más sobre la historia de España.", 31},
		{"Le renard brun rapide saute par-dessus le chien paresseux. J'aimerais en savoir plus sur l'histoire de la France et ses régions.", 29},
		{"## Installation\n\n1. Run `npm install`.\n2. Copy `.env.example` to `.env`.\n3. Start the server with `npm start`.\n\n- **Note**: requires Node 18+.", 41},
		{"package main\n\nimport (\n\t\"fmt\"\n\t\"os\"\n)\n\nfunc main() {\n\tif len(os.Args) < 2 {\n\t\tfmt.Fprintln(os.Stderr, \"usage: hello NAME\")\n\t\tos.Exit(2)\n\t}\n\tfmt.Printf(\"Hello, %s!\\n\", os.Args[1])\n}\n", 63},
		{"{\"location\": \"San Francisco, CA\", \"unit\": \"celsius\", \"days\": 3}", 22},
		{"getUserByIdAndUpdateLastLoginTimestamp(userId, new Date().toISOString())", 18},
		{"ERROR 2024-06-01 12:34:56,789 [worker-3] com.example.service.OrderService - Failed to process order #123456: java.lang.NullPointerException at line 42", 44},
	}
	for _, tt := range tests {
		got := EstimateTextTokens(tt.text)
		if got < tt.tokens || float64(got) > 2.5*float64(tt.tokens) {
			t.Errorf("EstimateTextTokens(%.40q) = %d, tokenizer %d: want within [1, 2.5] times", tt.text, got, tt.tokens)
		}
	}
}

func TestASCIICost(t *testing.T) {
	if len(asciiCost) != 128 {
		t.Fatalf("len(asciiCost) = %d, want 128", len(asciiCost))
	}
	for c := 0; c < 128; c++ {
		var want int64
		switch {
		case c == ' ', c == '\t', c == '\r', c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
			want = 1
		case c == '\n':
			want = 2
		case c < 0x20 || c == 0x7f:
			want = 4
		default: // digits, punctuation, symbols
			want = 2
		}
		if got := asciiUnits(byte(c)); got != want {
			t.Errorf("asciiUnits(%#x) = %d, want %d", c, got, want)
		}
	}
}

// TestJSONStringUnits checks that a JSON string body costs what the text it
// decodes to costs, escapes and all.
func TestJSONStringUnits(t *testing.T) {
	texts := []string{
		"",
		"plain words",
		"quote \" backslash \\ slash /",
		"line\nfeed\ttab\rcr\bback\fform",
		"café 東京 🦄",
		"\x00\x1f\x7f",
		"word\nword \"quoted\" 123\u00e9456",
		strings.Repeat("ab\\", 10),
	}
	for _, s := range texts {
		for _, escapeAll := range []bool{false, true} {
			raw := jsonBody(t, s, escapeAll)
			if got, want := jsonStringUnits(raw), textUnits(s); got != want {
				t.Errorf("jsonStringUnits(%s) = %d, want %d (escapeAll=%v)", raw, got, want, escapeAll)
			}
		}
	}
	// Lone surrogates decode to U+FFFD.
	if got, want := jsonStringUnits([]byte(`\ud800x`)), textUnits("\ufffdx"); got != want {
		t.Errorf("lone high surrogate: %d, want %d", got, want)
	}
	if got, want := jsonStringUnits([]byte(`\udc00`)), textUnits("\ufffd"); got != want {
		t.Errorf("lone low surrogate: %d, want %d", got, want)
	}
}

// jsonBody returns the body of s encoded as a JSON string, with every
// character but printable ASCII written as a \u escape when escapeAll is set.
func jsonBody(t *testing.T, s string, escapeAll bool) []byte {
	t.Helper()
	if !escapeAll {
		enc, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		return enc[1 : len(enc)-1]
	}
	var b strings.Builder
	for _, r := range s {
		switch {
		case r < utf8.RuneSelf && r >= 0x20 && r != '"' && r != '\\':
			b.WriteRune(r)
		case r >= 0x10000:
			r -= 0x10000
			b.WriteString(hexEscape(0xd800 + r>>10))
			b.WriteString(hexEscape(0xdc00 + r&0x3ff))
		default:
			b.WriteString(hexEscape(r))
		}
	}
	return []byte(b.String())
}

func hexEscape(r rune) string {
	const digits = "0123456789abcdef"
	return `\u` + string([]byte{digits[r>>12&0xf], digits[r>>8&0xf], digits[r>>4&0xf], digits[r&0xf]})
}
