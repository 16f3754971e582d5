package provider

import (
	"bytes"
	"encoding/json"
	"strings"
)

// apiError is the union of the error envelopes providers send, flattened:
//
//	OpenAI and imitators  {"error":{"message","type","param","code"}}
//	Anthropic             {"type":"error","error":{"type","message"}}
//	Gemini                {"error":{"code","message","status","details":[...]}}, or that in an array
//	OpenRouter            {"error":{"code","message","metadata":{"headers":{...},"provider_name"}}}
//	Together              the OpenAI shape, with error_type beside or inside error
//	Venice, Mistral       {"error":"message"} or {"message","type","code"} at the top
type apiError struct {
	Envelope  string // the top-level type: "error" at Anthropic
	Type      string
	Code      string // numbers are kept as their decimal text
	Message   string
	Status    string // Google's canonical status, e.g. RESOURCE_EXHAUSTED
	ErrorType string
	Metadata  errorMetadata
	Details   []errorDetail
}

// errorMetadata is OpenRouter's error metadata.
type errorMetadata struct {
	Headers      map[string]flexString `json:"headers"`
	ProviderName flexString            `json:"provider_name"`
	LimitSource  flexString            `json:"limit_source"`
}

// errorDetail is one entry of Google's error details: RetryInfo or
// QuotaFailure are the ones read.
type errorDetail struct {
	Type       flexString       `json:"@type"`
	RetryDelay flexString       `json:"retryDelay"`
	Violations []quotaViolation `json:"violations"`
}

// quotaViolation is one violation of a Google QuotaFailure.
type quotaViolation struct {
	QuotaID     flexString `json:"quotaId"`
	QuotaMetric flexString `json:"quotaMetric"`
	QuotaValue  flexString `json:"quotaValue"`
}

// flexString decodes a JSON string, or a number as its text; any other JSON
// value decodes as "" without failing, so that one odd field does not hide
// the rest of an error.
type flexString string

// UnmarshalJSON implements json.Unmarshaler.
func (s *flexString) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case len(b) > 0 && b[0] == '"':
		var v string
		if err := json.Unmarshal(b, &v); err != nil {
			return err
		}
		*s = flexString(v)
	case len(b) > 0 && (b[0] == '-' || (b[0] >= '0' && b[0] <= '9')):
		*s = flexString(b)
	default:
		*s = ""
	}
	return nil
}

// decodeError reads a provider's error body. ok is false when the body is not
// a JSON error envelope (truncated, HTML, empty).
func decodeError(body []byte) (apiError, bool) {
	body = bytes.TrimSpace(body)
	if len(body) > 0 && body[0] == '[' {
		var list []json.RawMessage
		if json.Unmarshal(body, &list) != nil || len(list) == 0 {
			return apiError{}, false
		}
		body = bytes.TrimSpace(list[0])
	}
	var env struct {
		Type      flexString      `json:"type"`
		ErrorType flexString      `json:"error_type"`
		Message   flexString      `json:"message"`
		Code      flexString      `json:"code"`
		Error     json.RawMessage `json:"error"`
	}
	if len(body) == 0 || body[0] != '{' || json.Unmarshal(body, &env) != nil {
		return apiError{}, false
	}
	e := apiError{Envelope: string(env.Type)}
	inner := bytes.TrimSpace(env.Error)
	switch {
	case len(inner) > 0 && inner[0] == '{':
		var w struct {
			Type      flexString      `json:"type"`
			Code      flexString      `json:"code"`
			Message   flexString      `json:"message"`
			Status    flexString      `json:"status"`
			ErrorType flexString      `json:"error_type"`
			Metadata  json.RawMessage `json:"metadata"`
			Details   json.RawMessage `json:"details"`
		}
		if json.Unmarshal(inner, &w) != nil {
			return apiError{}, false
		}
		e.Type, e.Code, e.Message = string(w.Type), string(w.Code), string(w.Message)
		e.Status, e.ErrorType = string(w.Status), string(w.ErrorType)
		// Metadata and details are optional refinements: a malformed one
		// leaves the rest of the error intact.
		_ = json.Unmarshal(w.Metadata, &e.Metadata)
		var details []json.RawMessage
		if json.Unmarshal(w.Details, &details) == nil {
			for _, raw := range details {
				var d errorDetail
				if json.Unmarshal(raw, &d) == nil {
					e.Details = append(e.Details, d)
				}
			}
		}
	case len(inner) > 0 && inner[0] == '"':
		var msg string
		if json.Unmarshal(inner, &msg) == nil {
			e.Message = msg
		}
	}
	// Fields at the top level (Mistral, Venice, Together) fill what the
	// inner error left empty. Anthropic's top-level type is the envelope's.
	if e.Message == "" {
		e.Message = string(env.Message)
	}
	if e.Code == "" {
		e.Code = string(env.Code)
	}
	if e.ErrorType == "" {
		e.ErrorType = string(env.ErrorType)
	}
	if e.Type == "" && len(inner) == 0 {
		e.Type = string(env.Type)
	}
	return e, true
}

// mapHeader is a Header over a map whose keys may be in any case, such as the
// headers OpenRouter repeats in its error metadata.
type mapHeader map[string]string

// Get implements Header.
func (m mapHeader) Get(name string) string { return m[name] }

// newMapHeader lower-cases the keys of headers.
func newMapHeader(headers map[string]flexString) mapHeader {
	m := make(mapHeader, len(headers))
	for k, v := range headers {
		m[strings.ToLower(strings.TrimSpace(k))] = string(v)
	}
	return m
}
