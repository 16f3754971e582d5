package provider

import (
	"testing"
)

// fuzzHeaderNames are every header name a dialect reads.
func fuzzHeaderNames() []string {
	names := []string{
		"retry-after", "retry-after-ms", "x-ms-retry-after-ms", "x-ratelimit-over-limit",
		"ratelimit", "ratelimit-policy", "ratelimit-limit", "ratelimit-remaining", "ratelimit-reset",
	}
	tables := [][]dimHeaders{
		openAIDialect.dims, groqDialect.dims, azureDialect.dims, veniceDialect.dims,
		anthropicSplit, anthropicCombined, togetherDims, openRouterDims, mistralDims, fireworksDims,
		genericOpenAI, genericXRateLimit,
	}
	seen := map[string]bool{}
	for _, n := range names {
		seen[n] = true
	}
	for _, table := range tables {
		for _, s := range table {
			for _, group := range [][]string{s.limit, s.remaining, s.reset} {
				for _, n := range group {
					if !seen[n] {
						seen[n] = true
						names = append(names, n)
					}
				}
			}
		}
	}
	return names
}

// FuzzParseAnswer gives every header every dialect reads fuzzed values (two
// of them, alternating) and checks that no dialect panics or leaves the
// bounds: no negative values, nothing beyond the caps, a block iff a reason,
// never a billing error with a block.
func FuzzParseAnswer(f *testing.F) {
	for _, s := range []string{
		"60", "6m0s", "2m59.56s", "20ms", "-1", "1e400", "NaN", "Inf", "", "0.5", "0", "99.0",
		"Wed, 21 Oct 2015 07:28:00 GMT", "2026-12-03T12:00:30Z", "1796299260", "1796299245000",
		"99999999999999999999", `"default";r=50;t=30`, `"default";q=100;w=60;qu="tokens"`,
		"limit=100, remaining=50, reset=30", "10;w=1, 50;w=60", "yes", `"a\"b";r=-1;t=x, ;;,,`,
	} {
		f.Add(429, s, s)
		f.Add(200, s, "1")
	}
	for _, file := range loadFixtures(f) {
		for _, fx := range file.Cases {
			for _, v := range fx.Headers {
				f.Add(fx.Status, v, v)
			}
		}
	}
	names := fuzzHeaderNames()
	f.Fuzz(func(t *testing.T, status int, a, b string) {
		h := header{}
		for i, n := range names {
			if i%2 == 0 {
				h[n] = a
			} else {
				h[n] = b
			}
		}
		for _, name := range dialects {
			ans := ForName(name).ParseAnswer(status, h, now)
			checkInvariants(t, ans)
		}
	})
}

// FuzzParseErrorBody feeds any body to every dialect's ParseErrorBody, after
// answers with and without a retry hint, and checks the same bounds.
func FuzzParseErrorBody(f *testing.F) {
	for _, file := range loadFixtures(f) {
		for _, fx := range file.Cases {
			if len(fx.Body) > 0 {
				f.Add(fx.Status, []byte(fx.Body))
			}
		}
	}
	for _, s := range []string{
		``, `[]`, `[1]`, `null`, `{"error":null}`, `{"error":"x"}`, `{"error":{"code":{"a":1},"details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"-5s"}]}}`,
		`{"error":{"message":"Please try again in 99999999999h","type":"tokens"}}`,
		`{"error":{"metadata":{"headers":{"X-RateLimit-Reset":"1e400","X-RateLimit-Remaining":"-1"}}}}`,
		`[{"error":{"code":429,"details":[{"@type":"type.googleapis.com/google.rpc.QuotaFailure","violations":[{"quotaId":"PerDayTokens","quotaValue":"1e300"}]}]}}]`,
	} {
		f.Add(429, []byte(s))
	}
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		for _, name := range dialects {
			d := ForName(name)
			for _, h := range []header{{}, {"retry-after": "3"}, {"x-ratelimit-remaining-requests": "0", "x-ratelimit-remaining": "0"}} {
				a := d.ParseAnswer(status, h, now)
				d.ParseErrorBody(status, body, now, &a)
				checkInvariants(t, a)
			}
		}
	})
}
