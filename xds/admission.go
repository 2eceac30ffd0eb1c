package xds

import (
	"context"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/gitmesh/gitmesh/api/nodemeta"
)

// AdmitFunc decides whether the server serves a node, from what it
// announces, before the node is bound to its stream. It returns the
// Workload to serve, possibly corrected (e.g. its labels taken from its
// Pod), or an error that refuses the stream: the client sees it as a
// PermissionDenied status with the error's text. It runs on the stream's
// goroutine, outside the server's lock, under AdmitTimeout; its context
// carries the stream's Peer (PeerFromContext).
type AdmitFunc func(ctx context.Context, w nodemeta.Workload) (nodemeta.Workload, error)

// AdmitTimeout bounds one AdmitFunc call.
const AdmitTimeout = 5 * time.Second

// WithAdmission makes the server ask admit before it serves a node (the
// Kubernetes mode checks a sidecar's pod identity). Default: every node
// with valid metadata is served.
func WithAdmission(admit AdmitFunc) Option { return func(s *Server) { s.admit = admit } }

// WithStreamGate makes the server ask gate when a stream opens; a non-nil
// error refuses it with an Unavailable status, so the client reconnects
// with backoff (the Kubernetes mode refuses streams on replicas that do
// not lead). Default: every stream is accepted.
func WithStreamGate(gate func() error) Option { return func(s *Server) { s.gate = gate } }

// openGate runs the stream gate.
func (s *Server) openGate() error {
	if s.gate == nil {
		return nil
	}
	if err := s.gate(); err != nil {
		return status.Errorf(codes.Unavailable, "gitmesh xds: %v", err)
	}
	return nil
}

// admitNode parses and admits the node of a stream's first request. It
// returns nil, nil when there is no admission or the stream is bound.
func (s *Server) admitNode(key streamKey, r request) (*nodemeta.Workload, error) {
	if s.admit == nil {
		return nil, nil
	}
	s.mu.Lock()
	st := s.streams[key]
	bound := st != nil && st.nodeID != ""
	var p Peer
	if st != nil {
		p = st.peer
	}
	s.mu.Unlock()
	if bound {
		return nil, nil
	}
	w, err := s.parseNode(r.node)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(withPeer(context.Background(), p), AdmitTimeout)
	defer cancel()
	admitted, err := s.admit(ctx, w)
	if err != nil {
		s.log.Warn("refusing node", "node_id", w.ID, "pod", w.Pod, "namespace", w.Namespace, "error", err)
		return nil, status.Errorf(codes.PermissionDenied, "gitmesh xds: refusing node %q: %v", w.ID, err)
	}
	return &admitted, nil
}
