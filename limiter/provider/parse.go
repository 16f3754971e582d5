package provider

import (
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Bounds beyond which a header value is absurd and ignored rather than trusted.
const (
	maxCount      = 1 << 50             // larger limits or remaining counts are not credible
	maxReset      = 31 * 24 * time.Hour // a reset further away than a month
	maxRetryAfter = time.Hour           // longer upstream blocks are capped to this
)

// fields collects parsed values and counts the ones that were present but
// invalid.
type fields struct {
	h       Header
	invalid int
}

// count reads a non-negative integer count. Fractional values (some providers
// print "99.0") are truncated. ok is false when absent or invalid.
func (f *fields) count(name string) (int64, bool) {
	s := strings.TrimSpace(f.h.Get(name))
	if s == "" {
		return 0, false
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		v, ferr := strconv.ParseFloat(s, 64)
		if ferr != nil || math.IsNaN(v) || math.IsInf(v, 0) {
			f.invalid++
			return 0, false
		}
		n = int64(v)
		if v > maxCount {
			n = maxCount + 1
		}
	}
	if n < 0 || n > maxCount {
		f.invalid++
		return 0, false
	}
	return n, true
}

// duration reads a reset written as a Go duration ("6m0s", "2m59.56s",
// "20ms") or as plain seconds ("1", "0.5"). ok is false when absent, invalid,
// negative or beyond maxReset.
func (f *fields) duration(name string) (time.Duration, bool) {
	s := strings.TrimSpace(f.h.Get(name))
	if s == "" {
		return 0, false
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		secs, ferr := strconv.ParseFloat(s, 64)
		if ferr != nil || math.IsNaN(secs) || secs > maxReset.Seconds() {
			f.invalid++
			return 0, false
		}
		d = time.Duration(secs * float64(time.Second))
	}
	if d < 0 || d > maxReset {
		f.invalid++
		return 0, false
	}
	return d, true
}

// retryAfter reads the wait an upstream asks for: retry-after-ms (fractional
// milliseconds) first, then retry-after as seconds (whole or fractional) or as
// an HTTP-date relative to now. Waits are capped at maxRetryAfter.
func (f *fields) retryAfter(now time.Time) (time.Duration, bool) {
	if s := strings.TrimSpace(f.h.Get("retry-after-ms")); s != "" {
		ms, err := strconv.ParseFloat(s, 64)
		if err == nil && ms >= 0 && !math.IsInf(ms, 0) {
			return min(time.Duration(ms*float64(time.Millisecond)), maxRetryAfter), true
		}
		f.invalid++
	}
	s := strings.TrimSpace(f.h.Get("retry-after"))
	if s == "" {
		return 0, false
	}
	if secs, err := strconv.ParseFloat(s, 64); err == nil {
		if secs < 0 || math.IsNaN(secs) {
			f.invalid++
			return 0, false
		}
		if secs >= maxRetryAfter.Seconds() {
			return maxRetryAfter, true
		}
		return time.Duration(secs * float64(time.Second)), true
	}
	if t, err := http.ParseTime(s); err == nil {
		return min(max(t.Sub(now), 0), maxRetryAfter), true
	}
	f.invalid++
	return 0, false
}
