package provider

import (
	"strconv"
	"strings"
	"time"

	"github.com/adaptive-rate-limiter/arl/limiter/bucket"
)

// The IETF rate-limit headers (draft-ietf-httpapi-ratelimit-headers) in the
// forms the drafts have had:
//
//	RateLimit-Limit: 100          RateLimit-Remaining: 50     RateLimit-Reset: 30     (drafts up to 06)
//	RateLimit-Policy: 100;w=60    (also "10, 100;w=60": the first value is the one in effect)
//	RateLimit: limit=100, remaining=50, reset=30                                       (draft 07)
//	RateLimit: "default";r=50;t=30                                                      (draft 08 on, structured fields)
//	RateLimit-Policy: "default";q=100;w=60;qu="requests"
//
// r is the remaining quota, t the seconds until it resets, q the quota, w
// its window in seconds and qu its unit. A quota counts requests unless its
// unit or name says tokens; quotas in content-bytes or concurrent-requests
// are not rates arl accounts and are skipped. A window of a day or more is a
// per-day dimension (a month or more, for tokens, per month); shorter
// windows apply to the per-minute dimension with their own window.

// maxSFItems bounds the members read from one structured-field list.
const maxSFItems = 16

// sfItem is one member of a structured-field list: a bare value (a string's
// quotes removed) and its parameters, keys lower-cased.
type sfItem struct {
	value  string
	params map[string]string
}

// parseSFList reads a structured-field list (RFC 8941) leniently: members
// separated by commas, parameters by semicolons, strings in double quotes.
// Members beyond maxSFItems are ignored.
func parseSFList(s string) []sfItem {
	var items []sfItem
	for _, member := range splitOutsideQuotes(s, ',') {
		if len(items) == maxSFItems {
			break
		}
		parts := splitOutsideQuotes(member, ';')
		item := sfItem{value: unquote(strings.TrimSpace(parts[0]))}
		for _, p := range parts[1:] {
			k, v, found := strings.Cut(strings.TrimSpace(p), "=")
			if !found {
				v = "?1"
			}
			if k = strings.ToLower(strings.TrimSpace(k)); k != "" {
				if item.params == nil {
					item.params = make(map[string]string, len(parts)-1)
				}
				item.params[k] = unquote(strings.TrimSpace(v))
			}
		}
		if item.value != "" || item.params != nil {
			items = append(items, item)
		}
	}
	return items
}

// splitOutsideQuotes splits s at sep where sep is not inside a quoted string.
func splitOutsideQuotes(s string, sep byte) []string {
	var parts []string
	quoted, escaped, start := false, false, 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case escaped:
			escaped = false
		case c == '\\' && quoted:
			escaped = true
		case c == '"':
			quoted = !quoted
		case c == sep && !quoted:
			parts = append(parts, s[start:i])
			start = i + 1
		}
	}
	return append(parts, s[start:])
}

