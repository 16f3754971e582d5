package app

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

func TestLoadConfigDefaults(t *testing.T) {
	c, err := LoadConfig(nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.GRPCAddr != ":50051" || c.AdminAddr != ":9090" || c.Backend != "memory" || c.Mode != "basic" ||
		c.MaxQueueWait != 30*time.Second || c.MaxQueueSize != 1000 || c.NamespaceHeader != "x-arl-namespace" ||
		c.TenantHeader != "x-arl-tenant" || c.PriorityHeader != "x-arl-priority" || c.ProviderHeader != "x-arl-provider" ||
		c.DefaultRPM != 0 || c.DefaultTPM != 0 || c.DefaultMaxTokens != 4096 || c.FailureMode != "open" ||
		len(c.RedisAddrs) != 1 || c.RedisAddrs[0] != "127.0.0.1:6379" || c.RedisCluster {
		t.Fatalf("defaults %+v", c)
	}
}

func TestLoadConfigValues(t *testing.T) {
	c, err := LoadConfig([]string{"ARL_DEFAULT_RPM=500", "ARL_DEFAULT_TPM=30000", "ARL_FAILURE_MODE=closed",
		"ARL_REDIS_ADDRS=a:1,b:2", "ARL_MAX_QUEUE_WAIT=5s", "UNRELATED=x", "ARL_LOG_LEVEL=debug"})
	if err != nil {
		t.Fatal(err)
	}
	lc := c.limiterConfig()
	if lc.Defaults[0] != 500 || lc.Defaults[1] != 30000 || lc.FailureMode != "closed" || len(c.RedisAddrs) != 2 || c.MaxQueueWait != 5*time.Second {
		t.Fatalf("config %+v", c)
	}
}

func TestLoadConfigInvalid(t *testing.T) {
	tests := []struct {
		env, variable string
	}{
		{"ARL_DEFAULT_RPM=abc", "ARL_DEFAULT_RPM"},
		{"ARL_DEFAULT_RPM=-1", "ARL_DEFAULT_RPM"},
		{"ARL_DEFAULT_TPM=1.5", "ARL_DEFAULT_TPM"},
		{"ARL_MODE=turbo", "ARL_MODE"},
		{"ARL_MODE=intelligent", "ARL_MODE"},
		{"ARL_MODE=account", "ARL_MODE"},
		{"ARL_BACKEND=etcd", "ARL_BACKEND"},
		{"ARL_FAILURE_MODE=maybe", "ARL_FAILURE_MODE"},
		{"ARL_MAX_QUEUE_WAIT=soon", "ARL_MAX_QUEUE_WAIT"},
		{"ARL_MAX_QUEUE_WAIT=0s", "ARL_MAX_QUEUE_WAIT"},
		{"ARL_MAX_QUEUE_SIZE=0", "ARL_MAX_QUEUE_SIZE"},
		{"ARL_DEFAULT_MAX_TOKENS=0", "ARL_DEFAULT_MAX_TOKENS"},
		{"ARL_NAMESPACE_HEADER=X-Upper", "ARL_NAMESPACE_HEADER"},
		{"ARL_TENANT_HEADER=has space", "ARL_TENANT_HEADER"},
		{"ARL_RESERVATION_TTL=10ms", "ARL_RESERVATION_TTL"},
		{"ARL_GRPC_MAX_RECV_BYTES=1024", "ARL_GRPC_MAX_RECV_BYTES"},
		{"ARL_LOG_LEVEL=loud", "ARL_LOG_LEVEL"},
		{"ARL_REDIS_CLUSTER=perhaps", "ARL_REDIS_CLUSTER"},
		{"ARL_CIRCUIT_FAILURES=-3", "ARL_CIRCUIT_FAILURES"},
		{"ARL_CONFIG_FILE=/etc/arl.yaml", "ARL_CONFIG_FILE"},
		{"ARL_STATE_CACHE_POLICY=sometimes", "ARL_STATE_CACHE_POLICY"},
		{"ARL_FALLBACK_SHARE=2", "ARL_FALLBACK_SHARE"},
		{"ARL_REDIS_TIMEOUT=0s", "ARL_REDIS_TIMEOUT"},
		{"ARL_REDIS_KEY_PREFIX={x}", "ARL_REDIS_KEY_PREFIX"},
		{"ARL_GRPC_ADDR=notanaddr", "ARL_GRPC_ADDR"},
		{"ARL_ADMIN_ADDR=:99999", "ARL_ADMIN_ADDR"},
		{"ARL_ADMIN_ADDR=:http", "ARL_ADMIN_ADDR"},
		{"ARL_REDIS_ADDRS=redis", "ARL_REDIS_ADDRS"},
		{"ARL_REDIS_ADDRS=10.0.0.1:6379,:6380", "ARL_REDIS_ADDRS"},
	}
	for _, tc := range tests {
		_, err := LoadConfig([]string{tc.env})
		var ce *ConfigError
		if !errors.As(err, &ce) || ce.Var != tc.variable {
			t.Errorf("%s: error %v, want a ConfigError naming %s", tc.env, err, tc.variable)
			continue
		}
		if !strings.HasPrefix(err.Error(), tc.variable+": ") {
			t.Errorf("%s: message %q does not start with the variable", tc.env, err)
		}
	}
}

// startRun runs the server on free loopback ports with the given variables
// set. It returns where it listens, the cancel that stands for SIGTERM, and
// the channel that receives Run's result.
func startRun(t *testing.T, environ ...string) (Listening, context.CancelFunc, <-chan error) {
	t.Helper()
	cfg, err := LoadConfig(append([]string{"ARL_GRPC_ADDR=127.0.0.1:0", "ARL_ADMIN_ADDR=127.0.0.1:0"}, environ...))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan Listening, 1)
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), func(l Listening) { ready <- l })
	}()
	select {
	case l := <-ready:
		return l, cancel, done
	case err := <-done:
		cancel()
		t.Fatalf("Run: %v", err)
		return Listening{}, nil, nil
	}
}

