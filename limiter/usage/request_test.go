package usage

import (
	"errors"
	"math"
	"strings"
	"testing"
)

// prompt returns the prompt estimate for fixed tokens plus texts, the way
// ParseRequest sums them: text costs add up in quarter tokens, then round.
func prompt(fixed int64, texts ...string) int64 {
	var units int64
	for _, s := range texts {
		units += textUnits(s)
	}
	return fixed + unitsToTokens(units)
}

// chatFixed is the framing of a chat request with n messages.
func chatFixed(n int64) int64 { return replyPrimingTokens + n*messageOverheadTokens }

func TestParseRequest(t *testing.T) {
	unknownPart := `{"type":"video_url","video_url":{"url":"https://example.com/v.mp4"}}`
	tools := `[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}}]`
	computerCall := `{"type":"computer_call","call_id":"c1","action":{"type":"click","x":1,"y":2}}`
	tests := []struct {
		name string
		ep   Endpoint
		body string
		want Request
	}{
		// Chat completions.
		{
			name: "chat minimal",
			ep:   ChatCompletions,
			body: `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Hello"}]}`,
			want: Request{Model: "gpt-4o-mini", PromptTokens: prompt(chatFixed(1), "Hello"), Choices: 1},
		},
		{
			name: "chat output budget, choices and streaming",
			ep:   ChatCompletions,
			body: `{"model":"gpt-4o","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hi"}],
				"max_tokens":100,"max_completion_tokens":250,"n":3,"stream":true,"stream_options":{"include_usage":true}}`,
			want: Request{Model: "gpt-4o", PromptTokens: prompt(chatFixed(2), "Be brief.", "Hi"),
				MaxOutputTokens: 250, Choices: 3, Stream: true, IncludeUsage: true},
		},
		{
			name: "chat the larger budget wins either way round",
			ep:   ChatCompletions,
			body: `{"max_completion_tokens":250,"max_tokens":300}`,
			want: Request{PromptTokens: chatFixed(0), MaxOutputTokens: 300, Choices: 1},
		},
		{
			name: "chat content parts",
			ep:   ChatCompletions,
			body: `{"messages":[{"role":"user","content":[
				{"type":"text","text":"What is in these?"},
				{"type":"image_url","image_url":{"url":"data:image/png;base64,iVBORw0KGgo=","detail":"high"}},
				{"type":"image_url","image_url":{"url":"https://example.com/a.png","detail":"low"}},
				{"type":"image_url","image_url":{"url":"https://example.com/b.png"}},
				{"type":"input_audio","input_audio":{"data":"UklGRg==","format":"wav"}},
				{"type":"file","file":{"file_id":"file-abc"}},
				` + unknownPart + `]}]}`,
			want: Request{PromptTokens: prompt(chatFixed(1)+2*ImageTokens+LowDetailImageTokens+AudioTokens+FileTokens,
				"What is in these?", unknownPart), Choices: 1},
		},
		{
			name: "chat names, tool calls, tool results and refusals",
			ep:   ChatCompletions,
			body: `{"messages":[
				{"role":"user","name":"alice","content":"Weather in Paris?"},
				{"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]},
				{"role":"tool","tool_call_id":"call_1","content":"18C"},
				{"role":"assistant","function_call":{"name":"legacy","arguments":"{}"},"refusal":"No."}]}`,
			want: Request{PromptTokens: prompt(chatFixed(4), "alice", "Weather in Paris?", "get_weather", `{"city":"Paris"}`,
				"call_1", "18C", "legacy", "{}", "No."), Choices: 1},
		},
		{
			name: "chat tools, functions and response format count their JSON",
			ep:   ChatCompletions,
			body: `{"messages":[],"tools":` + tools + `,"functions":[],"response_format":{"type":"json_object"}}`,
			want: Request{PromptTokens: prompt(chatFixed(0), tools, `[]`, `{"type":"json_object"}`), Choices: 1},
		},
		{
			name: "chat nulls mean unset",
			ep:   ChatCompletions,
			body: `{"model":null,"messages":[{"role":"user","content":null,"name":null}],"max_tokens":null,"n":null,
				"stream":null,"stream_options":null,"tools":null}`,
			want: Request{PromptTokens: chatFixed(1), Choices: 1},
		},
		{
			name: "chat unknown fields ignored",
			ep:   ChatCompletions,
			body: `{"temperature":0.2,"metadata":{"a":[1,{"b":"c"}]},"logit_bias":{"50256":-100},"stream_options":{"x":1},
				"messages":[{"role":"user","content":"x","extra":{"deep":[[[]]]}}]}`,
			want: Request{PromptTokens: prompt(chatFixed(1), "x"), Choices: 1},
		},
		{
			name: "chat escaped key and model",
			ep:   ChatCompletions,
			body: `{"m\u006fdel":"gpt-4o\u002dmini","max_tokens":7}`,
			want: Request{Model: "gpt-4o-mini", PromptTokens: chatFixed(0), MaxOutputTokens: 7, Choices: 1},
		},
		{
			name: "chat integral numbers in other forms",
			ep:   ChatCompletions,
			body: `{"max_tokens":1e3,"n":2.0}`,
			want: Request{PromptTokens: chatFixed(0), MaxOutputTokens: 1000, Choices: 2},
		},
		{
			name: "chat escapes in content count as the text they stand for",
			ep:   ChatCompletions,
			body: `{"messages":[{"role":"user","content":"caf\u00e9\n\"x\""}]}`,
			want: Request{PromptTokens: prompt(chatFixed(1), "café\n\"x\""), Choices: 1},
		},
		{
			name: "chat white space everywhere",
			ep:   ChatCompletions,
			body: " \n{ \"model\" : \"m\" , \"messages\" : [ { \"content\" : \"Hello\" } ] , \"n\" : 2 }\r\n",
			want: Request{Model: "m", PromptTokens: prompt(chatFixed(1), "Hello"), Choices: 2},
		},

		// Completions.
		{
			name: "completions string prompt and suffix",
			ep:   Completions,
			body: `{"model":"gpt-3.5-turbo-instruct","prompt":"Say this is a test","suffix":"END","stream":true}`,
			want: Request{Model: "gpt-3.5-turbo-instruct", PromptTokens: prompt(0, "Say this is a test", "END"), Choices: 1, Stream: true},
		},
		{
			name: "completions batch multiplies choices, best_of over n",
			ep:   Completions,
			body: `{"prompt":["one","two","three"],"n":2,"best_of":4,"max_tokens":50}`,
			want: Request{PromptTokens: prompt(0, "one", "two", "three"), MaxOutputTokens: 50, Choices: 12},
		},
		{
			name: "completions n over best_of",
			ep:   Completions,
			body: `{"prompt":"x","n":5,"best_of":2}`,
			want: Request{PromptTokens: prompt(0, "x"), Choices: 5},
		},
		{
			name: "completions token ids count exactly",
			ep:   Completions,
			body: `{"prompt":[1212,318,257,1332,-1]}`,
			want: Request{PromptTokens: 5, Choices: 1},
		},
		{
			name: "completions token id lists are a batch",
			ep:   Completions,
			body: `{"prompt":[[1,2,3],[4,5],[]],"stream":true,"stream_options":{"include_usage":true}}`,
			want: Request{PromptTokens: 5, Choices: 3, Stream: true, IncludeUsage: true},
		},
		{
			name: "completions empty prompt array",
			ep:   Completions,
			body: `{"prompt":[]}`,
			want: Request{Choices: 1},
		},

		// Embeddings.
		{
			name: "embeddings string",
			ep:   Embeddings,
			body: `{"model":"text-embedding-3-small","input":"The food was delicious","encoding_format":"float"}`,
			want: Request{Model: "text-embedding-3-small", PromptTokens: prompt(0, "The food was delicious"), Choices: 1},
		},
		{
			name: "embeddings strings, output and stream fields ignored",
			ep:   Embeddings,
			body: `{"input":["a","b c"],"max_tokens":10,"stream":true,"n":4}`,
			want: Request{PromptTokens: prompt(0, "a", "b c"), Choices: 1},
		},
		{
			name: "embeddings token ids",
			ep:   Embeddings,
			body: `{"input":[[1,2],[3,4,5]]}`,
			want: Request{PromptTokens: 5, Choices: 1},
		},

		// Responses API.
		{
			name: "responses string input",
			ep:   Responses,
			body: `{"model":"gpt-4.1","instructions":"Talk like a pirate.","input":"Are semicolons optional?","max_output_tokens":500}`,
			want: Request{Model: "gpt-4.1", PromptTokens: prompt(replyPrimingTokens+2*messageOverheadTokens,
				"Talk like a pirate.", "Are semicolons optional?"), MaxOutputTokens: 500, Choices: 1},
		},
		{
			name: "responses items",
			ep:   Responses,
			body: `{"stream":true,"input":[
				{"role":"user","content":"Hi"},
				{"type":"message","role":"user","content":[
					{"type":"input_text","text":"Describe"},
					{"type":"input_image","image_url":"https://example.com/x.png","detail":"low"},
					{"type":"input_image","file_id":"file-1"},
					{"type":"input_file","file_id":"file-2"}]},
				{"type":"message","role":"assistant","content":[{"type":"output_text","text":"Sure","annotations":[]}]},
				{"type":"function_call","call_id":"c1","name":"lookup","arguments":"{\"q\":1}"},
				{"type":"function_call_output","call_id":"c1","output":"found"},
				{"type":"reasoning","id":"rs_1","summary":[{"type":"summary_text","text":"Thought"}],"encrypted_content":"gAAAAABoverylongblob"},
				{"type":"item_reference","id":"msg_1"},
				` + computerCall + `]}`,
			want: Request{PromptTokens: prompt(replyPrimingTokens+8*messageOverheadTokens+LowDetailImageTokens+ImageTokens+FileTokens,
				"Hi", "Describe", "Sure", "lookup", `{"q":1}`, "found", "Thought", computerCall),
				Choices: 1, Stream: true, IncludeUsage: true},
		},
		{
			name: "responses tools and text format count their JSON",
			ep:   Responses,
			body: `{"input":[],"tools":` + tools + `,"text":{"format":{"type":"text"}}}`,
			want: Request{PromptTokens: prompt(replyPrimingTokens, tools, `{"format":{"type":"text"}}`), Choices: 1},
		},
		{
			name: "responses ignore chat fields",
			ep:   Responses,
			body: `{"input":"x","max_tokens":99,"n":3,"stream":false}`,
			want: Request{PromptTokens: prompt(replyPrimingTokens+messageOverheadTokens, "x"), Choices: 1},
		},

		// Anthropic Messages.
		{
			name: "messages minimal",
			ep:   Messages,
			body: `{"model":"claude-sonnet-4-5","max_tokens":1024,"messages":[{"role":"user","content":"Hello, Claude"}]}`,
			want: Request{Model: "claude-sonnet-4-5", PromptTokens: prompt(chatFixed(1), "Hello, Claude"), MaxOutputTokens: 1024, Choices: 1},
		},
		{
			name: "messages max_tokens absent: parsed, the default applies",
			ep:   Messages,
			body: `{"model":"m","messages":[{"role":"user","content":"Hi"}],"n":3,"max_completion_tokens":9}`,
			want: Request{Model: "m", PromptTokens: prompt(chatFixed(1), "Hi"), Choices: 1},
		},
		{
			name: "messages streamed always report usage",
			ep:   Messages,
			body: `{"max_tokens":5,"stream":true,"stream_options":{"include_usage":false},"messages":[]}`,
			want: Request{PromptTokens: chatFixed(0), MaxOutputTokens: 5, Choices: 1, Stream: true, IncludeUsage: true},
		},
		{
			name: "messages system as a string and as text blocks",
			ep:   Messages,
			body: `{"system":[{"type":"text","text":"You are terse.","cache_control":{"type":"ephemeral"}},{"type":"text","text":"Answer in French."}],
				"messages":[{"role":"user","content":"x"}]}`,
			want: Request{PromptTokens: prompt(chatFixed(2), "You are terse.", "Answer in French.", "x"), Choices: 1},
		},
		{
			name: "messages system string",
			ep:   Messages,
			body: `{"system":"Be brief.","messages":[]}`,
			want: Request{PromptTokens: prompt(chatFixed(1), "Be brief."), Choices: 1},
		},
		{
			name: "messages content blocks",
			ep:   Messages,
			body: `{"messages":[
				{"role":"user","content":[
					{"type":"text","text":"Compare these."},
					{"type":"image","source":{"type":"base64","media_type":"image/png","data":"iVBORw0KGgoAAAANSUhEUgAAAAEAAAAB"}},
					{"type":"image","source":{"type":"url","url":"https://example.com/b.png"}},
					{"type":"document","source":{"type":"base64","media_type":"application/pdf","data":"JVBERi0xLjQK"},"title":"Report"},
					{"type":"document","source":{"type":"text","media_type":"text/plain","data":"plain text doc"},"context":"ctx"},
					{"type":"document","source":{"type":"content","content":[{"type":"text","text":"chunk one"},{"type":"image","source":{"type":"file","file_id":"f1"}}]}},
					{"type":"document","source":{"type":"file","file_id":"file_011"}}]},
				{"role":"assistant","content":[
					{"type":"thinking","thinking":"Look at both.","signature":"EqQBCgIYAhIM"},
					{"type":"redacted_thinking","data":"EmwKAhgBEgy3"},
					{"type":"tool_use","id":"toolu_1","name":"measure","input":{"unit":"cm"}}]},
				{"role":"user","content":[
					{"type":"tool_result","tool_use_id":"toolu_1","content":"42 cm"},
					{"type":"tool_result","tool_use_id":"toolu_2","is_error":true,"content":[{"type":"text","text":"failed"},{"type":"image","source":{"type":"base64","data":"AAAA"}}]},
					{"type":"search_result","source":"https://example.com","title":"Doc","content":[{"type":"text","text":"found it"}]}]}]}`,
			want: Request{PromptTokens: prompt(chatFixed(3)+4*MessagesImageTokens+2*FileTokens,
				"Compare these.", "Report", "plain text doc", "ctx", "chunk one",
				"Look at both.", `{"type":"redacted_thinking","data":"EmwKAhgBEgy3"}`, "measure", `{"unit":"cm"}`,
				"toolu_1", "42 cm", "toolu_2", "failed", "Doc", "found it"), Choices: 1},
		},
		{
			name: "messages tools count their JSON and the tool-use system prompt",
			ep:   Messages,
			body: `{"messages":[],"tools":[{"name":"get_weather","input_schema":{"type":"object"}}],"tool_choice":{"type":"auto"}}`,
			want: Request{PromptTokens: prompt(chatFixed(0)+messagesToolPromptTokens, `[{"name":"get_weather","input_schema":{"type":"object"}}]`), Choices: 1},
		},
		{
			name: "messages empty tools add no tool prompt",
			ep:   Messages,
			body: `{"messages":[],"tools":[ ]}`,
			want: Request{PromptTokens: prompt(chatFixed(0), `[ ]`), Choices: 1},
		},
		{
			name: "messages nulls mean unset",
			ep:   Messages,
			body: `{"model":null,"system":null,"messages":[{"role":"user","content":null}],"max_tokens":null,"stream":null,"tools":null}`,
			want: Request{PromptTokens: chatFixed(1), Choices: 1},
		},
		{
			name: "messages unknown block types count their JSON; odd members are lenient",
			ep:   Messages,
			body: `{"messages":[{"role":"user","content":[{"type":"container_upload","file_id":"f"},{"type":"text","text":5,"content":{"x":1}}]}]}`,
			want: Request{PromptTokens: prompt(chatFixed(1), `{"type":"container_upload","file_id":"f"}`), Choices: 1},
		},

		// Unknown endpoints.
		{
			name: "unknown endpoint counts the whole body",
			ep:   Unknown,
			body: `{"model":"m","prompt":"a photo of a cat","max_output_tokens":64,"n":2,"stream":true}`,
			want: Request{Model: "m", PromptTokens: prompt(0, `{"model":"m","prompt":"a photo of a cat","max_output_tokens":64,"n":2,"stream":true}`),
				MaxOutputTokens: 64, Choices: 2, Stream: true},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseRequest(tt.ep, []byte(tt.body))
			if err != nil {
				t.Fatalf("ParseRequest: %v", err)
			}
			tt.want.Endpoint = tt.ep
			if got != tt.want {
				t.Errorf("ParseRequest:\n got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestParseRequestMalformed(t *testing.T) {
	tests := []struct {
		name string
		ep   Endpoint
		body string
		msg  string // a part of the error message
	}{
		{"empty body", ChatCompletions, ``, "invalid JSON"},
		{"invalid JSON", ChatCompletions, `{"model":`, "invalid JSON"},
		{"trailing garbage", ChatCompletions, `{} x`, "invalid JSON"},
		{"array body", ChatCompletions, `[]`, "JSON object"},
		{"string body", Embeddings, `"hi"`, "JSON object"},
		{"null body", Responses, `null`, "JSON object"},
		{"model not a string", ChatCompletions, `{"model":4}`, `"model"`},
		{"model too long", Embeddings, `{"model":"` + strings.Repeat("m", MaxModelBytes+1) + `"}`, `"model" must be at most`},
		{"messages not an array", ChatCompletions, `{"messages":"hi"}`, `"messages"`},
		{"message not an object", ChatCompletions, `{"messages":["hi"]}`, `"messages[]"`},
		{"content a number", ChatCompletions, `{"messages":[{"content":5}]}`, `"messages[].content"`},
		{"content an object", ChatCompletions, `{"messages":[{"content":{"text":"x"}}]}`, `"messages[].content"`},
		{"part not an object", ChatCompletions, `{"messages":[{"content":["x"]}]}`, `"messages[].content"[]`},
		{"part text a number", ChatCompletions, `{"messages":[{"content":[{"type":"text","text":1}]}]}`, `.text`},
		{"part type a number", ChatCompletions, `{"messages":[{"content":[{"type":1}]}]}`, `.type`},
		{"name a number", ChatCompletions, `{"messages":[{"name":1}]}`, `"messages[].name"`},
		{"tool_calls an object", ChatCompletions, `{"messages":[{"tool_calls":{}}]}`, `"messages[].tool_calls"`},
		{"tool call arguments an object", ChatCompletions, `{"messages":[{"tool_calls":[{"function":{"arguments":{}}}]}]}`, `function`},
		{"max_tokens a string", ChatCompletions, `{"max_tokens":"100"}`, `"max_tokens"`},
		{"max_tokens negative", ChatCompletions, `{"max_tokens":-1}`, `"max_tokens" must be between`},
		{"max_tokens absurd", ChatCompletions, `{"max_completion_tokens":10000001}`, `"max_completion_tokens" must be between`},
		{"max_tokens huge", Completions, `{"max_tokens":1e300}`, `"max_tokens" must be between`},
		{"max_tokens fractional", ChatCompletions, `{"max_tokens":1.5}`, `must be an integer`},
		{"max_output_tokens negative", Responses, `{"max_output_tokens":-5}`, `"max_output_tokens"`},
		{"n zero", ChatCompletions, `{"n":0}`, `"n" must be between`},
		{"n too large", ChatCompletions, `{"n":129}`, `"n" must be between`},
		{"best_of too large", Completions, `{"best_of":1000}`, `"best_of"`},
		{"stream a string", ChatCompletions, `{"stream":"yes"}`, `"stream"`},
		{"stream_options a bool", ChatCompletions, `{"stream_options":true}`, `"stream_options"`},
		{"include_usage a string", ChatCompletions, `{"stream_options":{"include_usage":"true"}}`, `include_usage`},
		{"tools an object", ChatCompletions, `{"tools":{}}`, `"tools" must be an array`},
		{"response_format an array", ChatCompletions, `{"response_format":[]}`, `"response_format" must be an object`},
		{"prompt a number", Completions, `{"prompt":5}`, `"prompt"`},
		{"prompt mixed", Completions, `{"prompt":["a",1]}`, `"prompt" must not mix`},
		{"prompt list of mixed", Completions, `{"prompt":[[1,"a"]]}`, `"prompt"`},
		{"prompt nested strings", Completions, `{"prompt":[["a"]]}`, `"prompt"`},
		{"suffix a number", Completions, `{"suffix":1}`, `"suffix"`},
		{"input an object", Embeddings, `{"input":{}}`, `"input"`},
		{"responses input a number", Responses, `{"input":1}`, `"input"`},
		{"responses item not an object", Responses, `{"input":["x"]}`, `"input[]"`},
		{"responses item type a number", Responses, `{"input":[{"type":1}]}`, `"input[].type"`},
		{"responses instructions a number", Responses, `{"instructions":1}`, `"instructions"`},
		{"responses message part bad", Responses, `{"input":[{"role":"user","content":[{"type":"input_text","text":false}]}]}`, `.text`},
		{"unknown n zero", Unknown, `{"n":0}`, `"n"`},
		{"messages body an array", Messages, `[]`, "JSON object"},
		{"messages not an array", Messages, `{"messages":{}}`, `"messages" must be an array`},
		{"messages message not an object", Messages, `{"messages":["hi"]}`, `"messages[]"`},
		{"messages content a number", Messages, `{"messages":[{"content":1}]}`, `"messages[].content"`},
		{"messages block not an object", Messages, `{"messages":[{"content":["x"]}]}`, `"messages[].content"[]`},
		{"messages block type a number", Messages, `{"messages":[{"content":[{"type":1}]}]}`, `.type`},
		{"messages tool result content bad", Messages, `{"messages":[{"content":[{"type":"tool_result","content":[7]}]}]}`, `.content"[]`},
		{"messages system a number", Messages, `{"system":1}`, `"system"`},
		{"messages system block bad", Messages, `{"system":[1]}`, `"system"[]`},
		{"messages tools an object", Messages, `{"tools":{}}`, `"tools" must be an array`},
		{"messages max_tokens negative", Messages, `{"max_tokens":-1}`, `"max_tokens" must be between`},
		{"messages stream a string", Messages, `{"stream":"yes"}`, `"stream"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseRequest(tt.ep, []byte(tt.body))
			if err == nil {
				t.Fatalf("ParseRequest = %+v, nil; want an error", got)
			}
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("error %v does not wrap ErrMalformed", err)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %q does not mention %q", err, tt.msg)
			}
			if !strings.Contains(err.Error(), tt.ep.String()) {
				t.Errorf("error %q does not name the endpoint %s", err, tt.ep)
			}
		})
	}
}

func TestRequestCost(t *testing.T) {
	tests := []struct {
		name string
		req  Request
		def  int64
		want int64
	}{
		{"named budget times choices", Request{Endpoint: ChatCompletions, PromptTokens: 10, MaxOutputTokens: 100, Choices: 2}, 4096, 210},
		{"chat default budget", Request{Endpoint: ChatCompletions, PromptTokens: 10, Choices: 1}, 4096, 4106},
		{"responses default budget", Request{Endpoint: Responses, PromptTokens: 10, Choices: 1}, 1000, 1010},
		{"messages default budget", Request{Endpoint: Messages, PromptTokens: 10, Choices: 1}, 1000, 1010},
		{"messages named budget", Request{Endpoint: Messages, PromptTokens: 10, MaxOutputTokens: 64, Choices: 1}, 1000, 74},
		{"unknown default budget", Request{Endpoint: Unknown, PromptTokens: 10, Choices: 3}, 100, 310},
		{"completions default is 16", Request{Endpoint: Completions, PromptTokens: 10, Choices: 2}, 4096, 42},
		{"completions named budget", Request{Endpoint: Completions, PromptTokens: 10, MaxOutputTokens: 5, Choices: 2}, 4096, 20},
		{"embeddings have no output", Request{Endpoint: Embeddings, PromptTokens: 10, MaxOutputTokens: 99, Choices: 1}, 4096, 10},
		{"negative default counts as none", Request{Endpoint: ChatCompletions, PromptTokens: 10, Choices: 1}, -5, 10},
		{"zero choices count as one", Request{Endpoint: ChatCompletions, PromptTokens: 1, MaxOutputTokens: 2}, 0, 3},
		{"zero value", Request{}, 7, 7},
		{"saturates on the sum", Request{Endpoint: ChatCompletions, PromptTokens: math.MaxInt64 - 1, MaxOutputTokens: 10, Choices: 1}, 0, math.MaxInt64},
		{"saturates on the product", Request{Endpoint: ChatCompletions, MaxOutputTokens: MaxOutputTokens, Choices: math.MaxInt64 / 2}, 0, math.MaxInt64},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.req.Cost(tt.def); got != tt.want {
				t.Errorf("Cost(%d) = %d, want %d", tt.def, got, tt.want)
			}
		})
	}
}

func TestParseRequestThenCost(t *testing.T) {
	req, err := ParseRequest(ChatCompletions, []byte(`{"messages":[{"role":"user","content":"Hello"}],"n":2,"max_tokens":100}`))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := req.Cost(4096), prompt(chatFixed(1), "Hello")+200; got != want {
		t.Errorf("Cost = %d, want %d", got, want)
	}
}
