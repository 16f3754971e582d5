package simprovider

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// OpenAI is the [Dialect] of the OpenAI API, and the body half of every
// OpenAI-compatible dialect, which embed it.
//
// Paths: POST .../chat/completions, .../completions, .../embeddings and
// .../responses. Routing looks at the final path segments only, as arl
// classifies paths, so the API answers under any base path: /v1 at OpenAI,
// /openai/v1 at Groq, /api/v1 at OpenRouter and Venice, /inference/v1 at
// Fireworks, /v1beta/openai at Gemini. The credential is the bearer token of
// the Authorization header.
//
// Quotas: requests and tokens per Config.Window.
//
// Headers: x-ratelimit-{limit,remaining,reset}-{requests,tokens} for each
// limited quota, resets printed like OpenAI prints them ("1s", "6m0s",
// "20ms", "2m59.56s": a Go duration rounded up to the millisecond), and on a
// rejection retry-after (whole seconds, rounded up, at least 1) and
// retry-after-ms; always x-request-id, openai-processing-ms and
// openai-version. Errors are {"error":{"message","type","param","code"}}; a
// rejection's type names its quota and its code is rate_limit_exceeded.
//
// Prompt size is [EstimateTokens] of all message, prompt, input and
// instructions text together, plus the length of prompts given as token ids.
type OpenAI struct{}

var _ Dialect = OpenAI{}

// Name implements [Dialect].
func (OpenAI) Name() string { return "openai" }

// APIKey implements [Dialect]: the bearer token.
func (OpenAI) APIKey(r *http.Request) string { return bearerToken(r) }

// bearerToken returns the token of a "Bearer" Authorization header, "" when
// there is none.
func bearerToken(r *http.Request) string {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(token)
}

// Enforcement implements [Dialect]: every quota over Config.Window, output
// tokens estimated from the budget and settled at the end.
func (OpenAI) Enforcement() Enforcement { return Enforcement{} }

// ParseRequest implements [Dialect].
func (OpenAI) ParseRequest(r *http.Request, body []byte) (*Call, error) {
	return parseOpenAIRequest(r, body, "")
}

// parseOpenAIRequest routes and decodes an OpenAI-style request. deployment
// is the model to assume when the body names none (Azure's deployment name).
func parseOpenAIRequest(r *http.Request, body []byte, deployment string) (*Call, error) {
	kind, ok := openAIRoute(r.URL.Path)
	if !ok {
		return nil, &Problem{Status: http.StatusNotFound, Kind: ProblemNotFound,
			Message: fmt.Sprintf("Invalid URL (%s %s)", r.Method, r.URL.Path)}
	}
	if r.Method != http.MethodPost {
		return nil, &Problem{Status: http.StatusMethodNotAllowed, Kind: ProblemMethodNotAllowed,
			Message: fmt.Sprintf("Invalid method for URL (%s %s)", r.Method, r.URL.Path)}
	}
	var (
		call *Call
		err  error
	)
	switch kind {
	case KindChat:
		call, err = parseOpenAIChat(body)
	case KindCompletion:
		call, err = parseOpenAICompletion(body)
	case KindEmbedding:
		call, err = parseOpenAIEmbedding(body)
	default:
		call, err = parseOpenAIResponse(body)
	}
	if err != nil {
		return nil, err
	}
	if call.Model == "" {
		call.Model = deployment
	}
	if call.Model == "" {
		return nil, invalid("", "you must provide a model parameter")
	}
	return call, nil
}

// openAIRoute maps a path to an endpoint kind by its final segments.
func openAIRoute(path string) (Kind, bool) {
	if !strings.HasPrefix(path, "/") {
		return "", false
	}
	switch {
	case strings.HasSuffix(path, "/chat/completions"):
		return KindChat, true
	case strings.HasSuffix(path, "/completions"):
		return KindCompletion, true
	case strings.HasSuffix(path, "/embeddings"):
		return KindEmbedding, true
	case strings.HasSuffix(path, "/responses"):
		return KindResponse, true
	}
	return "", false
}

// invalid returns a 400 invalid-request problem.
func invalid(param, format string, args ...any) *Problem {
	return &Problem{Status: http.StatusBadRequest, Kind: ProblemInvalidRequest,
		Message: fmt.Sprintf(format, args...), Param: param}
}

