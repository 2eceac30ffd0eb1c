package metrics

import (
	"crypto/x509"
	"sync"

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

// NLabels is len(istioLabels).
const NLabels = 18

// istioDurationBuckets are Istio's buckets for istio_request_duration_milliseconds.
var istioDurationBuckets = []float64{0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000}

// Unknown is Istio's label value for what the proxy does not know.
const Unknown = "unknown"

// tcpLabels are the labels of Istio's TCP metrics: the request labels
// without response_code.
var tcpLabels = append(append(append([]string{}, istioLabels[:13]...), "response_flags"), istioLabels[15:]...)

// Metrics is the proxy's Prometheus registry (its own, no global state).
type Metrics struct {
	// Reg is the registry /metrics serves; every metric below is in it.
	Reg *prometheus.Registry
	// Requests and Duration are istio_requests_total and
	// istio_request_duration_milliseconds, with Istio's standard labels.
	Requests *prometheus.CounterVec
	Duration *prometheus.HistogramVec
	// TCPOpened, TCPClosed, TCPSent and TCPReceived are Istio's TCP
	// metrics (connections and bytes) of the TCP proxy.
	TCPOpened   *prometheus.CounterVec
	TCPClosed   *prometheus.CounterVec
	TCPSent     *prometheus.CounterVec
	TCPReceived *prometheus.CounterVec
	// BreakerOpen counts requests refused by a circuit breaker, by cluster
	// and threshold; OutlierEjections counts ejected hosts; UpstreamRetries
	// counts retries, by cluster.
	BreakerOpen      *prometheus.CounterVec
	OutlierEjections *prometheus.CounterVec
	UpstreamRetries  *prometheus.CounterVec
	// XDSApplied counts applied updates, XDSNACKs rejected ones by type,
	// XDSConnected is 1 while an ADS stream is open and XDSReconnects counts
	// the streams opened after the first.
	XDSApplied    prometheus.Counter
	XDSNACKs      *prometheus.CounterVec
	XDSConnected  prometheus.Gauge
	XDSReconnects prometheus.Counter
	// TLSHandshakeErrors counts failed TLS handshakes by direction
	// (downstream, upstream) and reason (Envoy's ssl.* stat names).
	TLSHandshakeErrors *prometheus.CounterVec
	// Auth are the RBAC and JWT filters' counters.
	Auth AuthMetrics
}

// NewMetrics creates the proxy's metrics in a new registry, with Go's
// runtime and process collectors.
func NewMetrics() *Metrics {
	m := &Metrics{
		Reg: prometheus.NewRegistry(),
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "istio_requests_total",
			Help: "Requests handled by the proxy, with Istio's standard labels.",
		}, istioLabels),
		Duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "istio_request_duration_milliseconds",
			Help:    "Request duration in milliseconds, with Istio's standard labels and buckets.",
			Buckets: istioDurationBuckets,
		}, istioLabels),
		TCPOpened: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "istio_tcp_connections_opened_total",
			Help: "TCP connections opened by the proxy's TCP proxy, with Istio's standard labels.",
		}, tcpLabels),
		TCPClosed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "istio_tcp_connections_closed_total",
			Help: "TCP connections closed (or refused) by the proxy's TCP proxy.",
		}, tcpLabels),
		TCPSent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "istio_tcp_sent_bytes_total",
			Help: "Bytes sent to the client (the response direction) by TCP proxies.",
		}, tcpLabels),
		TCPReceived: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "istio_tcp_received_bytes_total",
			Help: "Bytes received from the client (the request direction) by TCP proxies.",
		}, tcpLabels),
		BreakerOpen: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gitmesh_proxy_circuit_breaker_open_total",
			Help: "Requests and connections rejected by a cluster's circuit breakers (response flag UO).",
		}, []string{"cluster"}),
		OutlierEjections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gitmesh_proxy_outlier_ejections_total",
			Help: "Hosts ejected by outlier detection, by cluster.",
		}, []string{"cluster"}),
		UpstreamRetries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gitmesh_proxy_upstream_retries_total",
			Help: "Upstream request retries, by cluster.",
		}, []string{"cluster"}),
		XDSApplied: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gitmesh_proxy_xds_updates_applied_total",
			Help: "Complete configurations swapped in.",
		}),
		XDSNACKs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gitmesh_proxy_xds_nacks_total",
			Help: "xDS responses rejected, by type URL.",
		}, []string{"type_url"}),
		XDSConnected: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "gitmesh_proxy_xds_connected",
			Help: "1 while an ADS stream to the controller is delivering responses, else 0.",
		}),
		XDSReconnects: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gitmesh_proxy_xds_stream_failures_total",
			Help: "ADS streams that failed or could not be opened.",
		}),
		TLSHandshakeErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gitmesh_proxy_tls_handshake_errors_total",
			Help: "Failed TLS handshakes, by direction (downstream, upstream) and reason (fail_verify_error, fail_verify_san, fail_verify_no_cert, secret_unavailable, connection_error).",
		}, []string{"direction", "reason"}),
	}
	m.Reg.MustRegister(m.TLSHandshakeErrors, m.Requests, m.Duration, m.TCPOpened, m.TCPClosed, m.TCPSent, m.TCPReceived,
		m.BreakerOpen, m.OutlierEjections, m.UpstreamRetries, m.XDSApplied, m.XDSNACKs, m.XDSConnected, m.XDSReconnects,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.Auth = newAuthMetrics(m.Reg)
	return m
}

