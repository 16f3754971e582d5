package provider

import (
	"errors"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/adaptive-rate-limiter/arl/limiter/bucket"
)

// Bounds beyond which a header value is absurd and ignored rather than trusted.
const (
	maxCount      = 1 << 50             // larger limits or remaining counts are not credible
	maxReset      = 31 * 24 * time.Hour // a reset further away than a month
	maxRetryAfter = time.Hour           // longer upstream blocks are capped to this
)

// Epoch thresholds for resets written as numbers whose unit is not fixed: a
// value this large is not a number of seconds to wait (maxReset is about
// 2.7e6 s) but an instant.
const (
	epochSeconds = 1e9  // 2001-09-09 as Unix seconds
	epochMillis  = 1e12 // the same instant in Unix milliseconds
)

// resetFormat says how a provider writes the time until a limit resets.
type resetFormat uint8

const (
	// resetDelta is a Go duration ("6m0s", "2m59.56s", "20ms") or plain
	// seconds ("1", "0.5").
	resetDelta resetFormat = iota
	// resetInstant is an RFC 3339 instant ("2026-12-03T12:00:30Z").
	resetInstant
	// resetAuto is a number of seconds to wait, or a Unix epoch in seconds
	// or in milliseconds, told apart by size; Go durations, RFC 3339 and
	// HTTP dates are read as well.
	resetAuto
)

// fields reads header values and counts the ones that were present but
// invalid.
type fields struct {
	h       Header
	invalid int
	// minusOneUnknown makes "-1" mean "not known" rather than invalid
	// (Azure OpenAI reports unknown limits that way).
	minusOneUnknown bool
}

// get returns a header's trimmed value, "" when absent or, with
// minusOneUnknown, when it is "-1".
func (f *fields) get(name string) string {
	s := strings.TrimSpace(f.h.Get(name))
	if f.minusOneUnknown && s == "-1" {
		return ""
	}
	return s
}

// count reads a non-negative integer count. Fractional values (some providers
// print "99.0") are truncated. ok is false when absent or invalid.
func (f *fields) count(name string) (int64, bool) {
	s := f.get(name)
	if s == "" {
		return 0, false
	}
	n, ok := parseCount(s)
	if !ok {
		f.invalid++
	}
	return n, ok
}

// parseDecimal reads a non-negative decimal number as headers write them:
// digits with an optional fraction ("30", "0.5", "99.0"). Signs, exponents,
// "Inf", "NaN", hex and digit separators, all of which strconv.ParseFloat
// would take, are not numbers here: no provider writes them, and an "Infinity"
// read as a wait would block a bucket for the longest time allowed.
func parseDecimal(s string) (float64, bool) {
	digits, frac := 0, false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= '0' && c <= '9':
			digits++
		case c == '.' && !frac:
			frac = true
		default:
			return 0, false
		}
	}
	if digits == 0 {
		return 0, false
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil && !errors.Is(err, strconv.ErrRange) {
		return 0, false
	}
	return v, true // a value out of range is +Inf: callers cap or reject it
}

// parseCount reads a non-negative count no larger than maxCount.
func parseCount(s string) (int64, bool) {
	if s == "" || s[0] < '0' || s[0] > '9' {
		return 0, false // no sign: a count is digits (see parseDecimal)
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		v, ok := parseDecimal(s)
		if !ok || v > maxCount {
			return 0, false
		}
		n = int64(v)
	}
	if n > maxCount {
		return 0, false
	}
	return n, true
}

// firstCount reads the first of names that holds a valid count.
func (f *fields) firstCount(names []string) (int64, bool) {
	for _, name := range names {
		if n, ok := f.count(name); ok {
			return n, true
		}
	}
	return 0, false
}

// reset reads the time until a limit resets, written in format. ok is false
// when absent or invalid; a reset in the past is 0.
func (f *fields) reset(name string, format resetFormat, now time.Time) (time.Duration, bool) {
	s := f.get(name)
	if s == "" {
		return 0, false
	}
	d, ok := parseReset(s, format, now)
	if !ok {
		f.invalid++
	}
	return d, ok
}

// firstReset reads the first of names that holds a valid reset.
func (f *fields) firstReset(names []string, format resetFormat, now time.Time) (time.Duration, bool) {
	for _, name := range names {
		if d, ok := f.reset(name, format, now); ok {
			return d, true
		}
	}
	return 0, false
}

