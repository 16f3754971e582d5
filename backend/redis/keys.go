package redis

import (
	"fmt"
	"strings"

	"github.com/adaptive-rate-limiter/arl/limiter/bucket"
)

// schemaVersion is the layout version carried in every key. A change to the
// state encoding or the key layout takes a new version, so that replicas of
// different versions never read each other's state.
const schemaVersion = "v1"

// keySet is the three keys of one bucket. They share one cluster hash tag (the
// whole encoded bucket key between braces), so every script touches one slot.
type keySet struct {
	state string // hash: the bucket's state
	res   string // sorted set: reservation id -> deadline in microseconds
	taken string // hash: reservation id -> taken vector
}

func (k keySet) slice() []string { return []string{k.state, k.res, k.taken} }

// stateSuffix ends every state key; List and RecoverOrphans scan for it.
const stateSuffix = "}:state"

// keysFor returns the keys of bucket k under prefix:
//
//	<prefix>:v1:{<ns>|<provider>|<account>|<model>}:state
//	<prefix>:v1:{<ns>|<provider>|<account>|<model>}:res
//	<prefix>:v1:{<ns>|<provider>|<account>|<model>}:taken
//
// Each part is escaped (see escapePart) so that no part can close the hash
// tag early or shift the part boundaries.
func keysFor(prefix string, k bucket.Key) keySet {
	var b strings.Builder
	b.Grow(len(prefix) + len(k.Namespace) + len(k.Provider) + len(k.Account) + len(k.Model) + 16)
	b.WriteString(prefix)
	b.WriteString(":" + schemaVersion + ":{")
	escapePart(&b, k.Namespace)
	b.WriteByte('|')
	escapePart(&b, k.Provider)
	b.WriteByte('|')
	escapePart(&b, k.Account)
	b.WriteByte('|')
	escapePart(&b, k.Model)
	base := b.String()
	return keySet{state: base + stateSuffix, res: base + "}:res", taken: base + "}:taken"}
}

// escapePart writes s with '%', '{', '}' and '|' percent-encoded: braces would
// end or restart the cluster hash tag, '|' separates the parts, and '%' is the
// escape itself.
func escapePart(b *strings.Builder, s string) {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '%', '{', '}', '|':
			fmt.Fprintf(b, "%%%02X", c)
		default:
			b.WriteByte(c)
		}
	}
}

// unescapePart reverses escapePart.
func unescapePart(s string) (string, error) {
	if !strings.Contains(s, "%") {
		return s, nil
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b.WriteByte(s[i])
			continue
		}
		if i+2 >= len(s) {
			return "", fmt.Errorf("truncated escape in %q", s)
		}
		switch s[i+1 : i+3] {
		case "25":
			b.WriteByte('%')
		case "7B":
			b.WriteByte('{')
		case "7D":
			b.WriteByte('}')
		case "7C":
			b.WriteByte('|')
		default:
			return "", fmt.Errorf("unknown escape %q in %q", s[i:i+3], s)
		}
		i += 2
	}
	return b.String(), nil
}

// parseStateKey returns the bucket key and key set of a state key found by a
// scan, and false for a key under prefix that arl did not write.
func parseStateKey(prefix, stateKey string) (bucket.Key, keySet, bool) {
	head := prefix + ":" + schemaVersion + ":{"
	if !strings.HasPrefix(stateKey, head) || !strings.HasSuffix(stateKey, stateSuffix) || len(stateKey) < len(head)+len(stateSuffix) {
		return bucket.Key{}, keySet{}, false
	}
	parts := strings.Split(stateKey[len(head):len(stateKey)-len(stateSuffix)], "|")
	if len(parts) != 4 {
		return bucket.Key{}, keySet{}, false
	}
	var decoded [4]string
	for i, p := range parts {
		s, err := unescapePart(p)
		if err != nil {
			return bucket.Key{}, keySet{}, false
		}
		decoded[i] = s
	}
	k := bucket.Key{Namespace: decoded[0], Provider: decoded[1], Account: decoded[2], Model: decoded[3]}
	return k, keysFor(prefix, k), true
}

// scanPattern is the SCAN MATCH pattern of every state key under prefix, with
// the prefix's glob characters escaped.
func scanPattern(prefix string) string {
	var b strings.Builder
	for i := 0; i < len(prefix); i++ {
		switch c := prefix[i]; c {
		case '*', '?', '[', ']', '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteString(":" + schemaVersion + ":{*" + stateSuffix)
	return b.String()
}
