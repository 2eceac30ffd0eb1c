package review

import (
	"fmt"
	"sort"
	"strings"

	"github.com/gitmesh/gitmesh/api/admin"
	"github.com/gitmesh/gitmesh/api/nodemeta"
)

// Class is a ProxyClass to compile both sides for, with a name for people
// and, for live classes, how many connected proxies it has.
type Class struct {
	// Name is how renderers show the class, e.g. "reviews (sidecar, default)".
	Name string `json:"name"`
	// Class is what Policy.Compile is given.
	Class nodemeta.ProxyClass `json:"class"`
	// Proxies is how many connected proxies are in the class (live
	// classes only).
	Proxies int `json:"proxies,omitempty"`
}

// NewClass returns the Class of a role, namespace and service (a sidecar
// class gets a placeholder outbound listener so its routes compile).
func NewClass(role, namespace, service string) Class {
	if role == "" {
		role = nodemeta.RoleSidecar
	}
	if namespace == "" {
		namespace = nodemeta.DefaultNamespace
	}
	pc := nodemeta.ProxyClass{Role: role, Namespace: namespace, Service: service}
	if role == nodemeta.RoleSidecar {
		pc = nodemeta.SidecarClass(namespace, service)
	}
	return Class{Name: className(pc), Class: pc}
}

func className(pc nodemeta.ProxyClass) string {
	switch {
	case pc.Role == nodemeta.RoleGateway && (pc.Service == "" || pc.Service == "gateway"):
		return fmt.Sprintf("gateways (%s)", pc.Namespace)
	case pc.Service == "":
		return fmt.Sprintf("any %s (%s)", pc.Role, pc.Namespace)
	}
	return fmt.Sprintf("%s (%s, %s)", pc.Service, pc.Role, pc.Namespace)
}

// ParseClass reads a --proxy-class value: comma-separated key=value pairs
// with keys role (sidecar or gateway, default sidecar), service, namespace
// (default "default") and generator (grpc), e.g.
// "role=sidecar,service=reviews,namespace=default".
func ParseClass(s string) (Class, error) {
	var role, ns, svc, gen string
	for _, kv := range strings.Split(s, ",") {
		kv = strings.TrimSpace(kv)
		if kv == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return Class{}, fmt.Errorf("proxy class %q: %q is not key=value", s, kv)
		}
		switch k {
		case "role":
			if v != nodemeta.RoleSidecar && v != nodemeta.RoleGateway {
				return Class{}, fmt.Errorf("proxy class %q: role %q: want sidecar or gateway", s, v)
			}
			role = v
		case "service":
			svc = v
		case "namespace":
			ns = v
		case "generator":
			gen = v
		default:
			return Class{}, fmt.Errorf("proxy class %q: unknown key %q (want role, service, namespace, generator)", s, k)
		}
	}
	c := NewClass(role, ns, svc)
	if gen != "" {
		c.Class.Generator = gen
		c.Class.Outbound = ""
		c.Name = fmt.Sprintf("%s (%s client, %s)", orAny(svc), gen, c.Class.Namespace)
	}
	return c, nil
}

func orAny(s string) string {
	if s == "" {
		return "any"
	}
	return s
}

