package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	previoushostsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/retry/host/previous_hosts/v3"
)

// retryOn is a set of retry_on conditions.
type retryOn uint32

const (
	retryOn5xx retryOn = 1 << iota
	retryOnGatewayError
	retryOnReset
	retryOnResetBeforeRequest
	retryOnConnectFailure
	retryOnRetriable4xx
	retryOnRefusedStream
	retryOnRetriableStatusCodes
	retryOnEnvoyRateLimited
	retryOnGRPCCancelled
	retryOnGRPCDeadlineExceeded
	retryOnGRPCInternal
	retryOnGRPCResourceExhausted
	retryOnGRPCUnavailable
	retryOnHTTP3PostConnectFailure
)

var retryOnNames = map[string]retryOn{
	"5xx": retryOn5xx, "gateway-error": retryOnGatewayError, "reset": retryOnReset,
	"reset-before-request": retryOnResetBeforeRequest, "connect-failure": retryOnConnectFailure,
	"retriable-4xx": retryOnRetriable4xx, "refused-stream": retryOnRefusedStream,
	"retriable-status-codes": retryOnRetriableStatusCodes, "envoy-ratelimited": retryOnEnvoyRateLimited,
	"cancelled": retryOnGRPCCancelled, "deadline-exceeded": retryOnGRPCDeadlineExceeded,
	"internal": retryOnGRPCInternal, "resource-exhausted": retryOnGRPCResourceExhausted,
	"unavailable": retryOnGRPCUnavailable, "http3-post-connect-failure": retryOnHTTP3PostConnectFailure,
}

// retryPolicy is a built RetryPolicy.
type retryPolicy struct {
	on          retryOn
	numRetries  int
	perTry      time.Duration // 0: none
	statusCodes []int
	// hostAttempts is how many picks a retry makes to find a host not
	// tried before (host_selection_retry_max_attempts, at least 1).
	hostAttempts int
	backoffBase  time.Duration
	backoffMax   time.Duration
}

// previousHostsPredicate is the only retry_host_predicate: retries go to
// hosts not tried yet when there are any. The proxy does that anyway.
const previousHostsPredicate = "envoy.retry_host_predicates.previous_hosts"

func buildRetryPolicy(rp *routev3.RetryPolicy) (*retryPolicy, *fieldError) {
	if err := checkFields(rp, "retry_on", "num_retries", "per_try_timeout", "retry_host_predicate",
		"host_selection_retry_max_attempts", "retriable_status_codes", "retry_back_off"); err != nil {
		return nil, fieldErr("", "%w", err)
	}
	p := &retryPolicy{numRetries: 1, hostAttempts: 1, backoffBase: 25 * time.Millisecond}
	if n := rp.GetNumRetries(); n != nil {
		p.numRetries = int(n.GetValue())
	}
	if d := rp.GetPerTryTimeout(); d != nil {
		p.perTry = d.AsDuration()
	}
	for _, tok := range strings.Split(rp.GetRetryOn(), ",") {
		tok = strings.TrimSpace(tok)
		if tok == "" {
			continue
		}
		// Envoy's RetryPolicyImpl ignores conditions it does not know
		// (parseRetryOn's validity flag is only checked for the
		// x-envoy-retry-on header), and "retriable-headers" never fires
		// without retriable_headers, which the proxy rejects.
		p.on |= retryOnNames[tok]
	}
	for _, c := range rp.GetRetriableStatusCodes() {
		p.statusCodes = append(p.statusCodes, int(c))
	}
	for i, hp := range rp.GetRetryHostPredicate() {
		field := fmt.Sprintf(".retry_host_predicate[%d]", i)
		if hp.GetName() != previousHostsPredicate {
			return nil, fieldErr(field+".name", "%q: %w", hp.GetName(), errUnsupported)
		}
		if tc := hp.GetTypedConfig(); tc != nil {
			if err := tc.UnmarshalTo(&previoushostsv3.PreviousHostsPredicate{}); err != nil {
				return nil, fieldErr(field+".typed_config", "decoding PreviousHostsPredicate: %w", err)
			}
		}
	}
	if n := rp.GetHostSelectionRetryMaxAttempts(); n > 0 {
		p.hostAttempts = int(n)
	}
	if b := rp.GetRetryBackOff(); b != nil {
		if err := checkFields(b, "base_interval", "max_interval"); err != nil {
			return nil, fieldErr(".retry_back_off", "%w", err)
		}
		p.backoffBase = b.GetBaseInterval().AsDuration()
		if p.backoffBase <= 0 {
			return nil, fieldErr(".retry_back_off.base_interval", "must be positive")
		}
		if m := b.GetMaxInterval(); m != nil {
			p.backoffMax = m.AsDuration()
			if p.backoffMax < p.backoffBase {
				return nil, fieldErr(".retry_back_off.max_interval", "less than base_interval")
			}
		}
	}
	if p.backoffMax == 0 {
		p.backoffMax = 10 * p.backoffBase
	}
	return p, nil
}

// attemptError is how an attempt without a response failed.
type attemptError int

const (
	attemptOK attemptError = iota
	attemptConnectFailure
	attemptRefusedStream
	attemptReset
	attemptPerTryTimeout
	attemptAborted // route timeout or client gone: never retried
)

