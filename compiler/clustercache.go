package compiler

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"hash"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/proto"
)

// clusterGroup is the clusters and ClusterLoadAssignments outboundClusters
// built for one service, kept in a Cache by clusterKey. They are shared by
// every Snapshot that uses them and must not be modified.
type clusterGroup struct {
	clusters []*clusterv3.Cluster
	clas     []*endpointv3.ClusterLoadAssignment
	gen      uint64
}

// encoded is the deterministic encoding of a shared resource that passed
// validation.
type encoded struct {
	wire []byte
	gen  uint64
}

// clusterGroup returns the group cached under key, if any.
func (c *Cache) clusterGroup(key [sha256.Size]byte) (*clusterGroup, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	g, ok := c.groups[key]
	if ok {
		g.gen = c.gen
	}
	return g, ok
}

// putClusterGroup caches g under key.
func (c *Cache) putClusterGroup(key [sha256.Size]byte, g *clusterGroup) {
	c.mu.Lock()
	defer c.mu.Unlock()
	g.gen = c.gen
	c.groups[key] = g
}

// encodedOf returns the encoding of shared resource m if it was validated.
func (c *Cache) encodedOf(m proto.Message) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.encoded[m]
	if ok {
		e.gen = c.gen
		c.encoded[m] = e
	}
	return e.wire, ok
}

// putEncoded records shared resource m as validated, with its encoding.
func (c *Cache) putEncoded(m proto.Message, wire []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.encoded[m] = encoded{wire: wire, gen: c.gen}
}

// clusterInputs hashes what every service's clusters read besides the
// service itself: the mTLS settings with every PeerAuthentication, the
// connected fleet, and the class's role and generator.
func (b *builder) clusterInputs() ([sha256.Size]byte, error) {
	h := keyHash{sha256.New()}
	m := &b.p.mtls
	h.str(m.trustDomain)
	h.str(m.rootNamespace)
	h.bool(m.auto)
	h.int(len(b.p.PeerAuthentications))
	for _, pa := range b.p.PeerAuthentications {
		h.str(pa.Namespace)
		h.str(pa.Name)
		h.str(string(pa.Object.YAML))
	}
	fleet, err := json.Marshal(b.fleet) // maps are written sorted
	if err != nil {
		return [sha256.Size]byte{}, err
	}
	h.str(string(fleet))
	h.str(b.class.Role)
	h.str(b.class.Generator)
	return h.sum(), nil
}

// clusterKey hashes inputs (clusterInputs) and every field of s that
// outboundClusters reads, so that equal keys build equal clusters.
func clusterKey(inputs [sha256.Size]byte, s *service) ([sha256.Size]byte, error) {
	h := keyHash{sha256.New()}
	h.Write(inputs[:])
	h.str(s.fqdn)
	h.str(s.name)
	h.str(s.namespace)
	h.bool(s.local)
	h.bool(s.entry != nil)
	if s.entry != nil {
		h.str(s.entry.Namespace)
		h.str(s.entry.Name)
		h.int(int(s.entry.Spec.GetLocation()))
	}
	h.bool(s.kube != nil)
	h.bool(s.fromCluster())
	h.int(int(s.resolution))
	h.int(len(s.ports))
	for _, pt := range s.ports {
		h.int(int(pt.number))
		h.str(pt.name)
		h.str(pt.protocol)
		h.int(int(pt.targetPort))
	}
	h.endpoints(s.endpoints)
	h.labels(s.selector)
	h.bool(s.selector != nil)
	h.endpoints(s.selected)
	h.bool(s.export.all)
	h.strs(s.export.namespaces)
	h.strs(s.addresses)
	if err := h.proto(s.policy); err != nil {
		return [sha256.Size]byte{}, err
	}
	h.int(len(s.subsets))
	for _, ss := range s.subsets {
		h.str(ss.name)
		h.labels(ss.labels)
		if err := h.proto(ss.policy); err != nil {
			return [sha256.Size]byte{}, err
		}
	}
	return h.sum(), nil
}

// keyHash writes length-prefixed values into a hash, so that value
// boundaries are part of it.
type keyHash struct{ hash.Hash }

func (h keyHash) int(n int) {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(n))
	h.Write(b[:])
}

func (h keyHash) bool(v bool) {
	if v {
		h.int(1)
	} else {
		h.int(0)
	}
}

func (h keyHash) str(s string) { writeField(h.Hash, s) }

func (h keyHash) strs(ss []string) {
	h.int(len(ss))
	for _, s := range ss {
		h.str(s)
	}
}

func (h keyHash) labels(m map[string]string) {
	h.int(len(m))
	for _, k := range sortedKeys(m) {
		h.str(k)
		h.str(m[k])
	}
}

func (h keyHash) endpoints(eps []endpoint) {
	h.int(len(eps))
	for _, ep := range eps {
		h.str(ep.address)
		h.int(len(ep.ports))
		for _, k := range sortedKeys(ep.ports) {
			h.str(k)
			h.int(int(ep.ports[k]))
		}
		h.int(int(ep.port))
		h.labels(ep.labels)
		h.int(int(ep.weight))
		h.str(ep.workload)
		h.str(ep.ns)
		h.str(ep.sa)
		h.bool(ep.proxied)
		h.int(int(ep.appPort))
		h.bool(ep.meshed)
	}
}

// proto writes m's deterministic encoding (nil and empty differ).
func (h keyHash) proto(m proto.Message) error {
	if m == nil || !m.ProtoReflect().IsValid() {
		h.int(-1)
		return nil
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		return err
	}
	h.str(string(b))
	return nil
}

func (h keyHash) sum() [sha256.Size]byte {
	var out [sha256.Size]byte
	h.Sum(out[:0])
	return out
}
