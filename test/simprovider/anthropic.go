package simprovider

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Anthropic is the [Dialect] of the Anthropic Messages API.
//
// Path: POST /v1/messages (also under a gateway's prefix). The credential is
// the x-api-key header. The body must name a model, max_tokens (at least 1)
// and at least one message; the prompt is [EstimateTokens] of the system
// prompt and of the messages' content (strings, or the text of content
// blocks). There is no n: one choice.
//
// Quotas: requests ([Config.RPM]), input tokens ([Config.InputTPM]) and output
// tokens ([Config.OutputTPM]) per Config.Window, Anthropic's RPM, ITPM and
// OTPM; [Config.TPM] is the combined tokens limit of older accounts. Output
// tokens are charged max_tokens at admission and the unused part is given
// back when the answer ends, as Anthropic adjusts its estimate.
//
// Headers: anthropic-ratelimit-{requests,input-tokens,output-tokens,tokens}-
// {limit,remaining,reset} for each limited quota, resets as RFC 3339 instants
// (when the bucket is full again, rounded up to the second) and token
// remaining values rounded to the nearest thousand (never above the limit),
// as Anthropic rounds them: with small test limits the token headers say
// little, the request headers stay exact. The tokens family is the TPM quota
// when one is set, and otherwise the input and output quotas together (limits
// and remaining values added up, the later reset). On a rejection
// retry-after, in whole seconds; always request-id and
// anthropic-organization-id.
//
// Errors are {"type":"error","error":{"type","message"},"request_id"}: a
// rejection is a rate_limit_error whose message names the limit ("... of
// 8,000 output tokens per minute ..."), 529 an overloaded_error.
//
// Answers are message objects with usage {input_tokens,
// cache_creation_input_tokens, cache_read_input_tokens, output_tokens}.
// Streams send message_start (the input usage), content_block_start, a ping,
// one content_block_delta per chunk (pings among them), content_block_stop,
// message_delta (stop_reason and the output usage) and message_stop.
type Anthropic struct{}

var _ Dialect = Anthropic{}

// anthropicRounding is the granularity of Anthropic's token remaining values.
const anthropicRounding = 1000

// anthropicPingEvery is the number of content deltas between pings.
const anthropicPingEvery = 8

// anthropicOrganization is the simulator's organization id.
const anthropicOrganization = "0d5c7a0e-5f1d-4c3b-9a57-51e1a1a0c0de"

// Name implements [Dialect].
func (Anthropic) Name() string { return "anthropic" }

// APIKey implements [Dialect]: the x-api-key header.
func (Anthropic) APIKey(r *http.Request) string {
	return strings.TrimSpace(r.Header.Get("X-Api-Key"))
}

// Enforcement implements [Dialect]: every quota per Config.Window, output
// tokens estimated from max_tokens and settled at the end.
func (Anthropic) Enforcement() Enforcement { return Enforcement{} }

