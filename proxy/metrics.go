package proxy

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/gitmesh/gitmesh/api/nodemeta"
)

// istioLabels are the labels of Istio's standard request metrics, in order.
var istioLabels = []string{
	"reporter",
	"source_workload", "source_workload_namespace", "source_app", "source_version",
	"destination_workload", "destination_workload_namespace", "destination_app", "destination_version",
	"destination_service", "destination_service_name", "destination_service_namespace",
	"request_protocol", "response_code", "response_flags",
	"source_principal", "destination_principal", "connection_security_policy",
}

// nLabels is len(istioLabels).
const nLabels = 18

// istioDurationBuckets are Istio's buckets for istio_request_duration_milliseconds.
var istioDurationBuckets = []float64{0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000}

const unknown = "unknown"

// tcpLabels are the labels of Istio's TCP metrics: the request labels
// without response_code.
var tcpLabels = append(append(append([]string{}, istioLabels[:13]...), "response_flags"), istioLabels[15:]...)

// metrics is the proxy's Prometheus registry (its own, no global state).
type metrics struct {
	reg              *prometheus.Registry
	requests         *prometheus.CounterVec
	duration         *prometheus.HistogramVec
	tcpOpened        *prometheus.CounterVec
	tcpClosed        *prometheus.CounterVec
	tcpSent          *prometheus.CounterVec
	tcpReceived      *prometheus.CounterVec
	breakerOpen      *prometheus.CounterVec
	outlierEjections *prometheus.CounterVec
	upstreamRetries  *prometheus.CounterVec
	xdsApplied       prometheus.Counter
	xdsNACKs         *prometheus.CounterVec
	xdsConnected     prometheus.Gauge
	xdsReconnects    prometheus.Counter
	// tlsHandshakeErrors counts failed TLS handshakes by direction
	// (downstream, upstream) and reason (Envoy's ssl.* stat names).
	tlsHandshakeErrors *prometheus.CounterVec
	auth               authMetrics
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "istio_requests_total",
			Help: "Requests handled by the proxy, with Istio's standard labels.",
		}, istioLabels),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "istio_request_duration_milliseconds",
			Help:    "Request duration in milliseconds, with Istio's standard labels and buckets.",
			Buckets: istioDurationBuckets,
		}, istioLabels),
		tcpOpened: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "istio_tcp_connections_opened_total",
			Help: "TCP connections opened by the proxy's TCP proxy, with Istio's standard labels.",
		}, tcpLabels),
		tcpClosed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "istio_tcp_connections_closed_total",
			Help: "TCP connections closed (or refused) by the proxy's TCP proxy.",
		}, tcpLabels),
		tcpSent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "istio_tcp_sent_bytes_total",
			Help: "Bytes sent to the client (the response direction) by TCP proxies.",
		}, tcpLabels),
		tcpReceived: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "istio_tcp_received_bytes_total",
			Help: "Bytes received from the client (the request direction) by TCP proxies.",
		}, tcpLabels),
		breakerOpen: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gitmesh_proxy_circuit_breaker_open_total",
			Help: "Requests and connections rejected by a cluster's circuit breakers (response flag UO).",
		}, []string{"cluster"}),
		outlierEjections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gitmesh_proxy_outlier_ejections_total",
			Help: "Hosts ejected by outlier detection, by cluster.",
		}, []string{"cluster"}),
		upstreamRetries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gitmesh_proxy_upstream_retries_total",
			Help: "Upstream request retries, by cluster.",
		}, []string{"cluster"}),
		xdsApplied: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gitmesh_proxy_xds_updates_applied_total",
			Help: "Complete configurations swapped in.",
		}),
		xdsNACKs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gitmesh_proxy_xds_nacks_total",
			Help: "xDS responses rejected, by type URL.",
		}, []string{"type_url"}),
		xdsConnected: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "gitmesh_proxy_xds_connected",
			Help: "1 while an ADS stream to the controller is delivering responses, else 0.",
		}),
		xdsReconnects: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gitmesh_proxy_xds_stream_failures_total",
			Help: "ADS streams that failed or could not be opened.",
		}),
		tlsHandshakeErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gitmesh_proxy_tls_handshake_errors_total",
			Help: "Failed TLS handshakes, by direction (downstream, upstream) and reason (fail_verify_error, fail_verify_san, fail_verify_no_cert, secret_unavailable, connection_error).",
		}, []string{"direction", "reason"}),
	}
	m.reg.MustRegister(m.tlsHandshakeErrors, m.requests, m.duration, m.tcpOpened, m.tcpClosed, m.tcpSent, m.tcpReceived,
		m.breakerOpen, m.outlierEjections, m.upstreamRetries, m.xdsApplied, m.xdsNACKs, m.xdsConnected, m.xdsReconnects,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.auth = newAuthMetrics(m.reg)
	return m
}