// decodeJSON decodes body into v, turning decoder errors into problems.
func decodeJSON(body []byte, v any) error {
	err := json.Unmarshal(body, v)
	if err == nil {
		return nil
	}
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) {
		if typeErr.Field == "" {
			return invalid("", "Invalid request body: expected a JSON object, got %s.", typeErr.Value)
		}
		return invalid(typeErr.Field, "Invalid type for '%s': expected %s, but got %s.",
			typeErr.Field, typeErr.Type, typeErr.Value)
	}
	return invalid("", "We could not parse the JSON body of your request. "+
		"The OpenAI API expects a JSON payload, but what was sent was not valid JSON (%v).", err)
}

// streamOptions is OpenAI's stream_options object.
type streamOptions struct {
	IncludeUsage bool `json:"include_usage"`
}

// openAIGenerationFields are the request fields shared by chat and legacy
// completions.
type openAIGenerationFields struct {
	Model               string         `json:"model"`
	MaxTokens           *int64         `json:"max_tokens"`
	MaxCompletionTokens *int64         `json:"max_completion_tokens"`
	N                   *int           `json:"n"`
	Stream              bool           `json:"stream"`
	StreamOptions       *streamOptions `json:"stream_options"`
}

// apply validates the shared fields and copies them into c.
func (f openAIGenerationFields) apply(c *Call) error {
	c.Model = f.Model
	switch {
	case f.MaxCompletionTokens != nil:
		if *f.MaxCompletionTokens < 1 {
			return invalid("max_completion_tokens", "Invalid 'max_completion_tokens': integer below minimum value.")
		}
		c.MaxOutputTokens = *f.MaxCompletionTokens
	case f.MaxTokens != nil:
		if *f.MaxTokens < 1 {
			return invalid("max_tokens", "Invalid 'max_tokens': integer below minimum value.")
		}
		c.MaxOutputTokens = *f.MaxTokens
	}
	c.Choices = 1
	if f.N != nil {
		if *f.N < 1 || *f.N > 128 {
			return invalid("n", "Invalid 'n': must be between 1 and 128.")
		}
		c.Choices = *f.N
	}
	return applyStream(c, f.Stream, f.StreamOptions)
}

// applyStream validates and copies the stream flags.
func applyStream(c *Call, stream bool, opts *streamOptions) error {
	if opts != nil && !stream {
		return invalid("stream_options", "The 'stream_options' parameter is only allowed when 'stream' is enabled.")
	}
	c.Stream = stream
	c.IncludeUsage = opts != nil && opts.IncludeUsage
	return nil
}

// parseOpenAIChat decodes a chat completion request.
func parseOpenAIChat(body []byte) (*Call, error) {
	var req struct {
		openAIGenerationFields
		Messages []struct {
			Content json.RawMessage `json:"content"`
		} `json:"messages"`
	}
	if err := decodeJSON(body, &req); err != nil {
		return nil, err
	}
	if len(req.Messages) == 0 {
		return nil, invalid("messages", "Invalid 'messages': empty array. Expected an array with minimum length 1.")
	}
	c := &Call{Kind: KindChat}
	if err := req.apply(c); err != nil {
		return nil, err
	}
	var tc textCounter
	for i, m := range req.Messages {
		if err := countContent(m.Content, &tc); err != nil {
			return nil, invalid(fmt.Sprintf("messages.[%d].content", i), "Invalid 'messages[%d].content': %v.", i, err)
		}
	}
	c.PromptTokens = tc.total()
	return c, nil
}

// countContent counts message content: a string, null, or an array of parts
// whose text fields are counted (other parts, such as images, count nothing).
func countContent(raw json.RawMessage, tc *textCounter) error {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		tc.addText(s)
		return nil
	}
	var parts []struct {
		Text string `json:"text"`
	}
	if err := json.Unmarshal(raw, &parts); err != nil {
		return errors.New("expected a string or an array of content parts")
	}
	for _, p := range parts {
		tc.addText(p.Text)
	}
	return nil
}

