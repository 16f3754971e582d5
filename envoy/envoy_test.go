package envoy

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"sigs.k8s.io/yaml"
)

func loadDefault(t *testing.T) *bootstrapv3.Bootstrap {
	t.Helper()
	b, err := LoadBootstrap("envoy.yaml")
	if err != nil {
		t.Fatalf("LoadBootstrap(envoy.yaml): %v", err)
	}
	return b
}

func TestEnvoyYAMLListener(t *testing.T) {
	b := loadDefault(t)
	if got := b.GetAdmin().GetAddress().GetSocketAddress(); got.GetAddress() != "127.0.0.1" || got.GetPortValue() != 9901 {
		t.Errorf("admin address = %v, want 127.0.0.1:9901", got)
	}
	l, err := FirstListener(b)
	if err != nil {
		t.Fatal(err)
	}
	if l.GetName() != "egress" || l.GetAddress().GetSocketAddress().GetPortValue() != 10000 {
		t.Errorf("listener = %s on %v, want egress on port 10000", l.GetName(), l.GetAddress())
	}
	if got := l.GetPerConnectionBufferLimitBytes().GetValue(); got != 16<<20 {
		t.Errorf("per_connection_buffer_limit_bytes = %d, want %d", got, 16<<20)
	}
	hcm, err := HTTPConnectionManager(b)
	if err != nil {
		t.Fatal(err)
	}
	if hcm.GetStatPrefix() == "" {
		t.Error("http connection manager has no stat_prefix")
	}
	var names []string
	for _, f := range hcm.GetHttpFilters() {
		names = append(names, f.GetName())
	}
	if want := []string{ExtProcFilterName, "envoy.filters.http.router"}; !slices.Equal(names, want) {
		t.Errorf("http filters = %v, want %v", names, want)
	}
}

func TestEnvoyYAMLExtProc(t *testing.T) {
	b := loadDefault(t)
	ep, err := ExtProcFilter(b)
	if err != nil {
		t.Fatal(err)
	}
	pm := ep.GetProcessingMode()
	modes := []struct {
		name      string
		got, want any
	}{
		{"request_header_mode", pm.GetRequestHeaderMode(), extprocv3.ProcessingMode_SEND},
		{"response_header_mode", pm.GetResponseHeaderMode(), extprocv3.ProcessingMode_SEND},
		{"request_body_mode", pm.GetRequestBodyMode(), extprocv3.ProcessingMode_BUFFERED},
		{"response_body_mode", pm.GetResponseBodyMode(), extprocv3.ProcessingMode_STREAMED},
		{"request_trailer_mode", pm.GetRequestTrailerMode(), extprocv3.ProcessingMode_SKIP},
		{"response_trailer_mode", pm.GetResponseTrailerMode(), extprocv3.ProcessingMode_SKIP},
		{"allow_mode_override", ep.GetAllowModeOverride(), true},
		{"failure_mode_allow", ep.GetFailureModeAllow(), true},
		{"observability_mode", ep.GetObservabilityMode(), false},
		{"message_timeout", ep.GetMessageTimeout().AsDuration(), time.Second},
		{"grpc cluster", ep.GetGrpcService().GetEnvoyGrpc().GetClusterName(), "arl_extproc"},
	}
	for _, m := range modes {
		if m.got != m.want {
			t.Errorf("%s = %v, want %v", m.name, m.got, m.want)
		}
	}
	// arl's default ARL_MAX_QUEUE_WAIT is 30 s and it covers a queued request with one override.
	if got := ep.GetMaxMessageTimeout().AsDuration(); got < 30*time.Second {
		t.Errorf("max_message_timeout = %v, want >= 30s", got)
	}
	if ep.GetGrpcService().GetTimeout() == nil {
		t.Error("grpc_service has no timeout")
	}
}