// localWorkload is this proxy's side of the metric labels.
type localWorkload struct {
	workload, namespace, app, version string
	// service is the local service host (name.namespace.svc.cluster.local).
	service, serviceName string
}

func newLocalWorkload(w nodemeta.Workload) localWorkload {
	ns := w.Namespace
	if ns == "" {
		ns = nodemeta.DefaultNamespace
	}
	l := localWorkload{
		workload:    w.ID,
		namespace:   ns,
		app:         orUnknown(w.Labels["app"]),
		version:     orUnknown(w.Labels["version"]),
		serviceName: orUnknown(w.Service),
	}
	l.service = unknown
	if w.Service != "" {
		l.service = w.Service + "." + ns + ".svc.cluster.local"
	}
	return l
}

func orUnknown(s string) string {
	if s == "" {
		return unknown
	}
	return s
}

// connSecurity is the TLS identity of an exchange, for the principal and
// connection_security_policy labels: on inbound listeners the verified
// client certificate's URI SAN (source) and the proxy's own (destination),
// on outbound ones the upstream server's (destination). "" is unknown.
type connSecurity struct {
	source, destination string
	// mtls is an inbound connection whose client presented a verified
	// certificate.
	mtls bool
}

// firstURI returns a certificate's first URI SAN, "" for none.
func firstURI(c *x509.Certificate) string {
	if c == nil || len(c.URIs) == 0 {
		return ""
	}
	return c.URIs[0].String()
}

// downstreamSecurity describes an inbound connection's TLS state; tc is
// the filter chain's TLS context.
func (p *Proxy) downstreamSecurity(cs *tls.ConnectionState, tc *tlsContext) connSecurity {
	if cs == nil || len(cs.PeerCertificates) == 0 {
		return connSecurity{}
	}
	return connSecurity{mtls: true, source: firstURI(cs.PeerCertificates[0]), destination: firstURI(tc.localLeaf(p.secrets))}
}

// requestSeries are the request metrics of one label set, looked up once.
type requestSeries struct {
	requests prometheus.Counter
	duration prometheus.Observer
}

// seriesKey is what decides a forwarded request's labels besides its
// cluster: the listener's direction, the endpoint's workload, the TLS
// identities, the protocol, the response code and flags.
type seriesKey struct {
	inbound bool
	grpc    bool
	code    int
	flags   responseFlags
	meta    endpointMeta
	sec     connSecurity
}

// seriesCache holds a cluster's request series by seriesKey, so that a
// request costs one map lookup instead of hashing and validating Istio's
// 18 label values twice (prometheus' WithLabelValues). It lives as long as
// the cluster (one configuration); the series stay in the registry.
type seriesCache struct {
	m sync.Map // seriesKey -> *requestSeries
}

