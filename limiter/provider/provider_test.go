package provider

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/adaptive-rate-limiter/arl/limiter/bucket"
)

type header map[string]string

func (h header) Get(name string) string { return h[name] }

var now = time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)

func TestName(t *testing.T) {
	tests := []struct{ authority, override, want string }{
		{"api.openai.com", "", "openai"},
		{"API.OpenAI.com:443", "", "openai"},
		{"api.anthropic.com", "", "anthropic"},
		{"myres.openai.azure.com", "", "azure"},
		{"x.cognitiveservices.azure.com:443", "", "azure"},
		{"openrouter.ai", "", "openrouter"},
		{"localhost:10000", "", Generic},
		{"[::1]:8080", "", Generic},
		{"", "", Generic},
		{"localhost", " Groq ", "groq"},
	}
	for _, tc := range tests {
		if got := Name(tc.authority, tc.override); got != tc.want {
			t.Errorf("Name(%q, %q) = %q, want %q", tc.authority, tc.override, got, tc.want)
		}
	}
}

func TestOpenAIParseAnswer(t *testing.T) {
	type dim struct {
		limit, remaining int64
		has              bool
		reset            time.Duration
	}
	tests := []struct {
		name       string
		status     int
		h          header
		req, tok   dim
		retryAfter time.Duration
		reason     string
		invalid    int
	}{
		{
			name:   "documented example",
			status: 200,
			h: header{
				"x-ratelimit-limit-requests": "60", "x-ratelimit-remaining-requests": "59", "x-ratelimit-reset-requests": "1s",
				"x-ratelimit-limit-tokens": "150000", "x-ratelimit-remaining-tokens": "149984", "x-ratelimit-reset-tokens": "6m0s",
			},
			req: dim{60, 59, true, time.Second},
			tok: dim{150000, 149984, true, 6 * time.Minute},
		},
		{
			name:   "fractional and millisecond resets",
			status: 200,
			h:      header{"x-ratelimit-reset-requests": "2m59.56s", "x-ratelimit-reset-tokens": "20ms"},
			req:    dim{reset: 2*time.Minute + 59560*time.Millisecond},
			tok:    dim{reset: 20 * time.Millisecond},
		},
		{
			name:   "reset in plain seconds",
			status: 200,
			h:      header{"x-ratelimit-reset-requests": "1.5"},
			req:    dim{reset: 1500 * time.Millisecond},
		},
		{
			name:   "exhausted requests",
			status: 200,
			h:      header{"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "20s"},
			req:    dim{0, 0, true, 20 * time.Second},
		},
		{
			name:       "429 with retry-after-ms preferred",
			status:     429,
			h:          header{"retry-after-ms": "1500", "retry-after": "2", "x-ratelimit-remaining-tokens": "0"},
			tok:        dim{0, 0, true, 0},
			retryAfter: 1500 * time.Millisecond,
			reason:     "tokens",
		},
		{
			name:       "429 retry-after fractional seconds",
			status:     429,
			h:          header{"retry-after": "0.25"},
			retryAfter: 250 * time.Millisecond,
			reason:     "upstream",
		},
		{
			name:       "429 retry-after HTTP date",
			status:     429,
			h:          header{"retry-after": now.Add(30 * time.Second).Format(http.TimeFormat)},
			retryAfter: 30 * time.Second,
			reason:     "upstream",
		},
		{
			name:       "429 without hint blocks briefly",
			status:     429,
			h:          header{},
			retryAfter: defaultBlock,
			reason:     "upstream",
		},
		{
			name:       "absurd retry-after capped",
			status:     429,
			h:          header{"retry-after": "99999999999"},
			retryAfter: maxRetryAfter,
			reason:     "upstream",
		},
		{
			name:   "retry-after ignored on 200",
			status: 200,
			h:      header{"retry-after": "5"},
		},
		{
			name:       "503 with retry-after blocks",
			status:     503,
			h:          header{"retry-after": "3"},
			retryAfter: 3 * time.Second,
			reason:     "upstream",
		},
		{
			name:   "malformed values ignored and counted",
			status: 200,
			h: header{
				"x-ratelimit-limit-requests": "lots", "x-ratelimit-remaining-requests": "-5", "x-ratelimit-reset-requests": "soon",
				"x-ratelimit-limit-tokens": "1e400", "x-ratelimit-remaining-tokens": "NaN", "x-ratelimit-reset-tokens": "-1s",
			},
			invalid: 6,
		},
		{
			name:    "absurdly large values ignored",
			status:  200,
			h:       header{"x-ratelimit-limit-tokens": "99999999999999999999", "x-ratelimit-reset-tokens": "9999h"},
			invalid: 2,
		},
		{
			name:       "malformed retry-after: default block, counted",
			status:     429,
			h:          header{"retry-after": "tomorrow", "retry-after-ms": "x"},
			retryAfter: defaultBlock,
			reason:     "upstream",
			invalid:    2,
		},
		{
			name:   "fractional count truncated",
			status: 200,
			h:      header{"x-ratelimit-remaining-tokens": "99.0"},
			tok:    dim{0, 99, true, 0},
		},
	}
	d := ForName("openai")
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := d.ParseAnswer(tc.status, tc.h, now)
			o := a.Observation
			check := func(name string, got bucket.DimObservation, want dim) {
				if got.Limit != want.limit || got.Remaining != want.remaining || got.HasRemaining != want.has || got.Reset != want.reset {
					t.Errorf("%s: got %+v, want %+v", name, got, want)
				}
			}
			check("requests", o.Dims[bucket.Requests], tc.req)
			check("tokens", o.Dims[bucket.Tokens], tc.tok)
			if o.RetryAfter != tc.retryAfter || o.Reason != tc.reason {
				t.Errorf("retry after %v reason %q, want %v %q", o.RetryAfter, o.Reason, tc.retryAfter, tc.reason)
			}
			if a.Invalid != tc.invalid {
				t.Errorf("invalid %d, want %d", a.Invalid, tc.invalid)
			}
			if !o.At.Equal(now) {
				t.Errorf("at %v", o.At)
			}
		})
	}
}

