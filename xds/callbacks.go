package xds

import (
	"context"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/gitmesh/gitmesh/api/nodemeta"
)

// sentPerStream bounds how many response nonces a stream remembers. A
// client may only ACK or NACK the latest nonce of each type, so a few per
// type are plenty.
const sentPerStream = 32

// streamKey identifies a stream. go-control-plane numbers SotW and delta
// streams separately, so their ids collide.
type streamKey struct {
	delta bool
	id    int64
}

// streamState is what the server remembers about one open stream.
type streamState struct {
	nodeID string          // "" until the first request names a valid node
	peer   Peer            // the client, as the transport saw it
	sent   map[string]sent // by response nonce
	order  []string        // nonces in sending order, for pruning
}

// sent is a response as sent: which type, at which per-type version.
type sent struct {
	typeURL string
	version string
}

func (st *streamState) remember(nonce string, s sent) {
	if st.sent == nil {
		st.sent = map[string]sent{}
	}
	st.sent[nonce] = s
	st.order = append(st.order, nonce)
	if len(st.order) > sentPerStream {
		delete(st.sent, st.order[0])
		st.order = st.order[1:]
	}
}

// request is the part of a SotW or delta request the fleet status needs.
type request struct {
	node    *corev3.Node // nil on a delta request after the first
	typeURL string
	nonce   string // response_nonce: "" on a type's first request on a stream
	version string // SotW version_info: the version the client runs; "" for delta
	err     *statuspb.Status
	// admitted is the Workload AdmitFunc returned for the node of a
	// stream's first request; nil without admission.
	admitted *nodemeta.Workload
}

// callbacks feeds go-control-plane's stream events into the fleet status.
// They run synchronously on the stream goroutines.
type callbacks struct {
	s *Server
}

var _ serverv3.Callbacks = (*callbacks)(nil)

// OnStreamOpen records a new SotW stream (ADS or per type).
func (c *callbacks) OnStreamOpen(ctx context.Context, id int64, _ string) error {
	return c.s.openStream(ctx, streamKey{id: id})
}

// OnStreamClosed records the end of a SotW stream.
func (c *callbacks) OnStreamClosed(id int64, _ *corev3.Node) {
	c.s.closeStream(streamKey{id: id})
}

// OnStreamRequest binds the stream to its node (refusing invalid metadata)
// and records ACKs and NACKs.
//
// It also rewrites a NACK's version_info, which names the version the
// client still runs, to the version it rejected. go-control-plane's cache
// answers at once any request whose version differs from the snapshot's,
// so it would resend the rejected version, the client would NACK it again,
// and so on at network speed (envoyproxy/go-control-plane#962). With the
// rewrite the cache parks the watch until the node's snapshot changes (a
// fix or a rollback), and still answers at once if it already has.
func (c *callbacks) OnStreamRequest(id int64, req *discoveryv3.DiscoveryRequest) error {
	r := request{
		node:    req.GetNode(),
		typeURL: req.GetTypeUrl(),
		nonce:   req.GetResponseNonce(),
		version: req.GetVersionInfo(),
		err:     req.GetErrorDetail(),
	}
	var err error
	if r.admitted, err = c.s.admitNode(streamKey{id: id}, r); err != nil {
		return err
	}
	rejected, nodeID, err := c.s.request(streamKey{id: id}, r)
	if rejected != "" {
		req.VersionInfo = rejected
	}
	bindNodeID(req.GetNode(), nodeID)
	req.ResourceNames = c.s.names.intern(req.ResourceNames)
	return err
}

// bindNodeID makes the node go-control-plane keeps for a stream carry the
// id the stream is bound to (the admitted one), so that both caches, and
// the secrets above all, are looked up by that id and not by whatever the
// client first announced. go-control-plane keeps the first request's Node
// for the stream's later requests, so rewriting it once suffices.
func bindNodeID(n *corev3.Node, id string) {
	if n != nil && id != "" && n.GetId() != id {
		n.Id = id
	}
}

// OnStreamResponse records the nonce and per-type version of a response.
func (c *callbacks) OnStreamResponse(_ context.Context, id int64, _ *discoveryv3.DiscoveryRequest, resp *discoveryv3.DiscoveryResponse) {
	c.s.response(streamKey{id: id}, resp.GetNonce(), sent{typeURL: resp.GetTypeUrl(), version: resp.GetVersionInfo()})
}

