// Package nodemeta is the identity contract between a proxy and the
// controller (docs/architecture.md, "Proxy classes"): how a proxy announces its role,
// workload and listening ports in its xDS node metadata, and the ProxyClass
// the compiler derives from it.
//
// The proxy writes it (Workload.Node); the xds server and the compiler read
// it (FromNode). Keys follow Istio's where Istio has one (NAMESPACE, LABELS,
// GENERATOR), so a stock Envoy or grpc-go client can be described too.
package nodemeta

import (
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/types/known/structpb"
)

// Roles a node can have.
const (
	RoleSidecar = "sidecar"
	RoleGateway = "gateway"
)

// GeneratorGRPC is the GENERATOR value of a proxyless gRPC client.
const GeneratorGRPC = "grpc"

// Metadata keys.
const (
	KeyRole      = "ROLE"
	KeyNamespace = "NAMESPACE"
	KeyLabels    = "LABELS"
	KeyGenerator = "GENERATOR"
	KeyOutbound  = "OUTBOUND_ADDR" // host:port of the sidecar's outbound listener
	KeyInbound   = "INBOUND_ADDR"  // host:port of the sidecar's inbound listener (its endpoint address)
	KeyApp       = "APP_ADDR"      // host:port of the local application the inbound listener forwards to
	KeyGateway   = "GATEWAY_ADDRS" // comma-separated host:port list a gateway binds (one per Gateway server port)
	KeyAdmin     = "ADMIN_ADDR"    // host:port of the proxy's admin endpoint (/metrics, /config_dump)

	// Pod identity, as Istio's sidecar announces it from the downward API
	// (POD_NAME, SERVICE_ACCOUNT, INSTANCE_IP; the pod's namespace is
	// NAMESPACE). The Kubernetes mode checks them against the Pod.
	KeyPodName        = "NAME"            // the pod's name
	KeyServiceAccount = "SERVICE_ACCOUNT" // the pod's service account
	KeyInstanceIPs    = "INSTANCE_IPS"    // comma-separated pod IPs
	// KeyInterception is Istio's INTERCEPTION_MODE: InterceptionRedirect
	// when iptables redirects the workload's traffic to the sidecar
	// (`gitmesh proxy-init`), absent when nothing is captured.
	KeyInterception = "INTERCEPTION_MODE"
)

// InterceptionRedirect is the INTERCEPTION_MODE of a sidecar whose
// workload's TCP traffic iptables REDIRECTs to it, as Istio's.
const InterceptionRedirect = "REDIRECT"

// DefaultNamespace is the namespace of a node that announces none.
const DefaultNamespace = "default"

// Workload is what one node announces about itself.
type Workload struct {
	// ID is the node id, unique in the fleet.
	ID string `json:"id"`
	// Service is the node's service name (node.cluster); "gateway" for gateways.
	Service string `json:"service"`
	// Namespace defaults to DefaultNamespace.
	Namespace string `json:"namespace"`
	// Role is RoleSidecar (default) or RoleGateway.
	Role string `json:"role"`
	// Generator is GeneratorGRPC for proxyless gRPC clients, else "".
	Generator string `json:"generator,omitempty"`
	// Labels are the workload's labels (e.g. app=reviews, version=v2).
	Labels map[string]string `json:"labels,omitempty"`
	// Outbound, Inbound, App, Admin are host:port addresses ("" when unset).
	Outbound string `json:"outbound,omitempty"`
	Inbound  string `json:"inbound,omitempty"`
	App      string `json:"app,omitempty"`
	Admin    string `json:"admin,omitempty"`
	// Gateway lists the addresses a gateway binds.
	Gateway []string `json:"gateway,omitempty"`
	// Pod, ServiceAccount and InstanceIPs are the pod identity a proxy in
	// a Kubernetes pod announces (its namespace is Namespace); "" and nil
	// elsewhere. They do not change compiled output.
	Pod            string   `json:"pod,omitempty"`
	ServiceAccount string   `json:"serviceAccount,omitempty"`
	InstanceIPs    []string `json:"instanceIPs,omitempty"`
	// Interception is InterceptionRedirect when the workload's traffic is
	// captured by iptables (docs/capture.md), else "".
	Interception string `json:"interception,omitempty"`
}