// ParseRequest implements [Dialect].
func (Anthropic) ParseRequest(r *http.Request, body []byte) (*Call, error) {
	if !strings.HasSuffix(r.URL.Path, "/v1/messages") {
		return nil, &Problem{Status: http.StatusNotFound, Kind: ProblemNotFound, Message: "Not Found"}
	}
	if r.Method != http.MethodPost {
		return nil, &Problem{Status: http.StatusMethodNotAllowed, Kind: ProblemMethodNotAllowed,
			Message: fmt.Sprintf("Method %s not allowed for %s", r.Method, r.URL.Path)}
	}
	var req struct {
		Model     string          `json:"model"`
		MaxTokens *int64          `json:"max_tokens"`
		System    json.RawMessage `json:"system"`
		Messages  []struct {
			Content json.RawMessage `json:"content"`
		} `json:"messages"`
		Stream bool `json:"stream"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) && typeErr.Field != "" {
			return nil, invalid(typeErr.Field, "%s: Input should be a valid %s", typeErr.Field, typeErr.Type)
		}
		return nil, invalid("", "The request body is not valid JSON: %v", err)
	}
	switch {
	case req.Model == "":
		return nil, invalid("model", "model: Field required")
	case req.MaxTokens == nil:
		return nil, invalid("max_tokens", "max_tokens: Field required")
	case *req.MaxTokens < 1:
		return nil, invalid("max_tokens", "max_tokens: Input should be greater than or equal to 1")
	case len(req.Messages) == 0:
		return nil, invalid("messages", "messages: at least one message is required")
	}
	var tc textCounter
	if err := countContent(req.System, &tc); err != nil {
		return nil, invalid("system", "system: Input should be a valid string or a list of text blocks")
	}
	for i, m := range req.Messages {
		if err := countContent(m.Content, &tc); err != nil {
			return nil, invalid(fmt.Sprintf("messages.%d.content", i),
				"messages.%d.content: Input should be a valid string or a list of content blocks", i)
		}
	}
	return &Call{Kind: KindMessage, Model: req.Model, PromptTokens: tc.total(), MaxOutputTokens: *req.MaxTokens,
		Choices: 1, Stream: req.Stream, IncludeUsage: true}, nil
}

// SetHeaders implements [Dialect].
func (Anthropic) SetHeaders(h http.Header, m Meta) {
	h.Set("Request-Id", m.RequestID)
	h.Set("Anthropic-Organization-Id", anthropicOrganization)
	q := m.Limits.Quotas
	setAnthropicFamily(h, "requests", q[QuotaRequests], false, m.At)
	setAnthropicFamily(h, "input-tokens", q[QuotaInputTokens], true, m.At)
	setAnthropicFamily(h, "output-tokens", q[QuotaOutputTokens], true, m.At)
	combined := q[QuotaTokens]
	if combined.Limit <= 0 {
		for _, d := range []Dimension{q[QuotaInputTokens], q[QuotaOutputTokens]} {
			if d.Limit > 0 {
				combined.Limit += d.Limit
				combined.Remaining += roundAnthropic(d)
				combined.Reset = max(combined.Reset, d.Reset)
			}
		}
	}
	setAnthropicFamily(h, "tokens", combined, true, m.At)
	setRetryAfter(h, m.Limits.RetryAfter, "")
}

// setAnthropicFamily writes anthropic-ratelimit-<name>-{limit,remaining,reset}
// for a limited quota; token remaining values are rounded.
func setAnthropicFamily(h http.Header, name string, d Dimension, tokens bool, at time.Time) {
	if d.Limit <= 0 {
		return
	}
	remaining := d.Remaining
	if tokens {
		remaining = roundAnthropic(d)
	}
	p := "Anthropic-Ratelimit-" + name + "-"
	h.Set(p+"Limit", strconv.FormatInt(d.Limit, 10))
	h.Set(p+"Remaining", strconv.FormatInt(remaining, 10))
	h.Set(p+"Reset", resetInstant(at, d.Reset).UTC().Format(time.RFC3339))
}

// roundAnthropic rounds a token remaining value to the nearest thousand,
// never above the limit.
func roundAnthropic(d Dimension) int64 {
	r := (d.Remaining + anthropicRounding/2) / anthropicRounding * anthropicRounding
	return min(r, d.Limit)
}

// anthropicError is Anthropic's error envelope.
type anthropicError struct {
	Type      string              `json:"type"`
	Error     anthropicErrorInner `json:"error"`
	RequestID string              `json:"request_id,omitempty"`
}

// anthropicErrorInner is the inside of Anthropic's error envelope.
type anthropicErrorInner struct {
	Type    string `json:"type"`
	Message string `json:"message"`
}

// ErrorBody implements [Dialect].
func (Anthropic) ErrorBody(p *Problem, m Meta) []byte {
	e := anthropicErrorInner{Type: anthropicErrorType(p.Status), Message: p.Message}
	switch {
	case p.Kind == ProblemAuthentication && p.Status == http.StatusUnauthorized:
		e.Message = "x-api-key header is required"
	case p.Kind == ProblemRateLimit && p.Rejection != nil:
		e.Message = anthropicRateLimitMessage(p.Rejection)
	}
	return mustJSON(anthropicError{Type: "error", Error: e, RequestID: m.RequestID},
		`{"type":"error","error":{"type":"api_error","message":"Internal server error"}}`)
}

// anthropicErrorType returns Anthropic's error type for a status.
func anthropicErrorType(status int) string {
	switch status {
	case http.StatusUnauthorized:
		return "authentication_error"
	case http.StatusPaymentRequired:
		return "billing_error"
	case http.StatusForbidden:
		return "permission_error"
	case http.StatusNotFound:
		return "not_found_error"
	case http.StatusRequestEntityTooLarge:
		return "request_too_large"
	case http.StatusTooManyRequests:
		return "rate_limit_error"
	case 529:
		return "overloaded_error"
	}
	if status >= 500 {
		return "api_error"
	}
	return "invalid_request_error"
}

// anthropicRateLimitMessage words a rejection the way Anthropic does, naming
// the limit ("of 8,000 output tokens per minute").
func anthropicRateLimitMessage(r *Rejection) string {
	unit := map[Quota]string{
		QuotaRequests:       "requests per minute",
		QuotaRequestsPerDay: "requests per day",
		QuotaTokens:         "tokens per minute",
		QuotaInputTokens:    "input tokens per minute",
		QuotaOutputTokens:   "output tokens per minute",
		QuotaTokensPerMonth: "tokens per month",
	}[r.Quota]
	return fmt.Sprintf("This request would exceed the rate limit for your organization (%s) of %s %s. "+
		"For details, refer to: https://docs.claude.com/en/api/rate-limits. You can see the response headers for "+
		"current usage. Please reduce the prompt length or the maximum tokens requested, or try again later.",
		anthropicOrganization, formatCount(r.Limit), unit)
}

// anthropicUsage is the usage object of a message. Its fields are written
// in full, zeros included, as Anthropic writes them.
type anthropicUsage struct {
	InputTokens              int64  `json:"input_tokens"`
	CacheCreationInputTokens int64  `json:"cache_creation_input_tokens"`
	CacheReadInputTokens     int64  `json:"cache_read_input_tokens"`
	OutputTokens             int64  `json:"output_tokens"`
	ServiceTier              string `json:"service_tier"`
}

// anthropicMessage is a message object.
type anthropicMessage struct {
	ID           string           `json:"id"`
	Type         string           `json:"type"`
	Role         string           `json:"role"`
	Model        string           `json:"model"`
	Content      []map[string]any `json:"content"`
	StopReason   *string          `json:"stop_reason"`
	StopSequence *string          `json:"stop_sequence"`
	Usage        anthropicUsage   `json:"usage"`
}

// anthropicStopReason returns the stop_reason of an answer.
func anthropicStopReason(o *Output) string {
	if len(o.Choices) > 0 && o.Choices[0].Truncated {
		return "max_tokens"
	}
	return "end_turn"
}

// message builds the message object of an answer; a streamed one starts
// without content, stop reason or output.
func (Anthropic) message(c *Call, o *Output, started bool) anthropicMessage {
	m := anthropicMessage{ID: "msg_" + o.ID, Type: "message", Role: "assistant", Model: c.Model,
		Content: []map[string]any{}, Usage: anthropicUsage{InputTokens: o.PromptTokens, ServiceTier: "standard"}}
	if started {
		m.Usage.OutputTokens = 1
		return m
	}
	reason := anthropicStopReason(o)
	m.StopReason = &reason
	m.Usage.OutputTokens = o.CompletionTokens
	for _, ch := range o.Choices {
		m.Content = append(m.Content, map[string]any{"type": "text", "text": ch.Text()})
	}
	return m
}

// ResponseBody implements [Dialect].
func (a Anthropic) ResponseBody(c *Call, o *Output) ([]byte, error) {
	b, err := json.Marshal(a.message(c, o, false))
	if err != nil {
		return nil, fmt.Errorf("anthropic: encode message: %w", err)
	}
	return b, nil
}

// StreamEvents implements [Dialect].
func (a Anthropic) StreamEvents(c *Call, o *Output) ([]Event, error) {
	var b streamBuilder
	ping := func() { b.named("ping", map[string]string{"type": "ping"}, 0) }
	b.named("message_start", map[string]any{"type": "message_start", "message": a.message(c, o, true)}, 0)
	for i, ch := range o.Choices {
		b.named("content_block_start", map[string]any{"type": "content_block_start", "index": i,
			"content_block": map[string]string{"type": "text", "text": ""}}, 0)
		ping()
		for k, chunk := range ch.Chunks {
			if k > 0 && k%anthropicPingEvery == 0 {
				ping()
			}
			b.named("content_block_delta", map[string]any{"type": "content_block_delta", "index": i,
				"delta": map[string]string{"type": "text_delta", "text": chunk.Text}}, chunk.Tokens)
		}
		b.named("content_block_stop", map[string]any{"type": "content_block_stop", "index": i}, 0)
	}
	b.named("message_delta", map[string]any{"type": "message_delta",
		"delta": map[string]any{"stop_reason": anthropicStopReason(o), "stop_sequence": nil},
		"usage": map[string]int64{"output_tokens": o.CompletionTokens}}, 0)
	b.named("message_stop", map[string]string{"type": "message_stop"}, 0)
	if b.err != nil {
		return nil, fmt.Errorf("anthropic: encode stream: %w", b.err)
	}
	return b.events, nil
}
