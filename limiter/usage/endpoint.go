package usage

import "strings"

// Endpoint identifies the API operation a request is addressed to; it selects
// how request and response bodies are read.
type Endpoint uint8

// The endpoints this package understands. Unknown covers every other path; its
// bodies are read as generic OpenAI-compatible JSON.
const (
	Unknown Endpoint = iota
	ChatCompletions
	Completions
	Embeddings
	Responses
	// Messages is the Anthropic Messages API (/v1/messages).
	Messages
)

// String returns the endpoint's snake_case name, suitable as a metric label.
func (e Endpoint) String() string {
	switch e {
	case ChatCompletions:
		return "chat_completions"
	case Completions:
		return "completions"
	case Embeddings:
		return "embeddings"
	case Responses:
		return "responses"
	case Messages:
		return "messages"
	default:
		return "unknown"
	}
}

// ClassifyPath returns the endpoint an HTTP request path addresses.
//
// The query string, a fragment and trailing slashes are ignored. Providers and
// gateways mount the OpenAI API under many prefixes ("/v1", "/openai/v1" at
// Groq and Azure, "/openai/deployments/{deployment}" at Azure, "/api/v1" at
// OpenRouter and Venice, "/inference/v1" at Fireworks, and gateway-specific
// ones), so only the final path segments decide: ".../chat/completions",
// ".../completions", ".../embeddings" and ".../responses". Anthropic's API is
// ".../v1/messages" ("/v1/messages" at api.anthropic.com, under a prefix at
// gateways); the version segment is part of the match, so that the OpenAI
// Assistants API's "/v1/threads/{id}/messages" is not taken for it. Matching
// is case-sensitive, as the providers' routing is. Any other path, including
// sub-resources such as "/v1/responses/{id}" or "/v1/messages/count_tokens",
// is Unknown.
func ClassifyPath(path string) Endpoint {
	if i := strings.IndexAny(path, "?#"); i >= 0 {
		path = path[:i]
	}
	path = strings.TrimRight(path, "/")
	if !strings.HasPrefix(path, "/") {
		return Unknown
	}
	switch {
	case strings.HasSuffix(path, "/chat/completions"):
		return ChatCompletions
	case strings.HasSuffix(path, "/completions"):
		return Completions
	case strings.HasSuffix(path, "/embeddings"):
		return Embeddings
	case strings.HasSuffix(path, "/responses"):
		return Responses
	case strings.HasSuffix(path, "/v1/messages"):
		return Messages
	default:
		return Unknown
	}
}
