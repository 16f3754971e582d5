package simprovider

import (
	"slices"
	"strings"
)

// dialects are the dialects DialectFor knows, by name.
var dialects = map[string]Dialect{
	"openai":     OpenAI{},
	"azure":      Azure{},
	"anthropic":  Anthropic{},
	"groq":       Groq{},
	"together":   Together{},
	"venice":     Venice{},
	"openrouter": OpenRouter{},
	"mistral":    Mistral{},
	"fireworks":  Fireworks{},
	"gemini":     Gemini{},
	"generic":    Generic{},
}

// DialectFor returns the dialect of the provider with the given name (case
// and surrounding spaces ignored): one of [DialectNames], the names arl gives
// providers. ok is false for an unknown name.
func DialectFor(name string) (d Dialect, ok bool) {
	d, ok = dialects[strings.ToLower(strings.TrimSpace(name))]
	return d, ok
}

// DialectNames returns the names DialectFor knows, sorted.
func DialectNames() []string {
	names := make([]string, 0, len(dialects))
	for name := range dialects {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}
