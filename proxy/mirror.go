package proxy

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/gitmesh/gitmesh/proxy/routing"
	"github.com/gitmesh/gitmesh/proxy/upstream"
)

// shadowJob is one mirrored request.
type shadowJob struct {
	req     *http.Request // without a context; the mirrorer gives it one
	body    []byte
	cluster *upstream.Cluster
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
		m.log.Debug("dropping shadow request: queue full", "cluster", j.cluster.Name)
	}
}

// Run sends queued shadow requests until ctx is done.
func (m *mirrorer) Run(ctx context.Context) {
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
	e := j.cluster.Pick(nil)
	if e == nil || poolOf(j.cluster) == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, m.timeout(j.timeout))
	defer cancel()
	req := j.cluster.UpstreamRequest(j.req.WithContext(ctx), e)
	if j.body != nil {
		req.Body = io.NopCloser(bytes.NewReader(j.body))
		req.ContentLength = int64(len(j.body))
	}
	resp, err := poolOf(j.cluster).transport.RoundTrip(req)
	if err != nil {
		m.log.Debug("shadow request failed", "cluster", j.cluster.Name, "error", err)
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
	for _, mp := range rs.route.Mirrors {
		if mp.Cluster.Missing || !mp.Share.Roll() {
			continue
		}
		req := out.Clone(context.Background())
		req.Body, req.GetBody = nil, nil
		switch {
		case mp.HostRewrite != "":
			req.Host = mp.HostRewrite
		case !mp.NoSuffix:
			req.Host = routing.ShadowHost(out.Host)
		}
		p.mirrors.submit(&shadowJob{req: req, body: rs.body, cluster: mp.Cluster, timeout: rs.route.Timeout})
	}
}
