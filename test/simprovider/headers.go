package simprovider

import (
	"net/http"
	"strconv"
	"time"
)

// Formats the dialects write rate-limit values in.

// FormatOpenAIDuration formats d the way OpenAI prints rate-limit resets and
// waits: rounded up to the millisecond, in Go duration syntax ("0s", "20ms",
// "1s", "6m0s", "2m59.56s"), so time.ParseDuration reads it back.
func FormatOpenAIDuration(d time.Duration) string {
	if d <= 0 {
		return "0s"
	}
	return (time.Duration(ceilDiv(d, time.Millisecond)) * time.Millisecond).String()
}

// ceilDiv returns d/unit rounded up, for positive d.
func ceilDiv(d, unit time.Duration) int64 {
	return int64((d + unit - 1) / unit)
}

// formatWholeSeconds formats d as whole seconds, rounded up ("0", "1", "60").
func formatWholeSeconds(d time.Duration) string {
	return strconv.FormatInt(ceilDiv(max(d, 0), time.Second), 10)
}

// formatSeconds formats d as seconds rounded up to the millisecond, without
// trailing zeros ("0", "0.5", "1", "2.25").
func formatSeconds(d time.Duration) string {
	ms := ceilDiv(max(d, 0), time.Millisecond)
	return strconv.FormatFloat(float64(ms)/1000, 'f', -1, 64)
}

// resetInstant returns the instant d after at, rounded up to the second:
// never earlier than the moment the bucket is full again.
func resetInstant(at time.Time, d time.Duration) time.Time {
	return ceilTime(at.Add(max(d, 0)), time.Second)
}

// ceilTime rounds t up to a multiple of unit.
func ceilTime(t time.Time, unit time.Duration) time.Time {
	if r := t.Truncate(unit); r.Before(t) {
		return r.Add(unit)
	}
	return t
}

// setRetryAfter writes retry-after, in whole seconds rounded up and at least
// 1, and, unless msHeader is "", the wait in milliseconds (rounded up, at
// least 1) in msHeader, when the request was rejected (wait > 0).
func setRetryAfter(h http.Header, wait time.Duration, msHeader string) {
	if wait <= 0 {
		return
	}
	h.Set("Retry-After", strconv.FormatInt(max(ceilDiv(wait, time.Second), 1), 10))
	if msHeader != "" {
		h.Set(msHeader, strconv.FormatInt(max(ceilDiv(wait, time.Millisecond), 1), 10))
	}
}

// quotaPhrase names a quota the way OpenAI's and Groq's rate-limit messages
// do ("requests per min (RPM)"); arl reads the limit hit from it.
func quotaPhrase(q Quota) string {
	switch q {
	case QuotaRequests:
		return "requests per min (RPM)"
	case QuotaRequestsPerDay:
		return "requests per day (RPD)"
	case QuotaInputTokens:
		return "input tokens per min (ITPM)"
	case QuotaOutputTokens:
		return "output tokens per min (OTPM)"
	case QuotaTokensPerMonth:
		return "tokens per month"
	default:
		return "tokens per min (TPM)"
	}
}

// formatCount formats n with thousands separators ("8,000"), as Anthropic
// writes limits in its messages.
func formatCount(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := n < 0
	if neg {
		s = s[1:]
	}
	var b []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			b = append(b, ',')
		}
		b = append(b, s[i])
	}
	if neg {
		return "-" + string(b)
	}
	return string(b)
}
