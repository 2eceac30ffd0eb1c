package compiler

import (
	"crypto/sha256"
	"fmt"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
)

// anyMessage is the protobuf Any type.
type anyMessage = anypb.Any

// marshalAny packs m into an Any with a deterministic encoding, so that
// equal configs hash equally.
func marshalAny(m proto.Message) (*anypb.Any, error) {
	a := &anypb.Any{}
	if err := anypb.MarshalFrom(a, m, proto.MarshalOptions{Deterministic: true}); err != nil {
		return nil, fmt.Errorf("packing %s: %w", m.ProtoReflect().Descriptor().FullName(), err)
	}
	return a, nil
}

// check runs ValidateAll on every resource and every typed config packed
// in it, then checks that every reference resolves: listener -> route
// configuration, route -> cluster, EDS cluster -> ClusterLoadAssignment,
// and that no domain appears in two VirtualHosts of a RouteConfiguration.
func (r *resources) check() error {
	if err := r.validateAll(); err != nil {
		return err
	}

	routes := map[string]bool{}
	for _, rc := range r.routes {
		if routes[rc.GetName()] {
			return fmt.Errorf("route configuration %s is defined twice", rc.GetName())
		}
		routes[rc.GetName()] = true
	}
	for _, l := range r.listeners {
		for _, name := range listenerRoutes(l) {
			if !routes[name] {
				return fmt.Errorf("listener %s: route configuration %s does not exist", l.GetName(), name)
			}
		}
	}
	clusters := map[string]*clusterv3.Cluster{}
	for _, c := range r.clusters {
		if clusters[c.GetName()] != nil {
			return fmt.Errorf("cluster %s is defined twice", c.GetName())
		}
		clusters[c.GetName()] = c
	}
	for _, rc := range r.routes {
		if err := checkRouteConfiguration(rc, clusters); err != nil {
			return err
		}
	}
	if err := checkListeners(r.listeners, clusters); err != nil {
		return err
	}
	clas := map[string]bool{}
	for _, e := range r.endpoints {
		clas[e.GetClusterName()] = true
	}
	for _, c := range r.clusters {
		if c.GetType() != clusterv3.Cluster_EDS {
			continue
		}
		name := c.GetEdsClusterConfig().GetServiceName()
		if name == "" {
			name = c.GetName()
		}
		if !clas[name] {
			return fmt.Errorf("cluster %s: cluster load assignment %s does not exist", c.GetName(), name)
		}
	}
	return nil
}

// checkItem is one resource validateAll validates, and how its error
// names it.
type checkItem struct {
	m    proto.Message
	what string
	name string
}

// validateAll validates every resource (see validateResource) on all
// cores and keeps each encoding in r.wire for snapshot, which hashes the
// same bytes. The error is the first resource's in build order (listeners,
// routes, clusters, endpoints), whatever the schedule.
func (r *resources) validateAll() error {
	items := make([]checkItem, 0, len(r.listeners)+len(r.routes)+len(r.clusters)+len(r.endpoints))
	for _, l := range r.listeners {
		items = append(items, checkItem{l, "listener", l.GetName()})
	}
	for _, rc := range r.routes {
		items = append(items, checkItem{rc, "route configuration", rc.GetName()})
	}
	for _, c := range r.clusters {
		items = append(items, checkItem{c, "cluster", c.GetName()})
	}
	for _, e := range r.endpoints {
		items = append(items, checkItem{e, "cluster load assignment", e.GetClusterName()})
	}
	wires := make([][]byte, len(items))
	errs := make([]error, len(items))
	parallelFor(len(items), func(i int) { wires[i], errs[i] = r.validateResource(items[i].m) })
	if r.wire == nil {
		r.wire = make(map[proto.Message][]byte, len(items))
	}
	for i, it := range items {
		if errs[i] != nil {
			return fmt.Errorf("invalid %s %s: %w", it.what, it.name, errs[i])
		}
		if wires[i] != nil {
			r.wire[it.m] = wires[i]
		}
	}
	return nil
}

// validateResource runs validateDeep on m, unless r.cache saw a resource
// with the same deterministic encoding pass before, and returns that
// encoding (nil when m does not encode: snapshot then reports the error).
// It is safe to call for several resources at once: it only reads r, and
// the Cache has its own lock.
func (r *resources) validateResource(m proto.Message) ([]byte, error) {
	if rc, ok := m.(*routev3.RouteConfiguration); ok {
		if wire, ok, err := r.routeConfigWire(rc); ok {
			return wire, err
		}
	}
	if r.cache != nil && r.shared[m] {
		if b, ok := r.cache.encodedOf(m); ok {
			return b, nil
		}
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		return nil, validateDeep(m, r.anyTypes)
	}
	if r.cache == nil {
		return b, validateEncoded(m, b, r.anyTypes)
	}
	h := keyHash{sha256.New()}
	h.str(string(m.ProtoReflect().Descriptor().FullName()))
	h.Write(b)
	sum := h.sum()
	if !r.cache.validated(sum) {
		if err := validateEncoded(m, b, r.anyTypes); err != nil {
			return nil, err
		}
		r.cache.putValid(sum)
	}
	if r.shared[m] {
		r.cache.putEncoded(m, b)
	}
	return b, nil
}