func TestEnvoyYAMLRoute(t *testing.T) {
	b := loadDefault(t)
	r, err := FirstRoute(b)
	if err != nil {
		t.Fatal(err)
	}
	ra := r.GetRoute()
	if ra.GetCluster() != "openai" {
		t.Errorf("route cluster = %q, want openai", ra.GetCluster())
	}
	if ra.GetHostRewriteLiteral() != "api.openai.com" {
		t.Errorf("host_rewrite_literal = %q, want api.openai.com", ra.GetHostRewriteLiteral())
	}
	if ra.GetTimeout() == nil || ra.GetTimeout().AsDuration() != 0 {
		t.Errorf("route timeout = %v, want an explicit 0s (streams must not be cut)", ra.GetTimeout())
	}
	if got := ra.GetIdleTimeout().AsDuration(); got != 300*time.Second {
		t.Errorf("route idle_timeout = %v, want 300s", got)
	}
	if !slices.Contains(r.GetRequestHeadersToRemove(), "accept-encoding") {
		t.Errorf("request_headers_to_remove = %v, want accept-encoding in it", r.GetRequestHeadersToRemove())
	}
}

func TestEnvoyYAMLClusters(t *testing.T) {
	b := loadDefault(t)

	ext, err := Cluster(b, "arl_extproc")
	if err != nil {
		t.Fatal(err)
	}
	opts := &httpv3.HttpProtocolOptions{}
	anyOpts, ok := ext.GetTypedExtensionProtocolOptions()["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
	if !ok {
		t.Fatal("arl_extproc has no HttpProtocolOptions")
	}
	if err := anyOpts.UnmarshalTo(opts); err != nil {
		t.Fatal(err)
	}
	if opts.GetExplicitHttpConfig().GetHttp2ProtocolOptions() == nil {
		t.Error("arl_extproc is not HTTP/2: gRPC needs it")
	}
	if ext.GetConnectTimeout() == nil {
		t.Error("arl_extproc has no connect_timeout")
	}
	addr := ext.GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress()
	if addr.GetAddress() != "127.0.0.1" || addr.GetPortValue() != 50051 {
		t.Errorf("arl_extproc endpoint = %v, want 127.0.0.1:50051", addr)
	}

	up, err := Cluster(b, "openai")
	if err != nil {
		t.Fatal(err)
	}
	ts := up.GetTransportSocket().GetTypedConfig()
	tlsCtx := &tlsv3.UpstreamTlsContext{}
	if ts == nil || !ts.MessageIs(tlsCtx) {
		t.Fatalf("openai transport socket = %v, want an UpstreamTlsContext", ts)
	}
	if err := ts.UnmarshalTo(tlsCtx); err != nil {
		t.Fatal(err)
	}
	if tlsCtx.GetSni() != "api.openai.com" {
		t.Errorf("openai sni = %q, want api.openai.com", tlsCtx.GetSni())
	}
	upAddr := up.GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress()
	if upAddr.GetAddress() != "api.openai.com" || upAddr.GetPortValue() != 443 {
		t.Errorf("openai endpoint = %v, want api.openai.com:443", upAddr)
	}
}

func TestDefaultBootstrapMatchesFile(t *testing.T) {
	fromFile := loadDefault(t)
	embedded, err := DefaultBootstrap()
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(fromFile, embedded) {
		t.Error("DefaultBootstrap differs from envoy.yaml on disk")
	}
	onDisk, err := os.ReadFile("envoy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(DefaultYAML(), onDisk) {
		t.Error("DefaultYAML differs from envoy.yaml on disk")
	}
}

func TestBrokenBootstrapFailsToLoad(t *testing.T) {
	base, err := os.ReadFile("envoy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name     string
		old, new string
		wantErr  string
	}{
		{"typo in field name", "message_timeout: 1s", "mesage_timeout: 1s", "mesage_timeout"},
		{"unknown typed_config type", "envoy.extensions.filters.http.router.v3.Router", "envoy.extensions.filters.http.router.v3.Routr", "Routr"},
		{"invalid enum", "response_body_mode: STREAMED", "response_body_mode: STREAMING", "STREAMING"},
		{"validation rule: port out of range", "port_value: 10000", "port_value: 70000", "PortValue"},
		{"validation rule: empty grpc cluster", "cluster_name: arl_extproc", "cluster_name: \"\"", "ClusterName"},
		{"malformed yaml", "  listeners:\n", "  listeners:\n\t- broken\n", "yaml"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if !bytes.Contains(base, []byte(tc.old)) {
				t.Fatalf("envoy.yaml no longer contains %q: update the test", tc.old)
			}
			broken := bytes.Replace(base, []byte(tc.old), []byte(tc.new), 1)
			path := filepath.Join(t.TempDir(), "broken.yaml")
			if err := os.WriteFile(path, broken, 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := LoadBootstrap(path)
			if err == nil {
				t.Fatal("LoadBootstrap succeeded, want an error")
			}
			if !strings.Contains(err.Error(), path) {
				t.Errorf("error %q does not name the file", err)
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error %q does not mention %q", err, tc.wantErr)
			}
		})
	}
}

func TestLoadBootstrapMissingFile(t *testing.T) {
	_, err := LoadBootstrap(filepath.Join(t.TempDir(), "absent.yaml"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("err = %v, want os.ErrNotExist", err)
	}
}

func TestHelpersReportMissingParts(t *testing.T) {
	empty := &bootstrapv3.Bootstrap{}
	checks := []struct {
		name string
		err  error
	}{
		{"FirstListener", second(FirstListener(empty))},
		{"HTTPConnectionManager", second(HTTPConnectionManager(empty))},
		{"ExtProcFilter", second(ExtProcFilter(empty))},
		{"FirstRoute", second(FirstRoute(empty))},
		{"Cluster", second(Cluster(empty, "arl_extproc"))},
	}
	for _, c := range checks {
		if !errors.Is(c.err, ErrNotFound) {
			t.Errorf("%s on an empty bootstrap: err = %v, want ErrNotFound", c.name, c.err)
		}
	}
}

func second[T any](_ T, err error) error { return err }

// splitDocuments splits a multi-document YAML file on its "---" separator lines.
func splitDocuments(data []byte) [][]byte {
	var docs [][]byte
	for _, d := range strings.Split(string(data), "\n---\n") {
		if strings.TrimSpace(d) != "" {
			docs = append(docs, []byte(d))
		}
	}
	return docs
}

func parseManifests(t *testing.T, path string) []map[string]any {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	for i, doc := range splitDocuments(data) {
		var m map[string]any
		if err := yaml.UnmarshalStrict(doc, &m); err != nil {
			t.Fatalf("%s document %d: %v", path, i, err)
		}
		for _, k := range []string{"apiVersion", "kind", "metadata", "spec"} {
			if _, ok := m[k]; !ok {
				t.Errorf("%s document %d has no %s", path, i, k)
			}
		}
		out = append(out, m)
	}
	return out
}

// dig walks nested maps and lists (list steps are ints).
func dig(t *testing.T, v any, path ...any) any {
	t.Helper()
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				t.Fatalf("at %q: %T is not a map", k, v)
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				t.Fatalf("at [%d]: %T is not a long enough list", k, v)
			}
			v = l[k]
		}
	}
	return v
}

