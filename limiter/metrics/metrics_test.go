package metrics

import (
	"os"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// TestEveryMetricDocumented keeps docs/metrics.md true: every metric the
// package registers must be listed there, and every arl_ metric listed must
// exist.
func TestEveryMetricDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	m := New(reg)
	// Vectors appear in Gather only once they have a child.
	for _, c := range m.collectors() {
		ch := make(chan *prometheus.Desc, 4)
		c.Describe(ch)
		close(ch)
		for d := range ch {
			name := between(d.String(), `fqName: "`, `"`)
			if !strings.Contains(string(doc), "`"+name+"`") {
				t.Errorf("metric %s is not documented in docs/metrics.md", name)
			}
			doc = []byte(strings.ReplaceAll(string(doc), "`"+name+"`", ""))
		}
	}
	for _, line := range strings.Split(string(doc), "\n") {
		if i := strings.Index(line, "`arl_"); i >= 0 && strings.HasPrefix(line, "| `arl_") {
			t.Errorf("docs/metrics.md lists a metric the code does not register: %s", line[i:])
		}
	}
}

func between(s, start, end string) string {
	i := strings.Index(s, start)
	if i < 0 {
		return ""
	}
	s = s[i+len(start):]
	if j := strings.Index(s, end); j >= 0 {
		return s[:j]
	}
	return s
}
