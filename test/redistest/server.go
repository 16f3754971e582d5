package redistest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// readyTimeout bounds how long a process may take to answer after starting.
const readyTimeout = 10 * time.Second

// pollInterval is how often readiness conditions are checked.
const pollInterval = 10 * time.Millisecond

// Server is one redis-server process on a loopback port.
type Server struct {
	// Addr is the server's address, "127.0.0.1:<port>".
	Addr string
	// Port is the server's port; a cluster node's bus port is Port+10000.
	Port int
	// Dir holds the server's log and, in a cluster, its nodes.conf.
	Dir string

	t    testing.TB
	args []string

	mu     sync.Mutex
	cmd    *exec.Cmd
	done   chan struct{}   // closed when cmd has exited
	client *goredis.Client // the harness's own client; see admin
}

// StartServer starts a single redis-server on a free loopback port and
// returns when it answers PING. The server is killed when the test ends.
func StartServer(t testing.TB) *Server {
	t.Helper()
	RequireRedis(t)
	return startServer(t, false)
}

// RequireRedis skips the test when redis-server is not on PATH.
func RequireRedis(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("redis-server is not on PATH: install it (Debian package redis-server) to run this test")
	}
}

// startServer starts a node, retrying on a new port when the chosen one was
// taken between choosing it and binding it.
func startServer(t testing.TB, cluster bool) *Server {
	t.Helper()
	var lastErr error
	for range 5 {
		port, err := freePort(cluster)
		if err != nil {
			t.Fatalf("redistest: %v", err)
		}
		s := &Server{
			Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
			Port: port,
			Dir:  t.TempDir(),
			t:    t,
		}
		s.args = []string{
			"--port", strconv.Itoa(port),
			"--bind", "127.0.0.1",
			"--save", "",
			"--appendonly", "no",
			"--dir", s.Dir,
			"--logfile", filepath.Join(s.Dir, "redis.log"),
			"--daemonize", "no",
			// A replica's first sync starts at once instead of waiting 5 s
			// for other replicas to join the same transfer.
			"--repl-diskless-sync-delay", "0",
		}
		if cluster {
			s.args = append(s.args,
				"--cluster-enabled", "yes",
				"--cluster-config-file", filepath.Join(s.Dir, "nodes.conf"),
				"--cluster-node-timeout", "1000",
			)
		}
		if lastErr = s.start(); lastErr == nil {
			t.Cleanup(func() {
				s.kill()
				s.mu.Lock()
				defer s.mu.Unlock()
				if s.client != nil {
					_ = s.client.Close()
				}
			})
			return s
		}
	}
	t.Fatalf("redistest: start redis-server: %v", lastErr)
	return nil
}

// freePort returns a loopback port that was free a moment ago; for a cluster
// node, its bus port (port+10000) was free too. It never returns 6379.
func freePort(cluster bool) (int, error) {
	for range 50 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("find a free port: %w", err)
		}
		addr, ok := l.Addr().(*net.TCPAddr)
		if !ok {
			_ = l.Close()
			return 0, fmt.Errorf("find a free port: listener address %T", l.Addr())
		}
		port := addr.Port
		if port == 6379 {
			_ = l.Close()
			continue
		}
		if !cluster {
			_ = l.Close()
			return port, nil
		}
		if port+10000 > 65535 {
			_ = l.Close()
			continue
		}
		bus, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port+10000)))
		_ = l.Close()
		if err != nil {
			continue
		}
		_ = bus.Close()
		return port, nil
	}
	return 0, errors.New("find a free port: none found in 50 tries")
}

