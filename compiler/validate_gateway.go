package compiler

import (
	"fmt"
	"strings"

	networking "istio.io/api/networking/v1"
)

// gateway is a valid Gateway.
type gateway struct {
	obj      *Gateway
	key      string            // "namespace/name"
	selector map[string]string // empty: every gateway proxy
	servers  []*gatewayServer
	// dropped are servers left out for an error already reported (an
	// unsupported protocol, bad TLS settings); they are only used to
	// avoid follow-on diagnostics.
	dropped []*gatewayServer
}

// gatewayServer is a valid spec.servers entry.
type gatewayServer struct {
	gw       *gateway
	path     string // "spec.servers[0]"
	port     uint32
	portName string
	protocol string // HTTP, HTTP2, GRPC (plain) or HTTPS
	hosts    []hostFilter
	// rawHosts are the hosts as written, lower-cased ("ns/www.example.com",
	// "*"): IST0145 compares these strings.
	rawHosts []string
	// tls is spec.servers[].tls when the server terminates TLS (HTTPS);
	// nil for plain servers.
	tls           *networking.ServerTLSSettings
	httpsRedirect bool
}

// plain reports whether the server speaks HTTP without TLS.
func (s *gatewayServer) plain() bool { return s.tls == nil }

// checkGateway validates a Gateway.
func checkGateway(r *reporter, g *Gateway) *gateway {
	out := &gateway{obj: g, key: g.Namespace + "/" + g.Name, selector: copyLabels(g.Spec.GetSelector())}
	if len(g.Spec.GetServers()) == 0 {
		r.errorf(CodeMissingField, "spec.servers", "at least one server is required")
	}
	for i, s := range g.Spec.GetServers() {
		srv, ok := checkServer(r, fmt.Sprintf("spec.servers[%d]", i), s, g.Namespace)
		if srv == nil {
			continue
		}
		srv.gw = out
		if !ok {
			out.dropped = append(out.dropped, srv)
			continue
		}
		out.servers = append(out.servers, srv)
	}
	return out
}

// checkServer validates one Gateway server. It returns the server and
// whether it is valid; an invalid server (nil when it has no port) is
// only kept to avoid follow-on diagnostics.
func checkServer(r *reporter, path string, s *networking.Server, ns string) (*gatewayServer, bool) {
	ok := true
	pt := s.GetPort()
	if pt == nil {
		r.errorf(CodeMissingField, path+".port", "port is required")
		return nil, false
	}
	if !checkPort(r, path+".port.number", pt.GetNumber()) {
		ok = false
	}
	srv := &gatewayServer{path: path, port: pt.GetNumber(), portName: pt.GetName(), tls: s.GetTls()}
	proto := strings.ToUpper(pt.GetProtocol())
	switch proto {
	case protoHTTP, protoHTTP2, protoGRPC:
		srv.protocol = proto
		srv.httpsRedirect = s.GetTls().GetHttpsRedirect()
		if t := s.GetTls(); t != nil && t.GetMode() != networking.ServerTLSSettings_PASSTHROUGH {
			r.errorf(CodeConflictingFields, path+".tls", "a %s server only takes tls.httpsRedirect; use protocol HTTPS to terminate TLS", proto)
			ok = false
		}
		srv.tls = nil
	case "HTTPS":
		srv.protocol = proto
		ok = checkServerTLS(r, path+".tls", s.GetTls()) && ok
	case "":
		r.errorf(CodeMissingField, path+".port.protocol", "protocol is required (HTTP, HTTPS, HTTP2, GRPC)")
		ok = false
	case "TCP", "TLS", "MONGO", "REDIS", "MYSQL", "GRPC-WEB", "HBONE":
		r.errorf(CodeUnsupportedValue, path+".port.protocol", "gateway protocol %s is not supported yet (HTTP, HTTPS, HTTP2 and GRPC are)", proto)
		ok = false
	default:
		r.errorf(CodeInvalidValue, path+".port.protocol", "protocol %q is not a protocol Istio knows (HTTP, HTTPS, HTTP2, GRPC, TCP, TLS, ...)", pt.GetProtocol())
		ok = false
	}
	if len(s.GetHosts()) == 0 {
		r.errorf(CodeMissingField, path+".hosts", "at least one host is required")
		ok = false
	}
	for i, h := range s.GetHosts() {
		if f, hok := checkHostFilter(r, fmt.Sprintf("%s.hosts[%d]", path, i), h, ns, true); hok {
			srv.hosts = append(srv.hosts, f)
			srv.rawHosts = append(srv.rawHosts, strings.ToLower(h))
		}
	}
	return srv, ok
}