// ProxyClass is the part of a Workload that changes compiled output.
// Nodes with equal ProxyClass keys share one compiled Snapshot.
//
// Listener addresses are part of the class (docs/architecture.md: listener ports come
// from node metadata so many proxies can share one host). On Kubernetes,
// where every sidecar uses the same ports, classes collapse to
// role/namespace/service/labels.
type ProxyClass struct {
	Role      string            `json:"role"`
	Generator string            `json:"generator,omitempty"`
	Namespace string            `json:"namespace"`
	Service   string            `json:"service"`
	Labels    map[string]string `json:"labels,omitempty"`
	Outbound  string            `json:"outbound,omitempty"`
	Inbound   string            `json:"inbound,omitempty"`
	App       string            `json:"app,omitempty"`
	Gateway   []string          `json:"gateway,omitempty"`
	// Interception is the Workload's: capture changes the outbound
	// listener (docs/xds-conventions.md, "Traffic capture").
	Interception string `json:"interception,omitempty"`
}

// placeholderOutbound is the outbound listener address of SidecarClass.
const placeholderOutbound = "127.0.0.1:15001"

// SidecarClass returns the ProxyClass of a sidecar of service (may be "")
// in namespace ns that announces only an outbound listener, at a
// placeholder address: what such a proxy sees of the policy. It compiles
// a revision when no real proxy is there to ask (the controller's probe,
// `gitmesh validate`, `gitmesh diff`).
func SidecarClass(ns, service string) ProxyClass {
	return ProxyClass{Role: RoleSidecar, Namespace: orDefault(ns, DefaultNamespace), Service: service, Outbound: placeholderOutbound}
}

// Class returns the workload's ProxyClass.
func (w Workload) Class() ProxyClass {
	return ProxyClass{
		Role: w.Role, Generator: w.Generator, Namespace: w.Namespace, Service: w.Service,
		Labels: w.Labels, Outbound: w.Outbound, Inbound: w.Inbound, App: w.App, Gateway: w.Gateway,
		Interception: w.Interception,
	}
}

// Key returns a canonical string for the class, usable as a map key.
func (c ProxyClass) Key() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s|%s|%s|%s|", c.Role, c.Generator, c.Namespace, c.Service)
	b.WriteString(FormatLabels(c.Labels))
	fmt.Fprintf(&b, "|%s|%s|%s|%s", c.Outbound, c.Inbound, c.App, strings.Join(c.Gateway, ","))
	if c.Interception != "" {
		b.WriteString("|" + c.Interception)
	}
	return b.String()
}

// FormatLabels writes labels as sorted "k=v,k=v".
func FormatLabels(labels map[string]string) string {
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + labels[k]
	}
	return strings.Join(parts, ",")
}

// ParseLabels reads "k=v,k=v" (the --labels flag). An empty string is no labels.
func ParseLabels(s string) (map[string]string, error) {
	out := map[string]string{}
	if strings.TrimSpace(s) == "" {
		return out, nil
	}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("parsing labels: %q is not key=value", kv)
		}
		out[k] = v
	}
	return out, nil
}

// Node returns the xDS node a proxy sends to announce w.
func (w Workload) Node() *corev3.Node {
	fields := map[string]*structpb.Value{
		KeyRole:      structpb.NewStringValue(orDefault(w.Role, RoleSidecar)),
		KeyNamespace: structpb.NewStringValue(orDefault(w.Namespace, DefaultNamespace)),
	}
	if len(w.Labels) > 0 {
		lv := map[string]*structpb.Value{}
		for k, v := range w.Labels {
			lv[k] = structpb.NewStringValue(v)
		}
		fields[KeyLabels] = structpb.NewStructValue(&structpb.Struct{Fields: lv})
	}
	for k, v := range map[string]string{
		KeyGenerator: w.Generator, KeyOutbound: w.Outbound, KeyInbound: w.Inbound,
		KeyApp: w.App, KeyAdmin: w.Admin, KeyGateway: strings.Join(w.Gateway, ","),
		KeyPodName: w.Pod, KeyServiceAccount: w.ServiceAccount, KeyInstanceIPs: strings.Join(w.InstanceIPs, ","),
		KeyInterception: w.Interception,
	} {
		if v != "" {
			fields[k] = structpb.NewStringValue(v)
		}
	}
	return &corev3.Node{
		Id:            w.ID,
		Cluster:       w.Service,
		Metadata:      &structpb.Struct{Fields: fields},
		UserAgentName: "gitmesh-proxy",
	}
}

