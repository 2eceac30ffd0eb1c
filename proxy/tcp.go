package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"google.golang.org/protobuf/types/known/anypb"
)

// tcpProxy is a built envoy.filters.network.tcp_proxy.
type tcpProxy struct {
	statPrefix  string
	clusters    []weightedCluster
	totalWeight uint32
	// idleTimeout closes a connection without traffic in either direction
	// for that long (Envoy's default 1h); 0 disables it.
	idleTimeout        time.Duration
	maxConnectAttempts int
	hashSourceIP       bool
	// tls is the filter chain's downstream TLS context (nil: plaintext),
	// for the principal labels.
	tls *tlsContext
}

const defaultTCPIdleTimeout = time.Hour

// buildTCPProxy validates a TcpProxy. A cluster it names that CDS has not
// delivered resolves through refs to a placeholder, as Envoy only finds out
// at connection time.
func buildTCPProxy(a *anypb.Any, refs *clusterRefs) (*tcpProxy, *fieldError) {
	tp := &tcpproxyv3.TcpProxy{}
	if err := a.UnmarshalTo(tp); err != nil {
		return nil, fieldErr("", "decoding TcpProxy: %w", err)
	}
	if err := checkFields(tp, "stat_prefix", "cluster", "weighted_clusters", "idle_timeout", "max_connect_attempts", "hash_policy"); err != nil {
		return nil, fieldErr("", "%w", err)
	}
	out := &tcpProxy{statPrefix: tp.GetStatPrefix(), idleTimeout: defaultTCPIdleTimeout, maxConnectAttempts: 1}
	if d := tp.GetIdleTimeout(); d != nil {
		out.idleTimeout = d.AsDuration()
	}
	if n := tp.GetMaxConnectAttempts(); n != nil {
		if n.GetValue() < 1 {
			return nil, fieldErr(".max_connect_attempts", "must be at least 1")
		}
		out.maxConnectAttempts = int(n.GetValue())
	}
	for i, hp := range tp.GetHashPolicy() {
		if hp.GetSourceIp() == nil {
			return nil, fieldErr(fmt.Sprintf(".hash_policy[%d]", i), "only source_ip: %w", errUnsupported)
		}
		out.hashSourceIP = true
	}
	lookup := func(field, name string) (*cluster, *fieldError) {
		return refs.lookup(field, name, false)
	}
	switch cs := tp.GetClusterSpecifier().(type) {
	case *tcpproxyv3.TcpProxy_Cluster:
		c, fe := lookup(".cluster", cs.Cluster)
		if fe != nil {
			return nil, fe
		}
		out.clusters, out.totalWeight = []weightedCluster{{cluster: c, upto: 1}}, 1
	case *tcpproxyv3.TcpProxy_WeightedClusters:
		for i, w := range cs.WeightedClusters.GetClusters() {
			field := fmt.Sprintf(".weighted_clusters.clusters[%d]", i)
			if err := checkFields(w, "name", "weight"); err != nil {
				return nil, fieldErr(field, "%w", err)
			}
			c, fe := lookup(field+".name", w.GetName())
			if fe != nil {
				return nil, fe
			}
			if w.GetWeight() == 0 {
				continue
			}
			out.totalWeight += w.GetWeight()
			out.clusters = append(out.clusters, weightedCluster{cluster: c, upto: out.totalWeight})
		}
		if out.totalWeight == 0 {
			return nil, fieldErr(".weighted_clusters", "weights sum to 0")
		}
	default:
		return nil, fieldErr(".cluster_specifier", "missing cluster or weighted_clusters")
	}
	return out, nil
}