// checkServerTLS validates the tls of an HTTPS server: SIMPLE (server
// certificate and key files) or MUTUAL (plus CA certificates).
func checkServerTLS(r *reporter, path string, t *networking.ServerTLSSettings) bool {
	if t == nil {
		r.errorf(CodeMissingField, path, "tls is required for an HTTPS server")
		return false
	}
	ok := true
	switch t.GetMode() {
	case networking.ServerTLSSettings_SIMPLE, networking.ServerTLSSettings_MUTUAL:
	default:
		r.errorf(CodeUnsupportedValue, path+".mode", "tls mode %s is not supported yet (SIMPLE and MUTUAL are)", t.GetMode())
		return false
	}
	if t.GetHttpsRedirect() {
		r.errorf(CodeConflictingFields, path+".httpsRedirect", "httpsRedirect belongs on the plain HTTP server")
		ok = false
	}
	if t.GetServerCertificate() == "" {
		r.errorf(CodeMissingField, path+".serverCertificate", "serverCertificate (a file path) is required (credentialName is not supported)")
		ok = false
	}
	if t.GetPrivateKey() == "" {
		r.errorf(CodeMissingField, path+".privateKey", "privateKey (a file path) is required (credentialName is not supported)")
		ok = false
	}
	if t.GetMode() == networking.ServerTLSSettings_MUTUAL && t.GetCaCertificates() == "" {
		r.errorf(CodeMissingField, path+".caCertificates", "caCertificates is required with mode MUTUAL")
		ok = false
	}
	minV, maxV := t.GetMinProtocolVersion(), t.GetMaxProtocolVersion()
	if minV != networking.ServerTLSSettings_TLS_AUTO && maxV != networking.ServerTLSSettings_TLS_AUTO && minV > maxV {
		r.errorf(CodeConflictingFields, path+".minProtocolVersion", "minProtocolVersion %s is above maxProtocolVersion %s", minV, maxV)
		ok = false
	}
	return ok
}

// linkGateways validates every Gateway and reports servers of different
// Gateways that select the same proxies and list the same host on the
// same port (istioctl IST0145 ConflictingGateways: identical host strings
// only; overlapping hosts such as "*" and "www.example.com" are merged,
// the most specific host winning per request). Istio keeps the first
// server and skips the later one; so does gitmesh. A server on a port
// another Gateway already serves with the other kind of protocol (plain
// HTTP against HTTPS) is skipped too, with a warning (Istio drops it as
// well, silently).
func (p *Policy) linkGateways(diags *Diagnostics) {
	p.gateways = map[string]*gateway{}
	type claim struct {
		srv *gatewayServer
		sel string
	}
	var claims []claim
	for _, g := range p.Gateways {
		r := newReporter(&g.Meta, KindGateway, diags)
		gw := checkGateway(r, g)
		sel := formatSelector(gw.selector)
		var kept []*gatewayServer
	servers:
		for _, srv := range gw.servers {
			for _, c := range claims {
				if c.sel != sel || c.srv.port != srv.port || c.srv.gw == gw {
					continue
				}
				other := c.srv.gw.obj
				if h := identicalHost(c.srv, srv); h != "" {
					r.errorf(CodeConflictingGateways, srv.path+".hosts", "host %s on port %d is already served by Gateway %s/%s (%s), which selects the same proxies",
						h, srv.port, other.Namespace, other.Name, other.Object.At(c.srv.path))
					continue servers
				}
				if c.srv.plain() != srv.plain() {
					r.warnf(CodeGatewayPortProtocol, srv.path+".port", "port %d is already served with protocol %s by Gateway %s/%s (%s), which selects the same proxies; this server is skipped",
						srv.port, c.srv.protocol, other.Namespace, other.Name, other.Object.At(c.srv.path))
					continue servers
				}
			}
			kept = append(kept, srv)
		}
		for _, srv := range kept {
			claims = append(claims, claim{srv, sel})
		}
		gw.servers = kept
		p.gateways[gw.key] = gw
		p.gatewayList = append(p.gatewayList, gw)
	}
}

// identicalHost returns a host b lists exactly as a does (as written,
// case folded), or "".
func identicalHost(a, b *gatewayServer) string {
	for _, x := range a.rawHosts {
		for _, y := range b.rawHosts {
			if x == y {
				return y
			}
		}
	}
	return ""
}

// serverHostFor returns the vhost domain a VirtualService host gets on a
// server: the more specific of the VS host and the first server host it
// overlaps (in a namespace the server accepts VirtualServices from), or
// "" when none.
func serverHostFor(srv *gatewayServer, vsNS, vsHost string) string {
	for _, f := range srv.hosts {
		if f.namespace != "*" && f.namespace != vsNS {
			continue
		}
		switch {
		case hostMatches(f.host, vsHost):
			return vsHost
		case hostMatches(vsHost, f.host):
			return f.host
		}
	}
	return ""
}