// countPrompts counts a legacy completion prompt or an embeddings input: a
// string, an array of strings, an array of token ids or an array of arrays of
// token ids. It returns the number of prompts.
func countPrompts(raw json.RawMessage, tc *textCounter) (int, error) {
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		tc.addText(s)
		return 1, nil
	}
	var ss []string
	if err := json.Unmarshal(raw, &ss); err == nil {
		for _, s := range ss {
			tc.addText(s)
		}
		return len(ss), nil
	}
	var ids []int64
	if err := json.Unmarshal(raw, &ids); err == nil {
		tc.addTokens(len(ids))
		return 1, nil
	}
	var idss [][]int64
	if err := json.Unmarshal(raw, &idss); err == nil {
		for _, ids := range idss {
			tc.addTokens(len(ids))
		}
		return len(idss), nil
	}
	return 0, errors.New("expected a string, an array of strings, an array of token ids or an array of token id arrays")
}

// parseOpenAICompletion decodes a legacy completion request. Every prompt
// gets n choices, as at OpenAI.
func parseOpenAICompletion(body []byte) (*Call, error) {
	var req struct {
		openAIGenerationFields
		Prompt json.RawMessage `json:"prompt"`
	}
	if err := decodeJSON(body, &req); err != nil {
		return nil, err
	}
	c := &Call{Kind: KindCompletion}
	if err := req.apply(c); err != nil {
		return nil, err
	}
	prompts := 1 // OpenAI's default prompt is <|endoftext|>
	var tc textCounter
	if len(req.Prompt) > 0 && string(req.Prompt) != "null" {
		n, err := countPrompts(req.Prompt, &tc)
		if err != nil {
			return nil, invalid("prompt", "Invalid 'prompt': %v.", err)
		}
		prompts = max(n, 1)
	}
	c.Choices *= prompts
	c.PromptTokens = tc.total()
	return c, nil
}

// parseOpenAIEmbedding decodes an embeddings request.
func parseOpenAIEmbedding(body []byte) (*Call, error) {
	var req struct {
		Model          string          `json:"model"`
		Input          json.RawMessage `json:"input"`
		Dimensions     *int            `json:"dimensions"`
		EncodingFormat string          `json:"encoding_format"`
	}
	if err := decodeJSON(body, &req); err != nil {
		return nil, err
	}
	if len(req.Input) == 0 || string(req.Input) == "null" {
		return nil, invalid("input", "Missing required parameter: 'input'.")
	}
	var tc textCounter
	n, err := countPrompts(req.Input, &tc)
	if err != nil {
		return nil, invalid("input", "Invalid 'input': %v.", err)
	}
	if n == 0 {
		return nil, invalid("input", "Invalid 'input': empty array.")
	}
	c := &Call{Kind: KindEmbedding, Model: req.Model, Inputs: n, PromptTokens: tc.total(), Choices: 1}
	if req.Dimensions != nil {
		if *req.Dimensions < 1 || *req.Dimensions > 4096 {
			return nil, invalid("dimensions", "Invalid 'dimensions': must be between 1 and 4096.")
		}
		c.Dimensions = *req.Dimensions
	}
	switch req.EncodingFormat {
	case "", "float":
	case "base64":
		c.EmbeddingBase64 = true
	default:
		return nil, invalid("encoding_format", "Invalid 'encoding_format': expected 'float' or 'base64'.")
	}
	return c, nil
}

// parseOpenAIResponse decodes a Responses API request.
func parseOpenAIResponse(body []byte) (*Call, error) {
	var req struct {
		Model           string          `json:"model"`
		Input           json.RawMessage `json:"input"`
		Instructions    *string         `json:"instructions"`
		MaxOutputTokens *int64          `json:"max_output_tokens"`
		Stream          bool            `json:"stream"`
	}
	if err := decodeJSON(body, &req); err != nil {
		return nil, err
	}
	c := &Call{Kind: KindResponse, Model: req.Model, Choices: 1, Stream: req.Stream, IncludeUsage: true}
	if req.MaxOutputTokens != nil {
		if *req.MaxOutputTokens < 16 {
			return nil, invalid("max_output_tokens",
				"Invalid 'max_output_tokens': integer below minimum value. Expected a value >= 16.")
		}
		c.MaxOutputTokens = *req.MaxOutputTokens
	}
	var tc textCounter
	if req.Instructions != nil {
		tc.addText(*req.Instructions)
	}
	if err := countResponseInput(req.Input, &tc); err != nil {
		return nil, invalid("input", "Invalid 'input': %v.", err)
	}
	c.PromptTokens = tc.total()
	return c, nil
}