// start launches the process and waits until it answers PING.
func (s *Server) start() error {
	cmd := exec.Command("redis-server", s.args...)
	cmd.Dir = s.Dir
	setDeathSignal(cmd)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start redis-server: %w", err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	s.mu.Lock()
	s.cmd, s.done = cmd, done
	s.mu.Unlock()

	c := goredis.NewClient(&goredis.Options{Addr: s.Addr, MaxRetries: -1, DialTimeout: time.Second, ContextTimeoutEnabled: true})
	defer c.Close()
	deadline := time.Now().Add(readyTimeout)
	for {
		select {
		case <-done:
			return fmt.Errorf("redis-server on %s exited: %s", s.Addr, s.log())
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			s.kill()
			return fmt.Errorf("redis-server on %s not ready after %v: %v; log: %s", s.Addr, readyTimeout, err, s.log())
		}
		time.Sleep(pollInterval)
	}
}

// log returns the tail of the server's log, for failure messages.
func (s *Server) log() string {
	b, err := os.ReadFile(filepath.Join(s.Dir, "redis.log"))
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(bytes.TrimSpace(b))
}

// signal sends sig to the running process, if any, and returns its exit
// channel (nil when none is running).
func (s *Server) signal(sig os.Signal) chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil || s.cmd.Process == nil {
		return nil
	}
	select {
	case <-s.done:
		return nil
	default:
	}
	_ = s.cmd.Process.Signal(sig)
	return s.done
}

// Stop terminates the server (SIGTERM, then SIGKILL after 5 s) and waits for
// it to exit. Stopping a stopped server does nothing.
func (s *Server) Stop() {
	s.Resume() // a paused server cannot act on SIGTERM
	done := s.signal(syscall.SIGTERM)
	if done == nil {
		return
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		s.kill()
	}
}

// Kill kills the server at once (SIGKILL), as a crash would, and waits for it
// to exit.
func (s *Server) Kill() { s.kill() }

func (s *Server) kill() {
	if done := s.signal(syscall.SIGKILL); done != nil {
		<-done
	}
}

// Pause stops the process (SIGSTOP) without closing its connections: clients
// see a server that accepts but never answers. On Linux it returns once the
// process is stopped, so that no command sent after Pause is answered before
// Resume. Resume or Stop ends the pause. Outside Unix it skips the test.
func (s *Server) Pause() {
	s.t.Helper()
	sig := stopSignal()
	if sig == nil {
		s.t.Skip("redistest: pausing a process needs a Unix system")
	}
	if s.signal(sig) == nil {
		return // not running
	}
	s.mu.Lock()
	pid := s.cmd.Process.Pid
	s.mu.Unlock()
	deadline := time.Now().Add(readyTimeout)
	for {
		stopped, err := isStopped(pid)
		if err != nil {
			s.t.Fatalf("redistest: pause %s: %v", s.Addr, err)
		}
		if stopped {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("redistest: pause %s: the process is not stopped after %v", s.Addr, readyTimeout)
		}
		time.Sleep(time.Millisecond)
	}
}

// Resume continues a paused server (SIGCONT).
func (s *Server) Resume() {
	if sig := contSignal(); sig != nil {
		s.signal(sig)
	}
}

// Restart starts the server again, on the same port and directory, after Stop
// or Kill (it stops a running server first). Its data is gone: nothing is
// persisted. It fails the test when the server does not come back.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	if err := s.start(); err != nil {
		s.t.Fatalf("redistest: restart %s: %v", s.Addr, err)
	}
}

// admin returns the harness's own client of this server, which fails fast
// (no retries) and is closed when the test ends. Callers bound its calls with
// a context.
func (s *Server) admin() *goredis.Client {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.client == nil {
		s.client = goredis.NewClient(&goredis.Options{Addr: s.Addr, MaxRetries: -1, DialTimeout: time.Second, ContextTimeoutEnabled: true})
	}
	return s.client
}

// Client returns a go-redis client of this server, closed when the test ends.
func (s *Server) Client() *goredis.Client {
	c := goredis.NewClient(&goredis.Options{Addr: s.Addr, ContextTimeoutEnabled: true})
	s.t.Cleanup(func() { _ = c.Close() })
	return c
}
