package proxy

import (
	"bytes"
	"context"
	"errors"
	"github.com/gitmesh/gitmesh/proxy/metrics"
	"github.com/gitmesh/gitmesh/proxy/routing"
	"github.com/gitmesh/gitmesh/proxy/upstream"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"
)

// errPerTryTimeout is the error of an attempt cut by per_try_timeout.
var errPerTryTimeout = errors.New("upstream per-try timeout")

// errNoHealthyUpstream is returned when a retry finds no host.
var errNoHealthyUpstream = errors.New("no healthy upstream")

// classify turns a transport error into an attemptError.
func classify(err error, req *http.Request, perTry context.Context) routing.AttemptError {
	switch {
	case err == nil:
		return routing.AttemptOK
	case req.Context().Err() != nil:
		return routing.AttemptAborted
	case perTry != nil && perTry.Err() != nil:
		return routing.AttemptPerTryTimeout
	}
	var opErr *net.OpError
	var hsErr *tlsHandshakeError
	if errors.As(err, &opErr) && opErr.Op == "dial" || errors.As(err, &hsErr) {
		return routing.AttemptConnectFailure
	}
	if strings.Contains(err.Error(), "REFUSED_STREAM") {
		return routing.AttemptRefusedStream
	}
	return routing.AttemptReset
}

// attemptTransport is a cluster's http.RoundTripper: it sends a request to
// the endpoint the handler picked and, under the route's retry policy,
// retries on other endpoints with per-try timeouts and back-off. It feeds
// each attempt's outcome to outlier detection.
type attemptTransport struct {
	inner *http.Transport
	// h1 sends the requests it can (h1Eligible); nil for h2 clusters.
	h1 *h1Client
	// maxPerConn is max_requests_per_connection (HTTP/1.1), 0 for none.
	maxPerConn uint32
}

// send makes one attempt: on the h1Client when it can take the request,
// else on the Transport.
func (t *attemptTransport) send(out *http.Request, rs *requestState) (*http.Response, error) {
	if t.h1 != nil && h1Eligible(out) {
		return t.h1.roundTrip(out, rs)
	}
	if t.maxPerConn > 0 {
		out = limitRequestsPerConn(out, t.maxPerConn)
	}
	return t.inner.RoundTrip(out)
}

// RoundTrip implements http.RoundTripper.
func (t *attemptTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	rs := stateOf(req)
	if rs == nil || rs.endpoint == nil {
		return t.inner.RoundTrip(req)
	}
	return t.roundTrip(req, rs)
}

// roundTrip sends req, the request of rs, with its route's retries.
func (t *attemptTransport) roundTrip(req *http.Request, rs *requestState) (*http.Response, error) {
	c, rp := rs.cluster, rs.route.Retry
	var tried []*upstream.Endpoint
	holdingRetry := false
	for attempt := 0; ; attempt++ {
		ep := rs.endpoint
		out := req
		if attempt > 0 {
			out = req.Clone(req.Context())
			switch {
			case rs.body != nil:
				out.Body = io.NopCloser(bytes.NewReader(rs.body))
				out.ContentLength = int64(len(rs.body))
			case rs.replay != nil:
				out.Body = rs.replay.reader()
			}
		}
		var perTry context.Context
		var cancel context.CancelFunc
		if rp != nil && rp.PerTry > 0 {
			perTry, cancel = context.WithTimeout(out.Context(), rp.PerTry)
			out = out.WithContext(perTry)
		}
		out = c.UpstreamRequest(out, ep)
		ep.State.Active.Add(1)
		resp, err := t.send(out, rs)
		if holdingRetry {
			c.ReleaseRetry()
			holdingRetry = false
		}
		ae := classify(err, req, perTry)
		switch {
		case ae == routing.AttemptOK:
			c.Report(ep, upstream.StatusOutcome(resp.StatusCode))
		case ae != routing.AttemptAborted:
			c.Report(ep, upstream.OutcomeLocalFailure)
		}
		retry := rp != nil && rp.Retriable(resp, ae)
		if retry && (attempt >= rp.NumRetries || !rs.canReplay()) {
			rs.flags |= metrics.FlagRetryLimitExceeded
			retry = false
		}
		if retry {
			if holdingRetry = c.AdmitRetry(); !holdingRetry {
				rs.flags |= metrics.FlagUpstreamOverflow
				retry = false
			}
		}
		if !retry {
			rs.activeEndpoint = ep
			if cancel != nil {
				rs.perTryCancel = cancel
			}
			if ae == routing.AttemptPerTryTimeout {
				return nil, errPerTryTimeout
			}
			return resp, err
		}
		if resp != nil {
			io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
			resp.Body.Close()
		}
		if cancel != nil {
			cancel()
		}
		ep.State.Active.Add(-1)
		c.Metrics.UpstreamRetries.WithLabelValues(c.Name).Inc()
		wait := time.NewTimer(rp.Backoff(attempt))
		select {
		case <-wait.C:
		case <-req.Context().Done():
			wait.Stop()
			c.ReleaseRetry()
			return nil, req.Context().Err()
		}
		tried = append(tried, ep)
		var next *upstream.Endpoint
		for range rp.HostAttempts {
			next = c.Pick(&upstream.PickRequest{Hash: rs.hash, HasHash: rs.hasHash, Avoid: tried, OrigDst: rs.origDst})
			if next == nil || !slices.Contains(tried, next) {
				break
			}
		}
		if next == nil {
			c.ReleaseRetry()
			return nil, errNoHealthyUpstream
		}
		rs.endpoint = next
	}
}
