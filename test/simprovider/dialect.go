package simprovider

import (
	"net/http"
	"time"
)

// Dialect is the provider-specific half of the simulator: how a provider's
// requests are routed and decoded, how it enforces the configured quotas, and
// how its headers, error bodies, JSON answers and streams are written. The
// [Server] does everything else (limits, statistics, overrides, gates, pacing)
// the same way for every dialect.
//
// Implementations must be safe for concurrent use; the dialects of this
// package are stateless values (see [DialectFor]).
type Dialect interface {
	// Name returns the provider's short lower-case name, such as "openai",
	// the name arl's provider header takes.
	Name() string

	// APIKey returns the credential that identifies the caller's limits, or
	// "" when the request carries none.
	APIKey(r *http.Request) string

	// ParseRequest recognises the endpoint from the request's method and
	// path and decodes body into a [Call]. A request the provider would
	// refuse (unknown path, wrong method, malformed or invalid JSON) yields a
	// *[Problem] as the error.
	ParseRequest(r *http.Request, body []byte) (*Call, error)

	// Enforcement returns how the provider enforces the quotas the
	// [Config] sets: over which windows, and how output tokens are charged.
	// The server calls it once, in [New].
	Enforcement() Enforcement

	// SetHeaders writes the provider's response metadata headers (request
	// id, processing time, rate-limit state and, on a rejection, retry
	// hints) into h. It is called for every answer, errors included.
	SetHeaders(h http.Header, m Meta)

	// ErrorBody returns the provider's error body for p; m is the metadata
	// of the answer (some providers repeat the rate-limit state in the
	// body).
	ErrorBody(p *Problem, m Meta) []byte

	// ResponseBody returns the JSON body of a non-streamed answer.
	ResponseBody(c *Call, o *Output) ([]byte, error)

	// StreamEvents returns the complete server-sent event stream of a
	// streamed answer, one element per event, in order. The server writes
	// and flushes them one by one.
	StreamEvents(c *Call, o *Output) ([]Event, error)
}

// Kind is the provider-neutral kind of endpoint a request addresses.
type Kind string

// The endpoint kinds the server distinguishes.
const (
	// KindChat is a chat completion (OpenAI /v1/chat/completions).
	KindChat Kind = "chat"
	// KindCompletion is a legacy text completion (OpenAI /v1/completions).
	KindCompletion Kind = "completion"
	// KindEmbedding is an embeddings request; it generates no output tokens.
	KindEmbedding Kind = "embedding"
	// KindResponse is an OpenAI Responses API request (/v1/responses).
	KindResponse Kind = "response"
	// KindMessage is an Anthropic Messages API request (/v1/messages).
	KindMessage Kind = "message"
)

// Generates reports whether requests of kind k produce output tokens (and so
// are charged an output budget).
func (k Kind) Generates() bool { return k != KindEmbedding }

// Call is a decoded request in provider-neutral terms: what the server needs
// to charge it and to generate an answer.
type Call struct {
	// Kind is the endpoint kind.
	Kind Kind
	// Model is the requested model (for Azure deployments, the deployment
	// name when the body names no model).
	Model string
	// PromptTokens is the estimated size of the prompt (see
	// [EstimateTokens]).
	PromptTokens int64
	// MaxOutputTokens is the output budget per choice named by the request,
	// or 0 when it names none (the server then uses
	// Config.DefaultMaxTokens).
	MaxOutputTokens int64
	// Choices is the number of completions to generate (n, times the number
	// of prompts for legacy completions; 1 where the API has no n); at least
	// 1.
	Choices int
	// Stream is true when the client asked for server-sent events.
	Stream bool
	// IncludeUsage is true when a stream must end with a usage event
	// (OpenAI stream_options.include_usage). Dialects whose streams always
	// carry usage ignore it.
	IncludeUsage bool
	// Inputs is the number of inputs of an embeddings request.
	Inputs int
	// Dimensions is the embedding size the request asked for, or 0.
	Dimensions int
	// EmbeddingBase64 is true when embeddings must be sent base64-encoded
	// (OpenAI encoding_format "base64") instead of as JSON numbers.
	EmbeddingBase64 bool
}

// Output is what the server generated for an admitted [Call].
type Output struct {
	// ID is a unique suffix for the response's identifiers; the dialect
	// adds its own prefix ("chatcmpl-", "resp_", ...).
	ID string
	// Created is the time the request arrived.
	Created time.Time
	// Choices holds one generated completion per requested choice (empty
	// for embeddings).
	Choices []Choice
	// Embeddings holds one vector per input (embeddings only).
	Embeddings [][]float64
	// PromptTokens is the prompt size reported in usage.
	PromptTokens int64
	// CompletionTokens is the sum of the choices' tokens.
	CompletionTokens int64
}

// Choice is one generated completion, already cut into stream chunks.
type Choice struct {
	// Chunks are the pieces of text in stream order; their concatenation is
	// the full content.
	Chunks []Chunk
	// Tokens is the number of tokens in the content.
	Tokens int64
	// Truncated is true when the output was cut by the request's output
	// budget (finish_reason "length" at OpenAI, stop_reason "max_tokens" at
	// Anthropic).
	Truncated bool
}