func TestIstioEnvoyFilter(t *testing.T) {
	docs := parseManifests(t, "istio-envoyfilter.yaml")
	if len(docs) != 1 || docs[0]["kind"] != "EnvoyFilter" {
		t.Fatalf("want one EnvoyFilter, got %d documents", len(docs))
	}
	patch := dig(t, docs[0], "spec", "configPatches", 0)
	if got := dig(t, patch, "patch", "operation"); got != "INSERT_BEFORE" {
		t.Errorf("operation = %v, want INSERT_BEFORE", got)
	}
	if got := dig(t, patch, "match", "listener", "filterChain", "filter", "subFilter", "name"); got != "envoy.filters.http.router" {
		t.Errorf("inserted before %v, want the router", got)
	}
	// The embedded filter config is Envoy's own type: validate it and compare with envoy.yaml.
	js, err := json.Marshal(dig(t, patch, "patch", "value", "typed_config"))
	if err != nil {
		t.Fatal(err)
	}
	packed := &anypb.Any{}
	if err := protojson.Unmarshal(js, packed); err != nil {
		t.Fatalf("ext_proc typed_config: %v", err)
	}
	ep := &extprocv3.ExternalProcessor{}
	if err := packed.UnmarshalTo(ep); err != nil {
		t.Fatalf("ext_proc typed_config holds %s: %v", packed.GetTypeUrl(), err)
	}
	if err := Validate(ep); err != nil {
		t.Fatalf("ext_proc typed_config invalid: %v", err)
	}
	want, err := ExtProcFilter(loadDefault(t))
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(ep.GetProcessingMode(), want.GetProcessingMode()) {
		t.Errorf("processing_mode = %v, want envoy.yaml's %v", ep.GetProcessingMode(), want.GetProcessingMode())
	}
	for name, ok := range map[string]bool{
		"allow_mode_override":            ep.GetAllowModeOverride() == want.GetAllowModeOverride(),
		"failure_mode_allow":             ep.GetFailureModeAllow() == want.GetFailureModeAllow(),
		"message_timeout":                proto.Equal(ep.GetMessageTimeout(), want.GetMessageTimeout()),
		"max_message_timeout":            proto.Equal(ep.GetMaxMessageTimeout(), want.GetMaxMessageTimeout()),
		"per_connection_buffer_limit":    dig(t, docs[0], "spec", "configPatches", 1, "patch", "value", "per_connection_buffer_limit_bytes") == float64(16<<20),
		"grpc cluster is the arl one":    strings.Contains(ep.GetGrpcService().GetEnvoyGrpc().GetClusterName(), "|50051|"),
		"observability mode stays off":   !ep.GetObservabilityMode(),
		"disable_immediate_response off": !ep.GetDisableImmediateResponse(),
	} {
		if !ok {
			t.Errorf("%s differs from envoy.yaml", name)
		}
	}
}

