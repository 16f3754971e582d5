package simprovider

import (
	"math"
	"strings"
	"testing"
)

func TestEstimateTokens(t *testing.T) {
	tests := []struct {
		text string
		want int64
	}{
		{"", 0},
		{"a", 1},
		{"abcd", 1},
		{"abcde", 2},
		{strings.Repeat("x", 400), 100},
		{"héllo wörld", 3}, // 11 runes, not 13 bytes
	}
	for _, tt := range tests {
		if got := EstimateTokens(tt.text); got != tt.want {
			t.Errorf("EstimateTokens(%q) = %d, want %d", tt.text, got, tt.want)
		}
	}
}

func TestGenerateChoice(t *testing.T) {
	tests := []struct {
		name       string
		tokens     int64
		perChunk   int
		wantChunks []int64
	}{
		{name: "one token per chunk", tokens: 3, perChunk: 1, wantChunks: []int64{1, 1, 1}},
		{name: "last chunk short", tokens: 7, perChunk: 3, wantChunks: []int64{3, 3, 1}},
		{name: "single chunk", tokens: 4, perChunk: 10, wantChunks: []int64{4}},
		{name: "zero per chunk means one", tokens: 2, perChunk: 0, wantChunks: []int64{1, 1}},
		{name: "nothing", tokens: 0, perChunk: 1, wantChunks: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := generateChoice(2, tt.tokens, tt.perChunk, false)
			var sizes []int64
			for _, ch := range c.Chunks {
				sizes = append(sizes, ch.Tokens)
				if got := int64(len(strings.Fields(ch.Text))); got != ch.Tokens {
					t.Errorf("chunk %q has %d words, says %d tokens", ch.Text, got, ch.Tokens)
				}
			}
			if len(sizes) != len(tt.wantChunks) {
				t.Fatalf("chunk sizes = %v, want %v", sizes, tt.wantChunks)
			}
			for i := range sizes {
				if sizes[i] != tt.wantChunks[i] {
					t.Fatalf("chunk sizes = %v, want %v", sizes, tt.wantChunks)
				}
			}
			if got := int64(len(strings.Fields(c.Text()))); got != tt.tokens || c.Tokens != tt.tokens {
				t.Errorf("text %q has %d words, Tokens = %d, want %d", c.Text(), got, c.Tokens, tt.tokens)
			}
		})
	}
}

func TestGenerateEmbedding(t *testing.T) {
	for _, dims := range []int{1, 8, 64} {
		v := generateEmbedding(3, dims)
		if len(v) != dims {
			t.Fatalf("len = %d, want %d", len(v), dims)
		}
		var norm float64
		for _, x := range v {
			norm += x * x
		}
		if math.Abs(math.Sqrt(norm)-1) > 1e-4 {
			t.Errorf("dims %d: norm = %v, want 1", dims, math.Sqrt(norm))
		}
	}
	a, b := generateEmbedding(0, 8), generateEmbedding(1, 8)
	if a[0] == b[0] && a[1] == b[1] {
		t.Errorf("inputs 0 and 1 got the same vector %v", a)
	}
}
