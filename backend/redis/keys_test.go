package redis

import (
	"strings"
	"testing"

	"github.com/adaptive-rate-limiter/arl/limiter/bucket"
)

// hashTag returns what Redis Cluster hashes for key: the text between the
// first '{' and the next '}', when not empty; else the whole key.
func hashTag(key string) string {
	open := strings.IndexByte(key, '{')
	if open < 0 {
		return key
	}
	end := strings.IndexByte(key[open+1:], '}')
	if end <= 0 {
		return key
	}
	return key[open+1 : open+1+end]
}

func TestKeysShareOneTagAndRoundTrip(t *testing.T) {
	keys := []bucket.Key{
		{Namespace: "default", Provider: "openai", Account: bucket.AccountID("sk-1"), Model: "gpt-4o"},
		{},
		{Namespace: "a|b", Provider: "c"},
		{Namespace: "a", Provider: "b|c"},
		{Namespace: "{", Provider: "}", Account: "}{", Model: "{x}"},
		{Namespace: "%", Provider: "%7B", Account: "%%7D", Model: "100%"},
		{Namespace: "a:b", Provider: "*", Account: "?[", Model: "\\"},
	}
	tags := make(map[string]bucket.Key)
	for _, k := range keys {
		ks := keysFor("arl", k)
		tag := hashTag(ks.state)
		for _, other := range ks.slice() {
			if hashTag(other) != tag {
				t.Fatalf("%q: keys %q hash differently", k, ks.slice())
			}
		}
		if strings.Count(tag, "|") != 3 || strings.ContainsAny(tag, "{}") {
			t.Fatalf("%q: tag %q", k, tag)
		}
		if prev, dup := tags[tag]; dup {
			t.Fatalf("%q and %q share tag %q", prev, k, tag)
		}
		tags[tag] = k
		got, gotKeys, ok := parseStateKey("arl", ks.state)
		if !ok || got != k || gotKeys != ks {
			t.Fatalf("parse %q: %q %v, want %q", ks.state, got, ok, k)
		}
	}
}

func TestKeyLayout(t *testing.T) {
	ks := keysFor("arl", bucket.Key{Namespace: "ns", Provider: "openai", Account: "acct", Model: "gpt"})
	want := keySet{
		state: "arl:v1:{ns|openai|acct|gpt}:state",
		res:   "arl:v1:{ns|openai|acct|gpt}:res",
		taken: "arl:v1:{ns|openai|acct|gpt}:taken",
	}
	if ks != want {
		t.Fatalf("keys %+v, want %+v", ks, want)
	}
}

func TestParseStateKeyRejectsForeignKeys(t *testing.T) {
	for _, key := range []string{
		"arl:v1:{a|b|c|d}:res",
		"arl:v2:{a|b|c|d}:state",
		"other:v1:{a|b|c|d}:state",
		"arl:v1:{a|b|c}:state",
		"arl:v1:{a|b|c|d|e}:state",
		"arl:v1:{a|b|c|%zz}:state",
		"arl:v1:{a|b|c|%2}:state",
		"arl:v1:{}:state",
	} {
		if k, _, ok := parseStateKey("arl", key); ok {
			t.Errorf("%q parsed as %q", key, k)
		}
	}
}

func TestScanPatternEscapesPrefixGlobs(t *testing.T) {
	tests := []struct{ prefix, want string }{
		{"arl", "arl:v1:{*}:state"},
		{"a*b?[c]\\", "a\\*b\\?\\[c\\]\\\\:v1:{*}:state"},
	}
	for _, tc := range tests {
		if got := scanPattern(tc.prefix); got != tc.want {
			t.Errorf("scanPattern(%q) = %q, want %q", tc.prefix, got, tc.want)
		}
	}
}