func TestEnvoyGatewayExtensionPolicy(t *testing.T) {
	docs := parseManifests(t, "envoy-gateway-extensionpolicy.yaml")
	kinds := map[string]map[string]any{}
	for _, d := range docs {
		kinds[d["kind"].(string)] = d
	}
	policy, ok := kinds["EnvoyExtensionPolicy"]
	if !ok {
		t.Fatalf("no EnvoyExtensionPolicy in %v", kinds)
	}
	ep := dig(t, policy, "spec", "extProc", 0)
	checks := []struct {
		path []any
		want any
	}{
		{[]any{"processingMode", "request", "body"}, "Buffered"},
		{[]any{"processingMode", "response", "body"}, "Streamed"},
		{[]any{"processingMode", "allowModeOverride"}, true},
		{[]any{"failOpen"}, true},
		{[]any{"backendRefs", 0, "port"}, float64(50051)},
	}
	for _, c := range checks {
		if got := dig(t, ep, c.path...); got != c.want {
			t.Errorf("extProc %v = %v, want %v", c.path, got, c.want)
		}
	}
	// Without max_message_timeout, the message timeout itself must cover arl's queue wait.
	mt, err := time.ParseDuration(dig(t, ep, "messageTimeout").(string))
	if err != nil {
		t.Fatal(err)
	}
	if mt < 30*time.Second {
		t.Errorf("messageTimeout = %v, want >= 30s (arl's default queue wait)", mt)
	}
	ctp, ok := kinds["ClientTrafficPolicy"]
	if !ok {
		t.Fatal("no ClientTrafficPolicy raising the buffer limit")
	}
	if got := dig(t, ctp, "spec", "connection", "bufferLimit"); got != "16Mi" {
		t.Errorf("bufferLimit = %v, want 16Mi", got)
	}
}

// TestComposeBootstrap validates the bootstrap docker-compose.yaml runs, and
// checks it configures the ext_proc filter exactly as envoy.yaml does.
func TestComposeBootstrap(t *testing.T) {
	compose, err := LoadBootstrap("envoy-compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	main, err := LoadBootstrap("envoy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	fc, err := ExtProcFilter(compose)
	if err != nil {
		t.Fatal(err)
	}
	fm, err := ExtProcFilter(main)
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(fc.GetProcessingMode(), fm.GetProcessingMode()) || fc.GetAllowModeOverride() != fm.GetAllowModeOverride() ||
		!proto.Equal(fc.GetMessageTimeout(), fm.GetMessageTimeout()) || !proto.Equal(fc.GetMaxMessageTimeout(), fm.GetMaxMessageTimeout()) {
		t.Fatal("envoy-compose.yaml's ext_proc filter differs from envoy.yaml's")
	}
}
