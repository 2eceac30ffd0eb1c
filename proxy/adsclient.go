package proxy

import (
	"github.com/gitmesh/gitmesh/proxy/ads"
)

func newADSClient(p *Proxy, a ads.Handler) *ads.Client {
	return &ads.Client{
		Addr: p.cfg.XDSAddr, Creds: p.cfg.XDSCredentials, Node: p.node,
		BackoffInitial: p.cfg.BackoffInitial, BackoffMax: p.cfg.BackoffMax,
		Log: p.log, Metrics: p.metrics, Handler: a, Rejected: map[string]ads.Rejection{},
	}
}
