package review

import (
	"fmt"
	"sort"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/gitmesh/gitmesh/compiler"
)

// xDS resource kinds in a ResourceChange, in the order they are reported.
const (
	TypeListener = "listener"
	TypeRoute    = "route"
	TypeCluster  = "cluster"
	TypeEndpoint = "endpoints"
)

// maxFieldsShown bounds the changed fields listed for one resource.
const maxFieldsShown = 4

// ClassDiff is the xDS diff of one proxy class.
type ClassDiff struct {
	Class
	// BaseVersion and HeadVersion are the compiled Snapshot versions.
	BaseVersion string `json:"baseVersion"`
	HeadVersion string `json:"headVersion"`
	// Changes are the resources that differ: listeners, routes (one per
	// virtual host), clusters, endpoints; each sorted by name.
	Changes []ResourceChange `json:"changes"`
}

// ResourceChange is one xDS resource that differs.
type ResourceChange struct {
	// Type is listener, route, cluster or endpoints.
	Type string `json:"type"`
	// Name is the xDS name; for a route, "<route config>/<virtual host>".
	Name string `json:"name"`
	// Label is a short name for people: "reviews:9080", "reviews:9080/v2".
	Label string `json:"label"`
	// Change is added, removed or changed.
	Change string `json:"change"`
	// Detail says what changed, compactly: "v1 100% -> v1 90% / v2 10%".
	Detail string `json:"detail,omitempty"`
}

// diffClasses compiles base and head for every class and diffs them.
func diffClasses(base, head *compiler.Policy, classes []Class) ([]ClassDiff, error) {
	out := make([]ClassDiff, 0, len(classes))
	for _, c := range classes {
		bs, err := base.Compile(c.Class, nil)
		if err != nil {
			return nil, fmt.Errorf("compiling base for %s: %w", c.Name, err)
		}
		hs, err := head.Compile(c.Class, nil)
		if err != nil {
			return nil, fmt.Errorf("compiling head for %s: %w", c.Name, err)
		}
		cd := ClassDiff{Class: c, BaseVersion: bs.Version, HeadVersion: hs.Version, Changes: []ResourceChange{}}
		nc := namer{ns: c.Class.Namespace}
		cd.Changes = append(cd.Changes, diffGeneric(TypeListener, bs, hs, resourcev3.ListenerType, nc.plain)...)
		cd.Changes = append(cd.Changes, nc.diffRoutes(bs, hs)...)
		cd.Changes = append(cd.Changes, nc.diffClusters(bs, hs)...)
		cd.Changes = append(cd.Changes, nc.diffEndpoints(bs, hs)...)
		out = append(out, cd)
	}
	return out, nil
}

// resourcesOf returns a snapshot's resources of one type.
func resourcesOf(s *compiler.Snapshot, typeURL string) map[string]types.Resource {
	if s == nil || s.Resources == nil {
		return nil
	}
	return s.Resources.GetResources(typeURL)
}