// countResponseInput counts a Responses API input: a string or an array of
// items whose content (a string or parts with text) or output is counted.
func countResponseInput(raw json.RawMessage, tc *textCounter) error {
	if len(raw) == 0 || string(raw) == "null" {
		return errors.New("missing required parameter")
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		tc.addText(s)
		return nil
	}
	var items []struct {
		Content json.RawMessage `json:"content"`
		Output  *string         `json:"output"`
	}
	if err := json.Unmarshal(raw, &items); err != nil {
		return errors.New("expected a string or an array of input items")
	}
	for _, it := range items {
		if err := countContent(it.Content, tc); err != nil {
			return err
		}
		if it.Output != nil {
			tc.addText(*it.Output)
		}
	}
	return nil
}

// SetHeaders implements [Dialect].
func (OpenAI) SetHeaders(h http.Header, m Meta) {
	h.Set("X-Request-Id", m.RequestID)
	h.Set("Openai-Processing-Ms", strconv.FormatInt(m.Processing.Milliseconds(), 10))
	h.Set("Openai-Version", "2020-10-01")
	setOpenAILimits(h, m.Limits, QuotaRequests, FormatOpenAIDuration, FormatOpenAIDuration)
	setRetryAfter(h, m.Limits.RetryAfter, "Retry-After-Ms")
}

// setOpenAILimits writes OpenAI's x-ratelimit-{limit,remaining,reset}-
// {requests,tokens} headers for the limited ones of the requests quota
// requests (QuotaRequests, or QuotaRequestsPerDay at Groq) and QuotaTokens,
// resets formatted by resetRequests and resetTokens.
func setOpenAILimits(h http.Header, st LimitState, requests Quota, resetRequests, resetTokens func(time.Duration) string) {
	for _, d := range []struct {
		name  string
		dim   Dimension
		reset func(time.Duration) string
	}{{"requests", st.Quotas[requests], resetRequests}, {"tokens", st.Quotas[QuotaTokens], resetTokens}} {
		if d.dim.Limit <= 0 {
			continue
		}
		h.Set("X-Ratelimit-Limit-"+d.name, strconv.FormatInt(d.dim.Limit, 10))
		h.Set("X-Ratelimit-Remaining-"+d.name, strconv.FormatInt(d.dim.Remaining, 10))
		h.Set("X-Ratelimit-Reset-"+d.name, d.reset(d.dim.Reset))
	}
}

// openAIError is OpenAI's error body.
type openAIError struct {
	Error openAIErrorDetail `json:"error"`
}

// openAIErrorDetail is the inside of OpenAI's error body; Param and Code are
// null when empty.
type openAIErrorDetail struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    *string `json:"code"`
}

// ErrorBody implements [Dialect].
func (OpenAI) ErrorBody(p *Problem, _ Meta) []byte {
	return openAIErrorBody(p, openAIRateLimitMessage)
}

// openAIErrorBody renders p in OpenAI's error envelope, which most
// OpenAI-compatible providers share. A limiter rejection has the type of its
// quota and rateMessage's wording.
func openAIErrorBody(p *Problem, rateMessage func(model string, r *Rejection) string) []byte {
	d := openAIErrorDetail{Message: p.Message, Type: "invalid_request_error"}
	if p.Param != "" {
		d.Param = &p.Param
	}
	code := ""
	switch p.Kind {
	case ProblemAuthentication:
		code = "invalid_api_key"
		if p.Message == "" {
			d.Message = "Incorrect API key provided."
		}
	case ProblemNotFound:
		code = "unknown_url"
	case ProblemRateLimit:
		code = "rate_limit_exceeded"
		d.Type = ReasonRequests
		if r := p.Rejection; r != nil {
			d.Type = r.Quota.String()
			d.Message = rateMessage(p.Model, r)
		}
	case ProblemServer:
		d.Type = "server_error"
	}
	if code != "" {
		d.Code = &code
	}
	return mustJSON(openAIError{Error: d},
		`{"error":{"message":"internal error","type":"server_error","param":null,"code":null}}`)
}

// mustJSON marshals v, made of strings, numbers, pointers to them and nested
// structs or maps of them, which cannot fail; should it ever, fallback is
// returned rather than a panic.
func mustJSON(v any, fallback string) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		return []byte(fallback)
	}
	return b
}

