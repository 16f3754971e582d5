// Package usage turns LLM API traffic into token counts: it estimates what a
// request will cost before it leaves, and reads what a response actually used
// as it streams back.
//
// The request side is [ParseRequest], which reads a request body (model, output
// budget, number of choices, stream flags) and estimates its prompt tokens; its
// [Request.Cost] is the number of tokens a rate limiter should reserve. The
// response side is [Counter], which is fed a response body chunk by chunk, in
// whatever splits the proxy delivers, and reports the provider's own usage when
// the body carries one, or an estimate from the generated text when it does
// not. [SSEParser] is the server-sent events parser the counter uses, exposed
// for other dialects.
//
// The endpoint of a request ([ClassifyPath]) selects a small format type that
// knows one API's body shapes; everything else (the SSE parser, the JSON reader,
// the text estimate, the counter's bookkeeping) is shared. Covered are the
// OpenAI family (chat completions, completions, embeddings and the Responses
// API, as served by OpenAI, Azure OpenAI and OpenAI-compatible providers such
// as Groq, whose streamed usage arrives under x_groq.usage, Together, Mistral
// or OpenRouter) and the Anthropic Messages API, whose streams report usage in
// two steps (message_start, then message_delta) and whose input comes in three
// parts (see Usage.InputTokens). Adding an API means one format type (see
// format.go; messages.go is a complete example) and one endpoint in
// ClassifyPath.
//
// Everything here runs once per request on the proxy's hot path, so the JSON
// reading is done by a small allocation-free reader over bodies that
// encoding/json has validated, rather than by decoding into Go values.
//
// This package is pure Go over the standard library. It must not import Envoy,
// gRPC, Prometheus, or any other arl package: the limiter and the ext_proc
// server import it, never the other way round.
package usage
