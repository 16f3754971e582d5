package simprovider

import (
	"log/slog"
	"time"
)

// Defaults for the zero values of [Config].
const (
	// DefaultWindow is the default refill window of both limits.
	DefaultWindow = time.Minute
	// DefaultOutputTokens is the default length of a generated completion.
	DefaultOutputTokens = 16
	// DefaultTokensPerChunk is the default number of tokens per stream chunk.
	DefaultTokensPerChunk = 1
	// DefaultMaxTokens is the default output budget charged for a request
	// that names none (the same default as ARL_DEFAULT_MAX_TOKENS).
	DefaultMaxTokens = 4096
	// DefaultEmbeddingDimensions is the default embedding vector size.
	DefaultEmbeddingDimensions = 8
	// DefaultMaxBodyBytes is the default limit on request bodies.
	DefaultMaxBodyBytes = 32 << 20
)

// Config configures a [Server]. The zero value of every field means its
// default, so Config{} is an unlimited OpenAI-compatible provider.
type Config struct {
	// RPM is the hidden requests limit per API key and window; 0 means
	// unlimited (and no requests headers are sent).
	RPM int64
	// TPM is the hidden tokens limit per API key and window; 0 means
	// unlimited (and no tokens headers are sent).
	TPM int64
	// Window is the time in which an empty bucket refills completely.
	// Default [DefaultWindow].
	Window time.Duration
	// OutputTokens is the length of every generated completion, capped by
	// the request's output budget. Default [DefaultOutputTokens].
	OutputTokens int
	// TokensPerChunk is the number of tokens per streamed content event.
	// Default [DefaultTokensPerChunk].
	TokensPerChunk int
	// ChunkDelay is the pause between streamed content events, measured on
	// the real clock (it paces demos and load tests). Default 0.
	ChunkDelay time.Duration
	// DefaultMaxTokens is the output budget per choice charged for a request
	// that names none. Default [DefaultMaxTokens].
	DefaultMaxTokens int64
	// EmbeddingDimensions is the size of generated embedding vectors when
	// the request does not ask for one. Default [DefaultEmbeddingDimensions].
	EmbeddingDimensions int
	// MaxBodyBytes limits request bodies; larger ones get 413. Default
	// [DefaultMaxBodyBytes].
	MaxBodyBytes int64
	// Now is the clock for limits and headers. Default time.Now.
	Now func() time.Time
	// Dialect is the provider API to speak. Default [OpenAI].
	Dialect Dialect
	// Logger receives one debug line per answered request. Default: no
	// logging.
	Logger *slog.Logger
}

// withDefaults returns c with every zero field replaced by its default.
func (c Config) withDefaults() Config {
	if c.Window <= 0 {
		c.Window = DefaultWindow
	}
	if c.OutputTokens <= 0 {
		c.OutputTokens = DefaultOutputTokens
	}
	if c.TokensPerChunk <= 0 {
		c.TokensPerChunk = DefaultTokensPerChunk
	}
	if c.DefaultMaxTokens <= 0 {
		c.DefaultMaxTokens = DefaultMaxTokens
	}
	if c.EmbeddingDimensions <= 0 {
		c.EmbeddingDimensions = DefaultEmbeddingDimensions
	}
	if c.MaxBodyBytes <= 0 {
		c.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if c.RPM < 0 {
		c.RPM = 0
	}
	if c.TPM < 0 {
		c.TPM = 0
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Dialect == nil {
		c.Dialect = OpenAI{}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}