// openAIRateLimitMessage words a rejection the way OpenAI does.
func openAIRateLimitMessage(model string, r *Rejection) string {
	if model == "" {
		model = "the model"
	}
	unit := quotaPhrase(r.Quota)
	if r.Requested > r.Limit {
		return fmt.Sprintf("Request too large for %s in organization org-simulated on %s: Limit %d, Requested %d. "+
			"The input or output tokens must be reduced in order to run successfully.", model, unit, r.Limit, r.Requested)
	}
	return fmt.Sprintf("Rate limit reached for %s in organization org-simulated on %s: Limit %d, Used %d, Requested %d. "+
		"Please try again in %s. Visit https://platform.openai.com/account/rate-limits to learn more.",
		model, unit, r.Limit, r.Used, r.Requested, FormatOpenAIDuration(r.RetryAfter))
}

// openAIUsage is the usage object of chat and legacy completions.
type openAIUsage struct {
	PromptTokens            int64 `json:"prompt_tokens"`
	CompletionTokens        int64 `json:"completion_tokens"`
	TotalTokens             int64 `json:"total_tokens"`
	PromptTokensDetails     any   `json:"prompt_tokens_details,omitempty"`
	CompletionTokensDetails any   `json:"completion_tokens_details,omitempty"`
}

// chatUsage returns the usage of a chat completion.
func chatUsage(o *Output) openAIUsage {
	return openAIUsage{
		PromptTokens:            o.PromptTokens,
		CompletionTokens:        o.CompletionTokens,
		TotalTokens:             o.PromptTokens + o.CompletionTokens,
		PromptTokensDetails:     map[string]int64{"cached_tokens": 0, "audio_tokens": 0},
		CompletionTokensDetails: map[string]int64{"reasoning_tokens": 0, "audio_tokens": 0},
	}
}

// finishReason returns OpenAI's finish_reason for a choice.
func finishReason(c Choice) string {
	if c.Truncated {
		return "length"
	}
	return "stop"
}

// systemFingerprint is the simulator's constant system_fingerprint.
const systemFingerprint = "fp_simprovider"

// ResponseBody implements [Dialect].
func (OpenAI) ResponseBody(c *Call, o *Output) ([]byte, error) {
	var v any
	switch c.Kind {
	case KindChat:
		v = chatCompletion(c, o)
	case KindCompletion:
		v = textCompletion(c, o)
	case KindEmbedding:
		v = embeddingList(c, o)
	case KindResponse:
		v = responseObject(c, o, responseDone(o))
	default:
		return nil, fmt.Errorf("openai: no response body for kind %q", c.Kind)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("openai: encode %s response: %w", c.Kind, err)
	}
	return b, nil
}

// chatCompletion builds a chat.completion object.
func chatCompletion(c *Call, o *Output) any {
	type message struct {
		Role        string  `json:"role"`
		Content     string  `json:"content"`
		Refusal     *string `json:"refusal"`
		Annotations []any   `json:"annotations"`
	}
	type choice struct {
		Index        int     `json:"index"`
		Message      message `json:"message"`
		Logprobs     any     `json:"logprobs"`
		FinishReason string  `json:"finish_reason"`
	}
	choices := make([]choice, len(o.Choices))
	for i, ch := range o.Choices {
		choices[i] = choice{Index: i, Message: message{Role: "assistant", Content: ch.Text(), Annotations: []any{}},
			FinishReason: finishReason(ch)}
	}
	return struct {
		ID                string      `json:"id"`
		Object            string      `json:"object"`
		Created           int64       `json:"created"`
		Model             string      `json:"model"`
		Choices           []choice    `json:"choices"`
		Usage             openAIUsage `json:"usage"`
		ServiceTier       string      `json:"service_tier"`
		SystemFingerprint string      `json:"system_fingerprint"`
	}{"chatcmpl-" + o.ID, "chat.completion", o.Created.Unix(), c.Model, choices, chatUsage(o), "default", systemFingerprint}
}

// textCompletion builds a text_completion object.
func textCompletion(c *Call, o *Output) any {
	type choice struct {
		Text         string `json:"text"`
		Index        int    `json:"index"`
		Logprobs     any    `json:"logprobs"`
		FinishReason string `json:"finish_reason"`
	}
	choices := make([]choice, len(o.Choices))
	for i, ch := range o.Choices {
		choices[i] = choice{Text: ch.Text(), Index: i, FinishReason: finishReason(ch)}
	}
	return struct {
		ID                string      `json:"id"`
		Object            string      `json:"object"`
		Created           int64       `json:"created"`
		Model             string      `json:"model"`
		SystemFingerprint string      `json:"system_fingerprint"`
		Choices           []choice    `json:"choices"`
		Usage             openAIUsage `json:"usage"`
	}{"cmpl-" + o.ID, "text_completion", o.Created.Unix(), c.Model, systemFingerprint, choices, openAIUsage{
		PromptTokens: o.PromptTokens, CompletionTokens: o.CompletionTokens, TotalTokens: o.PromptTokens + o.CompletionTokens,
	}}
}

