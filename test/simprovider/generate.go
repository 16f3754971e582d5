package simprovider

import (
	"math"
	"strings"
	"unicode/utf8"
)

// charsPerToken is the rule of thumb the simulator uses for prompt size:
// about four characters of English text per token.
const charsPerToken = 4

// EstimateTokens returns the simulator's token count for text: the number of
// characters (runes) divided by four, rounded up. Dialects apply it to the
// concatenation of all text in a prompt, so tests can predict the charge.
func EstimateTokens(text string) int64 {
	n := int64(utf8.RuneCountInString(text))
	return (n + charsPerToken - 1) / charsPerToken
}

// textCounter accumulates prompt text for [EstimateTokens] without building
// the whole string.
type textCounter struct {
	runes  int64
	tokens int64 // tokens given directly (token-array prompts)
}

// addText counts s.
func (t *textCounter) addText(s string) { t.runes += int64(utf8.RuneCountInString(s)) }

// addTokens counts n prompt tokens given as token ids.
func (t *textCounter) addTokens(n int) { t.tokens += int64(n) }

// total returns the estimated prompt tokens.
func (t *textCounter) total() int64 {
	return (t.runes+charsPerToken-1)/charsPerToken + t.tokens
}

// vocabulary is the simulator's "model": every generated token is one of
// these words, so a client that counts words counts tokens.
var vocabulary = [...]string{
	"the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog",
	"rate", "limit", "token", "bucket", "stream", "reply", "model", "prompt",
	"alpha", "beta", "gamma", "delta", "river", "stone", "cloud", "light",
	"north", "south", "east", "west", "green", "blue", "amber", "violet",
}

// generateChoice returns a completion of tokens words for choice index i, cut
// into chunks of perChunk tokens. Words after the first are preceded by a
// space, so the chunks concatenate to readable text.
func generateChoice(i int, tokens int64, perChunk int, truncated bool) Choice {
	c := Choice{Tokens: tokens, Truncated: truncated}
	if perChunk < 1 {
		perChunk = 1
	}
	var b strings.Builder
	var inChunk int64
	for t := int64(0); t < tokens; t++ {
		if t > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(vocabulary[(int64(i)*7+t)%int64(len(vocabulary))])
		inChunk++
		if inChunk == int64(perChunk) || t == tokens-1 {
			c.Chunks = append(c.Chunks, Chunk{Text: b.String(), Tokens: inChunk})
			b.Reset()
			inChunk = 0
		}
	}
	return c
}

// generateEmbedding returns a deterministic unit vector of dims components for
// input index i.
func generateEmbedding(i, dims int) []float64 {
	v := make([]float64, dims)
	var norm float64
	for j := range v {
		v[j] = math.Sin(float64(i*dims+j) + 1)
		norm += v[j] * v[j]
	}
	norm = math.Sqrt(norm)
	for j := range v {
		// Round so that the JSON stays short and stable.
		v[j] = math.Round(v[j]/norm*1e6) / 1e6
	}
	return v
}
