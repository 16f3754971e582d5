// Command simprovider serves the simulated LLM provider of package
// test/simprovider on a TCP port, for demos, docker-compose and load tests.
//
// Every setting is a flag and an environment variable; a flag wins over the
// variable, the variable over the default:
//
//	-addr                SIMPROVIDER_ADDR                listen address (default :8080)
//	-dialect             SIMPROVIDER_DIALECT             provider API: openai, azure, anthropic, groq, together,
//	                                                     venice, openrouter, mistral, fireworks, gemini, generic
//	                                                     (default openai)
//	-rpm                 SIMPROVIDER_RPM                 requests per window and key, 0 unlimited (default 0)
//	-tpm                 SIMPROVIDER_TPM                 tokens per window and key, 0 unlimited (default 0)
//	-rpd                 SIMPROVIDER_RPD                 requests per day and key, 0 unlimited (default 0)
//	-input-tpm           SIMPROVIDER_INPUT_TPM           prompt tokens per window and key, 0 unlimited (default 0)
//	-output-tpm          SIMPROVIDER_OUTPUT_TPM          output tokens per window and key, 0 unlimited (default 0)
//	-tokens-per-month    SIMPROVIDER_TOKENS_PER_MONTH    tokens per 30 days and key, 0 unlimited (default 0)
//	-window              SIMPROVIDER_WINDOW              refill window (default 1m)
//	-output-tokens       SIMPROVIDER_OUTPUT_TOKENS       tokens per completion (default 16)
//	-tokens-per-chunk    SIMPROVIDER_TOKENS_PER_CHUNK    tokens per streamed event (default 1)
//	-chunk-delay         SIMPROVIDER_CHUNK_DELAY         pause between streamed events (default 0)
//	-default-max-tokens  SIMPROVIDER_DEFAULT_MAX_TOKENS  output budget when a request names none (default 4096)
//	-log-level           SIMPROVIDER_LOG_LEVEL           debug, info, warn or error (default info)
//
// Which limits a dialect reports, and how, is described by the dialect's type
// in package test/simprovider (Groq's request headers count requests per day,
// Anthropic's input and output tokens, ...): limits it does not report are
// enforced but hidden.
//
// Besides the provider API it answers GET /healthz and GET /stats (the
// server's statistics as JSON, API keys replaced by simprovider.KeyID). Logs
// are JSON lines on stderr; at debug level, one per answered request.
//
// This command must import only test/simprovider and the standard library:
// it is a thin shell around the simulator, never around arl itself.
package main