// parseReset reads one reset value; see resetFormat. Negative delays and
// resets beyond maxReset are invalid; instants in the past are 0.
func parseReset(s string, format resetFormat, now time.Time) (time.Duration, bool) {
	switch format {
	case resetInstant:
		t, err := time.Parse(time.RFC3339, s)
		if err != nil {
			return 0, false
		}
		return untilInstant(t, now)
	case resetAuto:
		if v, ok := parseDecimal(s); ok {
			switch {
			case math.IsInf(v, 0):
				return 0, false
			case v >= epochMillis:
				return secondsDuration(v/1e3 - unixSeconds(now))
			case v >= epochSeconds:
				return secondsDuration(v - unixSeconds(now))
			default:
				return secondsDuration(v)
			}
		}
		if d, err := time.ParseDuration(s); err == nil {
			return boundReset(d)
		}
		if t, err := time.Parse(time.RFC3339, s); err == nil {
			return untilInstant(t, now)
		}
		if t, err := http.ParseTime(s); err == nil {
			return untilInstant(t, now)
		}
		return 0, false
	default:
		if d, err := time.ParseDuration(s); err == nil {
			return boundReset(d)
		}
		v, ok := parseDecimal(s)
		if !ok {
			return 0, false
		}
		return secondsDuration(v)
	}
}

// unixSeconds returns now as fractional Unix seconds.
func unixSeconds(now time.Time) float64 {
	return float64(now.UnixNano()) / 1e9
}

// secondsDuration converts fractional seconds to a reset: an instant already
// past (a negative difference from an epoch) is 0, more than maxReset is
// invalid. Plain delays are checked for sign by their callers.
func secondsDuration(secs float64) (time.Duration, bool) {
	if math.IsNaN(secs) || secs > maxReset.Seconds() {
		return 0, false
	}
	return max(time.Duration(secs*float64(time.Second)), 0), true
}

// untilInstant returns the time from now until t, 0 when t is past.
func untilInstant(t, now time.Time) (time.Duration, bool) {
	if t.After(now.Add(maxReset)) {
		return 0, false
	}
	return max(t.Sub(now), 0), true
}

// boundReset checks a delay against the bounds.
func boundReset(d time.Duration) (time.Duration, bool) {
	if d < 0 || d > maxReset {
		return 0, false
	}
	return d, true
}

// retryAfter reads the wait an upstream asks for: the millisecond headers in
// msNames first (fractional milliseconds), then retry-after as seconds (whole
// or fractional) or as an HTTP-date relative to now. Waits are capped at
// maxRetryAfter. ok is false when no valid hint is present.
func (f *fields) retryAfter(now time.Time, msNames ...string) (time.Duration, bool) {
	for _, name := range msNames {
		s := strings.TrimSpace(f.h.Get(name))
		if s == "" {
			continue
		}
		if ms, ok := parseDecimal(s); ok {
			return waitOf(ms, time.Millisecond), true
		}
		f.invalid++
	}
	s := strings.TrimSpace(f.h.Get("retry-after"))
	if s == "" {
		return 0, false
	}
	if secs, ok := parseDecimal(s); ok {
		return waitOf(secs, time.Second), true
	}
	if t, err := http.ParseTime(s); err == nil {
		return min(max(t.Sub(now), 0), maxRetryAfter), true
	}
	f.invalid++
	return 0, false
}

// waitOf converts a number of units (from parseDecimal: non-negative, +Inf
// when huge) to a wait capped at maxRetryAfter.
func waitOf(n float64, unit time.Duration) time.Duration {
	if n >= float64(maxRetryAfter/unit) {
		return maxRetryAfter
	}
	return time.Duration(n * float64(unit))
}

// dimHeaders names the headers that report one dimension of a bucket. Where
// several names are given for one value, the first present and valid one
// wins.
type dimHeaders struct {
	dim       bucket.Dimension
	limit     []string
	remaining []string
	reset     []string
	format    resetFormat
	// window is the provider's window for this dimension when it differs
	// from the dimension's default (Azure's 10 s request window, per-second
	// rates). It is reported only together with a limit, so that a
	// configured default limit is never reinterpreted over another window.
	window time.Duration
}

// readDims reads every dimension in specs into o. A dimension already
// reported in o (by a header family read earlier) is left as it is. It
// returns the name of the first dimension reported exhausted (remaining 0),
// "" when none is.
func (f *fields) readDims(o *bucket.Observation, specs []dimHeaders, now time.Time) (exhausted string) {
	for _, s := range specs {
		od := &o.Dims[s.dim]
		if od.Limit > 0 || od.HasRemaining {
			continue
		}
		limit, okLimit := f.firstCount(s.limit)
		remaining, okRemaining := f.firstCount(s.remaining)
		od.Reset, _ = f.firstReset(s.reset, s.format, now)
		if okLimit && limit > 0 {
			od.Limit = limit
			if s.window > 0 && s.window != s.dim.DefaultWindow() {
				od.Window = s.window
			}
		}
		if okRemaining {
			if od.Limit > 0 {
				remaining = min(remaining, od.Limit)
			}
			od.Remaining, od.HasRemaining = remaining, true
			if remaining == 0 && exhausted == "" {
				exhausted = s.dim.String()
			}
		}
	}
	return exhausted
}
