package extproc

import (
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
)

// headerMap reads an Envoy HeaderMap by lower-case name without copying it:
// only the values looked up are converted to strings. Envoy lower-cases keys
// and puts values in raw_value; value is read as a fallback for peers that
// still fill it.
type headerMap []*corev3.HeaderValue

// Get returns the first value of the named header, or "".
func (h headerMap) Get(name string) string {
	for _, hv := range h {
		if hv.GetKey() == name {
			if raw := hv.GetRawValue(); len(raw) > 0 {
				return string(raw)
			}
			return hv.GetValue()
		}
	}
	return ""
}
