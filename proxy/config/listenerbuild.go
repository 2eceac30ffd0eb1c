package config

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	corsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/cors/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	tlsinspectorv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"github.com/gitmesh/gitmesh/proxy/auth"
	"github.com/gitmesh/gitmesh/proxy/mtls"
	"github.com/gitmesh/gitmesh/proxy/routing"
	"github.com/gitmesh/gitmesh/proxy/telemetry"
	"google.golang.org/protobuf/types/known/anypb"
)

// ListenerConfig is one listener: where it binds and its filter chains.
type ListenerConfig struct {
	// Name is the Listener's name; Addr the address it binds (host:port).
	Name       string
	Addr       string
	statPrefix string
	// Inbound is true for listeners that receive traffic for the local
	// workload (metrics reporter "destination").
	Inbound bool
	// Chains are the filter chains in configuration order; a connection
	// takes the first whose filter_chain_match it satisfies.
	Chains []*filterChain
	// defaultChain serves connections no chain matches
	// (default_filter_chain); nil: they are closed.
	defaultChain *filterChain
	// Peek is true when a chain matches on server_names or
	// transport_protocol: connections are inspected (TLS ClientHello)
	// before a chain is chosen, as Envoy's tls_inspector does.
	Peek bool
	// UseOriginalDst hands a connection that netfilter redirected here to
	// the listener of its original destination (use_original_dst; see
	// handoff in capture.go).
	UseOriginalDst bool
}

// filterChain is one FilterChain: its match, optional TLS termination and
// its network filter (an HTTP connection manager or a TCP proxy).
type filterChain struct {
	serverNames       []string // lowercased; "*.example.com" wildcards allowed
	transportProtocol string   // "", "tls" or "raw_buffer"
	TLS               *mtls.TLSContext
	HTTP              *HTTPChain
	TCP               *TCPProxy
	// RBAC are envoy.filters.network.rbac filters before the tcp_proxy.
	RBAC []*auth.NetworkRBAC
}

// HTTPChain is a built HttpConnectionManager.
type HTTPChain struct {
	// StatPrefix is the HCM's stat_prefix; Routes its route table (RDS or
	// inline), whose virtual hosts it serves.
	StatPrefix string
	Routes     *routing.RouteTable
	Filters    []HTTPFilter // in order, without the router
	// XFCC is forward_client_cert_details and
	// set_current_client_cert_details.
	XFCC mtls.XFCCConfig
	// TLS is the filter chain's TLS context (nil: plaintext).
	TLS *mtls.TLSContext
	// Auth are the jwt_authn and rbac filters, in order; they run before
	// the route is selected (see authorize).
	Auth []auth.AuthFilter
	// Telemetry is the tracing and access logs (tracing, access_log);
	// nil for none.
	Telemetry *telemetry.HCM
}

// HTTPFilterKind is an HTTP filter the forwarding path runs after
// route selection.
type HTTPFilterKind int

const (
	// The filters that act per route: envoy.filters.http.cors and
	// envoy.filters.http.fault.
	FilterCORS HTTPFilterKind = iota
	FilterFault
)

// HTTPFilter is one HTTP filter before the router; fault is the filter's
// own typed_config, used by routes that do not override it.
type HTTPFilter struct {
	Kind HTTPFilterKind
	// Fault is a fault filter's own typed_config (nil: only per-route
	// configuration applies).
	Fault *routing.FaultConfig
}

// HTTPChainFor returns the HTTP connection manager serving r: the chain a
// connection with r's TLS state and SNI selects.
func (lc *ListenerConfig) HTTPChainFor(r *http.Request) *HTTPChain {
	sni := ""
	if r.TLS != nil {
		sni = r.TLS.ServerName
	}
	if fc := lc.ChainFor(sni, r.TLS != nil); fc != nil {
		return fc.HTTP
	}
	return nil
}

// ChainFor selects a filter chain as Envoy does for the criteria the proxy
// supports: server names first (exact, then the longest wildcard, then
// chains without server names), then transport protocol (exact, then
// chains without one).
func (lc *ListenerConfig) ChainFor(sni string, isTLS bool) *filterChain {
	if fc := lc.matchChain(sni, isTLS); fc != nil {
		return fc
	}
	return lc.defaultChain
}