// embeddingList builds an embeddings list object.
func embeddingList(c *Call, o *Output) any {
	type embedding struct {
		Object    string `json:"object"`
		Index     int    `json:"index"`
		Embedding any    `json:"embedding"`
	}
	data := make([]embedding, len(o.Embeddings))
	for i, v := range o.Embeddings {
		data[i] = embedding{Object: "embedding", Index: i, Embedding: v}
		if c.EmbeddingBase64 {
			data[i].Embedding = base64Floats(v)
		}
	}
	return struct {
		Object string      `json:"object"`
		Data   []embedding `json:"data"`
		Model  string      `json:"model"`
		Usage  any         `json:"usage"`
	}{"list", data, c.Model, map[string]int64{"prompt_tokens": o.PromptTokens, "total_tokens": o.PromptTokens}}
}

// base64Floats encodes v as little-endian float32s in base64, OpenAI's
// encoding_format "base64".
func base64Floats(v []float64) string {
	b := make([]byte, 4*len(v))
	for i, f := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(float32(f)))
	}
	return base64.StdEncoding.EncodeToString(b)
}

// responseDone returns the final status of a Responses API answer.
func responseDone(o *Output) string {
	if len(o.Choices) > 0 && o.Choices[0].Truncated {
		return "incomplete"
	}
	return "completed"
}

// responseObject builds a Responses API response object with the given
// status; in_progress responses have no output and no usage yet.
func responseObject(c *Call, o *Output, status string) any {
	type response struct {
		ID                string `json:"id"`
		Object            string `json:"object"`
		CreatedAt         int64  `json:"created_at"`
		Status            string `json:"status"`
		Error             any    `json:"error"`
		IncompleteDetails any    `json:"incomplete_details"`
		MaxOutputTokens   *int64 `json:"max_output_tokens"`
		Model             string `json:"model"`
		Output            []any  `json:"output"`
		Usage             any    `json:"usage"`
	}
	r := response{ID: "resp_" + o.ID, Object: "response", CreatedAt: o.Created.Unix(), Status: status,
		Model: c.Model, Output: []any{}}
	if c.MaxOutputTokens > 0 {
		r.MaxOutputTokens = &c.MaxOutputTokens
	}
	if status == "in_progress" {
		return r
	}
	if status == "incomplete" {
		r.IncompleteDetails = map[string]string{"reason": "max_output_tokens"}
	}
	for i := range o.Choices {
		r.Output = append(r.Output, responseMessage(o, i, status))
	}
	r.Usage = map[string]any{
		"input_tokens":          o.PromptTokens,
		"input_tokens_details":  map[string]int64{"cached_tokens": 0},
		"output_tokens":         o.CompletionTokens,
		"output_tokens_details": map[string]int64{"reasoning_tokens": 0},
		"total_tokens":          o.PromptTokens + o.CompletionTokens,
	}
	return r
}

// responseMessage builds the output message item of choice i; with status
// "in_progress" it has no content yet.
func responseMessage(o *Output, i int, status string) map[string]any {
	content := []any{}
	if status != "in_progress" {
		content = append(content, outputText(o.Choices[i].Text()))
	}
	return map[string]any{
		"id":      messageID(o, i),
		"type":    "message",
		"status":  status,
		"role":    "assistant",
		"content": content,
	}
}

// outputText builds an output_text content part.
func outputText(text string) map[string]any {
	return map[string]any{"type": "output_text", "text": text, "annotations": []any{}}
}

// messageID returns the id of the output message of choice i.
func messageID(o *Output, i int) string {
	return fmt.Sprintf("msg_%s%d", o.ID, i)
}