// FromNode reads the Workload a node announces. It applies defaults (role
// sidecar, namespace default) and checks that addresses are host:port.
func FromNode(n *corev3.Node) (Workload, error) {
	if n == nil || n.GetId() == "" {
		return Workload{}, fmt.Errorf("reading node metadata: node id is empty")
	}
	md := n.GetMetadata().GetFields()
	str := func(k string) string { return md[k].GetStringValue() }
	w := Workload{
		ID:        n.GetId(),
		Service:   n.GetCluster(),
		Namespace: orDefault(str(KeyNamespace), DefaultNamespace),
		Role:      orDefault(str(KeyRole), RoleSidecar),
		Generator: str(KeyGenerator),
		Outbound:  str(KeyOutbound),
		Inbound:   str(KeyInbound),
		App:       str(KeyApp),
		Admin:     str(KeyAdmin),

		Pod:            str(KeyPodName),
		ServiceAccount: str(KeyServiceAccount),
		Interception:   str(KeyInterception),
	}
	if g := str(KeyGateway); g != "" {
		w.Gateway = strings.Split(g, ",")
	}
	if ips := str(KeyInstanceIPs); ips != "" {
		for _, ip := range strings.Split(ips, ",") {
			ip = strings.TrimSpace(ip)
			if net.ParseIP(ip) == nil {
				return Workload{}, fmt.Errorf("reading node %s metadata: %s: %q is not an IP address", w.ID, KeyInstanceIPs, ip)
			}
			w.InstanceIPs = append(w.InstanceIPs, ip)
		}
	}
	if lv := md[KeyLabels].GetStructValue(); lv != nil {
		w.Labels = map[string]string{}
		for k, v := range lv.GetFields() {
			w.Labels[k] = v.GetStringValue()
		}
	}
	if w.Interception != "" && w.Interception != InterceptionRedirect && w.Interception != "NONE" {
		return Workload{}, fmt.Errorf("reading node %s metadata: %s %q: only %q (or NONE) is supported", w.ID, KeyInterception, w.Interception, InterceptionRedirect)
	}
	if w.Interception == "NONE" {
		w.Interception = ""
	}
	if w.Role != RoleSidecar && w.Role != RoleGateway {
		return Workload{}, fmt.Errorf("reading node %s metadata: %s %q is neither %q nor %q", w.ID, KeyRole, w.Role, RoleSidecar, RoleGateway)
	}
	for _, a := range append([]string{w.Outbound, w.Inbound, w.App, w.Admin}, w.Gateway...) {
		if a == "" {
			continue
		}
		if _, err := SplitHostPort(a); err != nil {
			return Workload{}, fmt.Errorf("reading node %s metadata: %w", w.ID, err)
		}
	}
	return w, nil
}

// HostPort is a parsed host:port.
type HostPort struct {
	Host string
	Port uint32
}

// SplitHostPort parses "host:port" with a numeric port.
func SplitHostPort(addr string) (HostPort, error) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		return HostPort{}, fmt.Errorf("address %q: %w", addr, err)
	}
	n, err := strconv.ParseUint(p, 10, 16)
	if err != nil || n == 0 {
		return HostPort{}, fmt.Errorf("address %q: port must be 1-65535", addr)
	}
	if h == "" {
		h = "0.0.0.0"
	}
	return HostPort{Host: h, Port: uint32(n)}, nil
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
