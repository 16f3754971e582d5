package provider

import (
	"encoding/json"
	"testing"
)

// openAIShaped are the dialects that render OpenAI's error envelope.
var openAIShaped = []string{OpenAI, Azure, Groq, Venice, Together, Mistral, Fireworks, Generic, "deepseek"}

// message has characters JSON must escape.
const message = "arl: rate limit on \"tokens\" reached\n<retry> & wait"

func TestOpenAIErrorBody(t *testing.T) {
	for _, name := range openAIShaped {
		d := ForName(name)
		// The fields the OpenAI SDKs read, with param present and null.
		var e struct {
			Error struct {
				Message, Type, Code string
				Param               *string
			}
		}
		var raw struct {
			Error map[string]json.RawMessage
		}
		body := d.ErrorBody(429, "tokens", message)
		if err := json.Unmarshal(body, &e); err != nil {
			t.Fatalf("%s: %v: %s", name, err, body)
		}
		if err := json.Unmarshal(body, &raw); err != nil {
			t.Fatal(err)
		}
		if e.Error.Code != "rate_limit_exceeded" || e.Error.Type != "tokens" || e.Error.Message != message || e.Error.Param != nil || string(raw.Error["param"]) != "null" {
			t.Errorf("%s 429 body %s", name, body)
		}
		body = d.ErrorBody(503, "backend_unavailable", "down")
		if err := json.Unmarshal(body, &e); err != nil || e.Error.Code == "rate_limit_exceeded" || e.Error.Type != "server_error" || e.Error.Message != "down" {
			t.Errorf("%s 503 body %s (%v)", name, body, err)
		}
	}
}

func TestAnthropicErrorBody(t *testing.T) {
	d := ForName(Anthropic)
	tests := []struct {
		status       int
		reason, want string
	}{
		{429, "tokens", `{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}`},
		{429, "queue_full", `{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}`},
		{529, "overloaded", `{"type":"error","error":{"type":"overloaded_error","message":"slow down"}}`},
		{503, "overloaded", `{"type":"error","error":{"type":"overloaded_error","message":"slow down"}}`},
		{503, "backend_unavailable", `{"type":"error","error":{"type":"api_error","message":"slow down"}}`},
	}
	for _, tc := range tests {
		if got := string(d.ErrorBody(tc.status, tc.reason, "slow down")); got != tc.want {
			t.Errorf("%d %s: %s, want %s", tc.status, tc.reason, got, tc.want)
		}
	}
	// What Anthropic's SDKs read: type == "error", error.type, error.message.
	var e struct {
		Type  string
		Error struct{ Type, Message string }
	}
	if err := json.Unmarshal(d.ErrorBody(429, "tokens", message), &e); err != nil || e.Type != "error" || e.Error.Type != "rate_limit_error" || e.Error.Message != message {
		t.Errorf("decoded %+v (%v)", e, err)
	}
}

func TestGoogleStyleErrorBodies(t *testing.T) {
	var e struct {
		Error struct {
			Code    int
			Message string
			Status  string
		}
	}
	tests := []struct {
		name       string
		status     int
		wantStatus string
	}{
		{Gemini, 429, "RESOURCE_EXHAUSTED"},
		{Gemini, 503, "UNAVAILABLE"},
		{OpenRouter, 429, ""},
		{OpenRouter, 503, ""},
	}
	for _, tc := range tests {
		body := ForName(tc.name).ErrorBody(tc.status, "requests", message)
		e.Error.Status = ""
		if err := json.Unmarshal(body, &e); err != nil || e.Error.Code != tc.status || e.Error.Message != message || e.Error.Status != tc.wantStatus {
			t.Errorf("%s %d: %s (%v)", tc.name, tc.status, body, err)
		}
	}
}

// TestErrorBodyRoundTrip reads each dialect's own rejection back as the
// upstream's answer: it parses, blocks, and is never taken for billing.
func TestErrorBodyRoundTrip(t *testing.T) {
	for _, name := range dialects {
		d := ForName(name)
		a := d.ParseAnswer(429, header{"retry-after": "2"}, now)
		d.ParseErrorBody(429, d.ErrorBody(429, "tokens", "rate limit on tokens"), now, &a)
		checkInvariants(t, a)
		if a.Billing || a.Observation.RetryAfter <= 0 {
			t.Errorf("%s: own rejection read as %+v", name, a)
		}
		if _, ok := decodeError(d.ErrorBody(429, "tokens", "x")); !ok {
			t.Errorf("%s: own rejection does not decode", name)
		}
	}
	for _, name := range openAIShaped {
		d := ForName(name)
		a := d.ParseAnswer(429, header{"retry-after": "2"}, now)
		d.ParseErrorBody(429, d.ErrorBody(429, "tokens", "rate limit"), now, &a)
		if a.Observation.Reason != "tokens" {
			t.Errorf("%s: reason %q read back", name, a.Observation.Reason)
		}
	}
}
