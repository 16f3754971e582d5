package provider

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/adaptive-rate-limiter/arl/limiter/bucket"
)

// fixtureFile is one provider's fixture table in testdata/<provider>.json.
type fixtureFile struct {
	Provider string    `json:"provider"`
	Cases    []fixture `json:"cases"`
}

// fixture is one upstream answer and what the dialect must make of it.
type fixture struct {
	Name    string            `json:"name"`
	Status  int               `json:"status"`
	Headers map[string]string `json:"headers"`
	// Body is the error body, for answers that ask for it: a JSON value is
	// the body as written, a JSON string holds raw (possibly malformed) text.
	Body json.RawMessage `json:"body"`
	Want fixtureWant     `json:"want"`
}

// fixtureWant is the expected answer; dimensions not named must be empty.
type fixtureWant struct {
	Dims       map[string]fixtureDim `json:"dims"`
	RetryAfter string                `json:"retry_after"`
	Reason     string                `json:"reason"`
	Invalid    int                   `json:"invalid"`
	Billing    bool                  `json:"billing"`
	Failure    bool                  `json:"failure"`
	WantBody   bool                  `json:"want_body"`
}

// fixtureDim is one dimension's expected observation; durations are Go
// duration strings, and an absent remaining means "not reported".
type fixtureDim struct {
	Limit     int64  `json:"limit"`
	Remaining *int64 `json:"remaining"`
	Reset     string `json:"reset"`
	Window    string `json:"window"`
}

// minFixtures is the least number of header sets the tables must hold.
const minFixtures = 60

func loadFixtures(t testing.TB) []fixtureFile {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join("testdata", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	var files []fixtureFile
	for _, p := range paths {
		raw, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		var f fixtureFile
		if err := dec.Decode(&f); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if want := strings.TrimSuffix(filepath.Base(p), ".json"); f.Provider != want {
			t.Fatalf("%s: provider %q", p, f.Provider)
		}
		files = append(files, f)
	}
	return files
}

// body returns the fixture's error body, nil when it has none.
func (fx fixture) body(t *testing.T) []byte {
	t.Helper()
	if len(fx.Body) == 0 {
		return nil
	}
	if fx.Body[0] == '"' {
		var s string
		if err := json.Unmarshal(fx.Body, &s); err != nil {
			t.Fatal(err)
		}
		return []byte(s)
	}
	return fx.Body
}

func parseDuration(t *testing.T, s string) time.Duration {
	t.Helper()
	if s == "" {
		return 0
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		t.Fatalf("fixture duration %q: %v", s, err)
	}
	return d
}

// TestFixtures runs every provider's fixture table: the headers as the
// provider sends them (names in any case; Envoy hands them over lower-cased),
// then, for answers that ask for it, the error body, and compares the answer
// with the expected one in full.
func TestFixtures(t *testing.T) {
	files := loadFixtures(t)
	total := 0
	covered := map[string]bool{}
	for _, file := range files {
		covered[file.Provider] = len(file.Cases) > 0
		d := ForName(file.Provider)
		for _, fx := range file.Cases {
			total++
			t.Run(file.Provider+"/"+fx.Name, func(t *testing.T) {
				h := header{}
				for k, v := range fx.Headers {
					h[strings.ToLower(k)] = v
				}
				a := d.ParseAnswer(fx.Status, h, now)
				if a.WantBody != fx.Want.WantBody {
					t.Errorf("WantBody %v, want %v", a.WantBody, fx.Want.WantBody)
				}
				if body := fx.body(t); body != nil {
					if !a.WantBody {
						t.Fatal("fixture has a body for an answer that does not ask for one")
					}
					d.ParseErrorBody(fx.Status, body, now, &a)
				}
				checkInvariants(t, a)
				compareFixture(t, a, fx.Want)
			})
		}
	}
	if total < minFixtures {
		t.Errorf("%d fixtures, want at least %d", total, minFixtures)
	}
	for _, name := range dialects {
		if !covered[name] {
			t.Errorf("no fixtures for %s", name)
		}
	}
}

func compareFixture(t *testing.T, a Answer, want fixtureWant) {
	t.Helper()
	o := a.Observation
	if !o.At.Equal(now) {
		t.Errorf("At %v", o.At)
	}
	for i := range bucket.NumDimensions {
		dim := bucket.Dimension(i)
		var wd bucket.DimObservation
		if fd, ok := want.Dims[dim.String()]; ok {
			wd = bucket.DimObservation{Limit: fd.Limit, Reset: parseDuration(t, fd.Reset), Window: parseDuration(t, fd.Window)}
			if fd.Remaining != nil {
				wd.Remaining, wd.HasRemaining = *fd.Remaining, true
			}
		}
		if got := o.Dims[dim]; got != wd {
			t.Errorf("%s: got %+v, want %+v", dim, got, wd)
		}
	}
	for name := range want.Dims {
		if !knownDimension(name) {
			t.Errorf("fixture names unknown dimension %q", name)
		}
	}
	if ra := parseDuration(t, want.RetryAfter); o.RetryAfter != ra || o.Reason != want.Reason {
		t.Errorf("retry after %v reason %q, want %v %q", o.RetryAfter, o.Reason, ra, want.Reason)
	}
	if a.Invalid != want.Invalid {
		t.Errorf("invalid %d, want %d", a.Invalid, want.Invalid)
	}
	if a.Billing != want.Billing || a.Failure != want.Failure {
		t.Errorf("billing %v failure %v, want %v %v", a.Billing, a.Failure, want.Billing, want.Failure)
	}
}

func knownDimension(name string) bool {
	for i := range bucket.NumDimensions {
		if bucket.Dimension(i).String() == name {
			return true
		}
	}
	return false
}

// checkInvariants asserts the bounds every answer keeps, whatever it was
// made of.
func checkInvariants(t testing.TB, a Answer) {
	t.Helper()
	o := a.Observation
	for i, od := range o.Dims {
		if od.Limit < 0 || od.Limit > maxCount || od.Remaining < 0 || od.Remaining > maxCount ||
			od.Reset < 0 || od.Reset > maxReset || od.Window < 0 || od.Window > maxReset {
			t.Fatalf("dimension %s out of bounds: %+v", bucket.Dimension(i), od)
		}
		if !od.HasRemaining && od.Remaining != 0 {
			t.Fatalf("dimension %s: remaining without HasRemaining: %+v", bucket.Dimension(i), od)
		}
		if od.Limit > 0 && od.Remaining > od.Limit {
			t.Fatalf("dimension %s over-full: %+v", bucket.Dimension(i), od)
		}
		if od.Window > 0 && od.Limit == 0 {
			t.Fatalf("dimension %s: a window without a limit: %+v", bucket.Dimension(i), od)
		}
	}
	if o.RetryAfter < 0 || o.RetryAfter > maxRetryAfter {
		t.Fatalf("retry after %v out of bounds", o.RetryAfter)
	}
	if (o.RetryAfter > 0) != (o.Reason != "") {
		t.Fatalf("retry after %v with reason %q", o.RetryAfter, o.Reason)
	}
	if a.Billing && o.RetryAfter != 0 {
		t.Fatalf("billing error blocks for %v", o.RetryAfter)
	}
	if a.Invalid < 0 {
		t.Fatalf("invalid %d", a.Invalid)
	}
}