// observe records one finished request.
func (p *Proxy) observe(r *http.Request, rs *requestState, d time.Duration) {
	grpc := strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc")
	var s *requestSeries
	if c := rs.cluster; c != nil && !c.missing && c.series != nil {
		k := seriesKey{inbound: rs.lc != nil && rs.lc.inbound, grpc: grpc, code: rs.code, flags: rs.flags, sec: rs.sec}
		if rs.endpoint != nil {
			k.meta = rs.endpoint.meta
		}
		if v, ok := c.series.m.Load(k); ok {
			s = v.(*requestSeries)
		} else {
			s = p.requestSeries(rs, grpc)
			c.series.m.Store(k, s)
		}
	} else {
		s = p.requestSeries(rs, grpc)
	}
	s.requests.Inc()
	s.duration.Observe(float64(d) / float64(time.Millisecond))
}

// requestSeries looks up the request metrics of a finished request's labels.
func (p *Proxy) requestSeries(rs *requestState, grpc bool) *requestSeries {
	values := p.labelValues(rs.lc, rs.cluster, rs.endpoint, rs.sec)
	values[12] = "http"
	if grpc {
		values[12] = "grpc"
	}
	values[13] = strconv.Itoa(rs.code)
	values[14] = rs.flags.String()
	return &requestSeries{
		requests: p.metrics.requests.WithLabelValues(values[:]...),
		duration: p.metrics.duration.WithLabelValues(values[:]...),
	}
}

// observeTCP records a TCP proxy connection: opened once connected, then
// closed with its byte counts (or closed alone when it never connected).
func (p *Proxy) observeTCP(lc *listenerConfig, c *cluster, e *endpoint, sec connSecurity, flags responseFlags, received, sent int64, opened bool) {
	v := p.labelValues(lc, c, e, sec)
	v[12], v[13] = "tcp", flags.String()
	values := append(v[:14:14], v[15:]...)
	if opened {
		p.metrics.tcpOpened.WithLabelValues(values...).Inc()
		return
	}
	p.metrics.tcpClosed.WithLabelValues(values...).Inc()
	if received > 0 {
		p.metrics.tcpReceived.WithLabelValues(values...).Add(float64(received))
	}
	if sent > 0 {
		p.metrics.tcpSent.WithLabelValues(values...).Add(float64(sent))
	}
}

// labelValues fills the reporter, source and destination labels (0-11).
// A request answered without a cluster (no route, redirect, direct
// response, a cluster that does not exist) has destination_service
// "unknown", as in Envoy.
func (p *Proxy) labelValues(lc *listenerConfig, c *cluster, e *endpoint, sec connSecurity) [nLabels]string {
	l := &p.local
	values := [nLabels]string{}
	values[15], values[16] = orUnknown(sec.source), orUnknown(sec.destination)
	src := values[1:5]
	dst := values[5:12]
	for i := 1; i < 12; i++ {
		values[i] = unknown
	}
	inbound := lc != nil && lc.inbound
	switch {
	case !inbound:
		// Istio: the source reporter cannot know the policy.
		values[17] = unknown
	case sec.mtls:
		values[17] = "mutual_tls"
	default:
		values[17] = "none"
	}
	if inbound {
		values[0] = "destination"
		dst[0], dst[1], dst[2], dst[3] = l.workload, l.namespace, l.app, l.version
		dst[4], dst[5], dst[6] = l.service, l.serviceName, l.namespace
	} else {
		values[0] = "source"
		src[0], src[1], src[2], src[3] = l.workload, l.namespace, l.app, l.version
	}
	if c != nil && !c.missing {
		if c.service.host != "" {
			dst[4] = c.service.host
			dst[5] = orUnknown(c.service.name)
			dst[6] = orUnknown(c.service.namespace)
		} else if !inbound {
			dst[4] = c.name
		}
	}
	if e != nil {
		set := func(i int, v string) {
			if v != "" {
				dst[i] = v
			}
		}
		set(0, e.meta.workload)
		set(1, e.meta.namespace)
		set(2, e.meta.app)
		set(3, e.meta.version)
	}
	return values
}