// proxyTCP proxies one downstream connection to an endpoint of the TCP
// proxy's cluster until either side closes, the idle timeout passes, or ctx
// ends (the listener drained). It closes down. origDst is the address the
// client dialled when the connection was redirected to the proxy (the
// only endpoint of an ORIGINAL_DST cluster), else "".
func (p *Proxy) proxyTCP(ctx context.Context, down net.Conn, lc *listenerConfig, tp *tcpProxy, origDst string) {
	defer down.Close()
	rt := &route{clusters: tp.clusters, totalWeight: tp.totalWeight}
	c := rt.pickCluster().cluster
	var flags responseFlags
	var up net.Conn
	var ep *endpoint
	var sec connSecurity
	if lc.inbound {
		if tc, ok := down.(*tls.Conn); ok {
			cs := tc.ConnectionState()
			sec = p.downstreamSecurity(&cs, tp.tls)
		}
	}
	defer func() {
		if up == nil {
			p.observeTCP(lc, c, ep, sec, flags, 0, 0, false)
		}
	}()
	if c.missing {
		// Envoy's tcp_proxy closes a connection whose cluster does not
		// exist, with flag NC.
		flags |= flagNoClusterFound
		return
	}
	if !c.admitConnection() {
		flags |= flagUpstreamOverflow
		p.metrics.breakerOpen.WithLabelValues(c.name).Inc()
		return
	}
	defer c.releaseConnection()
	pr := &pickRequest{origDst: origDst}
	if tp.hashSourceIP {
		if host, _, err := net.SplitHostPort(down.RemoteAddr().String()); err == nil {
			pr.hash, pr.hasHash = hashString(host), true
		}
	}
	for attempt := 0; attempt < tp.maxConnectAttempts && up == nil; attempt++ {
		ep = c.pick(pr)
		if ep == nil {
			flags |= flagNoHealthyUpstream
			return
		}
		d := net.Dialer{Timeout: c.connectTimeout}
		conn, err := d.DialContext(ctx, "tcp", ep.addr)
		if tc := c.sockets.forEndpoint(ep.tlsMatch); err == nil && tc != nil {
			// Originate TLS; a failed handshake is a connect failure.
			var tconn *tls.Conn
			if tconn, err = p.clientHandshake(ctx, conn, ep.addr, tc, false, c.connectTimeout); err == nil {
				conn = tconn
				if cs := tconn.ConnectionState(); !lc.inbound && len(cs.PeerCertificates) > 0 {
					sec.destination = firstURI(cs.PeerCertificates[0])
				}
			}
		}
		if err != nil {
			c.report(ep, outcomeLocalFailure)
			pr.avoid = append(pr.avoid, ep)
			flags |= flagUpstreamConnFail
			continue
		}
		c.report(ep, outcomeSuccess)
		flags &^= flagUpstreamConnFail
		up = conn
	}
	if up == nil {
		if tp.maxConnectAttempts > 1 {
			flags |= flagRetryLimitExceeded
		}
		return
	}
	defer up.Close()
	p.observeTCP(lc, c, ep, sec, flags, 0, 0, true)

	stop := context.AfterFunc(ctx, func() {
		down.Close()
		up.Close()
	})
	defer stop()
	var last atomic.Int64
	last.Store(time.Now().UnixNano())
	var received, sent atomic.Int64
	var wg sync.WaitGroup
	wg.Go(func() { copyIdle(up, down, tp.idleTimeout, &last, &received) })
	copyIdle(down, up, tp.idleTimeout, &last, &sent)
	wg.Wait()
	p.observeTCP(lc, c, ep, sec, flags, received.Load(), sent.Load(), false)
}

// copyIdle copies src to dst, half-closing dst at EOF. Reads time out
// after idle without traffic in either direction (last is shared by both
// directions); a timeout closes both connections.
func copyIdle(dst, src net.Conn, idle time.Duration, last *atomic.Int64, n *atomic.Int64) {
	buf := make([]byte, 32*1024)
	for {
		if idle > 0 {
			src.SetReadDeadline(time.Unix(0, last.Load()).Add(idle))
		}
		k, err := src.Read(buf)
		if k > 0 {
			last.Store(time.Now().UnixNano())
			n.Add(int64(k))
			if _, werr := dst.Write(buf[:k]); werr != nil {
				src.Close()
				return
			}
		}
		if err == nil {
			continue
		}
		if errors.Is(err, os.ErrDeadlineExceeded) && time.Since(time.Unix(0, last.Load())) < idle {
			continue // the other direction was active
		}
		if errors.Is(err, io.EOF) {
			if cw, ok := dst.(interface{ CloseWrite() error }); ok {
				cw.CloseWrite()
				return
			}
		}
		dst.Close()
		src.Close()
		return
	}
}