// Text returns the full content of the choice.
func (c Choice) Text() string {
	n := 0
	for _, ch := range c.Chunks {
		n += len(ch.Text)
	}
	b := make([]byte, 0, n)
	for _, ch := range c.Chunks {
		b = append(b, ch.Text...)
	}
	return string(b)
}

// Chunk is one piece of generated text.
type Chunk struct {
	// Text is the content of the piece.
	Text string
	// Tokens is the number of tokens in Text.
	Tokens int64
}

// Event is one server-sent event of a stream.
type Event struct {
	// Data is the complete wire form of the event, including its trailing
	// blank line (for example "data: {...}\n\n").
	Data []byte
	// Tokens is the number of generated content tokens the event carries;
	// events with Tokens > 0 are paced by Config.ChunkDelay and the first of
	// them is where a hold [Gate] stops the stream.
	Tokens int64
}

// Meta is the response metadata a dialect renders as headers.
type Meta struct {
	// RequestID is a unique id for the request.
	RequestID string
	// Processing is the time from the request's arrival to its answer's
	// headers, on the server's clock.
	Processing time.Duration
	// At is the instant Limits describes, the request's arrival on the
	// server's clock: resets written as instants (RFC 3339, Unix time) count
	// from it.
	At time.Time
	// Limits is the state of the caller's rate limits after this request.
	Limits LimitState
	// Charged is what the request was charged in tokens (prompt plus output
	// budget times choices); 0 when it was not admitted.
	Charged int64
}

// LimitState is the state of one API key's limits as the headers report it.
type LimitState struct {
	// Quotas holds the state of each quota, indexed by [Quota]. A quota with
	// Limit 0 is unlimited, and dialects write no headers for it.
	Quotas [NumQuotas]Dimension
	// RetryAfter is how long the caller must wait before the rejected
	// request would fit; zero unless the request was rejected by the
	// limiter.
	RetryAfter time.Duration
}

// Dimension is the state of one limited quota.
type Dimension struct {
	// Limit is the bucket's capacity per window; 0 means unlimited, and
	// dialects then write no headers for the quota.
	Limit int64
	// Remaining is the whole number of units left now.
	Remaining int64
	// Reset is the time until the bucket is full again.
	Reset time.Duration
	// Window is the time in which the empty bucket refills completely.
	Window time.Duration
}

// ProblemKind classifies an error answer in provider-neutral terms.
type ProblemKind string

// The kinds of error answers.
const (
	// ProblemAuthentication is a missing or invalid credential (401).
	ProblemAuthentication ProblemKind = "authentication"
	// ProblemInvalidRequest is a malformed or invalid request (400, and
	// other 4xx without a more specific kind).
	ProblemInvalidRequest ProblemKind = "invalid_request"
	// ProblemNotFound is an unknown path (404).
	ProblemNotFound ProblemKind = "not_found"
	// ProblemMethodNotAllowed is a known path with the wrong method (405).
	ProblemMethodNotAllowed ProblemKind = "method_not_allowed"
	// ProblemTooLarge is a request body above the server's limit (413).
	ProblemTooLarge ProblemKind = "too_large"
	// ProblemRateLimit is a rate-limit rejection (429).
	ProblemRateLimit ProblemKind = "rate_limit"
	// ProblemServer is a server-side failure (5xx).
	ProblemServer ProblemKind = "server"
)

// Problem is an error answer in provider-neutral terms. It implements error
// so that [Dialect.ParseRequest] can return it.
type Problem struct {
	// Status is the HTTP status code.
	Status int
	// Kind classifies the problem.
	Kind ProblemKind
	// Message is human-readable text; dialects may replace it with their
	// provider's wording (rate-limit messages in particular).
	Message string
	// Param names the offending request field, if any.
	Param string
	// Rejection describes a limiter rejection (Kind ProblemRateLimit from
	// the limiter; nil for forced answers).
	Rejection *Rejection
	// Model is the requested model, when known.
	Model string
}

// Error implements error.
func (p *Problem) Error() string {
	return http.StatusText(p.Status) + ": " + p.Message
}

// Rejection describes why the limiter refused a request.
type Rejection struct {
	// Quota is the first exhausted quota (in the order of the Quota
	// constants).
	Quota Quota
	// Limit is that quota's capacity.
	Limit int64
	// Used is the part of the capacity in use (capacity minus remaining).
	Used int64
	// Requested is what the request asked for in that quota.
	Requested int64
	// RetryAfter is the wait until the request would fit in every quota.
	RetryAfter time.Duration
}

// Reasons, the keys of [KeyStats.Rejected]: a limiter rejection is keyed by
// its quota's name ([Quota.String]), of which the two most common have
// constants, and an error forced by an [Override] by ReasonForced.
const (
	// ReasonRequests is a rejection for lack of request capacity.
	ReasonRequests = "requests"
	// ReasonTokens is a rejection for lack of token capacity.
	ReasonTokens = "tokens"
	// ReasonForced is an error answer forced by an [Override].
	ReasonForced = "forced"
)
