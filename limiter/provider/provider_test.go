package provider

import (
	"strings"
	"testing"
	"time"

	"github.com/adaptive-rate-limiter/arl/limiter/bucket"
)

// header is a Header over a map of lower-case names.
type header map[string]string

func (h header) Get(name string) string { return h[name] }

// now is the instant every test answer is received at (Unix 1796299200).
var now = time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)

// dialects are the names with a dialect of their own.
var dialects = []string{OpenAI, Azure, Anthropic, Groq, Together, Venice, OpenRouter, Mistral, Fireworks, Gemini, Generic}

func TestName(t *testing.T) {
	tests := []struct {
		authority, override, want string
		known                     bool
	}{
		{"api.openai.com", "", OpenAI, true},
		{"API.OpenAI.com:443", "", OpenAI, true},
		{"api.openai.com.", "", OpenAI, true},
		{"api.anthropic.com", "", Anthropic, true},
		{"api.groq.com", "", Groq, true},
		{"api.together.xyz", "", Together, true},
		{"api.together.ai:443", "", Together, true},
		{"api.venice.ai", "", Venice, true},
		{"openrouter.ai", "", OpenRouter, true},
		{"api.mistral.ai", "", Mistral, true},
		{"api.fireworks.ai", "", Fireworks, true},
		{"generativelanguage.googleapis.com", "", Gemini, true},
		{"myres.openai.azure.com", "", Azure, true},
		{"x.cognitiveservices.azure.com:443", "", Azure, true},
		{"openai.azure.com.evil.example", "", Generic, true},
		{"localhost:10000", "", Generic, true},
		{"[::1]:8080", "", Generic, true},
		{"", "", Generic, true},
		{"localhost", " Groq ", Groq, true},
		{"api.openai.com", "deepseek", Generic, false},
		{"api.openai.com", "generic", Generic, true},
		{"localhost", "open ai", Generic, false},
		{"localhost", "openai\x00", Generic, false},
		{"localhost", "{evil=\"label\"}", Generic, false},
		{"api.anthropic.com", strings.Repeat("x", 10_000), Generic, false},
	}
	for _, tc := range tests {
		if got, known := Name(tc.authority, tc.override); got != tc.want || known != tc.known {
			t.Errorf("Name(%q, %q) = %q, %v; want %q, %v", tc.authority, tc.override, got, known, tc.want, tc.known)
		}
	}
}

func TestForName(t *testing.T) {
	for _, name := range dialects {
		if got := ForName(name).Name(); got != name {
			t.Errorf("ForName(%q).Name() = %q", name, got)
		}
	}
	// Names without a dialect speak the generic dialect, under its name:
	// they are not labels or bucket keys of their own.
	d := ForName("deepseek")
	if _, ok := d.(generic); !ok || d.Name() != Generic {
		t.Errorf("ForName(deepseek) = %T %q", d, d.Name())
	}
	if len(byName) != len(dialects) {
		t.Errorf("%d dialects by name, %d in the test list", len(byName), len(dialects))
	}
	if got := ForName("").Name(); got != Generic {
		t.Errorf("ForName(\"\").Name() = %q", got)
	}
	// Each dialect reads what its provider sends: a header only one of them
	// knows tells them apart.
	probes := map[string]header{
		Anthropic:  {"anthropic-ratelimit-requests-remaining": "7"},
		Together:   {"x-ratelimit-remaining": "7", "x-ratelimit-limit": "9"},
		Mistral:    {"x-ratelimit-remaining-req-minute": "7"},
		Fireworks:  {"x-ratelimit-remaining-tokens-generated": "7"},
		Groq:       {"x-ratelimit-remaining-requests": "7"},
		OpenRouter: {"x-ratelimit-remaining": "7", "x-ratelimit-reset": "1796342400000"},
	}
	want := map[string]bucket.Dimension{
		Anthropic: bucket.Requests, Together: bucket.Requests, Mistral: bucket.Requests,
		Fireworks: bucket.OutputTokens, Groq: bucket.RequestsPerDay, OpenRouter: bucket.RequestsPerDay,
	}
	for name, h := range probes {
		o := ForName(name).ParseAnswer(200, h, now).Observation
		if od := o.Dims[want[name]]; !od.HasRemaining || od.Remaining != 7 {
			t.Errorf("%s: %s not read: %+v", name, want[name], o.Dims)
		}
	}
}

func TestLockoutPolicy(t *testing.T) {
	for _, name := range dialects {
		lp, ok := ForName(name).(LockoutPolicy)
		if ok != (name == Venice) {
			t.Errorf("%s implements LockoutPolicy: %v", name, ok)
		}
		if ok && (lp.Lockout() != Lockout{Failures: 20, Window: 30 * time.Second, Penalty: 30 * time.Second}) {
			t.Errorf("venice lockout %+v", lp.Lockout())
		}
	}
}