func (lc *ListenerConfig) matchChain(sni string, isTLS bool) *filterChain {
	if len(lc.Chains) == 0 {
		return nil
	}
	if !lc.Peek {
		return lc.Chains[0]
	}
	sni = strings.ToLower(sni)
	var cands []*filterChain
	best := -1 // length of the best server-name match; 0 for none
	for _, fc := range lc.Chains {
		score := 0
		if len(fc.serverNames) > 0 {
			score = -1
			for _, n := range fc.serverNames {
				switch {
				case n == sni:
					score = max(score, 1<<20)
				case strings.HasPrefix(n, "*.") && strings.HasSuffix(sni, n[1:]) && len(sni) > len(n)-1:
					score = max(score, len(n))
				}
			}
			if score < 0 {
				continue
			}
		}
		switch {
		case score > best:
			best, cands = score, []*filterChain{fc}
		case score == best:
			cands = append(cands, fc)
		}
	}
	proto := "raw_buffer"
	if isTLS {
		proto = "tls"
	}
	var fallback *filterChain
	for _, fc := range cands {
		switch fc.transportProtocol {
		case proto:
			return fc
		case "":
			if fallback == nil {
				fallback = fc
			}
		}
	}
	return fallback
}

// ListenerAddr returns the host:port a listener binds.
func ListenerAddr(l *listenerv3.Listener) (string, error) {
	sa := l.GetAddress().GetSocketAddress()
	if sa == nil {
		return "", errors.New("only socket_address is supported")
	}
	if sa.GetProtocol() != corev3.SocketAddress_TCP {
		return "", fmt.Errorf("protocol %s: %w", sa.GetProtocol(), ErrUnsupported)
	}
	port := sa.GetPortValue()
	if port == 0 || port > 65535 {
		return "", fmt.Errorf("port_value %d: must be 1-65535", port)
	}
	if sa.GetAddress() == "" || net.ParseIP(sa.GetAddress()) == nil {
		return "", fmt.Errorf("address %q: must be an IP address", sa.GetAddress())
	}
	return net.JoinHostPort(sa.GetAddress(), strconv.Itoa(int(port))), nil
}

// listenerRDSNames returns the route configurations a listener's HTTP
// connection managers fetch over RDS.
func listenerRDSNames(l *listenerv3.Listener) []string {
	var out []string
	chains := l.GetFilterChains()
	if dfc := l.GetDefaultFilterChain(); dfc != nil {
		chains = append(slices.Clip(chains), dfc)
	}
	for _, fc := range chains {
		for _, f := range fc.GetFilters() {
			if f.GetName() != wellknown.HTTPConnectionManager || f.GetTypedConfig() == nil {
				continue
			}
			hcm := &hcmv3.HttpConnectionManager{}
			if f.GetTypedConfig().UnmarshalTo(hcm) == nil {
				if name := hcm.GetRds().GetRouteConfigName(); name != "" {
					out = append(out, name)
				}
			}
		}
	}
	return out
}

// buildListener validates a listener and resolves its route tables. It
// returns the names of referenced RouteConfigurations that have not
// arrived.
func buildListener(l *listenerv3.Listener, tables map[string]*routing.RouteTable, refs *clusterRefs) (*ListenerConfig, []string, error) {
	fail := func(fe *fieldError) error {
		return &ResourceError{TypeURL: ListenerType, Name: l.GetName(), Field: fe.Field, Err: fe.Err}
	}
	if err := checkFields(l, "name", "address", "filter_chains", "listener_filters", "traffic_direction",
		"api_listener", "default_filter_chain", "stat_prefix", "listener_filters_timeout", "continue_on_listener_filters_timeout",
		"use_original_dst", "bind_to_port"); err != nil {
		return nil, nil, fail(&fieldError{Err: err})
	}
	if l.GetApiListener() != nil {
		return nil, nil, fail(fieldErr("api_listener", "api listeners are for proxyless gRPC clients: %w", ErrUnsupported))
	}
	for i, lf := range l.GetListenerFilters() {
		field := fmt.Sprintf("listener_filters[%d]", i)
		if lf.GetName() != wellknown.TlsInspector {
			return nil, nil, fail(fieldErr(field, "listener filter %q: %w", lf.GetName(), ErrUnsupported))
		}
		if tc := lf.GetTypedConfig(); tc != nil {
			ti := &tlsinspectorv3.TlsInspector{}
			if err := tc.UnmarshalTo(ti); err != nil {
				return nil, nil, fail(fieldErr(field+".typed_config", "decoding TlsInspector: %w", err))
			}
			if err := checkFields(ti); err != nil {
				return nil, nil, fail(fieldErr(field+".typed_config", "%w", err))
			}
		}
	}
	addr, err := ListenerAddr(l)
	if err != nil {
		return nil, nil, fail(&fieldError{Field: "address.socket_address", Err: err})
	}
	lc := &ListenerConfig{
		Name:           l.GetName(),
		Addr:           addr,
		UseOriginalDst: l.GetUseOriginalDst().GetValue(),
		Inbound:        l.GetTrafficDirection() == corev3.TrafficDirection_INBOUND || (l.GetTrafficDirection() == corev3.TrafficDirection_UNSPECIFIED && l.GetName() == "inbound"),
	}
	if len(l.GetFilterChains()) == 0 && l.GetDefaultFilterChain() == nil {
		// Envoy: "no filter chains specified".
		return nil, nil, fail(fieldErr("filter_chains", "empty (and no default_filter_chain)"))
	}
	var missing []string
	if dfc := l.GetDefaultFilterChain(); dfc != nil {
		if dfc.GetFilterChainMatch() != nil {
			return nil, nil, fail(fieldErr("default_filter_chain.filter_chain_match", "must be empty"))
		}
		fc, miss, fe := BuildFilterChain(dfc, tables, refs)
		if fe != nil {
			fe.Field = "default_filter_chain" + fe.Field
			return nil, nil, fail(fe)
		}
		missing = append(missing, miss...)
		lc.defaultChain = fc
	}
	seen := map[string]int{}
	for i, fcp := range l.GetFilterChains() {
		field := fmt.Sprintf("filter_chains[%d]", i)
		fc, miss, fe := BuildFilterChain(fcp, tables, refs)
		if fe != nil {
			fe.Field = field + fe.Field
			return nil, nil, fail(fe)
		}
		missing = append(missing, miss...)
		if len(fc.serverNames) > 0 || fc.transportProtocol != "" {
			lc.Peek = true
		}
		key := strings.Join(fc.serverNames, ",") + "|" + fc.transportProtocol
		if j, dup := seen[key]; dup {
			return nil, nil, fail(fieldErr(field+".filter_chain_match", "same match as filter_chains[%d]", j))
		}
		seen[key] = i
		if lc.statPrefix == "" && fc.HTTP != nil {
			lc.statPrefix = fc.HTTP.StatPrefix
		}
		lc.Chains = append(lc.Chains, fc)
	}
	if lc.statPrefix == "" && lc.defaultChain != nil && lc.defaultChain.HTTP != nil {
		lc.statPrefix = lc.defaultChain.HTTP.StatPrefix
	}
	return lc, missing, nil
}