// retriable reports whether the policy retries an attempt's result.
func (p *retryPolicy) retriable(resp *http.Response, ae attemptError) bool {
	on := p.on
	switch ae {
	case attemptConnectFailure:
		return on&(retryOn5xx|retryOnGatewayError|retryOnReset|retryOnResetBeforeRequest|retryOnConnectFailure) != 0
	case attemptRefusedStream:
		return on&(retryOn5xx|retryOnGatewayError|retryOnReset|retryOnRefusedStream) != 0
	case attemptReset, attemptPerTryTimeout:
		return on&(retryOn5xx|retryOnGatewayError|retryOnReset) != 0
	case attemptAborted:
		return false
	}
	code := resp.StatusCode
	switch {
	case on&retryOn5xx != 0 && code >= 500:
		return true
	case on&retryOnGatewayError != 0 && (code == 502 || code == 503 || code == 504):
		return true
	case on&retryOnRetriable4xx != 0 && code == 409:
		return true
	case on&retryOnRetriableStatusCodes != 0 && slices.Contains(p.statusCodes, code):
		return true
	case on&retryOnEnvoyRateLimited != 0 && resp.Header.Get("X-Envoy-Ratelimited") != "":
		return true
	}
	if on&(retryOnGRPCCancelled|retryOnGRPCDeadlineExceeded|retryOnGRPCInternal|retryOnGRPCResourceExhausted|retryOnGRPCUnavailable) != 0 {
		switch resp.Header.Get("Grpc-Status") {
		case "1":
			return on&retryOnGRPCCancelled != 0
		case "4":
			return on&retryOnGRPCDeadlineExceeded != 0
		case "8":
			return on&retryOnGRPCResourceExhausted != 0
		case "13":
			return on&retryOnGRPCInternal != 0
		case "14":
			return on&retryOnGRPCUnavailable != 0
		}
	}
	return false
}

// backoff returns the wait before retry n (0-based): Envoy's fully
// jittered exponential back-off, random in [0, base*2^n) capped by max.
func (p *retryPolicy) backoff(n int) time.Duration {
	interval := p.backoffBase
	for range n {
		if interval > p.backoffMax/2 {
			interval = p.backoffMax
			break
		}
		interval *= 2
	}
	return min(time.Duration(rand.Int64N(int64(interval))), p.backoffMax)
}

// errPerTryTimeout is the error of an attempt cut by per_try_timeout.
var errPerTryTimeout = errors.New("upstream per-try timeout")

// errNoHealthyUpstream is returned when a retry finds no host.
var errNoHealthyUpstream = errors.New("no healthy upstream")

// classify turns a transport error into an attemptError.
func classify(err error, req *http.Request, perTry context.Context) attemptError {
	switch {
	case err == nil:
		return attemptOK
	case req.Context().Err() != nil:
		return attemptAborted
	case perTry != nil && perTry.Err() != nil:
		return attemptPerTryTimeout
	}
	var opErr *net.OpError
	var hsErr *tlsHandshakeError
	if errors.As(err, &opErr) && opErr.Op == "dial" || errors.As(err, &hsErr) {
		return attemptConnectFailure
	}
	if strings.Contains(err.Error(), "REFUSED_STREAM") {
		return attemptRefusedStream
	}
	return attemptReset
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
	c, rp := rs.cluster, rs.route.retry
	var tried []*endpoint
	holdingRetry := false // a max_retries slot, held while a retry is in flight
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
		if rp != nil && rp.perTry > 0 {
			perTry, cancel = context.WithTimeout(out.Context(), rp.perTry)
			out = out.WithContext(perTry)
		}
		out = c.upstreamRequest(out, ep)
		ep.state.active.Add(1)
		resp, err := t.send(out, rs)
		if holdingRetry {
			c.releaseRetry()
			holdingRetry = false
		}
		ae := classify(err, req, perTry)
		switch {
		case ae == attemptOK:
			c.report(ep, statusOutcome(resp.StatusCode))
		case ae != attemptAborted:
			c.report(ep, outcomeLocalFailure)
		}
		retry := rp != nil && rp.retriable(resp, ae)
		if retry && (attempt >= rp.numRetries || !rs.canReplay()) {
			rs.flags |= flagRetryLimitExceeded
			retry = false
		}
		if retry {
			if holdingRetry = c.admitRetry(); !holdingRetry {
				rs.flags |= flagUpstreamOverflow
				retry = false
			}
		}
		if !retry {
			rs.activeEndpoint = ep
			if cancel != nil {
				rs.perTryCancel = cancel
			}
			if ae == attemptPerTryTimeout {
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
		ep.state.active.Add(-1)
		c.metrics.upstreamRetries.WithLabelValues(c.name).Inc()
		wait := time.NewTimer(rp.backoff(attempt))
		select {
		case <-wait.C:
		case <-req.Context().Done():
			wait.Stop()
			c.releaseRetry()
			return nil, req.Context().Err()
		}
		tried = append(tried, ep)
		var next *endpoint
		for range rp.hostAttempts {
			next = c.pick(&pickRequest{hash: rs.hash, hasHash: rs.hasHash, avoid: tried, origDst: rs.origDst})
			if next == nil || !slices.Contains(tried, next) {
				break
			}
		}
		if next == nil {
			c.releaseRetry()
			return nil, errNoHealthyUpstream
		}
		rs.endpoint = next
	}
}