// TestGracefulShutdown: once shutdown begins, readiness fails and new
// streams are refused, while a stream in flight finishes its exchange.
func TestGracefulShutdown(t *testing.T) {
	l, cancel, done := startRun(t, "ARL_SHUTDOWN_TIMEOUT=10s", "ARL_DEFAULT_RPM=100")
	admin := "http://" + l.Admin.String()

	conn, err := grpc.NewClient(l.GRPC.String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	client := extprocv3.NewExternalProcessorClient(conn)
	s, err := client.Process(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	send := func(r *extprocv3.ProcessingRequest) {
		t.Helper()
		if err := s.Send(r); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Recv(); err != nil {
			t.Fatal(err)
		}
	}
	send(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestHeaders{RequestHeaders: &extprocv3.HttpHeaders{
		Headers: hm(":method", "POST", ":path", "/v1/chat/completions", ":authority", "api.openai.com", "authorization", "Bearer k")}}})
	send(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestBody{RequestBody: &extprocv3.HttpBody{
		Body: []byte(`{"model":"m","messages":[]}`), EndOfStream: true}}})

	cancel() // SIGTERM
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, err := http.Get(admin + "/readyz")
		if err == nil {
			_ = resp.Body.Close()
		}
		if err != nil || resp.StatusCode == http.StatusServiceUnavailable {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("still ready after shutdown began")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// The stream in flight completes its exchange.
	send(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseHeaders{ResponseHeaders: &extprocv3.HttpHeaders{
		Headers: hm(":status", "200", "content-type", "application/json")}}})
	send(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseBody{ResponseBody: &extprocv3.HttpBody{
		Body: []byte(`{"usage":{"prompt_tokens":1,"completion_tokens":1}}`), EndOfStream: true}}})
	select {
	case err := <-done:
		t.Fatalf("Run returned while a stream was open: %v", err)
	default:
	}
	// A new stream is refused while draining.
	if s2, err := client.Process(context.Background()); err == nil {
		if _, err := s2.Recv(); err == nil {
			t.Fatal("a new stream was accepted during shutdown")
		}
	}
	_ = s.CloseSend()
	_, _ = s.Recv()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after the last stream ended")
	}
}

// hm is a header map as Envoy sends it: values in raw_value.
func hm(kv ...string) *corev3.HeaderMap {
	m := &corev3.HeaderMap{}
	for i := 0; i < len(kv); i += 2 {
		m.Headers = append(m.Headers, &corev3.HeaderValue{Key: kv[i], RawValue: []byte(kv[i+1])})
	}
	return m
}

// TestLargeRequestBody: a buffered request body far above gRPC's 4 MiB
// default receive limit reaches the limiter, as Envoy's 16 MiB buffer in
// envoy/envoy.yaml may send it, and is reserved like any other.
func TestLargeRequestBody(t *testing.T) {
	l, cancel, done := startRun(t, "ARL_DEFAULT_RPM=100", "ARL_DEFAULT_TPM=100000000")
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	conn, err := grpc.NewClient(l.GRPC.String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	s, err := extprocv3.NewExternalProcessorClient(conn).Process(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.CloseSend() }()
	prompt := strings.Repeat("lorem ipsum ", 10<<20/12) // 10 MiB
	body := []byte(`{"model":"gpt-4o","max_tokens":16,"messages":[{"role":"user","content":"` + prompt + `"}]}`)
	for _, r := range []*extprocv3.ProcessingRequest{
		{Request: &extprocv3.ProcessingRequest_RequestHeaders{RequestHeaders: &extprocv3.HttpHeaders{
			Headers: hm(":method", "POST", ":path", "/v1/chat/completions", ":authority", "api.openai.com", "authorization", "Bearer k")}}},
		{Request: &extprocv3.ProcessingRequest_RequestBody{RequestBody: &extprocv3.HttpBody{Body: body, EndOfStream: true}}},
	} {
		if err := s.Send(r); err != nil {
			t.Fatal(err)
		}
		resp, err := s.Recv()
		if err != nil {
			t.Fatalf("reply to a %d-byte body: %v", len(body), err)
		}
		if resp.GetImmediateResponse() != nil {
			t.Fatalf("rejected: %v", resp.GetImmediateResponse())
		}
	}
	// The reservation holds the prompt's estimate: millions of tokens.
	resp, err := http.Get("http://" + l.Admin.String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	page, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var reserved float64
	for line := range strings.Lines(string(page)) {
		if strings.HasPrefix(line, "arl_tokens_reserved_total{") {
			_, v, _ := strings.Cut(strings.TrimSpace(line), "} ")
			reserved, _ = strconv.ParseFloat(v, 64)
		}
	}
	if reserved < 1e6 {
		t.Fatalf("arl_tokens_reserved_total = %v after a 10 MiB prompt, want millions", reserved)
	}
}