// listenerRoutes returns the RouteConfiguration names a listener's HTTP
// connection managers read over RDS.
func listenerRoutes(l *listenerv3.Listener) []string {
	var out []string
	for _, fc := range l.GetFilterChains() {
		for _, f := range fc.GetFilters() {
			hcm := &hcmv3.HttpConnectionManager{}
			if f.GetTypedConfig() == nil || !f.GetTypedConfig().MessageIs(hcm) || f.GetTypedConfig().UnmarshalTo(hcm) != nil {
				continue
			}
			if name := hcm.GetRds().GetRouteConfigName(); name != "" {
				out = append(out, name)
			}
		}
	}
	return out
}

func checkRouteConfiguration(rc *routev3.RouteConfiguration, clusters map[string]*clusterv3.Cluster) error {
	domains := map[string]string{}
	for _, vh := range rc.GetVirtualHosts() {
		for _, d := range vh.GetDomains() {
			if other, ok := domains[d]; ok {
				return fmt.Errorf("route configuration %s: domain %q is in virtual hosts %s and %s", rc.GetName(), d, other, vh.GetName())
			}
			domains[d] = vh.GetName()
		}
		for _, rt := range vh.GetRoutes() {
			for _, name := range routeClusters(rt) {
				if clusters[name] == nil {
					return fmt.Errorf("route configuration %s, virtual host %s: cluster %s does not exist", rc.GetName(), vh.GetName(), name)
				}
			}
		}
	}
	return nil
}

// checkListeners checks that no two listeners share a name or an address
// and that every TCP proxy's clusters exist.
func checkListeners(listeners []*listenerv3.Listener, clusters map[string]*clusterv3.Cluster) error {
	names, addrs := map[string]bool{}, map[string]string{}
	for _, l := range listeners {
		if names[l.GetName()] {
			return fmt.Errorf("listener %s is defined twice", l.GetName())
		}
		names[l.GetName()] = true
		if sa := l.GetAddress().GetSocketAddress(); sa != nil {
			addr := fmt.Sprintf("%s:%d", sa.GetAddress(), sa.GetPortValue())
			if other, ok := addrs[addr]; ok {
				return fmt.Errorf("listeners %s and %s both bind %s", other, l.GetName(), addr)
			}
			addrs[addr] = l.GetName()
		}
		for _, name := range listenerClusters(l) {
			if clusters[name] == nil {
				return fmt.Errorf("listener %s: cluster %s does not exist", l.GetName(), name)
			}
		}
	}
	return nil
}

// routeClusters returns the clusters a route forwards or mirrors to.
func routeClusters(rt *routev3.Route) []string {
	action := rt.GetRoute()
	var names []string
	if wc := action.GetWeightedClusters(); wc != nil {
		for _, c := range wc.GetClusters() {
			names = append(names, c.GetName())
		}
	} else if c := action.GetCluster(); c != "" {
		names = append(names, c)
	}
	for _, m := range action.GetRequestMirrorPolicies() {
		if c := m.GetCluster(); c != "" {
			names = append(names, c)
		}
	}
	return names
}

// listenerClusters returns the clusters a listener's TCP proxies forward
// to and its HTTP connection managers' tracers export spans to.
func listenerClusters(l *listenerv3.Listener) []string {
	var names []string
	for _, fc := range l.GetFilterChains() {
		for _, f := range fc.GetFilters() {
			if c := tracingCluster(f); c != "" {
				names = append(names, c)
				continue
			}
			tp := &tcpproxyv3.TcpProxy{}
			if f.GetTypedConfig() == nil || !f.GetTypedConfig().MessageIs(tp) || f.GetTypedConfig().UnmarshalTo(tp) != nil {
				continue
			}
			if c := tp.GetCluster(); c != "" {
				names = append(names, c)
			}
			for _, c := range tp.GetWeightedClusters().GetClusters() {
				if c.GetName() != "" {
					names = append(names, c.GetName())
				}
			}
		}
	}
	return names
}

// validator is implemented by every go-control-plane message
// (protoc-gen-validate).
type validator interface {
	ValidateAll() error
}

// validateDeep runs ValidateAll on m and on every message packed in an Any
// inside it, which ValidateAll itself does not look into. types (nil for
// none) lets it skip the sub-messages that cannot hold an Any.
func validateDeep(m proto.Message, types *anyTypes) error {
	if v, ok := m.(validator); ok {
		if err := v.ValidateAll(); err != nil {
			return err
		}
	}
	return walkAnys(m.ProtoReflect(), types)
}

func walkAnys(m protoreflect.Message, types *anyTypes) error {
	if a, ok := m.Interface().(*anypb.Any); ok {
		inner, err := a.UnmarshalNew()
		if err != nil {
			return fmt.Errorf("unpacking %s: %w", a.GetTypeUrl(), err)
		}
		if err := validateDeep(inner, types); err != nil {
			return fmt.Errorf("%s: %w", a.GetTypeUrl(), err)
		}
		return nil
	}
	switch m.Descriptor().FullName() {
	case "google.protobuf.Struct", "google.protobuf.Value", "google.protobuf.ListValue":
		return nil // metadata: cannot hold an Any
	}
	if types != nil && !types.mayHold(m.Descriptor()) {
		return nil
	}
	var err error
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsMap():
			if fd.MapValue().Kind() != protoreflect.MessageKind {
				return true
			}
			v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
				err = walkAnys(mv.Message(), types)
				return err == nil
			})
		case fd.Kind() != protoreflect.MessageKind && fd.Kind() != protoreflect.GroupKind:
		case fd.IsList():
			l := v.List()
			for i := 0; i < l.Len() && err == nil; i++ {
				err = walkAnys(l.Get(i).Message(), types)
			}
		default:
			err = walkAnys(v.Message(), types)
		}
		return err == nil
	})
	return err
}