// unionNames returns the names of a and b, sorted.
func unionNames[T any](a, b map[string]T) []string {
	var out []string
	for k := range a {
		out = append(out, k)
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

// diffGeneric diffs resources of one type by name, showing changed fields.
func diffGeneric(typ string, bs, hs *compiler.Snapshot, typeURL string, label func(string) string) []ResourceChange {
	a, b := resourcesOf(bs, typeURL), resourcesOf(hs, typeURL)
	var out []ResourceChange
	for _, n := range unionNames(a, b) {
		ar, br := a[n], b[n]
		rc := ResourceChange{Type: typ, Name: n, Label: label(n)}
		switch {
		case ar == nil:
			rc.Change = Added
		case br == nil:
			rc.Change = Removed
		case proto.Equal(ar, br):
			continue
		default:
			rc.Change, rc.Detail = Changed, protoFieldDiff(ar, br, nil)
		}
		out = append(out, rc)
	}
	return out
}

// protoFieldDiff lists the fields that differ between two messages, leaving
// out those skip says to.
func protoFieldDiff(a, b proto.Message, skip func(path string) bool) string {
	d := &differ{}
	d.diff("", protoValue(a), protoValue(b))
	var parts []string
	for _, c := range d.out {
		if skip != nil && skip(c.Path) {
			continue
		}
		parts = append(parts, c.String())
	}
	if len(parts) > maxFieldsShown {
		parts = append(parts[:maxFieldsShown], fmt.Sprintf("(%d more)", len(parts)-maxFieldsShown))
	}
	return strings.Join(parts, "; ")
}

func protoValue(m proto.Message) any {
	b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(m)
	if err != nil {
		return nil
	}
	v, err := decodeJSON(b)
	if err != nil {
		return nil
	}
	return v
}

// namer shortens xDS names for a class in namespace ns.
type namer struct {
	ns string
}

func (namer) plain(s string) string { return s }

// host shortens an FQDN: "reviews.default.svc.cluster.local" is "reviews"
// in namespace default, "reviews.default" elsewhere.
func (n namer) host(fqdn string) string {
	h := strings.TrimSuffix(fqdn, ".svc.cluster.local")
	if h != fqdn {
		h = strings.TrimSuffix(h, "."+n.ns)
	}
	return h
}

// cluster shortens "outbound|9080|v2|reviews.default.svc.cluster.local"
// to "reviews:9080/v2" and "inbound|8080||" to "inbound:8080".
func (n namer) cluster(name string) string {
	parts := strings.Split(name, "|")
	if len(parts) != 4 {
		return name
	}
	if parts[0] == "inbound" {
		return "inbound:" + parts[1]
	}
	s := n.host(parts[3]) + ":" + parts[1]
	if parts[2] != "" {
		s += "/" + parts[2]
	}
	return s
}

// vhost shortens "reviews.default.svc.cluster.local:9080" to "reviews:9080".
func (n namer) vhost(rc, name string) string {
	if i := strings.LastIndexByte(name, ':'); i > 0 {
		name = n.host(name[:i]) + name[i:]
	}
	if rc == "outbound" {
		return name
	}
	return rc + "/" + name
}

// diffRoutes diffs route configurations virtual host by virtual host.
func (n namer) diffRoutes(bs, hs *compiler.Snapshot) []ResourceChange {
	a, b := resourcesOf(bs, resourcev3.RouteType), resourcesOf(hs, resourcev3.RouteType)
	var out []ResourceChange
	for _, rcName := range unionNames(a, b) {
		av, bv := vhosts(a[rcName]), vhosts(b[rcName])
		for _, vn := range unionNames(av, bv) {
			va, vb := av[vn], bv[vn]
			rc := ResourceChange{Type: TypeRoute, Name: rcName + "/" + vn, Label: n.vhost(rcName, vn)}
			switch {
			case va == nil:
				rc.Change, rc.Detail = Added, n.routes(vb)
			case vb == nil:
				rc.Change, rc.Detail = Removed, n.routes(va)
			case proto.Equal(va, vb):
				continue
			default:
				rc.Change = Changed
				if sa, sb := n.routes(va), n.routes(vb); sa != sb {
					rc.Detail = sa + " -> " + sb
				} else {
					rc.Detail = protoFieldDiff(va, vb, nil)
				}
			}
			out = append(out, rc)
		}
	}
	return out
}

func vhosts(r types.Resource) map[string]*routev3.VirtualHost {
	rc, ok := r.(*routev3.RouteConfiguration)
	if !ok {
		return nil
	}
	m := make(map[string]*routev3.VirtualHost, len(rc.GetVirtualHosts()))
	for _, vh := range rc.GetVirtualHosts() {
		m[vh.GetName()] = vh
	}
	return m
}

// routes summarizes a virtual host's routes in order: "v1 100%" for one
// catch-all route, "header end-user=jason: v2 100%; v1 100%" for more.
func (n namer) routes(vh *routev3.VirtualHost) string {
	host := vh.GetName()
	if i := strings.LastIndexByte(host, ':'); i > 0 {
		host = host[:i]
	}
	var parts []string
	for _, r := range vh.GetRoutes() {
		s := n.action(host, r)
		if m := match(r.GetMatch()); m != "" {
			s = m + ": " + s
		}
		parts = append(parts, s)
	}
	if len(parts) == 0 {
		return "(no routes)"
	}
	return strings.Join(parts, "; ")
}

func match(m *routev3.RouteMatch) string {
	var parts []string
	switch {
	case m.GetPath() != "":
		parts = append(parts, "path "+m.GetPath())
	case m.GetSafeRegex() != nil:
		parts = append(parts, "regex "+m.GetSafeRegex().GetRegex())
	case m.GetPrefix() != "" && m.GetPrefix() != "/":
		parts = append(parts, "prefix "+m.GetPrefix())
	}
	for _, h := range m.GetHeaders() {
		switch {
		case h.GetPresentMatch():
			parts = append(parts, "header "+h.GetName())
		case h.GetStringMatch() != nil:
			parts = append(parts, "header "+h.GetName()+"="+redactHeader(h.GetName(), h.GetStringMatch().GetExact()))
		default:
			parts = append(parts, "header "+h.GetName()+" (match)")
		}
	}
	return strings.Join(parts, " ")
}

// redactHeader hides the value of a header that carries credentials.
func redactHeader(name, value string) string {
	if secretKey.MatchString(name) || strings.EqualFold(name, "cookie") {
		return redacted
	}
	return value
}

// action writes where a route sends traffic: "v1 90% / v2 10%". Clusters of
// the virtual host's own service show only their subset.
func (n namer) action(host string, r *routev3.Route) string {
	ra := r.GetRoute()
	if ra == nil {
		return "(no route action)"
	}
	dest := func(cluster string) string {
		parts := strings.Split(cluster, "|")
		if len(parts) == 4 && parts[3] == host && parts[2] != "" {
			return parts[2]
		}
		if len(parts) == 4 && parts[3] == host {
			return n.host(host)
		}
		return n.cluster(cluster)
	}
	if c := ra.GetCluster(); c != "" {
		return dest(c) + " 100%"
	}
	wc := ra.GetWeightedClusters()
	var total uint64
	for _, c := range wc.GetClusters() {
		total += uint64(c.GetWeight().GetValue())
	}
	var parts []string
	for _, c := range wc.GetClusters() {
		pct := uint64(0)
		if total > 0 {
			pct = (uint64(c.GetWeight().GetValue())*100 + total/2) / total
		}
		parts = append(parts, fmt.Sprintf("%s %d%%", dest(c.GetName()), pct))
	}
	return strings.Join(parts, " / ")
}

// diffClusters diffs clusters; an inline load assignment (DNS clusters)
// is shown as an endpoint diff.
func (n namer) diffClusters(bs, hs *compiler.Snapshot) []ResourceChange {
	a, b := resourcesOf(bs, resourcev3.ClusterType), resourcesOf(hs, resourcev3.ClusterType)
	var out []ResourceChange
	for _, name := range unionNames(a, b) {
		ca, _ := a[name].(*clusterv3.Cluster)
		cb, _ := b[name].(*clusterv3.Cluster)
		rc := ResourceChange{Type: TypeCluster, Name: name, Label: n.cluster(name)}
		switch {
		case ca == nil:
			rc.Change = Added
		case cb == nil:
			rc.Change = Removed
		case proto.Equal(ca, cb):
			continue
		default:
			rc.Change = Changed
			var parts []string
			if f := protoFieldDiff(ca, cb, func(p string) bool { return strings.HasPrefix(p, "load_assignment") }); f != "" {
				parts = append(parts, f)
			}
			if !proto.Equal(ca.GetLoadAssignment(), cb.GetLoadAssignment()) {
				parts = append(parts, endpointDiff(ca.GetLoadAssignment(), cb.GetLoadAssignment()))
			}
			rc.Detail = strings.Join(parts, "; ")
		}
		out = append(out, rc)
	}
	return out
}

// diffEndpoints diffs ClusterLoadAssignments endpoint by endpoint.
func (n namer) diffEndpoints(bs, hs *compiler.Snapshot) []ResourceChange {
	a, b := resourcesOf(bs, resourcev3.EndpointType), resourcesOf(hs, resourcev3.EndpointType)
	var out []ResourceChange
	for _, name := range unionNames(a, b) {
		ea, _ := a[name].(*endpointv3.ClusterLoadAssignment)
		eb, _ := b[name].(*endpointv3.ClusterLoadAssignment)
		rc := ResourceChange{Type: TypeEndpoint, Name: name, Label: n.cluster(name)}
		switch {
		case ea == nil:
			rc.Change, rc.Detail = Added, endpointList(eb)
		case eb == nil:
			rc.Change = Removed
		case proto.Equal(ea, eb):
			continue
		default:
			rc.Change, rc.Detail = Changed, endpointDiff(ea, eb)
		}
		out = append(out, rc)
	}
	return out
}

// lbEndpoint is one endpoint as a diff sees it.
type lbEndpoint struct {
	addr     string
	weight   uint32
	workload string
}

func endpointsOf(cla *endpointv3.ClusterLoadAssignment) map[string]lbEndpoint {
	m := map[string]lbEndpoint{}
	for _, l := range cla.GetEndpoints() {
		for _, e := range l.GetLbEndpoints() {
			sa := e.GetEndpoint().GetAddress().GetSocketAddress()
			addr := fmt.Sprintf("%s:%d", sa.GetAddress(), sa.GetPortValue())
			w := e.GetLoadBalancingWeight().GetValue()
			if w == 0 {
				w = 1
			}
			wl := ""
			if md := e.GetMetadata().GetFilterMetadata()["istio"]; md != nil {
				wl = md.GetFields()["workload"].GetStringValue()
			}
			m[addr] = lbEndpoint{addr: addr, weight: w, workload: wl}
		}
	}
	return m
}

// String writes "addr (workload) weight N", leaving out what is unset or 1.
func (e lbEndpoint) String() string {
	s := e.addr
	if e.workload != "" {
		s += " (" + e.workload + ")"
	}
	if e.weight != 1 {
		s += fmt.Sprintf(" weight %d", e.weight)
	}
	return s
}

// endpointList writes "10.0.0.1:9080 (reviews-v1), ..." or "(no endpoints)".
func endpointList(cla *endpointv3.ClusterLoadAssignment) string {
	m := endpointsOf(cla)
	if len(m) == 0 {
		return "(no endpoints)"
	}
	var parts []string
	for _, k := range unionNames(m, nil) {
		parts = append(parts, m[k].String())
	}
	return strings.Join(parts, ", ")
}

// endpointDiff writes "+10.0.0.3:9080, -10.0.0.1:9080, 10.0.0.2:9080 weight 1 -> 3".
func endpointDiff(a, b *endpointv3.ClusterLoadAssignment) string {
	ma, mb := endpointsOf(a), endpointsOf(b)
	var parts []string
	for _, k := range unionNames(ma, mb) {
		ea, inA := ma[k]
		eb, inB := mb[k]
		switch {
		case !inA:
			parts = append(parts, "+"+eb.String())
		case !inB:
			parts = append(parts, "-"+ea.String())
		case ea.weight != eb.weight:
			parts = append(parts, fmt.Sprintf("%s weight %d -> %d", k, ea.weight, eb.weight))
		case ea != eb:
			parts = append(parts, k+" metadata changed")
		}
	}
	if len(parts) == 0 {
		return "endpoint metadata changed"
	}
	return strings.Join(parts, ", ")
}
