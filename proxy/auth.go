package proxy

import (
	"github.com/gitmesh/gitmesh/proxy/auth"
	"github.com/gitmesh/gitmesh/proxy/config"
	"github.com/gitmesh/gitmesh/proxy/metrics"
	"github.com/gitmesh/gitmesh/proxy/routing"
	"io"
	"net/http"
	"time"
)

// authorize runs a connection manager's jwt_authn and rbac filters on r.
// It returns the request the rest of the chain sees (with the dynamic
// metadata jwt_authn wrote) and false when a filter answered it.
func (p *Proxy) authorize(w http.ResponseWriter, r *http.Request, rs *requestState, hc *config.HTTPChain) (*http.Request, bool) {
	var md routing.DynamicMetadata
	var in *auth.AuthzInput
	for _, f := range hc.Auth {
		switch {
		case f.JWT != nil:
			payloads, st := f.JWT.Run(r, time.Now())
			if st != auth.JWTOK {
				p.metrics.Auth.Inc(p.metrics.Auth.JWTDenied, hc.StatPrefix)
				rs.code = http.StatusUnauthorized
				auth.JWTReply(w, r, st)
				return r, false
			}
			p.metrics.Auth.Inc(p.metrics.Auth.JWTAllowed, hc.StatPrefix)
			if payloads != nil {
				if md == nil {
					md = routing.DynamicMetadata{}
				}
				fm := md[config.JWTAuthnFilterName]
				if fm == nil {
					fm = map[string]any{}
					md[config.JWTAuthnFilterName] = fm
				}
				for k, v := range payloads {
					fm[k] = v
				}
				if in != nil {

					in.Meta = md
				}
			}
		case f.RBAC != nil:
			if !f.RBAC.Enforce {
				continue
			}
			if in == nil {
				in = auth.NewAuthzInput(r, rs.origDst, md)
			}
			ok, matched := f.RBAC.Allows(in)
			if f.RBAC.Action == auth.RBACLog {
				if matched != "" {
					p.metrics.Auth.Inc(p.metrics.Auth.RBACLogged, hc.StatPrefix)
				}
				continue
			}
			if !ok {
				p.metrics.Auth.Inc(p.metrics.Auth.RBACDenied, hc.StatPrefix)
				p.log.Debug("rbac denied", "authority", r.Host, "path", r.URL.Path, "policy", matched)
				rs.code, rs.flags = http.StatusForbidden, rs.flags|metrics.FlagRBACDenied
				h := w.Header()
				h.Set("Content-Type", "text/plain")
				w.WriteHeader(http.StatusForbidden)
				_, _ = io.WriteString(w, auth.RBACDeniedBody)
				return r, false
			}
			p.metrics.Auth.Inc(p.metrics.Auth.RBACAllowed, hc.StatPrefix)
		}
	}
	if md != nil {
		r = routing.WithMetadata(r, md)
	}
	return r, true
}
