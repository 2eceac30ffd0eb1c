package xds

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
)

// Secrets (SDS) travel on the same ADS stream as the config, but are kept
// in a second per-node SnapshotCache: go-control-plane's MuxCache sends
// every request of resource.SecretType (SotW and delta, ADS and the
// standalone SDS service) there and every other type to the config cache.
// The two are independent: the reconciler's SetSnapshot never touches a
// node's secrets and SetSecrets never changes the config a node is
// assigned, so a certificate rotation cannot disturb a rollout.
//
// Both caches key a node by the id its stream is bound to: the id the
// admission returned (see callbacks.OnStreamRequest), so a node is only
// ever served the secrets SetSecrets gave its own id.

// muxConfig and muxSecrets are the MuxCache's keys.
const (
	muxConfig  = "config"
	muxSecrets = "secrets"
)

// ErrUnknownNode is returned by SetSecrets for a node the server does not
// know (never connected, or forgotten).
var ErrUnknownNode = errors.New("node is not known")

// SecretsStatus is a node's secret (SDS) state. Secrets are bookkept apart
// from the config types: a secret NACK is counted, logged and shown here,
// never as the node's NACK of its assigned config version.
type SecretsStatus struct {
	// Version is the version SetSecrets last gave the node (a content hash
	// of its secrets), "" if none.
	Version string
	// Names are the secrets of that version, sorted.
	Names []string
	// TypeStatus holds the versions sent, ACKed and NACKed. The node may
	// subscribe to a subset of Names: an ACK of Version means it holds
	// the current version of every secret it subscribes to.
	TypeStatus
}

// newMuxCache routes secret requests to secrets and the rest to config.
func newMuxCache(config, secrets cachev3.Cache) *cachev3.MuxCache {
	return &cachev3.MuxCache{
		Classify:      func(r *cachev3.Request) string { return muxKey(r.GetTypeUrl()) },
		ClassifyDelta: func(r *cachev3.DeltaRequest) string { return muxKey(r.GetTypeUrl()) },
		Caches:        map[string]cachev3.Cache{muxConfig: config, muxSecrets: secrets},
	}
}

// muxKey is the MuxCache key of a type: secrets or config.
func muxKey(typeURL string) string {
	if typeURL == resource.SecretType {
		return muxSecrets
	}
	return muxConfig
}

// SetSecrets gives the node with id nodeID exactly these secrets (Envoy
// SDS resources, e.g. "default" and "ROOTCA"), replacing what it had, and
// pushes them to its open secret watches. It returns their version, a
// content hash: NodeStatus.Secrets.Acked equals it once the node ACKed
// them.
//
// The node must be known (connected, or within its grace period): secrets
// are per connected workload and are dropped with the node when it is
// forgotten. For an unknown node SetSecrets returns ErrUnknownNode and
// stores nothing. The secrets are not copied and must not be modified
// afterwards.
func (s *Server) SetSecrets(ctx context.Context, nodeID string, secrets []*tlsv3.Secret) (string, error) {
	if nodeID == "" {
		return "", errors.New("assigning secrets: node id is empty")
	}
	version, names, err := secretsVersion(secrets)
	if err != nil {
		return "", fmt.Errorf("assigning secrets to node %s: %w", nodeID, err)
	}
	items := make([]types.Resource, len(secrets))
	for i, sec := range secrets {
		items[i] = sec
	}
	snap, err := cachev3.NewSnapshot(version, map[resource.Type][]types.Resource{resource.SecretType: items})
	if err != nil {
		return "", fmt.Errorf("assigning secrets to node %s: %w", nodeID, err)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.nodes[nodeID]
	if n == nil {
		return "", fmt.Errorf("assigning secrets to node %s: %w", nodeID, ErrUnknownNode)
	}
	n.secrets.Version, n.secrets.Names = version, names
	if err := s.secrets.SetSnapshot(ctx, nodeID, snap); err != nil {
		return "", fmt.Errorf("assigning secrets to node %s: %w", nodeID, err)
	}
	return version, nil
}

// secretsVersion checks secrets (named, names unique) and returns a content
// hash of them with their sorted names.
func secretsVersion(secrets []*tlsv3.Secret) (string, []string, error) {
	sorted := slices.Clone(secrets)
	slices.SortFunc(sorted, func(a, b *tlsv3.Secret) int { return strings.Compare(a.GetName(), b.GetName()) })
	h := sha256.New()
	names := make([]string, 0, len(sorted))
	for i, sec := range sorted {
		if sec == nil || sec.GetName() == "" {
			return "", nil, errors.New("a secret has no name")
		}
		if i > 0 && sorted[i-1].GetName() == sec.GetName() {
			return "", nil, fmt.Errorf("secret %q given twice", sec.GetName())
		}
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(sec)
		if err != nil {
			return "", nil, fmt.Errorf("encoding secret %q: %w", sec.GetName(), err)
		}
		fmt.Fprintf(h, "%d:", len(b))
		h.Write(b)
		names = append(names, sec.GetName())
	}
	return hex.EncodeToString(h.Sum(nil))[:16], names, nil
}
