package simprovider

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeClock is a manually advanced clock for Config.Now.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: t0} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// harness runs a Server behind a real loopback HTTP server, so that client
// disconnects reach the handler as they do in production.
type harness struct {
	t     *testing.T
	srv   *Server
	ts    *httptest.Server
	clock *fakeClock
	// finished receives one value per request whose handler returned.
	finished chan struct{}
}

func newHarness(t *testing.T, cfg Config) *harness {
	t.Helper()
	h := &harness{t: t, clock: newFakeClock(), finished: make(chan struct{}, 1024)}
	if cfg.Now == nil {
		cfg.Now = h.clock.Now
	}
	h.srv = New(cfg)
	h.ts = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() { h.finished <- struct{}{} }()
		h.srv.ServeHTTP(w, r)
	}))
	t.Cleanup(h.ts.Close)
	return h
}

// reply is a fully read answer.
type reply struct {
	status int
	header http.Header
	body   []byte
}

// do sends a request and reads the whole answer.
func (h *harness) do(method, key, path, body string) reply {
	h.t.Helper()
	resp := h.open(context.Background(), method, key, path, body)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatalf("read %s: %v", path, err)
	}
	return reply{status: resp.StatusCode, header: resp.Header, body: b}
}

// setKey sets the credential header of the named dialect.
func setKey(req *http.Request, dialect, key string) {
	switch dialect {
	case "anthropic":
		req.Header.Set("X-Api-Key", key)
	case "azure":
		req.Header.Set("Api-Key", key)
	default:
		req.Header.Set("Authorization", "Bearer "+key)
	}
}

// post sends a POST with the key in the dialect's credential header ("" for
// none).
func (h *harness) post(key, path, body string) reply {
	h.t.Helper()
	return h.do(http.MethodPost, key, path, body)
}

// open sends a request and returns the response with its body unread.
func (h *harness) open(ctx context.Context, method, key, path, body string) *http.Response {
	h.t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, h.ts.URL+path, strings.NewReader(body))
	if err != nil {
		h.t.Fatalf("new request: %v", err)
	}
	if key != "" {
		setKey(req, h.srv.cfg.Dialect.Name(), key)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := h.ts.Client().Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, path, err)
	}
	return resp
}

// waitFinished waits until n more handlers have returned.
func (h *harness) waitFinished(n int) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for range n {
		select {
		case <-h.finished:
		case <-ctx.Done():
			h.t.Fatalf("handlers did not finish: %v", ctx.Err())
		}
	}
}

// sseEvent is one parsed server-sent event.
type sseEvent struct {
	name string
	data string
}

// nextSSE reads one event from r.
func nextSSE(r *bufio.Reader) (sseEvent, error) {
	var ev sseEvent
	seen := false
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			if errors.Is(err, io.EOF) && seen {
				return ev, io.ErrUnexpectedEOF
			}
			return ev, err
		}
		line = strings.TrimRight(line, "\r\n")
		switch {
		case line == "":
			if seen {
				return ev, nil
			}
		case strings.HasPrefix(line, "event: "):
			ev.name, seen = strings.TrimPrefix(line, "event: "), true
		case strings.HasPrefix(line, "data: "):
			ev.data, seen = strings.TrimPrefix(line, "data: "), true
		default:
			return ev, errors.New("unexpected SSE line " + line)
		}
	}
}

// parseSSE parses a complete stream.
func parseSSE(t *testing.T, body []byte) []sseEvent {
	t.Helper()
	r := bufio.NewReader(strings.NewReader(string(body)))
	var events []sseEvent
	for {
		ev, err := nextSSE(r)
		if errors.Is(err, io.EOF) {
			return events
		}
		if err != nil {
			t.Fatalf("parse SSE: %v\n%s", err, body)
		}
		events = append(events, ev)
	}
}

// decode unmarshals JSON into a generic map, failing the test on error.
func decode(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
	return m
}

// chatBody returns a chat request with a 10-token prompt and the given extra
// JSON fields.
func chatBody(extra string) string {
	b := `{"model":"gpt-4o","messages":[{"role":"user","content":"` + strings.Repeat("abcd", 10) + `"}]`
	if extra != "" {
		b += "," + extra
	}
	return b + "}"
}

// errorOf returns the error object of an OpenAI error body.
func errorOf(t *testing.T, b []byte) map[string]any {
	t.Helper()
	e, ok := decode(t, b)["error"].(map[string]any)
	if !ok {
		t.Fatalf("no error object in %s", b)
	}
	return e
}
