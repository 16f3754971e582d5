package standin

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/adaptive-rate-limiter/arl/envoy"
)

func TestRewriteBootstrap(t *testing.T) {
	cases := []struct {
		name        string
		upstream    string
		extproc     string
		wantTLS     bool
		wantUpType  clusterv3.Cluster_DiscoveryType
		wantExtType clusterv3.Cluster_DiscoveryType
	}{
		{"plain http upstream on loopback", "http://127.0.0.1:8081", "127.0.0.1:50051", false, clusterv3.Cluster_STATIC, clusterv3.Cluster_STATIC},
		{"https upstream by name", "https://provider.test", "extproc.test:9000", true, clusterv3.Cluster_STRICT_DNS, clusterv3.Cluster_STRICT_DNS},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b, err := envoy.DefaultBootstrap()
			if err != nil {
				t.Fatal(err)
			}
			up, err := url.Parse(tc.upstream)
			if err != nil {
				t.Fatal(err)
			}
			if err := rewriteBootstrap(b, 10001, 10002, tc.extproc, up); err != nil {
				t.Fatal(err)
			}
			if got := b.GetAdmin().GetAddress().GetSocketAddress(); got.GetAddress() != "127.0.0.1" || got.GetPortValue() != 10002 {
				t.Errorf("admin = %v", got)
			}
			l, _ := envoy.FirstListener(b)
			if got := l.GetAddress().GetSocketAddress(); got.GetAddress() != "127.0.0.1" || got.GetPortValue() != 10001 {
				t.Errorf("listener = %v", got)
			}
			ext, _ := envoy.Cluster(b, "arl_extproc")
			up2, _ := envoy.Cluster(b, "openai")
			extAddr := ext.GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress()
			upAddr := up2.GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress()
			if extAddr.GetAddress()+":"+itoa(extAddr.GetPortValue()) != tc.extproc {
				t.Errorf("ext_proc endpoint = %v, want %s", extAddr, tc.extproc)
			}
			if upAddr.GetAddress() != up.Hostname() {
				t.Errorf("upstream endpoint = %v, want %s", upAddr, up.Hostname())
			}
			if ext.GetType() != tc.wantExtType || up2.GetType() != tc.wantUpType {
				t.Errorf("cluster types = %v/%v, want %v/%v", ext.GetType(), up2.GetType(), tc.wantExtType, tc.wantUpType)
			}
			if (up2.GetTransportSocket() != nil) != tc.wantTLS {
				t.Errorf("upstream TLS = %v, want %v", up2.GetTransportSocket() != nil, tc.wantTLS)
			}
			// The settings arl relies on survive the rewrite.
			ep, err := envoy.ExtProcFilter(b)
			if err != nil || !ep.GetAllowModeOverride() || ep.GetMaxMessageTimeout().AsDuration() < 30*time.Second {
				t.Errorf("ext_proc filter after rewrite = %v, %v", ep, err)
			}
		})
	}
}

func itoa(n uint32) string { return strconv.FormatUint(uint64(n), 10) }

func TestEnvoyBinaryFromEnv(t *testing.T) {
	exe := filepath.Join(t.TempDir(), "envoy")
	if err := os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	t.Setenv("ENVOY_BIN", exe)
	if got, ok := EnvoyBinary(); !ok || got != exe {
		t.Errorf("EnvoyBinary() = %q, %v, want %q", got, ok, exe)
	}
	t.Setenv("ENVOY_BIN", filepath.Join(t.TempDir(), "absent"))
	if _, ok := EnvoyBinary(); ok {
		t.Error("EnvoyBinary() found a binary that does not exist")
	}
}

// TestStartEnvoy runs the same pass-through exchange through real Envoy where one is
// installed. No Debian or Go package ships Envoy, so it is skipped on the project's machines.
func TestStartEnvoy(t *testing.T) {
	bin, ok := EnvoyBinary()
	if !ok {
		t.Skip("no envoy binary (set ENVOY_BIN or put envoy on PATH)")
	}
	proc, conn := startProcessor(t, nil)
	up, upGot := startUpstream(t, nil)
	upURL, _ := url.Parse(up.URL)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	e, err := StartEnvoy(ctx, bin, "", conn.Target(), upURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })
	code, _, body := do(t, http.MethodPost, e.URL()+"/v1/chat/completions", `{"model":"m"}`, map[string]string{"Accept-Encoding": "gzip"})
	if code != http.StatusOK || body != `{"ok":true}` {
		t.Fatalf("response = %d %q\nenvoy output:\n%s", code, body, e.Output())
	}
	got := <-upGot
	if got.Host != "api.openai.com" || got.Header.Get("Accept-Encoding") != "" {
		t.Errorf("upstream got %+v", got)
	}
	proc.streamEnd(t)
	want := []string{"request_headers", "request_body", "response_headers", "response_body"}
	if kinds := proc.kinds(); strings.Join(kinds, ",") != strings.Join(want, ",") {
		t.Errorf("messages = %v, want %v", kinds, want)
	}
}

// fakeEnvoyEnv makes the test binary act as a minimal envoy (see TestMain): "ready" serves the
// admin /ready endpoint of the bootstrap it is given, "exit" fails at once.
const fakeEnvoyEnv = "STANDIN_FAKE_ENVOY"

func TestMain(m *testing.M) {
	switch os.Getenv(fakeEnvoyEnv) {
	case "ready":
		if err := fakeEnvoy(os.Args[1:]); err != nil {
			fmt.Fprintln(os.Stderr, "fake envoy:", err)
			os.Exit(1)
		}
		os.Exit(0)
	case "exit":
		fmt.Fprintln(os.Stderr, "fake envoy: refusing to start")
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// fakeEnvoy checks the arguments and bootstrap that StartEnvoy passes and serves /ready on the
// admin port until killed.
func fakeEnvoy(args []string) error {
	if len(args) < 2 || args[0] != "-c" {
		return fmt.Errorf("want -c <config>, got %q", args)
	}
	data, err := os.ReadFile(args[1])
	if err != nil {
		return err
	}
	b := &bootstrapv3.Bootstrap{}
	if err := protojson.Unmarshal(data, b); err != nil {
		return err
	}
	if err := envoy.Validate(b); err != nil {
		return err
	}
	a := b.GetAdmin().GetAddress().GetSocketAddress()
	lis, err := net.Listen("tcp", net.JoinHostPort(a.GetAddress(), strconv.Itoa(int(a.GetPortValue()))))
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/ready", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, "LIVE") })
	return http.Serve(lis, mux)
}

func TestStartEnvoyLifecycle(t *testing.T) {
	up, _ := url.Parse("http://127.0.0.1:1")
	cases := []struct {
		mode    string
		wantErr string
	}{
		{"ready", ""},
		{"exit", "refusing to start"},
	}
	for _, tc := range cases {
		t.Run(tc.mode, func(t *testing.T) {
			t.Setenv(fakeEnvoyEnv, tc.mode)
			ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
			defer cancel()
			e, err := StartEnvoy(ctx, os.Args[0], "", "127.0.0.1:50051", up)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(e.URL(), "http://127.0.0.1:") || e.URL() == e.AdminURL() {
				t.Errorf("URL = %q, AdminURL = %q", e.URL(), e.AdminURL())
			}
			resp, err := http.Get(e.AdminURL() + "/ready")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			dir := e.dir
			if err := e.Close(); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("config dir %s left behind: %v", dir, err)
			}
			if _, err := http.Get(e.AdminURL() + "/ready"); err == nil {
				t.Error("envoy still answers after Close")
			}
		})
	}
}
