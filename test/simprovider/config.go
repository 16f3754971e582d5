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
//
// The limits are the hidden quotas of every API key (see [Quota]); 0 means
// unlimited, and no headers are sent for the quota. Every quota set is
// enforced, whatever the dialect; the dialect's headers report the quotas
// its provider reports (Groq's request headers the requests per day,
// Anthropic's the input and output tokens, ...), so a quota the provider does
// not report stays hidden, as a real provider's undocumented limits do.
type Config struct {
	// RPM is the requests limit per API key and window.
	RPM int64
	// TPM is the tokens limit per API key and window: prompt plus output
	// budget times choices.
	TPM int64
	// RPD is the requests limit per API key and day.
	RPD int64
	// InputTPM is the prompt tokens limit per API key and window.
	InputTPM int64
	// OutputTPM is the output tokens limit per API key and window.
	OutputTPM int64
	// TokensPerMonth is the tokens limit per API key and 30 days, counted
	// as TPM is.
	TokensPerMonth int64
	// Window is the time in which an empty per-window bucket (RPM, TPM,
	// InputTPM, OutputTPM) refills completely; a dialect whose provider
	// states a limit over a window of its own prorates the amount to it
	// (see [Enforcement.Windows]). Default [DefaultWindow].
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
	// NewID returns the unique part of each request's and response's id
	// (x-request-id, chatcmpl-..., resp_...). Default: random. With a fixed
	// Now and a NewID that counts, the same requests get the same answers
	// byte for byte. It is called concurrently.
	NewID func() string
	// Dialect is the provider API to speak (see [DialectFor]). Default
	// [OpenAI].
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
	for _, v := range []*int64{&c.RPM, &c.TPM, &c.RPD, &c.InputTPM, &c.OutputTPM, &c.TokensPerMonth} {
		*v = max(*v, 0)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.NewID == nil {
		c.NewID = newID
	}
	if c.Dialect == nil {
		c.Dialect = OpenAI{}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}