// OnDeltaStreamOpen records a new delta stream.
func (c *callbacks) OnDeltaStreamOpen(ctx context.Context, id int64, _ string) error {
	return c.s.openStream(ctx, streamKey{delta: true, id: id})
}

// OnDeltaStreamClosed records the end of a delta stream.
func (c *callbacks) OnDeltaStreamClosed(id int64, _ *corev3.Node) {
	c.s.closeStream(streamKey{delta: true, id: id})
}

// OnStreamDeltaRequest is OnStreamRequest for delta streams. A delta NACK
// needs no rewrite: the delta cache diffs the snapshot against what it sent,
// not against what the client ACKed, so it does not resend.
func (c *callbacks) OnStreamDeltaRequest(id int64, req *discoveryv3.DeltaDiscoveryRequest) error {
	r := request{
		node:    req.GetNode(),
		typeURL: req.GetTypeUrl(),
		nonce:   req.GetResponseNonce(),
		err:     req.GetErrorDetail(),
	}
	var err error
	if r.admitted, err = c.s.admitNode(streamKey{delta: true, id: id}, r); err != nil {
		return err
	}
	_, nodeID, err := c.s.request(streamKey{delta: true, id: id}, r)
	bindNodeID(req.GetNode(), nodeID)
	req.ResourceNamesSubscribe = c.s.names.intern(req.ResourceNamesSubscribe)
	return err
}

// OnStreamDeltaResponse records a delta response. Its system_version_info
// is the snapshot's version of the type: once the client ACKs it, it holds
// every subscribed resource of that type at that version.
func (c *callbacks) OnStreamDeltaResponse(id int64, _ *discoveryv3.DeltaDiscoveryRequest, resp *discoveryv3.DeltaDiscoveryResponse) {
	c.s.response(streamKey{delta: true, id: id}, resp.GetNonce(), sent{typeURL: resp.GetTypeUrl(), version: resp.GetSystemVersionInfo()})
}

// OnFetchRequest accepts REST fetches (not served by Serve).
func (c *callbacks) OnFetchRequest(context.Context, *discoveryv3.DiscoveryRequest) error { return nil }

// OnFetchResponse ignores REST fetches.
func (c *callbacks) OnFetchResponse(*discoveryv3.DiscoveryRequest, *discoveryv3.DiscoveryResponse) {}

// openStream runs the stream gate and the peer check, then records the
// stream with its peer; an error refuses the stream.
func (s *Server) openStream(ctx context.Context, key streamKey) error {
	if err := s.openGate(); err != nil {
		return err
	}
	p := PeerOf(ctx)
	if err := s.checkPeer(p); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.streams[key] = &streamState{peer: p}
	return nil
}

func (s *Server) closeStream(key streamKey) {
	s.mu.Lock()
	st := s.streams[key]
	delete(s.streams, key)
	var n *node
	if st != nil && st.nodeID != "" {
		n = s.nodes[st.nodeID]
	}
	disconnected := false
	if n != nil {
		n.streams--
		if n.streams == 0 {
			n.disconnectedAt = time.Now()
			disconnected = true
			s.log.Info("node disconnected", "node_id", st.nodeID)
		}
	}
	s.mu.Unlock()
	if disconnected {
		s.signal()
	}
}

// request handles one request: it binds the stream to its node on the
// first one, then maps response_nonce to what was sent: with error_detail
// it is a NACK of that version, without it an ACK. For a NACK it returns
// the rejected per-type version. It returns the id the stream is bound to.
func (s *Server) request(key streamKey, r request) (rejected, nodeID string, err error) {
	now := time.Now()
	s.mu.Lock()
	st := s.streams[key]
	if st == nil { // not opened through the callbacks; cannot happen with go-control-plane
		st = &streamState{}
		s.streams[key] = st
	}
	changed := false
	if st.nodeID == "" && r.admitted != nil {
		s.bindLocked(st, *r.admitted, now)
		changed = true
	}
	if st.nodeID == "" {
		w, err := s.parseNode(r.node)
		if err != nil {
			s.mu.Unlock()
			return "", "", err
		}
		s.bindLocked(st, w, now)
		changed = true
	}
	n := s.nodes[st.nodeID] // never nil: a node with an open stream is never forgotten
	n.lastSeen = now
	before := n.summary()
	rejected, acked := s.ackLocked(st, n, r, now)
	if acked {
		changed = true
	}
	n.recompute()
	s.metrics.converged(n, now)
	if n.summary() != before {
		changed = true
	}
	nodeID = st.nodeID
	s.mu.Unlock()
	if changed {
		s.signal()
	}
	return rejected, nodeID, nil
}