// LocalWorkload is this proxy's side of the metric labels.
type LocalWorkload struct {
	// Workload, Namespace, App and Version label this proxy's side: its
	// node id, namespace and app and version labels.
	Workload, Namespace, App, Version string
	// Service is the local service host (name.namespace.svc.cluster.local).
	Service, ServiceName string
}

// NewLocalWorkload derives the local labels from the node's workload:
// Namespace defaults to nodemeta.DefaultNamespace, the others to Unknown.
func NewLocalWorkload(w nodemeta.Workload) LocalWorkload {
	ns := w.Namespace
	if ns == "" {
		ns = nodemeta.DefaultNamespace
	}
	l := LocalWorkload{
		Workload:    w.ID,
		Namespace:   ns,
		App:         OrUnknown(w.Labels["app"]),
		Version:     OrUnknown(w.Labels["version"]),
		ServiceName: OrUnknown(w.Service),
	}
	l.Service = Unknown
	if w.Service != "" {
		l.Service = w.Service + "." + ns + ".svc.cluster.local"
	}
	return l
}

// OrUnknown returns s, or Unknown when s is empty.
func OrUnknown(s string) string {
	if s == "" {
		return Unknown
	}
	return s
}

// ConnSecurity is the TLS identity of an exchange, for the principal and
// connection_security_policy labels: on inbound listeners the verified
// client certificate's URI SAN (source) and the proxy's own (destination),
// on outbound ones the upstream server's (destination). "" is unknown.
type ConnSecurity struct {
	// Source and Destination are SPIFFE ids (URI SANs).
	Source, Destination string
	// MTLS is an inbound connection whose client presented a verified
	// certificate.
	MTLS bool
}

// FirstURI returns a certificate's first URI SAN, "" for none.
func FirstURI(c *x509.Certificate) string {
	if c == nil || len(c.URIs) == 0 {
		return ""
	}
	return c.URIs[0].String()
}

// RequestSeries are the request metrics of one label set, looked up once.
type RequestSeries struct {
	Requests prometheus.Counter
	Duration prometheus.Observer
}

// SeriesKey is what decides a forwarded request's labels besides its
// cluster: the listener's direction, the endpoint's workload, the TLS
// identities, the protocol, the response code and flags.
type SeriesKey struct {
	// Inbound selects reporter=destination (else source).
	Inbound bool
	// GRPC labels request_protocol grpc (else http).
	GRPC bool
	// Code is the response code, 0 when none was sent.
	Code  int
	Flags ResponseFlags
	// Meta is the upstream endpoint's workload (the peer's labels).
	Meta     EndpointMeta
	Security ConnSecurity
}

// SeriesCache holds a cluster's request series by seriesKey, so that a
// request costs one map lookup instead of hashing and validating Istio's
// 18 label values twice (prometheus' WithLabelValues). It lives as long as
// the cluster (one configuration); the series stay in the registry.
type SeriesCache struct {
	Series sync.Map // seriesKey -> *requestSeries
}

// EndpointMeta is the endpoint's filter_metadata.istio, for metrics labels.
type EndpointMeta struct {
	Workload  string
	Namespace string
	App       string
	Version   string
}
