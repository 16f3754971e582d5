package usage

import "testing"

func TestClassifyPath(t *testing.T) {
	tests := []struct {
		path string
		want Endpoint
	}{
		{"/v1/chat/completions", ChatCompletions},
		{"/v1/chat/completions?foo=bar", ChatCompletions},
		{"/v1/chat/completions/", ChatCompletions},
		{"/v1/chat/completions#frag", ChatCompletions},
		{"/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21", ChatCompletions},
		{"/openai/v1/chat/completions", ChatCompletions}, // Groq, Azure v1
		{"/api/v1/chat/completions", ChatCompletions},    // OpenRouter, Venice
		{"/inference/v1/chat/completions", ChatCompletions},
		{"/chat/completions", ChatCompletions},
		{"/v1/completions", Completions},
		{"/openai/deployments/davinci/completions?api-version=2024-10-21", Completions},
		{"/v1/embeddings", Embeddings},
		{"/openai/deployments/ada/embeddings?api-version=2024-10-21", Embeddings},
		{"/v1/responses", Responses},
		{"/openai/v1/responses", Responses},
		{"/openai/responses?api-version=2025-04-01-preview", Responses},
		{"/v1/responses/resp_123", Unknown},
		{"/v1/responses/resp_123/cancel", Unknown},
		{"/v1/chat/completions/chatcmpl-123", Unknown},
		{"/v1/models", Unknown},
		{"/v1/messages", Messages},
		{"/v1/messages?beta=true", Messages},
		{"/v1/messages/", Messages},
		{"/anthropic/v1/messages", Messages}, // gateways
		{"/v1/messages/count_tokens", Unknown},
		{"/v1/messages/batches", Unknown},
		{"/v1/threads/thread_abc/messages", Unknown}, // OpenAI Assistants
		{"/v1/threads/v1/messagesx", Unknown},
		{"/messages", Unknown},
		{"/v1/Messages", Unknown},
		{"/v1/audio/transcriptions", Unknown},
		{"/v1/Chat/Completions", Unknown},
		{"v1/chat/completions", Unknown},
		{"/v1/chat/completionsx", Unknown},
		{"/v1/xembeddings", Unknown},
		{"", Unknown},
		{"/", Unknown},
		{"?/v1/chat/completions", Unknown},
	}
	for _, tt := range tests {
		if got := ClassifyPath(tt.path); got != tt.want {
			t.Errorf("ClassifyPath(%q) = %v, want %v", tt.path, got, tt.want)
		}
	}
}

func TestEndpointString(t *testing.T) {
	tests := []struct {
		ep   Endpoint
		want string
	}{
		{Unknown, "unknown"},
		{ChatCompletions, "chat_completions"},
		{Completions, "completions"},
		{Embeddings, "embeddings"},
		{Responses, "responses"},
		{Messages, "messages"},
		{Endpoint(200), "unknown"},
	}
	for _, tt := range tests {
		if got := tt.ep.String(); got != tt.want {
			t.Errorf("Endpoint(%d).String() = %q, want %q", tt.ep, got, tt.want)
		}
	}
}