// unquote removes a string's double quotes and backslash escapes; other
// values are returned as they are.
func unquote(s string) string {
	if len(s) < 2 || s[0] != '"' || s[len(s)-1] != '"' {
		return s
	}
	s = s[1 : len(s)-1]
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// ietfQuota is one quota read from the IETF headers.
type ietfQuota struct {
	name         string
	unit         string
	limit        int64
	hasLimit     bool
	remaining    int64
	hasRemaining bool
	reset        time.Duration
	window       time.Duration
}

// ietfPolicy is a quota's definition from RateLimit-Policy.
type ietfPolicy struct {
	limit    int64
	hasLimit bool
	window   time.Duration
	unit     string
}

// readIETF reads the IETF headers into o, filling dimensions not reported
// yet. It returns the first dimension it found exhausted.
func (f *fields) readIETF(o *bucket.Observation) string {
	policies := f.ietfPolicies()
	var quotas []ietfQuota
	if s := f.get("ratelimit"); s != "" {
		quotas = f.ietfCombined(s, policies)
	} else if q, ok := f.ietfSeparate(policies); ok {
		quotas = []ietfQuota{q}
	}
	exhausted := ""
	var seen [bucket.NumDimensions]bool
	for _, q := range quotas {
		dim, ok := ietfDimension(q)
		if !ok || (!q.hasLimit && !q.hasRemaining) {
			continue
		}
		od := &o.Dims[dim]
		if !seen[dim] && (od.Limit > 0 || od.HasRemaining) {
			continue // reported by a header family read earlier
		}
		// Several quotas on one dimension: the one with the least remaining
		// binds first.
		if seen[dim] && (!q.hasRemaining || (od.HasRemaining && od.Remaining <= q.remaining)) {
			continue
		}
		seen[dim] = true
		*od = bucket.DimObservation{Reset: q.reset}
		if q.hasLimit && q.limit > 0 {
			od.Limit = q.limit
			if q.window > 0 && q.window != dim.DefaultWindow() {
				od.Window = q.window
			}
		}
		if q.hasRemaining {
			od.Remaining, od.HasRemaining = q.remaining, true
			if od.Limit > 0 {
				od.Remaining = min(od.Remaining, od.Limit)
			}
		}
	}
	for i := range o.Dims {
		if seen[i] && o.Dims[i].HasRemaining && o.Dims[i].Remaining == 0 && exhausted == "" {
			exhausted = bucket.Dimension(i).String()
		}
	}
	return exhausted
}

// ietfPolicies reads RateLimit-Policy, by policy name ("" for the unnamed
// form of the older drafts, which keeps its first member: the one in
// effect).
func (f *fields) ietfPolicies() map[string]ietfPolicy {
	s := f.get("ratelimit-policy")
	if s == "" {
		return nil
	}
	policies := make(map[string]ietfPolicy)
	for _, it := range parseSFList(s) {
		var p ietfPolicy
		name := it.value
		if q, ok := it.params["q"]; ok {
			p.limit, p.hasLimit = f.ietfCount(q)
		} else if n, ok := parseCount(it.value); ok {
			// The older form: the quota is the item's value, unnamed.
			p.limit, p.hasLimit, name = n, true, ""
		}
		if w, ok := it.params["w"]; ok {
			p.window = f.ietfSeconds(w)
		}
		p.unit = strings.ToLower(it.params["qu"])
		if _, dup := policies[name]; !dup {
			policies[name] = p
		}
	}
	return policies
}

// ietfCombined reads the combined RateLimit field: the draft 07 dictionary
// (limit=, remaining=, reset=) or the structured list of later drafts.
func (f *fields) ietfCombined(s string, policies map[string]ietfPolicy) []ietfQuota {
	items := parseSFList(s)
	if len(items) > 0 && strings.Contains(items[0].value, "=") {
		// Draft 07: one quota as a dictionary.
		q := ietfQuota{}
		for _, it := range items {
			k, v, _ := strings.Cut(it.value, "=")
			switch strings.ToLower(strings.TrimSpace(k)) {
			case "limit":
				q.limit, q.hasLimit = f.ietfCount(v)
			case "remaining":
				q.remaining, q.hasRemaining = f.ietfCount(v)
			case "reset":
				q.reset = f.ietfSeconds(v)
			}
		}
		applyPolicy(&q, policies[""], false)
		return []ietfQuota{q}
	}
	var quotas []ietfQuota
	for _, it := range items {
		q := ietfQuota{name: it.value}
		if r, ok := it.params["r"]; ok {
			q.remaining, q.hasRemaining = f.ietfCount(r)
		}
		if t, ok := it.params["t"]; ok {
			q.reset = f.ietfSeconds(t)
		}
		applyPolicy(&q, policies[it.value], true)
		quotas = append(quotas, q)
	}
	return quotas
}

// ietfSeparate reads the separate RateLimit-Limit, -Remaining and -Reset
// headers of the early drafts. ok is false when none is present.
func (f *fields) ietfSeparate(policies map[string]ietfPolicy) (ietfQuota, bool) {
	limit, remaining, reset := f.get("ratelimit-limit"), f.get("ratelimit-remaining"), f.get("ratelimit-reset")
	if limit == "" && remaining == "" && reset == "" {
		return ietfQuota{}, false
	}
	q := ietfQuota{}
	if limit != "" {
		// "100" or "100, 100;w=60, 1000;w=3600": the first is the one in effect.
		if items := parseSFList(limit); len(items) > 0 {
			q.limit, q.hasLimit = f.ietfCount(items[0].value)
			if w, ok := items[0].params["w"]; ok {
				q.window = f.ietfSeconds(w)
			}
		}
	}
	if remaining != "" {
		q.remaining, q.hasRemaining = f.ietfCount(remaining)
	}
	if reset != "" {
		q.reset = f.ietfSeconds(reset)
	}
	applyPolicy(&q, policies[""], false)
	return q, true
}

// applyPolicy completes a quota with its policy's limit, window and unit;
// override lets the policy's limit replace one the quota already has.
func applyPolicy(q *ietfQuota, p ietfPolicy, override bool) {
	if p.hasLimit && (override || !q.hasLimit) {
		q.limit, q.hasLimit = p.limit, true
	}
	if q.window == 0 {
		q.window = p.window
	}
	q.unit = p.unit
}

// ietfCount reads a count in an IETF field, counting it when invalid.
func (f *fields) ietfCount(s string) (int64, bool) {
	n, ok := parseCount(strings.TrimSpace(s))
	if !ok {
		f.invalid++
	}
	return n, ok
}

// ietfSeconds reads a non-negative number of seconds in an IETF field (a
// reset or a window), 0 and counted when invalid or beyond maxReset.
func (f *fields) ietfSeconds(s string) time.Duration {
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || n < 0 || n > int64(maxReset/time.Second) {
		f.invalid++
		return 0
	}
	return time.Duration(n) * time.Second
}

// Windows from which a quota is per day or per month.
const (
	day   = 24 * time.Hour
	month = 28 * day
)

// ietfDimension chooses the dimension a quota limits: by unit (requests
// unless the unit or the policy's name says tokens; byte and concurrency
// quotas are not accounted) and by window.
func ietfDimension(q ietfQuota) (bucket.Dimension, bool) {
	tokens := false
	switch {
	case strings.Contains(q.unit, "token") || (q.unit == "" && strings.Contains(strings.ToLower(q.name), "token")):
		tokens = true
	case q.unit == "" || q.unit == "requests":
	default:
		return 0, false
	}
	switch {
	case tokens && q.window >= month:
		return bucket.TokensPerMonth, true
	case tokens && q.window >= day:
		return bucket.TokensPerDay, true
	case tokens:
		return bucket.Tokens, true
	case q.window >= day:
		return bucket.RequestsPerDay, true
	default:
		return bucket.Requests, true
	}
}
