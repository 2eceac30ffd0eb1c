package proxy

import (
	"crypto/tls"
	"github.com/gitmesh/gitmesh/proxy/config"
	"github.com/gitmesh/gitmesh/proxy/metrics"
	"github.com/gitmesh/gitmesh/proxy/mtls"
	"github.com/gitmesh/gitmesh/proxy/upstream"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// downstreamSecurity describes an inbound connection's TLS state; tc is
// the filter chain's TLS context.
func (p *Proxy) downstreamSecurity(cs *tls.ConnectionState, tc *mtls.TLSContext) metrics.ConnSecurity {
	if cs == nil || len(cs.PeerCertificates) == 0 {
		return metrics.ConnSecurity{}
	}
	return metrics.ConnSecurity{MTLS: true, Source: metrics.FirstURI(cs.PeerCertificates[0]), Destination: metrics.FirstURI(tc.LocalLeaf(p.secrets))}
}

// observe records one finished request.
func (p *Proxy) observe(r *http.Request, rs *requestState, d time.Duration) {
	grpc := strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc")
	var s *metrics.RequestSeries
	if c := rs.cluster; c != nil && !c.Missing && c.Series != nil {
		k := metrics.SeriesKey{Inbound: rs.lc != nil && rs.lc.Inbound, GRPC: grpc, Code: rs.code, Flags: rs.flags, Security: rs.sec}
		if rs.endpoint != nil {
			k.Meta = rs.endpoint.Meta
		}
		if v, ok := c.Series.Series.Load(k); ok {
			s = v.(*metrics.RequestSeries)
		} else {
			s = p.requestSeries(rs, grpc)
			c.Series.Series.Store(k, s)
		}
	} else {
		s = p.requestSeries(rs, grpc)
	}
	s.Requests.Inc()
	s.Duration.Observe(float64(d) / float64(time.Millisecond))
}

// requestSeries looks up the request metrics of a finished request's labels.
func (p *Proxy) requestSeries(rs *requestState, grpc bool) *metrics.RequestSeries {
	values := p.labelValues(rs.lc, rs.cluster, rs.endpoint, rs.sec)
	values[12] = "http"
	if grpc {
		values[12] = "grpc"
	}
	values[13] = strconv.Itoa(rs.code)
	values[14] = rs.flags.String()
	return &metrics.RequestSeries{
		Requests: p.metrics.Requests.WithLabelValues(values[:]...),
		Duration: p.metrics.Duration.WithLabelValues(values[:]...),
	}
}

// observeTCP records a TCP proxy connection: opened once connected, then
// closed with its byte counts (or closed alone when it never connected).
func (p *Proxy) observeTCP(lc *config.ListenerConfig, c *upstream.Cluster, e *upstream.Endpoint, sec metrics.ConnSecurity, flags metrics.ResponseFlags, received, sent int64, opened bool) {
	v := p.labelValues(lc, c, e, sec)
	v[12], v[13] = "tcp", flags.String()
	values := append(v[:14:14], v[15:]...)
	if opened {
		p.metrics.TCPOpened.WithLabelValues(values...).Inc()
		return
	}
	p.metrics.TCPClosed.WithLabelValues(values...).Inc()
	if received > 0 {
		p.metrics.TCPReceived.WithLabelValues(values...).Add(float64(received))
	}
	if sent > 0 {
		p.metrics.TCPSent.WithLabelValues(values...).Add(float64(sent))
	}
}

// labelValues fills the reporter, source and destination labels (0-11).
// A request answered without a cluster (no route, redirect, direct
// response, a cluster that does not exist) has destination_service
// "unknown", as in Envoy.
func (p *Proxy) labelValues(lc *config.ListenerConfig, c *upstream.Cluster, e *upstream.Endpoint, sec metrics.ConnSecurity) [metrics.NLabels]string {
	l := &p.local
	values := [metrics.NLabels]string{}
	values[15], values[16] = metrics.OrUnknown(sec.Source), metrics.OrUnknown(sec.Destination)
	src := values[1:5]
	dst := values[5:12]
	for i := 1; i < 12; i++ {
		values[i] = metrics.Unknown
	}
	inbound := lc != nil && lc.Inbound
	switch {
	case !inbound:

		values[17] = metrics.Unknown
	case sec.MTLS:
		values[17] = "mutual_tls"
	default:
		values[17] = "none"
	}
	if inbound {
		values[0] = "destination"
		dst[0], dst[1], dst[2], dst[3] = l.Workload, l.Namespace, l.App, l.Version
		dst[4], dst[5], dst[6] = l.Service, l.ServiceName, l.Namespace
	} else {
		values[0] = "source"
		src[0], src[1], src[2], src[3] = l.Workload, l.Namespace, l.App, l.Version
	}
	if c != nil && !c.Missing {
		if c.Service.Host != "" {
			dst[4] = c.Service.Host
			dst[5] = metrics.OrUnknown(c.Service.Name)
			dst[6] = metrics.OrUnknown(c.Service.Namespace)
		} else if !inbound {
			dst[4] = c.Name
		}
	}
	if e != nil {
		set := func(i int, v string) {
			if v != "" {
				dst[i] = v
			}
		}
		set(0, e.Meta.Workload)
		set(1, e.Meta.Namespace)
		set(2, e.Meta.App)
		set(3, e.Meta.Version)
	}
	return values
}