// parseNode reads the Workload a node announces; invalid metadata refuses
// the stream with an InvalidArgument status, and is logged.
func (s *Server) parseNode(node *corev3.Node) (nodemeta.Workload, error) {
	w, err := nodemeta.FromNode(node)
	if err != nil {
		s.log.Warn("refusing node with invalid metadata", "node_id", node.GetId(), "error", err)
		return w, status.Errorf(codes.InvalidArgument, "gitmesh xds: refusing node %q: %v", node.GetId(), err)
	}
	return w, nil
}

// bindLocked ties a stream to the node w describes. s.mu must be held.
func (s *Server) bindLocked(st *streamState, w nodemeta.Workload, now time.Time) {
	st.nodeID = w.ID
	n := s.nodes[w.ID]
	if n == nil {
		n = newNode(w, now)
		s.nodes[w.ID] = n
	}
	n.workload = w
	if n.streams == 0 {
		n.connectedAt = now
		s.log.Info("node connected", "node_id", w.ID, "role", w.Role, "service", w.Service, "namespace", w.Namespace,
			"assigned", n.assigned)
	}
	n.streams++
}

// ackLocked records the ACK or NACK r carries, if any. It returns the
// version a NACK rejected, and whether the request ACKed or NACKed a
// response (Changed fires even when the version was ACKed before) or
// reported a new running version. s.mu must be held.
func (s *Server) ackLocked(st *streamState, n *node, r request, now time.Time) (rejected string, changed bool) {
	if r.nonce == "" {
		// A type's first request on a stream: a reconnecting SotW client
		// reports the version it runs in version_info.
		if r.version == "" || r.typeURL == "" {
			return "", false
		}
		ts := n.typeStatus(r.typeURL)
		if ts.Acked == r.version {
			return "", false
		}
		ts.Acked = r.version
		return "", true
	}
	sent, ok := st.sent[r.nonce]
	if !ok {
		return "", false // a nonce this stream did not send, or long superseded
	}
	ts := n.typeStatus(sent.typeURL)
	if r.err != nil {
		s.nackLocked(n, ts, sent, r.err.GetMessage(), now)
		return sent.version, true
	}
	s.metrics.acked(sent.typeURL)
	ts.Acked = sent.version
	if ts.Nacked == sent.version {
		ts.Nacked, ts.Error = "", ""
	}
	return "", true
}

// nackLocked records a NACK. s.mu must be held. A secret NACK is counted
// and logged but is never the node's NACK of its config.
func (s *Server) nackLocked(n *node, ts *TypeStatus, sent sent, msg string, now time.Time) {
	ts.Nacked, ts.Error = sent.version, msg
	if sent.typeURL == resource.SecretType {
		s.metrics.nacked(sent.typeURL)
		s.log.Warn("node rejected secrets", "node_id", n.workload.ID, "secrets_version", sent.version, "error", msg)
		return
	}
	label := ""
	if a := n.find(n.assigned); a != nil && a.types[sent.typeURL].version == sent.version {
		label = n.assigned
		n.nack = &NACK{Version: label, TypeURL: sent.typeURL, Error: msg, At: now}
	}
	s.metrics.nacked(sent.typeURL)
	s.log.Warn("node rejected config", "node_id", n.workload.ID, "type_url", sent.typeURL,
		"type_version", sent.version, "version", label, "error", msg)
}

// response records a response about to be sent on a stream.
func (s *Server) response(key streamKey, nonce string, sent sent) {
	s.mu.Lock()
	st := s.streams[key]
	var n *node
	if st != nil && st.nodeID != "" {
		st.remember(nonce, sent)
		n = s.nodes[st.nodeID]
	}
	s.metrics.pushed(sent.typeURL)
	changed := false
	if n != nil {
		before := n.summary()
		n.typeStatus(sent.typeURL).Sent = sent.version
		n.recompute()
		changed = n.summary() != before
	}
	s.mu.Unlock()
	if changed {
		s.signal()
	}
}