func TestOpenAIErrorBody(t *testing.T) {
	var e struct {
		Error struct {
			Message, Type, Code string
			Param               *string
		}
	}
	body := ForName("openai").ErrorBody(429, "tokens", "slow down")
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatal(err)
	}
	if e.Error.Type != "tokens" || e.Error.Code != "rate_limit_exceeded" || e.Error.Message != "slow down" || e.Error.Param != nil {
		t.Fatalf("body %s", body)
	}
	if err := json.Unmarshal(ForName("openai").ErrorBody(503, "backend_unavailable", "down"), &e); err != nil || e.Error.Code == "rate_limit_exceeded" {
		t.Fatalf("503 body code %q err %v", e.Error.Code, err)
	}
}

// FuzzOpenAIHeaders checks that no header value makes the parser panic or
// produce values outside the documented bounds.
func FuzzOpenAIHeaders(f *testing.F) {
	for _, s := range []string{"60", "6m0s", "2m59.56s", "20ms", "-1", "1e400", "NaN", "Inf", "", "0.5", "Wed, 21 Oct 2015 07:28:00 GMT", "99999999999999999999"} {
		f.Add(s, s, 429)
	}
	d := ForName("openai")
	f.Fuzz(func(t *testing.T, a, b string, status int) {
		h := header{
			"x-ratelimit-limit-requests": a, "x-ratelimit-remaining-requests": b, "x-ratelimit-reset-requests": a,
			"x-ratelimit-limit-tokens": b, "x-ratelimit-remaining-tokens": a, "x-ratelimit-reset-tokens": b,
			"retry-after": a, "retry-after-ms": b,
		}
		o := d.ParseAnswer(status, h, now).Observation
		for i, od := range o.Dims {
			if od.Limit < 0 || od.Limit > maxCount || od.Remaining < 0 || od.Remaining > maxCount || od.Reset < 0 || od.Reset > maxReset {
				t.Fatalf("dimension %d out of bounds: %+v", i, od)
			}
		}
		if o.RetryAfter < 0 || o.RetryAfter > maxRetryAfter {
			t.Fatalf("retry after %v out of bounds", o.RetryAfter)
		}
		if (o.RetryAfter > 0) != (o.Reason != "") {
			t.Fatalf("retry after %v with reason %q", o.RetryAfter, o.Reason)
		}
	})
}
