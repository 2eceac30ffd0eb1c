package proxy

import (
	"io"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/types/known/anypb"
)

// authFilter is an access-control HTTP filter of a connection manager:
// jwt_authn or rbac. They run in their configured order before the route
// is selected, so that JWT claims reach RBAC and route matches
// (dynamic_metadata), as Envoy with clear_route_cache.
type authFilter struct {
	jwt  *jwtFilter
	rbac *rbacFilter
}

// buildAuthFilter builds the jwt_authn or rbac filter named name; ok is
// false for other names.
func buildAuthFilter(name string, tc *anypb.Any) (authFilter, bool, *fieldError) {
	if name != jwtAuthnFilterName && name != rbacFilterName {
		return authFilter{}, false, nil
	}
	if tc == nil {
		return authFilter{}, true, fieldErr(".typed_config", "missing")
	}
	var f authFilter
	var fe *fieldError
	if name == jwtAuthnFilterName {
		f.jwt, fe = buildJWTAuthn(tc)
	} else {
		f.rbac, fe = buildRBAC(tc)
	}
	if fe != nil {
		fe.field = ".typed_config" + fe.field
		return authFilter{}, true, fe
	}
	return f, true, nil
}

// rbacDeniedBody is Envoy's RBAC filter's local reply body.
const rbacDeniedBody = "RBAC: access denied"

// authMetrics are Envoy's jwt_authn and rbac filter stats, named as
// Envoy's Prometheus output names them (the HCM's stat_prefix as the
// envoy_http_conn_manager_prefix label).
type authMetrics struct {
	rbacAllowed *prometheus.CounterVec
	rbacDenied  *prometheus.CounterVec
	rbacLogged  *prometheus.CounterVec
	jwtAllowed  *prometheus.CounterVec
	jwtDenied   *prometheus.CounterVec
	// tcpAllowed and tcpDenied are the network RBAC filter's, by its
	// stat_prefix (Istio's "tcp.").
	tcpAllowed *prometheus.CounterVec
	tcpDenied  *prometheus.CounterVec
}

func newAuthMetrics(reg prometheus.Registerer) authMetrics {
	c := func(name, help string, labels ...string) *prometheus.CounterVec {
		if len(labels) == 0 {
			labels = []string{"envoy_http_conn_manager_prefix"}
		}
		v := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
		reg.MustRegister(v)
		return v
	}
	return authMetrics{
		rbacAllowed: c("envoy_http_rbac_allowed", "Requests the HTTP RBAC filters let through (Envoy's http.<prefix>.rbac.allowed)."),
		rbacDenied:  c("envoy_http_rbac_denied", "Requests the HTTP RBAC filters denied with 403 (Envoy's http.<prefix>.rbac.denied)."),
		rbacLogged:  c("envoy_http_rbac_logged", "Requests an AUDIT (action LOG) RBAC policy matched (Envoy's http.<prefix>.rbac.logged)."),
		jwtAllowed:  c("envoy_http_jwt_authn_allowed", "Requests the jwt_authn filter let through (Envoy's http.<prefix>.jwt_authn.allowed)."),
		jwtDenied:   c("envoy_http_jwt_authn_denied", "Requests the jwt_authn filter rejected with 401 (Envoy's http.<prefix>.jwt_authn.denied)."),
		tcpAllowed:  c("envoy_rbac_allowed", "Connections the network RBAC filters let through (Envoy's <stat_prefix>rbac.allowed).", "stat_prefix"),
		tcpDenied:   c("envoy_rbac_denied", "Connections the network RBAC filters closed (Envoy's <stat_prefix>rbac.denied).", "stat_prefix"),
	}
}

// authorize runs a connection manager's jwt_authn and rbac filters on r.
// It returns the request the rest of the chain sees (with the dynamic
// metadata jwt_authn wrote) and false when a filter answered it.
func (p *Proxy) authorize(w http.ResponseWriter, r *http.Request, rs *requestState, hc *httpChain) (*http.Request, bool) {
	var md dynamicMetadata
	var in *authzInput
	for _, f := range hc.auth {
		switch {
		case f.jwt != nil:
			payloads, st := f.jwt.run(r, time.Now())
			if st != jwtOK {
				p.metrics.auth.jwtDenied.WithLabelValues(hc.statPrefix).Inc()
				rs.code = http.StatusUnauthorized
				jwtReply(w, r, st)
				return r, false
			}
			p.metrics.auth.jwtAllowed.WithLabelValues(hc.statPrefix).Inc()
			if payloads != nil {
				if md == nil {
					md = dynamicMetadata{}
				}
				fm := md[jwtAuthnFilterName]
				if fm == nil {
					fm = map[string]any{}
					md[jwtAuthnFilterName] = fm
				}
				for k, v := range payloads {
					fm[k] = v
				}
				if in != nil {
					// An earlier RBAC filter gathered the rest already.
					in.meta = md
				}
			}
		case f.rbac != nil:
			if !f.rbac.enforce {
				continue
			}
			if in == nil {
				in = newAuthzInput(r, rs.origDst, md)
			}
			ok, matched := f.rbac.allows(in)
			if f.rbac.action == rbacLog {
				if matched != "" {
					p.metrics.auth.rbacLogged.WithLabelValues(hc.statPrefix).Inc()
				}
				continue
			}
			if !ok {
				p.metrics.auth.rbacDenied.WithLabelValues(hc.statPrefix).Inc()
				p.log.Debug("rbac denied", "authority", r.Host, "path", r.URL.Path, "policy", matched)
				rs.code, rs.flags = http.StatusForbidden, rs.flags|flagRBACDenied
				h := w.Header()
				h.Set("Content-Type", "text/plain")
				w.WriteHeader(http.StatusForbidden)
				_, _ = io.WriteString(w, rbacDeniedBody)
				return r, false
			}
			p.metrics.auth.rbacAllowed.WithLabelValues(hc.statPrefix).Inc()
		}
	}
	if md != nil {
		r = withMetadata(r, md)
	}
	return r, true
}
