package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"github.com/gitmesh/gitmesh/proxy/config"
	"github.com/gitmesh/gitmesh/proxy/metrics"
	"github.com/gitmesh/gitmesh/proxy/routing"
	"github.com/gitmesh/gitmesh/proxy/upstream"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// proxyTCP proxies one downstream connection to an endpoint of the TCP
// proxy's cluster until either side closes, the idle timeout passes, or ctx
// ends (the listener drained). It closes down. origDst is the address the
// client dialled when the connection was redirected to the proxy (the
// only endpoint of an ORIGINAL_DST cluster), else "".
func (p *Proxy) proxyTCP(ctx context.Context, down net.Conn, lc *config.ListenerConfig, tp *config.TCPProxy, origDst string) {
	defer down.Close()
	rt := &routing.Route{Clusters: tp.Clusters, TotalWeight: tp.TotalWeight}
	c := rt.PickCluster().Cluster
	var flags metrics.ResponseFlags
	var up net.Conn
	var ep *upstream.Endpoint
	var sec metrics.ConnSecurity
	if lc.Inbound {
		if tc, ok := down.(*tls.Conn); ok {
			cs := tc.ConnectionState()
			sec = p.downstreamSecurity(&cs, tp.TLS)
		}
	}
	defer func() {
		if up == nil {
			p.observeTCP(lc, c, ep, sec, flags, 0, 0, false)
		}
	}()
	if c.Missing {

		flags |= metrics.FlagNoClusterFound
		return
	}
	if !c.AdmitConnection() {
		flags |= metrics.FlagUpstreamOverflow
		p.metrics.BreakerOpen.WithLabelValues(c.Name).Inc()
		return
	}
	defer c.ReleaseConnection()
	pr := &upstream.PickRequest{OrigDst: origDst}
	if tp.HashSourceIP {
		if host, _, err := net.SplitHostPort(down.RemoteAddr().String()); err == nil {
			pr.Hash, pr.HasHash = upstream.HashString(host), true
		}
	}
	for attempt := 0; attempt < tp.MaxConnectAttempts && up == nil; attempt++ {
		ep = c.Pick(pr)
		if ep == nil {
			flags |= metrics.FlagNoHealthyUpstream
			return
		}
		d := net.Dialer{Timeout: c.ConnectTimeout}
		conn, err := d.DialContext(ctx, "tcp", ep.Addr)
		if tc := c.Sockets.ForEndpoint(ep.TLSMatch); err == nil && tc != nil {
			// Originate TLS; a failed handshake is a connect failure.
			var tconn *tls.Conn
			if tconn, err = p.clientHandshake(ctx, conn, ep.Addr, tc, false, c.ConnectTimeout); err == nil {
				conn = tconn
				if cs := tconn.ConnectionState(); !lc.Inbound && len(cs.PeerCertificates) > 0 {
					sec.Destination = metrics.FirstURI(cs.PeerCertificates[0])
				}
			}
		}
		if err != nil {
			c.Report(ep, upstream.OutcomeLocalFailure)
			pr.Avoid = append(pr.Avoid, ep)
			flags |= metrics.FlagUpstreamConnFail
			continue
		}
		c.Report(ep, upstream.OutcomeSuccess)
		flags &^= metrics.FlagUpstreamConnFail
		up = conn
	}
	if up == nil {
		if tp.MaxConnectAttempts > 1 {
			flags |= metrics.FlagRetryLimitExceeded
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
	wg.Go(func() { copyIdle(up, down, tp.IdleTimeout, &last, &received) })
	copyIdle(down, up, tp.IdleTimeout, &last, &sent)
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
			continue
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
