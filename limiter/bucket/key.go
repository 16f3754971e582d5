package bucket

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
)

// Key identifies one provider rate-limit bucket: the unit to which a provider
// applies its limits. Two requests share a bucket when they are in the same
// namespace, go to the same provider with the same credential, and fall in the
// same model group.
//
// Account is never the credential itself; use [AccountID] to derive it.
type Key struct {
	Namespace string // isolation boundary chosen by the platform team ("default" when absent)
	Provider  string // provider name, e.g. "openai"
	Account   string // short hash of the upstream credential, see AccountID
	Model     string // model group; empty when the provider limits the whole account
}

// String renders the key as "namespace/provider/account/model", the form used
// in logs, metrics-free diagnostics and the admin API. Empty parts stay empty.
func (k Key) String() string {
	var b strings.Builder
	b.Grow(len(k.Namespace) + len(k.Provider) + len(k.Account) + len(k.Model) + 3)
	b.WriteString(k.Namespace)
	b.WriteByte('/')
	b.WriteString(k.Provider)
	b.WriteByte('/')
	b.WriteString(k.Account)
	b.WriteByte('/')
	b.WriteString(k.Model)
	return b.String()
}

// AccountID returns a short, stable, non-reversible identifier for an upstream
// credential: the first 12 bytes of its SHA-256, hex encoded (24 characters).
// An empty credential yields "anonymous" so keyless traffic still has a bucket.
// Surrounding whitespace and an optional "Bearer " prefix are ignored, so the
// same key sent as Authorization or as x-api-key maps to the same account.
func AccountID(credential string) string {
	c := strings.TrimSpace(credential)
	if len(c) > 7 && strings.EqualFold(c[:7], "bearer ") {
		c = strings.TrimSpace(c[7:])
	}
	if c == "" {
		return "anonymous"
	}
	sum := sha256.Sum256([]byte(c))
	return hex.EncodeToString(sum[:12])
}