// BuildFilterChain builds one filter chain against the route tables and
// clusters known; it returns the RDS names it needs that tables lacks.
func BuildFilterChain(fcp *listenerv3.FilterChain, tables map[string]*routing.RouteTable, refs *clusterRefs) (*filterChain, []string, *fieldError) {
	if err := checkFields(fcp, "filter_chain_match", "filters", "transport_socket", "name", "metadata"); err != nil {
		return nil, nil, &fieldError{Err: err}
	}
	fc := &filterChain{}
	if m := fcp.GetFilterChainMatch(); m != nil {
		if err := checkFields(m, "server_names", "transport_protocol"); err != nil {
			return nil, nil, fieldErr(".filter_chain_match", "%w", err)
		}
		for _, n := range m.GetServerNames() {
			fc.serverNames = append(fc.serverNames, strings.ToLower(n))
		}
		slices.Sort(fc.serverNames)
		switch tp := m.GetTransportProtocol(); tp {
		case "", "tls", "raw_buffer":
			fc.transportProtocol = tp
		default:
			return nil, nil, fieldErr(".filter_chain_match.transport_protocol", "%q: %w", tp, ErrUnsupported)
		}
	}
	if ts := fcp.GetTransportSocket(); ts != nil {
		cfg, fe := buildDownstreamTLS(ts)
		if fe != nil {
			fe.Field = ".transport_socket" + fe.Field
			return nil, nil, fe
		}
		fc.TLS = cfg
	}
	filters := fcp.GetFilters()
	for len(filters) > 1 && filters[0].GetName() == RBACNetworkFilterName {
		field := fmt.Sprintf(".filters[%d]", len(fc.RBAC))
		if filters[0].GetTypedConfig() == nil {
			return nil, nil, fieldErr(field+".typed_config", "missing")
		}
		nr, fe := buildNetworkRBAC(filters[0].GetTypedConfig())
		if fe != nil {
			fe.Field = field + ".typed_config" + fe.Field
			return nil, nil, fe
		}
		fc.RBAC = append(fc.RBAC, nr)
		filters = filters[1:]
	}
	if len(fc.RBAC) > 0 && filters[0].GetName() != wellknown.TCPProxy {
		return nil, nil, fieldErr(fmt.Sprintf(".filters[%d]", len(fc.RBAC)), "%s only before %s: %w", RBACNetworkFilterName, wellknown.TCPProxy, ErrUnsupported)
	}
	if len(filters) != 1 {
		return nil, nil, fieldErr(".filters", "want exactly one network filter (%s or %s), got %d", wellknown.HTTPConnectionManager, wellknown.TCPProxy, len(filters))
	}
	f := filters[0]
	fieldPrefix := fmt.Sprintf(".filters[%d]", len(fc.RBAC))
	if f.GetTypedConfig() == nil {
		return nil, nil, fieldErr(fieldPrefix+".typed_config", "missing")
	}
	switch f.GetName() {
	case wellknown.HTTPConnectionManager:
		hc, miss, fe := buildHCM(f.GetTypedConfig(), tables, refs)
		if fe != nil {
			fe.Field = fieldPrefix + ".typed_config" + fe.Field
			return nil, nil, fe
		}
		hc.TLS = fc.TLS
		fc.HTTP = hc
		if miss != "" {
			return fc, []string{miss}, nil
		}
	case wellknown.TCPProxy:
		tp, fe := buildTCPProxy(f.GetTypedConfig(), refs)
		if fe != nil {
			fe.Field = fieldPrefix + ".typed_config" + fe.Field
			return nil, nil, fe
		}
		tp.TLS = fc.TLS
		fc.TCP = tp
	default:
		return nil, nil, fieldErr(fieldPrefix+".name", "unknown network filter %q", f.GetName())
	}
	return fc, nil, nil
}

