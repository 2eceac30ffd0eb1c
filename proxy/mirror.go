package proxy

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
)

// mirrorPolicy is a built RequestMirrorPolicy.
type mirrorPolicy struct {
	cluster     *cluster
	share       fraction
	hostRewrite string
	// noSuffix is disable_shadow_host_suffix_append.
	noSuffix bool
}

func buildMirrorPolicy(mp *routev3.RouteAction_RequestMirrorPolicy, refs *clusterRefs, validate bool) (*mirrorPolicy, *fieldError) {
	if err := checkFields(mp, "cluster", "runtime_fraction", "trace_sampled", "disable_shadow_host_suffix_append", "host_rewrite_literal"); err != nil {
		return nil, fieldErr("", "%w", err)
	}
	c, fe := refs.lookup(".cluster", mp.GetCluster(), validate)
	if fe != nil {
		return nil, fe
	}
	m := &mirrorPolicy{cluster: c, share: million, hostRewrite: mp.GetHostRewriteLiteral(), noSuffix: mp.GetDisableShadowHostSuffixAppend()}
	if rf := mp.GetRuntimeFraction(); rf != nil {
		if err := checkFields(rf, "default_value", "runtime_key"); err != nil {
			return nil, fieldErr(".runtime_fraction", "%w", err)
		}
		f, err := buildFraction(rf.GetDefaultValue())
		if err != nil {
			return nil, fieldErr(".runtime_fraction.default_value", "%w", err)
		}
		m.share = f
	}
	return m, nil
}

// shadowHost appends "-shadow" to the host part of an authority, as Envoy
// names shadow requests ("reviews:9080" becomes "reviews-shadow:9080").
func shadowHost(host string) string {
	if h, port, err := net.SplitHostPort(host); err == nil {
		return net.JoinHostPort(h+"-shadow", port)
	}
	return host + "-shadow"
}

// shadowJob is one mirrored request.
type shadowJob struct {
	req     *http.Request // without a context; the mirrorer gives it one
	body    []byte
	cluster *cluster
	timeout time.Duration
}

// mirrorer sends shadow requests fire-and-forget. Its goroutines are owned
// by Proxy.Run: run starts one goroutine per job (at most maxShadows at a
// time) and waits for them when ctx ends. Jobs beyond the queue are
// dropped; a shadow never slows the primary request down, and holds its
// slot for at most maxTimeout whatever its backend does.
type mirrorer struct {
	log        *slog.Logger
	jobs       chan *shadowJob
	maxTimeout time.Duration
}

const (
	shadowQueue = 256
	maxShadows  = 64
)

func newMirrorer(log *slog.Logger, maxTimeout time.Duration) *mirrorer {
	return &mirrorer{log: log, jobs: make(chan *shadowJob, shadowQueue), maxTimeout: maxTimeout}
}

// timeout is how long a shadow of a route with timeout rt may take: the
// route's timeout (Envoy gives shadows the route's global timeout), capped
// by maxTimeout, which also bounds routes that disable their timeout.
func (m *mirrorer) timeout(rt time.Duration) time.Duration {
	if rt <= 0 || rt > m.maxTimeout {
		return m.maxTimeout
	}
	return rt
}

// submit queues a job, or drops it when the queue is full.
func (m *mirrorer) submit(j *shadowJob) {
	select {
	case m.jobs <- j:
	default:
		m.log.Debug("dropping shadow request: queue full", "cluster", j.cluster.name)
	}
}

// run sends queued shadow requests until ctx is done.
func (m *mirrorer) run(ctx context.Context) {
	var wg sync.WaitGroup
	defer wg.Wait()
	slots := make(chan struct{}, maxShadows)
	for {
		select {
		case <-ctx.Done():
			return
		case j := <-m.jobs:
			select {
			case slots <- struct{}{}:
			case <-ctx.Done():
				return
			}
			wg.Go(func() {
				defer func() { <-slots }()
				m.send(ctx, j)
			})
		}
	}
}

func (m *mirrorer) send(ctx context.Context, j *shadowJob) {
	e := j.cluster.pick(nil)
	if e == nil || poolOf(j.cluster) == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, m.timeout(j.timeout))
	defer cancel()
	req := j.cluster.upstreamRequest(j.req.WithContext(ctx), e)
	if j.body != nil {
		req.Body = io.NopCloser(bytes.NewReader(j.body))
		req.ContentLength = int64(len(j.body))
	}
	resp, err := poolOf(j.cluster).transport.RoundTrip(req)
	if err != nil {
		m.log.Debug("shadow request failed", "cluster", j.cluster.name, "error", err)
		return
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}

// mirror queues the route's shadow requests for out, the request as it is
// forwarded (rewrites and header mutations applied).
func (p *Proxy) mirror(out *http.Request, rs *requestState) {
	if !rs.replayable {
		return
	}
	for _, mp := range rs.route.mirrors {
		if mp.cluster.missing || !mp.share.roll() {
			continue
		}
		req := out.Clone(context.Background())
		req.Body, req.GetBody = nil, nil
		switch {
		case mp.hostRewrite != "":
			req.Host = mp.hostRewrite
		case !mp.noSuffix:
			req.Host = shadowHost(out.Host)
		}
		p.mirrors.submit(&shadowJob{req: req, body: rs.body, cluster: mp.cluster, timeout: rs.route.timeout})
	}
}