func TestFailure(t *testing.T) {
	tests := []struct {
		status        int
		venice, other bool
	}{
		{200, false, false},
		{204, false, false},
		{400, true, false},
		{401, true, false},
		{402, true, false},
		{429, true, true},
		{500, true, true},
		{503, true, true},
		{529, true, true},
	}
	for _, tc := range tests {
		for _, name := range dialects {
			want := tc.other
			if name == Venice {
				want = tc.venice
			}
			if got := ForName(name).ParseAnswer(tc.status, header{}, now).Failure; got != want {
				t.Errorf("%s %d: Failure %v, want %v", name, tc.status, got, want)
			}
		}
	}
}

func TestWaitFromMessage(t *testing.T) {
	tests := []struct {
		msg  string
		want time.Duration
		ok   bool
	}{
		{"Please try again in 2.754s. Visit https://platform.openai.com", 2754 * time.Millisecond, true},
		{"Please try again in 7m12s.", 7*time.Minute + 12*time.Second, true},
		{"Please try again in 20ms", 20 * time.Millisecond, true},
		{"Please retry after 33 seconds.", 33 * time.Second, true},
		{"Please retry after 1 second.", time.Second, true},
		{"Please wait 30s and try again.", 30 * time.Second, true},
		{"Please retry after 86400 seconds.", maxRetryAfter, true},
		{"Please try again in 100000h.", maxRetryAfter, true},
		{"Please wait while we look into it. Try again in 3s", 3 * time.Second, true},
		{"Please try again later.", 0, false},
		{"try again in -5s", 0, false},
		{"retry after NaN seconds", 0, false},
		{"", 0, false},
	}
	for _, tc := range tests {
		got, ok := waitFromMessage(tc.msg)
		if got != tc.want || ok != tc.ok {
			t.Errorf("waitFromMessage(%q) = %v %v, want %v %v", tc.msg, got, ok, tc.want, tc.ok)
		}
	}
}

func TestReasonFromMessage(t *testing.T) {
	tests := []struct{ msg, want string }{
		{"on tokens per min (TPM): Limit 30000", "tokens"},
		{"on requests per min (RPM): Limit 3", "requests"},
		{"on requests per day (RPD): Limit 200", "requests_per_day"},
		{"on tokens per day (TPD): Limit 100000", "tokens_per_day"},
		{"of 50,000 input tokens per minute", "input_tokens"},
		{"of 8,000 output tokens per minute", "output_tokens"},
		{"have exceeded token rate limit of your current tier", "tokens"},
		{"have exceeded call rate limit of your current tier", "requests"},
		{"Requests rate limit exceeded", "requests"},
		{"Something went wrong", ""},
	}
	for _, tc := range tests {
		if got := reasonFromMessage(tc.msg); got != tc.want {
			t.Errorf("reasonFromMessage(%q) = %q, want %q", tc.msg, got, tc.want)
		}
	}
}

func TestParseResetAuto(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"30", 30 * time.Second, true},
		{"0.5", 500 * time.Millisecond, true},
		{"1796299230", 30 * time.Second, true},
		{"1796299230.5", 30500 * time.Millisecond, true},
		{"1796299230000", 30 * time.Second, true},
		{"1796299100", 0, true},
		{"6m0s", 6 * time.Minute, true},
		{"2026-12-03T12:00:10Z", 10 * time.Second, true},
		{"Thu, 03 Dec 2026 12:00:20 GMT", 20 * time.Second, true},
		{"2700000", 0, false},    // more than a month of seconds, not yet an epoch
		{"4102444800", 0, false}, // 2100: beyond maxReset
		{"-3", 0, false},
		{"NaN", 0, false},
		{"Inf", 0, false},
		{"soon", 0, false},
	}
	for _, tc := range tests {
		got, ok := parseReset(tc.in, resetAuto, now)
		if got != tc.want || ok != tc.ok {
			t.Errorf("parseReset(%q) = %v %v, want %v %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestParseSFList(t *testing.T) {
	items := parseSFList(`"default";r=50;t=30, "quoted;,\"name";q=1, bare;flag, 100;w=60`)
	want := []sfItem{
		{value: "default", params: map[string]string{"r": "50", "t": "30"}},
		{value: `quoted;,"name`, params: map[string]string{"q": "1"}},
		{value: "bare", params: map[string]string{"flag": "?1"}},
		{value: "100", params: map[string]string{"w": "60"}},
	}
	if len(items) != len(want) {
		t.Fatalf("items %+v", items)
	}
	for i := range want {
		if items[i].value != want[i].value || len(items[i].params) != len(want[i].params) {
			t.Errorf("item %d: %+v, want %+v", i, items[i], want[i])
			continue
		}
		for k, v := range want[i].params {
			if items[i].params[k] != v {
				t.Errorf("item %d param %s = %q, want %q", i, k, items[i].params[k], v)
			}
		}
	}
	if n := len(parseSFList(strings.Repeat("a, ", 100))); n != maxSFItems {
		t.Errorf("%d items read from a long list", n)
	}
}
