package bucket

import "time"

// Dimension is one limit a provider applies to a bucket. Each dimension is
// accounted independently; a request fits only when it fits in every dimension
// whose limit is known.
type Dimension uint8

// The dimensions arl accounts. The order is stable: it indexes [Vector] and is
// part of the Redis state layout.
const (
	Requests       Dimension = iota // requests per minute
	Tokens                          // input plus output tokens per minute
	InputTokens                     // input tokens per minute (Anthropic)
	OutputTokens                    // output tokens per minute (Anthropic)
	RequestsPerDay                  // requests per day (Groq, Gemini)
	TokensPerDay                    // tokens per day
	TokensPerMonth                  // tokens per month (Mistral)
	NumDimensions                   // number of dimensions; not a dimension
)

var dimensionNames = [NumDimensions]string{
	Requests:       "requests",
	Tokens:         "tokens",
	InputTokens:    "input_tokens",
	OutputTokens:   "output_tokens",
	RequestsPerDay: "requests_per_day",
	TokensPerDay:   "tokens_per_day",
	TokensPerMonth: "tokens_per_month",
}

// String returns the dimension's snake_case name, which is also the value of
// the x-arl-reason header when this dimension rejects a request.
func (d Dimension) String() string {
	if d < NumDimensions {
		return dimensionNames[d]
	}
	return "unknown"
}

// DefaultWindow returns the period over which a dimension's limit refills:
// one minute for per-minute limits, 24 hours for per-day limits, 30 days for
// per-month limits.
func (d Dimension) DefaultWindow() time.Duration {
	switch d {
	case RequestsPerDay, TokensPerDay:
		return 24 * time.Hour
	case TokensPerMonth:
		return 30 * 24 * time.Hour
	default:
		return time.Minute
	}
}

// Vector holds one integer amount per dimension: a request's cost, its actual
// usage, or a set of limits.
type Vector [NumDimensions]int64

// Cost builds the vector a request consumes: one request in each request
// dimension, and its input and output tokens in each token dimension.
func Cost(requests, input, output int64) Vector {
	var v Vector
	v[Requests] = requests
	v[RequestsPerDay] = requests
	v[Tokens] = input + output
	v[TokensPerDay] = input + output
	v[TokensPerMonth] = input + output
	v[InputTokens] = input
	v[OutputTokens] = output
	return v
}

// IsZero reports whether every amount is zero.
func (v Vector) IsZero() bool { return v == Vector{} }