// StreamEvents implements [Dialect].
func (OpenAI) StreamEvents(c *Call, o *Output) ([]Event, error) {
	var (
		events []Event
		err    error
	)
	switch c.Kind {
	case KindChat:
		events, err = chatStream(c, o, false)
	case KindCompletion:
		events, err = completionStream(c, o)
	case KindResponse:
		events, err = responseStream(c, o)
	default:
		return nil, fmt.Errorf("openai: %s requests cannot stream", c.Kind)
	}
	if err != nil {
		return nil, fmt.Errorf("openai: encode %s stream: %w", c.Kind, err)
	}
	return events, nil
}

// sseData encodes v as a "data:" server-sent event.
func sseData(v any, tokens int64) (Event, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return Event{}, err
	}
	data := make([]byte, 0, len(b)+8)
	data = append(data, "data: "...)
	data = append(data, b...)
	data = append(data, "\n\n"...)
	return Event{Data: data, Tokens: tokens}, nil
}

// doneEvent is the event that ends chat and completion streams.
func doneEvent() Event { return Event{Data: []byte("data: [DONE]\n\n")} }

// streamBuilder collects the events of one stream and the first encoding
// error.
type streamBuilder struct {
	events []Event
	err    error
}

// data appends a "data:" event for v.
func (b *streamBuilder) data(v any, tokens int64) {
	if b.err != nil {
		return
	}
	ev, err := sseData(v, tokens)
	if err != nil {
		b.err = err
		return
	}
	b.events = append(b.events, ev)
}

// named appends an "event:" plus "data:" event for v.
func (b *streamBuilder) named(name string, v any, tokens int64) {
	if b.err != nil {
		return
	}
	ev, err := sseData(v, tokens)
	if err != nil {
		b.err = err
		return
	}
	ev.Data = append([]byte("event: "+name+"\n"), ev.Data...)
	b.events = append(b.events, ev)
}

// interleave calls f for every chunk, round by round across choices: the
// first chunk of every choice, then the second, and so on.
func interleave(o *Output, f func(choice int, ch Chunk)) {
	for k := 0; ; k++ {
		more := false
		for i, c := range o.Choices {
			if k < len(c.Chunks) {
				more = true
				f(i, c.Chunks[k])
			}
		}
		if !more {
			return
		}
	}
}

// chatStream builds a chat.completion.chunk stream: a role chunk per choice,
// content chunks, a finish chunk per choice, the usage chunk when asked for,
// and [DONE]. With xGroq, the stream carries Groq's x_groq member: its id on
// the first chunk, and with it the usage on the last finish chunk, which
// Groq sends whether or not the request asked for usage.
func chatStream(c *Call, o *Output, xGroq bool) ([]Event, error) {
	type choice struct {
		Index        int            `json:"index"`
		Delta        map[string]any `json:"delta"`
		Logprobs     any            `json:"logprobs"`
		FinishReason *string        `json:"finish_reason"`
	}
	type chunk struct {
		ID                string          `json:"id"`
		Object            string          `json:"object"`
		Created           int64           `json:"created"`
		Model             string          `json:"model"`
		ServiceTier       string          `json:"service_tier"`
		SystemFingerprint string          `json:"system_fingerprint"`
		Choices           []choice        `json:"choices"`
		Usage             json.RawMessage `json:"usage,omitempty"`
		XGroq             map[string]any  `json:"x_groq,omitempty"`
	}
	mk := func(choices ...choice) chunk {
		ch := chunk{ID: "chatcmpl-" + o.ID, Object: "chat.completion.chunk", Created: o.Created.Unix(), Model: c.Model,
			ServiceTier: "default", SystemFingerprint: systemFingerprint, Choices: choices}
		if c.IncludeUsage {
			ch.Usage = json.RawMessage("null")
		}
		return ch
	}
	var b streamBuilder
	for i := range o.Choices {
		ch := mk(choice{Index: i, Delta: map[string]any{"role": "assistant", "content": "", "refusal": nil}})
		if xGroq && i == 0 {
			ch.XGroq = map[string]any{"id": "req_" + o.ID}
		}
		b.data(ch, 0)
	}
	interleave(o, func(i int, ch Chunk) {
		b.data(mk(choice{Index: i, Delta: map[string]any{"content": ch.Text}}), ch.Tokens)
	})
	for i, out := range o.Choices {
		reason := finishReason(out)
		ch := mk(choice{Index: i, Delta: map[string]any{}, FinishReason: &reason})
		if xGroq && i == len(o.Choices)-1 {
			ch.XGroq = map[string]any{"id": "req_" + o.ID, "usage": groqUsage(o)}
		}
		b.data(ch, 0)
	}
	if c.IncludeUsage {
		usage, err := json.Marshal(chatUsage(o))
		if err != nil {
			return nil, err
		}
		last := mk()
		last.Choices = []choice{}
		last.Usage = usage
		b.data(last, 0)
	}
	if b.err != nil {
		return nil, b.err
	}
	return append(b.events, doneEvent()), nil
}

