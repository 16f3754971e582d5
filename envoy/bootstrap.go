package envoy

import (
	_ "embed" // envoy.yaml is embedded for DefaultBootstrap.
	"errors"
	"fmt"
	"os"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
	"sigs.k8s.io/yaml"

	// Registered so that every typed_config in arl's bootstrap resolves during unmarshalling.
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
)

// Extension names, as they appear in the bootstrap's filter lists.
const (
	// HTTPConnectionManagerName is the network filter that carries the HTTP filter chain.
	HTTPConnectionManagerName = "envoy.filters.network.http_connection_manager"
	// ExtProcFilterName is the HTTP filter that talks to arl.
	ExtProcFilterName = "envoy.filters.http.ext_proc"
)

// ErrNotFound is returned (wrapped) when the bootstrap lacks a listener, filter, route or
// cluster that a helper looks for.
var ErrNotFound = errors.New("not found")

//go:embed envoy.yaml
var defaultYAML []byte

// LoadBootstrap reads the YAML bootstrap at path, converts it to JSON, unmarshals it into a
// Bootstrap (unknown fields, unresolvable typed_config types and invalid enum names are errors)
// and runs the validation rules of the bootstrap and of every typed_config in it (see Validate).
// Errors name the path.
func LoadBootstrap(path string) (*bootstrapv3.Bootstrap, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load envoy bootstrap: %w", err)
	}
	return ParseBootstrap(path, data)
}

// ParseBootstrap is LoadBootstrap for YAML (or JSON) already in memory; name identifies the
// document in errors.
func ParseBootstrap(name string, data []byte) (*bootstrapv3.Bootstrap, error) {
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, fmt.Errorf("envoy bootstrap %s: yaml: %w", name, err)
	}
	b := &bootstrapv3.Bootstrap{}
	if err := protojson.Unmarshal(js, b); err != nil {
		return nil, fmt.Errorf("envoy bootstrap %s: %w", name, err)
	}
	if err := Validate(b); err != nil {
		return nil, fmt.Errorf("envoy bootstrap %s: invalid: %w", name, err)
	}
	return b, nil
}

// validator is implemented by every message generated with protoc-gen-validate.
type validator interface{ ValidateAll() error }

// Validate runs the protoc-gen-validate rules of m and of every message packed in a
// google.protobuf.Any inside it (typed_config and friends), which the generated ValidateAll
// methods do not descend into. Errors name the Any's field path and type.
func Validate(m proto.Message) error {
	return validateTree(m.ProtoReflect(), string(m.ProtoReflect().Descriptor().Name()))
}

func validateTree(m protoreflect.Message, path string) error {
	if v, ok := m.Interface().(validator); ok {
		if err := v.ValidateAll(); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
	}
	var err error
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		p := path + "." + string(fd.Name())
		switch {
		case fd.IsMap():
			if fd.MapValue().Message() == nil {
				return true
			}
			v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				err = validateNode(mv.Message(), p+"["+k.String()+"]")
				return err == nil
			})
		case fd.IsList():
			if fd.Message() == nil {
				return true
			}
			l := v.List()
			for i := 0; i < l.Len() && err == nil; i++ {
				err = validateNode(l.Get(i).Message(), fmt.Sprintf("%s[%d]", p, i))
			}
		case fd.Message() != nil:
			err = validateNode(v.Message(), p)
		}
		return err == nil
	})
	return err
}

// validateNode validates a nested message; an Any is unpacked and validated as what it holds.
func validateNode(m protoreflect.Message, path string) error {
	if a, ok := m.Interface().(*anypb.Any); ok {
		inner, err := a.UnmarshalNew()
		if err != nil {
			return fmt.Errorf("%s: unpack %s: %w", path, a.GetTypeUrl(), err)
		}
		return validateTree(inner.ProtoReflect(), path+"<"+string(inner.ProtoReflect().Descriptor().FullName())+">")
	}
	return validateTree(m, path)
}

// DefaultBootstrap returns a freshly parsed copy of the envoy.yaml shipped in this directory
// (embedded at build time), so callers may modify it.
func DefaultBootstrap() (*bootstrapv3.Bootstrap, error) {
	return ParseBootstrap("envoy/envoy.yaml (embedded)", defaultYAML)
}

// DefaultYAML returns the embedded envoy.yaml as written.
func DefaultYAML() []byte {
	out := make([]byte, len(defaultYAML))
	copy(out, defaultYAML)
	return out
}

// FirstListener returns the bootstrap's first static listener.
func FirstListener(b *bootstrapv3.Bootstrap) (*listenerv3.Listener, error) {
	ls := b.GetStaticResources().GetListeners()
	if len(ls) == 0 {
		return nil, fmt.Errorf("static listener: %w", ErrNotFound)
	}
	return ls[0], nil
}

// HTTPConnectionManager decodes the HTTP connection manager of the first listener's first
// filter chain that has one.
func HTTPConnectionManager(b *bootstrapv3.Bootstrap) (*hcmv3.HttpConnectionManager, error) {
	l, err := FirstListener(b)
	if err != nil {
		return nil, err
	}
	for _, fc := range l.GetFilterChains() {
		for _, f := range fc.GetFilters() {
			tc := f.GetTypedConfig()
			if tc == nil {
				continue
			}
			hcm := &hcmv3.HttpConnectionManager{}
			if !tc.MessageIs(hcm) {
				continue
			}
			if err := tc.UnmarshalTo(hcm); err != nil {
				return nil, fmt.Errorf("listener %s: decode %s: %w", l.GetName(), f.GetName(), err)
			}
			return hcm, nil
		}
	}
	return nil, fmt.Errorf("listener %s: http connection manager: %w", l.GetName(), ErrNotFound)
}

// ExtProcFilter decodes the ext_proc filter configuration from the first listener's HTTP
// connection manager.
func ExtProcFilter(b *bootstrapv3.Bootstrap) (*extprocv3.ExternalProcessor, error) {
	hcm, err := HTTPConnectionManager(b)
	if err != nil {
		return nil, err
	}
	for _, f := range hcm.GetHttpFilters() {
		tc := f.GetTypedConfig()
		if tc == nil {
			continue
		}
		ep := &extprocv3.ExternalProcessor{}
		if !tc.MessageIs(ep) {
			continue
		}
		if err := tc.UnmarshalTo(ep); err != nil {
			return nil, fmt.Errorf("http filter %s: decode: %w", f.GetName(), err)
		}
		return ep, nil
	}
	return nil, fmt.Errorf("http filter %s: %w", ExtProcFilterName, ErrNotFound)
}

// FirstRoute returns the first route of the first virtual host in the HTTP connection
// manager's inline route_config.
func FirstRoute(b *bootstrapv3.Bootstrap) (*routev3.Route, error) {
	hcm, err := HTTPConnectionManager(b)
	if err != nil {
		return nil, err
	}
	for _, vh := range hcm.GetRouteConfig().GetVirtualHosts() {
		if rs := vh.GetRoutes(); len(rs) > 0 {
			return rs[0], nil
		}
	}
	return nil, fmt.Errorf("inline route_config route: %w", ErrNotFound)
}

// Cluster returns the static cluster called name.
func Cluster(b *bootstrapv3.Bootstrap, name string) (*clusterv3.Cluster, error) {
	for _, c := range b.GetStaticResources().GetClusters() {
		if c.GetName() == name {
			return c, nil
		}
	}
	return nil, fmt.Errorf("cluster %q: %w", name, ErrNotFound)
}
