package standin

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/adaptive-rate-limiter/arl/envoy"
)

// EnvoyBinary returns the Envoy binary to use for tests with real Envoy: $ENVOY_BIN if set,
// else `envoy` on PATH. The second result is false when there is none.
func EnvoyBinary() (string, bool) {
	if p := os.Getenv("ENVOY_BIN"); p != "" {
		if _, err := os.Stat(p); err == nil {
			return p, true
		}
		return "", false
	}
	p, err := exec.LookPath("envoy")
	return p, err == nil
}

// Envoy is a running Envoy process started by StartEnvoy.
type Envoy struct {
	cmd      *exec.Cmd
	dir      string
	url      string
	adminURL string
	output   *syncBuffer
	exited   chan struct{}
	waitErr  error
	close    sync.Once
	closeErr error
}

// StartEnvoy runs envoyBin with the bootstrap at bootstrapPath ("" means envoy/envoy.yaml)
// rewritten for a test: the listener and admin interface on free loopback ports, the ext_proc
// cluster pointing at extprocAddr (host:port) and the route's cluster at upstream, in plain
// HTTP when upstream's scheme is http. It returns once Envoy's admin /ready answers 200; ctx
// bounds that wait only (Close stops the process).
func StartEnvoy(ctx context.Context, envoyBin, bootstrapPath, extprocAddr string, upstream *url.URL) (*Envoy, error) {
	var (
		b   *bootstrapv3.Bootstrap
		err error
	)
	if bootstrapPath == "" {
		b, err = envoy.DefaultBootstrap()
	} else {
		b, err = envoy.LoadBootstrap(bootstrapPath)
	}
	if err != nil {
		return nil, fmt.Errorf("start envoy: %w", err)
	}
	listenPort, err := freePort()
	if err != nil {
		return nil, fmt.Errorf("start envoy: %w", err)
	}
	adminPort, err := freePort()
	if err != nil {
		return nil, fmt.Errorf("start envoy: %w", err)
	}
	if err := rewriteBootstrap(b, listenPort, adminPort, extprocAddr, upstream); err != nil {
		return nil, fmt.Errorf("start envoy: %w", err)
	}
	js, err := protojson.MarshalOptions{Multiline: true}.Marshal(b)
	if err != nil {
		return nil, fmt.Errorf("start envoy: encode bootstrap: %w", err)
	}
	dir, err := os.MkdirTemp("", "arl-envoy-")
	if err != nil {
		return nil, fmt.Errorf("start envoy: %w", err)
	}
	cfgPath := filepath.Join(dir, "envoy.json")
	if err := os.WriteFile(cfgPath, js, 0o600); err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("start envoy: %w", err)
	}

	e := &Envoy{
		dir:      dir,
		url:      "http://127.0.0.1:" + strconv.Itoa(listenPort),
		adminURL: "http://127.0.0.1:" + strconv.Itoa(adminPort),
		output:   &syncBuffer{},
		exited:   make(chan struct{}),
	}
	e.cmd = exec.Command(envoyBin, "-c", cfgPath, "--disable-hot-restart", "--concurrency", "2",
		"--log-level", "warn")
	e.cmd.Stdout = e.output
	e.cmd.Stderr = e.output
	if err := e.cmd.Start(); err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("start envoy: %w", err)
	}
	go func() {
		e.waitErr = e.cmd.Wait()
		close(e.exited)
	}()
	if err := e.waitReady(ctx); err != nil {
		_ = e.Close()
		return nil, fmt.Errorf("start envoy: %w; output:\n%s", err, e.output.String())
	}
	return e, nil
}

// waitReady polls the admin /ready endpoint until it answers 200, Envoy exits or ctx ends.
func (e *Envoy) waitReady(ctx context.Context) error {
	client := &http.Client{Timeout: time.Second}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, e.adminURL+"/ready", nil)
		if err != nil {
			return err
		}
		if resp, err := client.Do(req); err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("envoy not ready: %w", ctx.Err())
		case <-e.exited:
			return fmt.Errorf("envoy exited: %v", e.waitErr)
		case <-tick.C:
		}
	}
}

// URL is the listener's base URL (http://127.0.0.1:port).
func (e *Envoy) URL() string { return e.url }

// AdminURL is the admin interface's base URL.
func (e *Envoy) AdminURL() string { return e.adminURL }

// Output returns what Envoy has logged so far.
func (e *Envoy) Output() string { return e.output.String() }

// Close stops Envoy (SIGTERM, then SIGKILL after 5 s) and removes its files.
func (e *Envoy) Close() error {
	e.close.Do(func() {
		_ = e.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-e.exited:
		case <-time.After(5 * time.Second):
			_ = e.cmd.Process.Kill()
			<-e.exited
		}
		e.closeErr = os.RemoveAll(e.dir)
	})
	return e.closeErr
}

// rewriteBootstrap points b at test addresses (see StartEnvoy).
func rewriteBootstrap(b *bootstrapv3.Bootstrap, listenPort, adminPort int, extprocAddr string, upstream *url.URL) error {
	if upstream == nil || upstream.Host == "" {
		return errors.New("upstream URL required")
	}
	b.Admin = &bootstrapv3.Admin{Address: socketAddress("127.0.0.1", uint32(adminPort))}
	l, err := envoy.FirstListener(b)
	if err != nil {
		return err
	}
	l.Address = socketAddress("127.0.0.1", uint32(listenPort))

	ep, err := envoy.ExtProcFilter(b)
	if err != nil {
		return err
	}
	extCluster, err := envoy.Cluster(b, ep.GetGrpcService().GetEnvoyGrpc().GetClusterName())
	if err != nil {
		return err
	}
	if err := pointCluster(extCluster, extprocAddr); err != nil {
		return fmt.Errorf("ext_proc cluster: %w", err)
	}

	r, err := envoy.FirstRoute(b)
	if err != nil {
		return err
	}
	upCluster, err := envoy.Cluster(b, r.GetRoute().GetCluster())
	if err != nil {
		return err
	}
	hostPort := upstream.Host
	if upstream.Port() == "" {
		port := "80"
		if upstream.Scheme == "https" {
			port = "443"
		}
		hostPort = net.JoinHostPort(upstream.Hostname(), port)
	}
	if err := pointCluster(upCluster, hostPort); err != nil {
		return fmt.Errorf("upstream cluster: %w", err)
	}
	if upstream.Scheme == "http" {
		upCluster.TransportSocket = nil
	}
	return envoy.Validate(b)
}

// pointCluster makes c a single-endpoint cluster for hostPort: STATIC for an IP, STRICT_DNS
// for a name.
func pointCluster(c *clusterv3.Cluster, hostPort string) error {
	host, portStr, err := net.SplitHostPort(hostPort)
	if err != nil {
		return err
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return fmt.Errorf("port %q: %w", portStr, err)
	}
	typ := clusterv3.Cluster_STRICT_DNS
	if net.ParseIP(host) != nil {
		typ = clusterv3.Cluster_STATIC
	}
	c.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: typ}
	c.LoadAssignment = &endpointv3.ClusterLoadAssignment{
		ClusterName: c.GetName(),
		Endpoints: []*endpointv3.LocalityLbEndpoints{{
			LbEndpoints: []*endpointv3.LbEndpoint{{
				HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
					Address: socketAddress(host, uint32(port)),
				}},
			}},
		}},
	}
	return nil
}

func socketAddress(host string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address:       host,
		PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}

// freePort asks the kernel for a free loopback TCP port.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// syncBuffer is a bytes.Buffer safe for the concurrent writes of a child's stdout and stderr.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}