// completionStream builds a legacy text_completion stream: content chunks, a
// finish chunk per choice, the usage chunk when asked for, and [DONE].
func completionStream(c *Call, o *Output) ([]Event, error) {
	type choice struct {
		Text         string  `json:"text"`
		Index        int     `json:"index"`
		Logprobs     any     `json:"logprobs"`
		FinishReason *string `json:"finish_reason"`
	}
	type chunk struct {
		ID                string          `json:"id"`
		Object            string          `json:"object"`
		Created           int64           `json:"created"`
		Choices           []choice        `json:"choices"`
		Model             string          `json:"model"`
		SystemFingerprint string          `json:"system_fingerprint"`
		Usage             json.RawMessage `json:"usage,omitempty"`
	}
	mk := func(choices ...choice) chunk {
		ch := chunk{ID: "cmpl-" + o.ID, Object: "text_completion", Created: o.Created.Unix(), Choices: choices,
			Model: c.Model, SystemFingerprint: systemFingerprint}
		if c.IncludeUsage {
			ch.Usage = json.RawMessage("null")
		}
		return ch
	}
	var b streamBuilder
	interleave(o, func(i int, ch Chunk) {
		b.data(mk(choice{Text: ch.Text, Index: i}), ch.Tokens)
	})
	for i, ch := range o.Choices {
		reason := finishReason(ch)
		b.data(mk(choice{Index: i, FinishReason: &reason}), 0)
	}
	if c.IncludeUsage {
		usage, err := json.Marshal(openAIUsage{PromptTokens: o.PromptTokens, CompletionTokens: o.CompletionTokens,
			TotalTokens: o.PromptTokens + o.CompletionTokens})
		if err != nil {
			return nil, err
		}
		last := mk()
		last.Choices = []choice{}
		last.Usage = usage
		b.data(last, 0)
	}
	if b.err != nil {
		return nil, b.err
	}
	return append(b.events, doneEvent()), nil
}

// responseStream builds a Responses API event stream: response.created,
// response.in_progress, the output item and content part opening, one
// response.output_text.delta per chunk, their closing events, and
// response.completed (or response.incomplete) carrying the usage. Responses
// streams always end with usage and have no [DONE].
func responseStream(c *Call, o *Output) ([]Event, error) {
	var b streamBuilder
	seq := 0
	emit := func(typ string, fields map[string]any, tokens int64) {
		fields["type"] = typ
		fields["sequence_number"] = seq
		seq++
		b.named(typ, fields, tokens)
	}
	final := responseDone(o)
	emit("response.created", map[string]any{"response": responseObject(c, o, "in_progress")}, 0)
	emit("response.in_progress", map[string]any{"response": responseObject(c, o, "in_progress")}, 0)
	for i, ch := range o.Choices {
		id := messageID(o, i)
		text := ch.Text()
		emit("response.output_item.added", map[string]any{
			"output_index": i, "item": responseMessage(o, i, "in_progress")}, 0)
		emit("response.content_part.added", map[string]any{
			"item_id": id, "output_index": i, "content_index": 0, "part": outputText("")}, 0)
		for _, chunk := range ch.Chunks {
			emit("response.output_text.delta", map[string]any{
				"item_id": id, "output_index": i, "content_index": 0, "delta": chunk.Text, "logprobs": []any{}},
				chunk.Tokens)
		}
		emit("response.output_text.done", map[string]any{
			"item_id": id, "output_index": i, "content_index": 0, "text": text, "logprobs": []any{}}, 0)
		emit("response.content_part.done", map[string]any{
			"item_id": id, "output_index": i, "content_index": 0, "part": outputText(text)}, 0)
		emit("response.output_item.done", map[string]any{
			"output_index": i, "item": responseMessage(o, i, final)}, 0)
	}
	emit("response."+final, map[string]any{"response": responseObject(c, o, final)}, 0)
	if b.err != nil {
		return nil, b.err
	}
	return b.events, nil
}
