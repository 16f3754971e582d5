package e2e

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/adaptive-rate-limiter/arl/cmd/extproc/app"
)

// arl is a running arl server.
type arl struct {
	GRPC, Admin string
}

// startARL runs the real server in-process on free loopback ports, with the
// environment given as KEY=value entries on top of the defaults, and stops it
// when the test ends.
func startARL(t *testing.T, environ ...string) arl {
	t.Helper()
	cfg, err := app.LoadConfig(append([]string{"ARL_GRPC_ADDR=127.0.0.1:0", "ARL_ADMIN_ADDR=127.0.0.1:0", "ARL_SHUTDOWN_TIMEOUT=2s"}, environ...))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan app.Listening, 1)
	done := make(chan error, 1)
	var logOut io.Writer = io.Discard
	if os.Getenv("ARL_E2E_LOG") != "" {
		logOut = os.Stderr
	}
	go func() {
		done <- app.Run(ctx, cfg, slog.New(slog.NewJSONHandler(logOut, nil)), func(l app.Listening) { ready <- l })
	}()
	var l app.Listening
	select {
	case l = <-ready:
	case err := <-done:
		t.Fatalf("arl exited at start: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("arl did not start")
	}
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("arl exited with %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("arl did not stop")
		}
	})
	s := arl{GRPC: l.GRPC.String(), Admin: "http://" + l.Admin.String()}
	resp, err := http.Get(s.Admin + "/healthz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("healthz: %v %v", resp, err)
	}
	_ = resp.Body.Close()
	return s
}

// eventually calls cond every interval until it reports done, and fails the
// test with the state cond last described once within has passed.
func eventually(t *testing.T, within, every time.Duration, cond func() (done bool, state string)) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		done, state := cond()
		if done {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(state)
		}
		time.Sleep(every)
	}
}

// metrics returns the lines of the server's /metrics that contain name.
func (a arl) metrics(t *testing.T, name string) string {
	t.Helper()
	resp, err := http.Get(a.Admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return grep(string(b), name)
}