// buildHCM validates an HttpConnectionManager and
// returns the name of its RDS route configuration if it has not arrived.
func buildHCM(a *anypb.Any, tables map[string]*routing.RouteTable, refs *clusterRefs) (*HTTPChain, string, *fieldError) {
	hcm := &hcmv3.HttpConnectionManager{}
	if err := a.UnmarshalTo(hcm); err != nil {
		return nil, "", fieldErr("", "decoding HttpConnectionManager: %w", err)
	}
	hc := &HTTPChain{StatPrefix: hcm.GetStatPrefix(), XFCC: buildXFCC(hcm)}
	var fe *fieldError
	if hc.Telemetry, fe = buildHCMTelemetry(hcm, refs); fe != nil {
		return nil, "", fe
	}
	filters := hcm.GetHttpFilters()
	if len(filters) == 0 {
		return nil, "", fieldErr(".http_filters", "must end with %s", wellknown.Router)
	}
	for i, hf := range filters {
		path := fmt.Sprintf(".http_filters[%d]", i)
		if hf.GetName() == wellknown.Router {
			if i != len(filters)-1 {
				return nil, "", fieldErr(path, "%s must be the last HTTP filter", wellknown.Router)
			}
			if tc := hf.GetTypedConfig(); tc != nil {
				if err := tc.UnmarshalTo(&routerv3.Router{}); err != nil {
					return nil, "", fieldErr(path+".typed_config", "decoding Router: %w", err)
				}
			}
			continue
		}
		if i == len(filters)-1 {
			return nil, "", fieldErr(".http_filters", "must end with %s", wellknown.Router)
		}
		if af, ok, fe := buildAuthFilter(hf.GetName(), hf.GetTypedConfig()); ok {
			if fe != nil {
				fe.Field = path + fe.Field
				return nil, "", fe
			}
			hc.Auth = append(hc.Auth, af)
			continue
		}
		switch hf.GetName() {
		case FaultFilterName:
			f := HTTPFilter{Kind: FilterFault}
			if tc := hf.GetTypedConfig(); tc != nil {
				fc, fe := buildFault(tc)
				if fe != nil {
					fe.Field = path + ".typed_config" + fe.Field
					return nil, "", fe
				}
				if fc.HasDelay || fc.HasAbort {
					f.Fault = fc
				}
			}
			hc.Filters = append(hc.Filters, f)
		case CORSFilterName:
			if tc := hf.GetTypedConfig(); tc != nil {
				if err := tc.UnmarshalTo(&corsv3.Cors{}); err != nil {
					return nil, "", fieldErr(path+".typed_config", "decoding Cors: %w", err)
				}
			}
			hc.Filters = append(hc.Filters, HTTPFilter{Kind: FilterCORS})
		default:
			if hf.GetIsOptional() {
				// Envoy skips an optional filter it does not implement.
				continue
			}
			return nil, "", fieldErr(path+".name", "unknown HTTP filter %q", hf.GetName())
		}
	}
	var missing string
	switch rs := hcm.GetRouteSpecifier().(type) {
	case *hcmv3.HttpConnectionManager_Rds:
		if src := rs.Rds.GetConfigSource(); src != nil && src.GetAds() == nil {
			return nil, "", fieldErr(".rds.config_source", "only ads config sources are supported")
		}
		name := rs.Rds.GetRouteConfigName()
		if name == "" {
			return nil, "", fieldErr(".rds.route_config_name", "empty")
		}
		hc.Routes = tables[name]
		if hc.Routes == nil {
			missing = name
			hc.Routes = &routing.RouteTable{Name: name}
		}
	case *hcmv3.HttpConnectionManager_RouteConfig:
		rt, fe := BuildRouteTable(rs.RouteConfig, refs, true)
		if fe != nil {
			fe.Field = ".route_config." + fe.Field
			return nil, "", fe
		}
		hc.Routes = rt
	default:
		return nil, "", fieldErr("", "route_specifier must be rds or route_config")
	}
	return hc, missing, nil
}
