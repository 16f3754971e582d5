package standin

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocsvc "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
)

// header is one entry of an Envoy header map: a lower-case key and its value.
type header struct {
	key, value string
}

// headerList is an ordered header map as Envoy keeps it: lower-case keys, pseudo-headers
// first, repeated keys as separate entries.
type headerList []header

// get returns the first value of key.
func (l headerList) get(key string) (string, bool) {
	for _, h := range l {
		if h.key == key {
			return h.value, true
		}
	}
	return "", false
}

// has reports whether key is present.
func (l headerList) has(key string) bool {
	_, ok := l.get(key)
	return ok
}

// set replaces the first entry of key with value and drops the others, or appends it.
func (l *headerList) set(key, value string) {
	out := (*l)[:0]
	found := false
	for _, h := range *l {
		if h.key != key {
			out = append(out, h)
			continue
		}
		if !found {
			out = append(out, header{key, value})
			found = true
		}
	}
	*l = out
	if !found {
		l.add(key, value)
	}
}

// add appends an entry.
func (l *headerList) add(key, value string) {
	*l = append(*l, header{key, value})
}

// del removes every entry of key.
func (l *headerList) del(key string) {
	*l = slices.DeleteFunc(*l, func(h header) bool { return h.key == key })
}

// proto encodes the list as ext_proc sends it: values only in raw_value.
func (l headerList) proto() *corev3.HeaderMap {
	m := &corev3.HeaderMap{Headers: make([]*corev3.HeaderValue, 0, len(l))}
	for _, h := range l {
		m.Headers = append(m.Headers, &corev3.HeaderValue{Key: h.key, RawValue: []byte(h.value)})
	}
	return m
}

// appendHTTP appends the entries of an http.Header with lower-cased keys, in sorted key order
// (Go does not keep the wire order).
func (l *headerList) appendHTTP(h http.Header) {
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		lk := strings.ToLower(k)
		for _, v := range h[k] {
			l.add(lk, v)
		}
	}
}

// hopByHop lists the connection-specific headers that a proxy does not forward.
var hopByHop = []string{
	"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te",
}

// toHTTP copies the regular (non-pseudo) entries into an http.Header, skipping hop-by-hop
// headers and any key in skip.
func (l headerList) toHTTP(skip ...string) http.Header {
	out := http.Header{}
	for _, h := range l {
		if strings.HasPrefix(h.key, ":") || slices.Contains(hopByHop, h.key) || slices.Contains(skip, h.key) {
			continue
		}
		out[http.CanonicalHeaderKey(h.key)] = append(out[http.CanonicalHeaderKey(h.key)], h.value)
	}
	return out
}

// errInvalidMutation marks a mutation that Envoy refuses as a whole (its ext_proc filter then
// answers with status_on_error, whatever failure_mode_allow says).
var errInvalidMutation = errors.New("invalid header mutation")

// mutationOptions says how applyHeaderMutation treats special headers.
type mutationOptions struct {
	// replacing is true for CONTINUE_AND_REPLACE, where :method may change.
	replacing bool
	// removeContentLength skips content-length in set_headers (body modes in which Envoy
	// removes the header because it cannot keep it right).
	removeContentLength bool
}

// mutationResult counts what applyHeaderMutation did not apply as asked.
type mutationResult struct {
	// rejected counts set or remove operations ignored by Envoy's default mutation rules.
	rejected int
	// valueOnly counts set_headers entries with only the string `value` set: Envoy reads
	// raw_value only, so such a header is set to the empty string.
	valueOnly int
}

// applyHeaderMutation applies m to l the way Envoy's ext_proc filter does with no
// mutation_rules configured. It stops at the first entry Envoy refuses (both value and
// raw_value set, invalid characters) and returns an error wrapping errInvalidMutation; entries
// before it stay applied, as in Envoy.
func applyHeaderMutation(l *headerList, m *extprocsvc.HeaderMutation, opt mutationOptions) (mutationResult, error) {
	var res mutationResult
	if m == nil {
		return res, nil
	}
	for _, name := range m.GetRemoveHeaders() {
		if !validHeaderName(name) {
			res.rejected++
			return res, fmt.Errorf("%w: invalid character in remove_headers %q", errInvalidMutation, name)
		}
		key := strings.ToLower(name)
		if !mutationAllowed(key, true, false) {
			res.rejected++
			continue
		}
		l.del(key)
	}
	for _, o := range m.GetSetHeaders() {
		hv := o.GetHeader()
		if hv == nil {
			continue
		}
		key := strings.ToLower(hv.GetKey())
		if opt.removeContentLength && key == "content-length" {
			continue
		}
		if hv.GetValue() != "" && len(hv.GetRawValue()) != 0 {
			res.rejected++
			return res, fmt.Errorf("%w: header %q sets both value and raw_value", errInvalidMutation, hv.GetKey())
		}
		if hv.GetValue() != "" {
			res.valueOnly++
		}
		value := string(hv.GetRawValue())
		if !validHeaderName(hv.GetKey()) || !validHeaderValue(value) {
			res.rejected++
			return res, fmt.Errorf("%w: invalid character in set_headers %q", errInvalidMutation, hv.GetKey())
		}
		if !mutationAllowed(key, false, opt.replacing) || (key == ":status" && !validStatus(value)) {
			res.rejected++
			continue
		}
		exists := l.has(key)
		//lint:ignore SA1019 Envoy still honours the deprecated append field, so must the stand-in.
		appendField := o.GetAppend()
		switch {
		case appendField != nil:
			// The deprecated bool wins where set: true appends, false overwrites.
			if appendField.GetValue() {
				l.add(key, value)
			} else {
				l.set(key, value)
			}
		case o.GetAppendAction() == corev3.HeaderValueOption_ADD_IF_ABSENT:
			if !exists {
				l.add(key, value)
			}
		case o.GetAppendAction() == corev3.HeaderValueOption_OVERWRITE_IF_EXISTS:
			if exists {
				l.set(key, value)
			}
		default:
			// OVERWRITE_IF_EXISTS_OR_ADD, and the zero APPEND_IF_EXISTS_OR_ADD: in ext_proc
			// replies `append` defaults to false, so an unset action overwrites.
			l.set(key, value)
		}
	}
	return res, nil
}

// mutationAllowed applies Envoy's default header mutation rules: host, :authority, :scheme and
// :method (except when replacing the message) and x-envoy-* headers may not change, and no
// pseudo-header or host may be removed.
func mutationAllowed(key string, remove, replacing bool) bool {
	if remove && (strings.HasPrefix(key, ":") || key == "host") {
		return false
	}
	switch key {
	case "host", ":authority", ":scheme":
		return false
	case ":method":
		return replacing
	}
	return !strings.HasPrefix(key, "x-envoy")
}

// validHeaderName reports whether name is an HTTP token, optionally with a leading ':'.
func validHeaderName(name string) bool {
	name = strings.TrimPrefix(name, ":")
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// validHeaderValue rejects the characters Envoy never lets into a header value.
func validHeaderValue(v string) bool {
	return !strings.ContainsAny(v, "\x00\r\n")
}

// validStatus reports whether v is a status code Envoy accepts in a :status mutation.
func validStatus(v string) bool {
	n, err := strconv.Atoi(v)
	return err == nil && n >= 200 && n <= 599
}
