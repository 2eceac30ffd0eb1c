package xdsauth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"

	"github.com/gitmesh/gitmesh/api/nodemeta"
	"github.com/gitmesh/gitmesh/ca"
	"github.com/gitmesh/gitmesh/xds"
)

// Admitter is the xds.AdmitFunc of a locked control plane: the node a
// stream announces must be the one its client certificate binds.
type Admitter struct {
	authority Authorities
	next      xds.AdmitFunc
	log       *slog.Logger
}

// NewAdmitter returns an Admitter for certificates of authority. next
// checks, after the binding, a node bound to a pod (joined with a
// ServiceAccount token): the Kubernetes mode's pod check, which takes the
// node's labels from its Pod. Nodes that joined with the join token
// declared their labels, which their certificate binds; next does not
// run for them. Without next, pod-bound nodes are refused.
func NewAdmitter(authority Authorities, next xds.AdmitFunc, log *slog.Logger) *Admitter {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Admitter{authority: authority, next: next, log: log}
}

// Admit checks w against the stream's certificate: node id = CommonName,
// NAMESPACE and SERVICE_ACCOUNT = the SPIFFE id's, NAME = the bound pod
// and LABELS = the bound labels (a node bound to a pod takes its labels
// from the Pod, through next). It then drops an ADMIN_ADDR whose host is
// not the stream's peer IP (or, for a Pod-bound node, one of its Pod's
// IPs; a loopback peer may announce a loopback address), so that the
// controller scrapes no address of the node's choosing. An admin address
// on every interface (0.0.0.0:15020, as injected sidecars listen) becomes
// the peer IP's.
func (a *Admitter) Admit(ctx context.Context, w nodemeta.Workload) (nodemeta.Workload, error) {
	p, _ := xds.PeerFromContext(ctx)
	if len(p.Chain) == 0 {
		return w, errors.New("no client certificate")
	}
	id, err := a.authority.Authority().Verify(p.Chain)
	if err != nil {
		return w, err
	}
	b, err := BindingOf(p.Chain[0])
	if err != nil {
		return w, err
	}
	announced := ca.WorkloadIdentity(id.TrustDomain, w.Namespace, w.ServiceAccount)
	ns, sa := announced.Namespace, announced.ServiceAccount
	switch {
	case w.ID != b.NodeID:
		return w, fmt.Errorf("node id %q: the client certificate is for node %q", w.ID, b.NodeID)
	case ns != id.Namespace:
		return w, fmt.Errorf("namespace %q: the client certificate of node %s is for %s", ns, w.ID, id)
	case sa != id.ServiceAccount:
		return w, fmt.Errorf("service account %q: the client certificate of node %s is for %s", sa, w.ID, id)
	case b.Pod != "" && w.Pod != b.Pod:
		return w, fmt.Errorf("pod %q: the client certificate of node %s is for pod %q", w.Pod, w.ID, b.Pod)
	case b.Pod == "" && !maps.Equal(w.Labels, b.Labels):
		return w, fmt.Errorf("labels %v: the client certificate of node %s binds %v", w.Labels, w.ID, b.Labels)
	}
	allowed := []net.IP{p.IP()}
	if b.Pod != "" {
		if a.next == nil {
			return w, fmt.Errorf("node %s is bound to pod %s, and this controller does not check pods", w.ID, b.Pod)
		}
		if w, err = a.next(ctx, w); err != nil {
			return w, err
		}
		// next checked the announced IPs against the Pod's.
		for _, s := range w.InstanceIPs {
			allowed = append(allowed, net.ParseIP(s))
		}
	}
	if host, port, err := net.SplitHostPort(w.Admin); err == nil && p.IP() != nil {
		if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
			// Listening on every address: scrape it where it connects from.
			w.Admin = net.JoinHostPort(p.IP().String(), port)
		}
	}
	if w.Admin != "" && !adminAllowed(w.Admin, allowed) {
		a.log.Warn("dropping the admin address of a node: its host is not the node's address, so it is not scraped",
			"node_id", w.ID, "admin_addr", w.Admin, "peer", p.AddrString())
		w.Admin = ""
	}
	return w, nil
}

// adminAllowed reports whether the host of addr is one of allowed, or
// loopback when allowed[0] (the peer) is.
func adminAllowed(addr string, allowed []net.IP) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	peerLoopback := len(allowed) > 0 && allowed[0] != nil && allowed[0].IsLoopback()
	if host == "localhost" {
		return peerLoopback
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return false
	}
	if ip.IsLoopback() {
		return peerLoopback
	}
	for _, a := range allowed {
		if a != nil && a.Equal(ip) {
			return true
		}
	}
	return false
}
