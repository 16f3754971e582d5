package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"

	"github.com/adaptive-rate-limiter/arl/test/redistest"
)

// The scenarios in this file run arl on Redis: several replicas as separate
// processes of the real binary, one Redis (or a cluster) between them.

var (
	buildOnce sync.Once
	binary    string
	buildErr  error
)

// arlBinary builds cmd/extproc once per test run.
func arlBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "arl-e2e-bin")
		if err != nil {
			buildErr = err
			return
		}
		binary = filepath.Join(dir, "arl-extproc")
		out, err := exec.Command("go", "build", "-o", binary, "../../cmd/extproc").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binary
}

// replica is one arl process.
type replica struct {
	cmd         *exec.Cmd
	grpc, admin string
	done        chan struct{}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Close() }()
	return l.Addr().String()
}

// startReplica starts the arl binary with environ and waits until it is
// ready; it is killed when the test ends.
func startReplica(t *testing.T, environ ...string) *replica {
	t.Helper()
	r := &replica{grpc: freeAddr(t), admin: freeAddr(t), done: make(chan struct{})}
	r.cmd = exec.Command(arlBinary(t))
	r.cmd.Env = append(os.Environ(), append([]string{"ARL_GRPC_ADDR=" + r.grpc, "ARL_ADMIN_ADDR=" + r.admin, "ARL_LOG_LEVEL=warn", "ARL_SHUTDOWN_TIMEOUT=2s"}, environ...)...)
	stderr, _ := r.cmd.StderrPipe()
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var logs strings.Builder
	var logMu sync.Mutex
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			logMu.Lock()
			logs.WriteString(sc.Text() + "\n")
			logMu.Unlock()
		}
		_ = r.cmd.Wait()
		close(r.done)
	}()
	t.Cleanup(func() {
		_ = r.cmd.Process.Kill()
		<-r.done
		if t.Failed() {
			logMu.Lock()
			t.Logf("replica %s log:\n%s", r.grpc, logs.String())
			logMu.Unlock()
		}
	})
	eventually(t, 30*time.Second, 20*time.Millisecond, func() (bool, string) {
		resp, err := http.Get("http://" + r.admin + "/readyz")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == 200 {
				return true, ""
			}
		}
		select {
		case <-r.done:
			t.Fatalf("replica exited at start:\n%s", logs.String())
		default:
		}
		return false, "replica not ready"
	})
	return r
}

