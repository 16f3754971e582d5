package cache

import (
	"fmt"
	"strings"
)

// Policy says how lessons (Observe) travel from the cache to the shared
// backend. The zero value is [WriteThrough].
type Policy uint8

// The policies. Their names are the values ParsePolicy accepts.
const (
	// WriteThrough sends every lesson to the shared backend at once and
	// applies it to the cached copy too ("write-through", the default).
	WriteThrough Policy = iota
	// WriteBack merges routine lessons per bucket and sends them every
	// FlushInterval; urgent ones go at once ("write-back").
	WriteBack
	// WriteAround sends every lesson at once and drops the cached copy
	// ("write-around").
	WriteAround
)

var policyNames = [...]string{
	WriteThrough: "write-through",
	WriteBack:    "write-back",
	WriteAround:  "write-around",
}

// String returns the policy's name, e.g. "write-back".
func (p Policy) String() string {
	if int(p) < len(policyNames) {
		return policyNames[p]
	}
	return fmt.Sprintf("Policy(%d)", uint8(p))
}

// ParsePolicy returns the policy named s ("write-through", "write-back" or
// "write-around", in any case); the empty string is the default,
// WriteThrough.
func ParsePolicy(s string) (Policy, error) {
	name := strings.ToLower(strings.TrimSpace(s))
	if name == "" {
		return WriteThrough, nil
	}
	for p, n := range policyNames {
		if name == n {
			return Policy(p), nil
		}
	}
	return 0, fmt.Errorf("cache policy %q: want one of %s", s, strings.Join(policyNames[:], ", "))
}

// MarshalText implements encoding.TextMarshaler with the policy's name.
func (p Policy) MarshalText() ([]byte, error) {
	if int(p) >= len(policyNames) {
		return nil, fmt.Errorf("cache policy %d: unknown", uint8(p))
	}
	return []byte(policyNames[p]), nil
}

// UnmarshalText implements encoding.TextUnmarshaler with ParsePolicy, so that
// configuration decoders (environment, YAML) accept the policy's name.
func (p *Policy) UnmarshalText(text []byte) error {
	v, err := ParsePolicy(string(text))
	if err != nil {
		return err
	}
	*p = v
	return nil
}
