package metrics

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// AuthMetrics are Envoy's jwt_authn and rbac filter stats, named as
// Envoy's Prometheus output names them (the HCM's stat_prefix as the
// envoy_http_conn_manager_prefix label).
type AuthMetrics struct {
	// RBACAllowed, RBACDenied and RBACLogged are the HTTP RBAC filter's
	// verdicts, by its stat prefix and policy (Envoy's rbac.allowed,
	// rbac.denied and rbac.shadow stats).
	RBACAllowed *prometheus.CounterVec
	RBACDenied  *prometheus.CounterVec
	RBACLogged  *prometheus.CounterVec
	// JWTAllowed and JWTDenied are the JWT filter's verdicts.
	JWTAllowed *prometheus.CounterVec
	JWTDenied  *prometheus.CounterVec
	// TCPAllowed and TCPDenied are the network RBAC filter's, by its
	// stat_prefix (Istio's "tcp.").
	TCPAllowed *prometheus.CounterVec
	TCPDenied  *prometheus.CounterVec
	// series caches the counters Inc has looked up, by vector and prefix.
	series *sync.Map // authSeries -> prometheus.Counter
}

type authSeries struct {
	vec    *prometheus.CounterVec
	prefix string
}

// Inc adds one to v's counter for the stat prefix. The counter is looked
// up once, so that a request or connection costs one map lookup instead of
// prometheus' label hashing and validation (as SeriesCache does for the
// request series).
func (m *AuthMetrics) Inc(v *prometheus.CounterVec, prefix string) {
	k := authSeries{v, prefix}
	c, ok := m.series.Load(k)
	if !ok {
		c, _ = m.series.LoadOrStore(k, v.WithLabelValues(prefix))
	}
	c.(prometheus.Counter).Inc()
}

func newAuthMetrics(reg prometheus.Registerer) AuthMetrics {
	c := func(name, help string, labels ...string) *prometheus.CounterVec {
		if len(labels) == 0 {
			labels = []string{"envoy_http_conn_manager_prefix"}
		}
		v := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
		reg.MustRegister(v)
		return v
	}
	return AuthMetrics{
		RBACAllowed: c("envoy_http_rbac_allowed", "Requests the HTTP RBAC filters let through (Envoy's http.<prefix>.rbac.allowed)."),
		RBACDenied:  c("envoy_http_rbac_denied", "Requests the HTTP RBAC filters denied with 403 (Envoy's http.<prefix>.rbac.denied)."),
		RBACLogged:  c("envoy_http_rbac_logged", "Requests an AUDIT (action LOG) RBAC policy matched (Envoy's http.<prefix>.rbac.logged)."),
		JWTAllowed:  c("envoy_http_jwt_authn_allowed", "Requests the jwt_authn filter let through (Envoy's http.<prefix>.jwt_authn.allowed)."),
		JWTDenied:   c("envoy_http_jwt_authn_denied", "Requests the jwt_authn filter rejected with 401 (Envoy's http.<prefix>.jwt_authn.denied)."),
		TCPAllowed:  c("envoy_rbac_allowed", "Connections the network RBAC filters let through (Envoy's <stat_prefix>rbac.allowed).", "stat_prefix"),
		TCPDenied:   c("envoy_rbac_denied", "Connections the network RBAC filters closed (Envoy's <stat_prefix>rbac.denied).", "stat_prefix"),
		series:      &sync.Map{},
	}
}