func (r *replica) metric(t *testing.T, name string) string {
	t.Helper()
	resp, err := http.Get("http://" + r.admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	return grep(string(b), name)
}

// groq's request limit is per day, so refill during a test is nil.
var groq = []string{"x-arl-provider", "groq"}

// teachDay has one replica learn a per-day limit of n requests and a token
// limit per minute for key.
func teachDay(t *testing.T, c *client, key string, requests, tokens int) {
	t.Helper()
	s := c.open()
	admitted(t, s.request(key, "", 1, groq...), "probe")
	completeStream(s, "x-ratelimit-limit-requests", fmt.Sprint(requests), "x-ratelimit-remaining-requests", fmt.Sprint(requests),
		"x-ratelimit-limit-tokens", fmt.Sprint(tokens), "x-ratelimit-remaining-tokens", fmt.Sprint(tokens))
}

// storm sends n concurrent requests spread over the clients and returns how
// many were admitted. Admitted streams stay open (their reservations held)
// until the storm is over.
func storm(t *testing.T, clients []*client, key string, n, maxTokens int) int64 {
	var admittedN atomic.Int64
	var wg sync.WaitGroup
	var mu sync.Mutex
	var open []*stream
	defer func() {
		for _, s := range open {
			s.cancel()
		}
	}()
	for i := range n {
		c := clients[i%len(clients)]
		wg.Go(func() {
			s := c.open()
			r := s.request(key, "", maxTokens, groq...)
			if r.GetRequestBody() != nil {
				admittedN.Add(1)
			} else if code := r.GetImmediateResponse().GetStatus().GetCode(); code != 429 {
				t.Errorf("neither admitted nor 429: %v", r)
			}
			mu.Lock()
			open = append(open, s)
			mu.Unlock()
		})
	}
	wg.Wait()
	return admittedN.Load()
}

func TestRedisReplicasNoOverAdmission(t *testing.T) {
	redistest.RequireRedis(t)
	srv := redistest.StartServer(t)
	// Fail closed with a generous timeout: on a loaded machine a slow Redis
	// call must show as a 503, never as an admission without a reservation.
	env := []string{"ARL_BACKEND=redis", "ARL_REDIS_ADDRS=" + srv.Addr, "ARL_FAILURE_MODE=closed", "ARL_REDIS_TIMEOUT=5s", "ARL_BACKEND_TIMEOUT=5s"}
	var clients []*client
	for range 3 {
		clients = append(clients, dial(t, startReplica(t, env...).grpc))
	}

	t.Run("requests", func(t *testing.T) {
		// The lesson is applied (the probe's settlement) before the storm,
		// which finds 50 requests left; a denial takes nothing, and the
		// refill of a per-day limit (one request in 29 minutes) adds none
		// during the storm: exactly 50 are admitted.
		teachDay(t, clients[0], "sk-shared-req", 50, 10_000_000)
		if got := storm(t, clients, "sk-shared-req", 200, 1); got != 50 {
			t.Fatalf("3 replicas admitted %d of 200 against a limit of 50 requests per day, want 50", got)
		}
	})
	t.Run("tokens", func(t *testing.T) {
		// 6000 tokens per minute, 120-token requests: the bucket is full
		// when the storm starts, so the first 50 reservations fit however
		// slow the machine (a denial takes nothing, refill only adds), and
		// the refill during the storm (100 tokens a second) may admit more.
		teachDay(t, clients[1], "sk-shared-tok", 100_000, 6000)
		start := time.Now()
		got := storm(t, clients, "sk-shared-tok", 200, 110)
		refill := int64(time.Since(start).Seconds()*100/120) + 1
		if got < 50 || got > 50+refill {
			t.Fatalf("3 replicas admitted %d 120-token requests against 6000 tokens, want 50 (at most %d with refill)", got, 50+refill)
		}
	})
}

func TestRedisReplicaKilledCapacityReturns(t *testing.T) {
	redistest.RequireRedis(t)
	srv := redistest.StartServer(t)
	env := []string{"ARL_BACKEND=redis", "ARL_REDIS_ADDRS=" + srv.Addr, "ARL_RESERVATION_TTL=2s"}
	a, b := startReplica(t, env...), startReplica(t, env...)
	ca, cb := dial(t, a.grpc), dial(t, b.grpc)
	teachDay(t, ca, "sk-orphan", 3, 10_000_000)
	// Replica A holds all three requests in flight, then dies.
	for i := range 3 {
		s := ca.open()
		admitted(t, s.request("sk-orphan", "", 1, groq...), fmt.Sprint("held request ", i))
	}
	rejected(t, cb.open().request("sk-orphan", "", 1, groq...), "while A holds the capacity")
	if err := a.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-a.done
	// After the reservation TTL, replica B gets the capacity back.
	eventually(t, 10*time.Second, 100*time.Millisecond, func() (bool, string) {
		s := cb.open()
		r := s.request("sk-orphan", "", 1, groq...)
		if r.GetRequestBody() != nil {
			completeStream(s)
			return true, ""
		}
		s.cancel()
		return false, fmt.Sprintf("capacity of the dead replica never returned: %v", r)
	})
}

// outages are the two ways Redis goes away: a stopped server refuses
// connections, so calls fail at once; a paused one (SIGSTOP) accepts them and
// never answers, so that only the timeout ends each call.
var outages = []struct {
	name     string
	stalls   bool
	down, up func(*redistest.Server)
}{
	{"refused", false, (*redistest.Server).Stop, (*redistest.Server).Restart},
	{"stalled", true, (*redistest.Server).Pause, (*redistest.Server).Resume},
}

func TestRedisOutage(t *testing.T) {
	redistest.RequireRedis(t)
	// Each decision makes one Redis call, bounded by ARL_REDIS_TIMEOUT:
	// during an outage it follows the failure mode within that timeout, plus
	// up to 2 s of scheduling on a loaded machine. ARL_BACKEND_TIMEOUT, the
	// limiter's own bound on a call, is set beyond that, so that only the
	// Redis timeout can meet the bound.
	const redisTimeout = 200 * time.Millisecond
	const bound = redisTimeout + 2*time.Second
	for _, o := range outages {
		for _, mode := range []string{"closed", "open"} {
			t.Run(o.name+"/"+mode, func(t *testing.T) {
				srv := redistest.StartServer(t)
				env := []string{"ARL_BACKEND=redis", "ARL_REDIS_ADDRS=" + srv.Addr, "ARL_FAILURE_MODE=" + mode, "ARL_REDIS_TIMEOUT=" + redisTimeout.String(), "ARL_BACKEND_TIMEOUT=5s"}
				r := startReplica(t, env...)
				c := dial(t, r.grpc)
				// A second replica stays idle until the outage, so that its
				// breaker is closed and its first decision goes to Redis.
				idle := dial(t, startReplica(t, env...).grpc)
				follows := func(resp *extprocv3.ProcessingResponse) bool {
					if mode == "closed" {
						return resp.GetImmediateResponse().GetStatus().GetCode() == 503
					}
					return resp.GetRequestBody() != nil
				}
				s := c.open()
				admitted(t, s.request("sk-out", "", 10), "before the outage")
				completeStream(s)

				baseline := goroutines(t, r)
				// Under load: 8 clients keep sending while Redis goes away;
				// every decision during the outage follows the failure mode
				// within the bound, and none hangs.
				stop := make(chan struct{})
				var during, slow, wrong atomic.Int64
				var outage atomic.Bool
				var wg sync.WaitGroup
				for range 8 {
					wg.Go(func() {
						for {
							select {
							case <-stop:
								return
							default:
							}
							inOutage := outage.Load()
							start := time.Now()
							s := c.open()
							resp := s.request("sk-out", "", 10)
							if time.Since(start) > bound {
								slow.Add(1)
							}
							if inOutage {
								during.Add(1)
								if !follows(resp) {
									wrong.Add(1)
								}
							}
							if resp.GetRequestBody() != nil {
								completeStream(s)
							}
							s.cancel()
						}
					})
				}
				time.Sleep(200 * time.Millisecond) // load before the outage
				o.down(srv)
				outage.Store(true)
				// The idle replica's decision waits for Redis: on a stalled
				// Redis, no less than the timeout.
				start := time.Now()
				is := idle.open()
				resp := is.request("sk-out", "", 10)
				took := time.Since(start)
				is.cancel()
				if !follows(resp) || took > bound || (o.stalls && took < redisTimeout) {
					t.Errorf("first decision of an idle replica during the outage, after %v (bound %v): %v", took, bound, resp)
				}
				time.Sleep(2 * time.Second)
				close(stop)
				wg.Wait()
				if during.Load() < 10 || slow.Load() > 0 || wrong.Load() > 0 {
					t.Fatalf("during the outage: %d decisions, %d slower than %v, %d not following fail-%s", during.Load(), slow.Load(), bound, wrong.Load(), mode)
				}
				if m := r.metric(t, "arl_backend_circuit_open"); !strings.Contains(m, "arl_backend_circuit_open 1") {
					t.Fatalf("circuit metric during the outage: %s", m)
				}
				if m := r.metric(t, `arl_requests_total{outcome="fail_`+mode); m == "" {
					t.Fatal("failure-mode decisions not counted")
				}

				o.up(srv)
				eventually(t, 10*time.Second, 100*time.Millisecond, func() (bool, string) {
					s := c.open()
					resp := s.request("sk-out", "", 10)
					ok := resp.GetRequestBody() != nil && strings.Contains(r.metric(t, "arl_backend_circuit_open"), "arl_backend_circuit_open 0")
					if resp.GetRequestBody() != nil {
						completeStream(s)
					}
					s.cancel()
					return ok, fmt.Sprintf("service did not return after Redis came back: %v", resp)
				})
				// A stalled Redis, once resumed, runs the reserves of the
				// calls that timed out: the replicas release them (as soon
				// as the breaker closes, or on their next sweep), long before
				// ARL_RESERVATION_TTL (10 minutes).
				eventually(t, 30*time.Second, 100*time.Millisecond, func() (bool, string) {
					n := inFlight(t, r)
					return n == 0, fmt.Sprintf("%d reservations still in flight in Redis after the outage", n)
				})
				// No goroutine outlives the outage.
				eventually(t, 10*time.Second, 100*time.Millisecond, func() (bool, string) {
					n := goroutines(t, r)
					return n <= baseline+5, fmt.Sprintf("goroutines %d after the outage, %d before", n, baseline)
				})
			})
		}
	}
}

// inFlight sums the reservations in flight in every bucket, as the replica's
// /v1/buckets shows them.
func inFlight(t *testing.T, r *replica) int64 {
	t.Helper()
	resp, err := http.Get("http://" + r.admin + "/v1/buckets")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	var view struct {
		Buckets []struct {
			InFlight int64 `json:"in_flight"`
		} `json:"buckets"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&view); err != nil {
		t.Fatalf("/v1/buckets: %v", err)
	}
	var n int64
	for _, b := range view.Buckets {
		n += b.InFlight
	}
	return n
}

// goroutines reads the replica's go_goroutines gauge.
func goroutines(t *testing.T, r *replica) int {
	t.Helper()
	line := r.metric(t, "go_goroutines ")
	for _, l := range strings.Split(line, "\n") {
		if v, ok := strings.CutPrefix(l, "go_goroutines "); ok {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil {
				t.Fatalf("go_goroutines %q", v)
			}
			return n
		}
	}
	t.Fatalf("no go_goroutines in %q", line)
	return 0
}

func TestRedisFallbackShare(t *testing.T) {
	redistest.RequireRedis(t)
	srv := redistest.StartServer(t)
	r := startReplica(t, "ARL_BACKEND=redis", "ARL_REDIS_ADDRS="+srv.Addr, "ARL_FALLBACK_SHARE=0.5", "ARL_FAILURE_MODE=closed")
	c := dial(t, r.grpc)
	teachDay(t, c, "sk-fb", 20, 10_000_000)
	srv.Stop()
	// While Redis is away, this replica admits half of the learned 20.
	n := 0
	for range 30 {
		s := c.open()
		if s.request("sk-fb", "", 1, groq...).GetRequestBody() != nil {
			n++
		}
		s.cancel()
	}
	if n != 10 {
		t.Fatalf("admitted %d during the outage, want 10 (half of 20)", n)
	}
}

func TestRedisClusterFailover(t *testing.T) {
	redistest.RequireRedis(t)
	if testing.Short() {
		t.Skip("cluster failover takes several seconds")
	}
	cl := redistest.StartCluster(t, 3, 1)
	r := startReplica(t, "ARL_BACKEND=redis", "ARL_REDIS_CLUSTER=true", "ARL_REDIS_ADDRS="+strings.Join(cl.Addrs, ","), "ARL_FAILURE_MODE=open")
	c := dial(t, r.grpc)
	keys := make([]string, 12) // spread over every master's slots
	for i := range keys {
		keys[i] = fmt.Sprintf("sk-cluster-%d", i)
		s := c.open()
		admitted(t, s.request(keys[i], "", 10), "before failover")
		completeStream(s)
	}
	cl.KillMaster(0)
	cl.WaitFailover()
	// Service continues: within a few seconds of the failover, a whole pass
	// over the keys is decided by Redis again (no fail-open decision).
	eventually(t, 30*time.Second, 200*time.Millisecond, func() (bool, string) {
		before := r.metric(t, `outcome="fail_open"`)
		served := 0
		for _, k := range keys {
			s := c.open()
			if s.request(k, "", 10).GetRequestBody() != nil {
				completeStream(s)
				served++
			}
			s.cancel()
		}
		after := r.metric(t, `outcome="fail_open"`)
		return served == len(keys) && after == before, fmt.Sprintf("after failover: %d of %d served, fail-open %s -> %s", served, len(keys), before, after)
	})
}