// DeriveClasses returns the classes a policy implies, over every side given:
// one sidecar class per service that a ServiceEntry with a workloadSelector
// declares (with the selector's labels, so Sidecar scopes apply), one
// generic sidecar class per namespace ("any sidecar"), and one gateway class
// per distinct Gateway selector, listening on every server port of the
// Gateways with that selector. The result is sorted by name.
func DeriveClasses(namespace string, sides ...*Side) []Class {
	if namespace == "" {
		namespace = nodemeta.DefaultNamespace
	}
	seen := map[string]Class{}
	add := func(c Class) { seen[c.Class.Key()] = c }
	add(NewClass(nodemeta.RoleSidecar, namespace, ""))
	type gatewayClass struct {
		ns     string
		labels map[string]string
		ports  map[uint32]bool
	}
	gateways := map[string]*gatewayClass{}
	for _, s := range sides {
		if s == nil || s.Policy == nil {
			continue
		}
		for _, se := range s.Policy.ServiceEntries {
			sel := se.Spec.GetWorkloadSelector()
			if sel == nil {
				continue
			}
			for _, h := range se.Spec.GetHosts() {
				c := NewClass(nodemeta.RoleSidecar, se.Namespace, serviceName(h, se.Namespace))
				c.Class.Labels = copyLabels(sel.GetLabels())
				add(c)
			}
			add(NewClass(nodemeta.RoleSidecar, se.Namespace, ""))
		}
		for _, gw := range s.Policy.Gateways {
			key := gw.Namespace + "/" + nodemeta.FormatLabels(gw.Spec.GetSelector())
			g := gateways[key]
			if g == nil {
				g = &gatewayClass{ns: gw.Namespace, labels: copyLabels(gw.Spec.GetSelector()), ports: map[uint32]bool{}}
				gateways[key] = g
			}
			for _, srv := range gw.Spec.GetServers() {
				if n := srv.GetPort().GetNumber(); n > 0 && n <= 65535 {
					g.ports[n] = true
				}
			}
		}
	}
	for _, g := range gateways {
		c := NewClass(nodemeta.RoleGateway, g.ns, "gateway")
		c.Class.Labels = g.labels
		ports := make([]int, 0, len(g.ports))
		for p := range g.ports {
			ports = append(ports, int(p))
		}
		sort.Ints(ports)
		for _, p := range ports {
			c.Class.Gateway = append(c.Class.Gateway, fmt.Sprintf("0.0.0.0:%d", p))
		}
		if len(g.labels) > 0 {
			c.Name = fmt.Sprintf("gateways %s (%s)", nodemeta.FormatLabels(g.labels), g.ns)
		}
		add(c)
	}
	return sortClasses(seen)
}

func copyLabels(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// WithLiveCounts returns classes with the live proxies of live counted in:
// a live class (role, namespace, service) adds its proxies to the first of
// classes with the same role, namespace and service (for gateways, the
// same namespace), or is appended as a class of its own when none matches.
// The admin API reports neither labels nor listener addresses, so this is
// how live proxies find the config they would get.
func WithLiveCounts(classes, live []Class) []Class {
	out := make([]Class, len(classes))
	copy(out, classes)
	for i := range out {
		out[i].Proxies = 0
	}
	for _, l := range live {
		matched := false
		for i := range out {
			c := out[i].Class
			if c.Role != l.Class.Role || c.Namespace != l.Class.Namespace {
				continue
			}
			if c.Role == nodemeta.RoleSidecar && c.Service != l.Class.Service {
				continue
			}
			out[i].Proxies += l.Proxies
			matched = true
			break
		}
		if !matched {
			out = append(out, l)
		}
	}
	return out
}

// serviceName is the service a host names: "reviews" for "reviews",
// "reviews.<ns>" or "reviews.<ns>.svc.cluster.local".
func serviceName(host, ns string) string {
	h := strings.TrimSuffix(host, ".svc.cluster.local")
	h = strings.TrimSuffix(h, "."+ns)
	return h
}

// LiveClasses returns the classes of the connected proxies in st, by role,
// namespace and service, with how many proxies each has. The admin API does
// not report labels or listener addresses, so proxies of a service share a
// class here.
func LiveClasses(st *admin.Status) []Class {
	seen := map[string]Class{}
	for _, p := range st.Proxies {
		if !p.Connected {
			continue
		}
		role := p.Role
		svc := p.Service
		if role == nodemeta.RoleGateway && svc == "" {
			svc = "gateway"
		}
		c := NewClass(role, p.Namespace, svc)
		if old, ok := seen[c.Class.Key()]; ok {
			c = old
		}
		c.Proxies++
		seen[c.Class.Key()] = c
	}
	return sortClasses(seen)
}

func sortClasses(m map[string]Class) []Class {
	out := make([]Class, 0, len(m))
	for _, c := range m {
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i].Class, out[j].Class
		if a.Role != b.Role {
			return a.Role > b.Role // sidecars first
		}
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		if (a.Service == "") != (b.Service == "") {
			return a.Service != "" // "any sidecar" last
		}
		return a.Service < b.Service
	})
	return out
}
