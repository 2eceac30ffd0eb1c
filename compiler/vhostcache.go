package compiler

import (
	"encoding/binary"
	"maps"
	"reflect"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// This file keeps the outbound RouteConfiguration's VirtualHosts in the
// Cache, one per service port, keyed by everything their translation
// reads, so that a revision changing one VirtualService rebuilds,
// encodes and validates one VirtualHost rather than one per service; the
// RouteConfiguration's encoding is the concatenation of theirs.

// vhostEntry is a VirtualHost built, validated and encoded for a key
// (see vhostKey).
type vhostEntry struct {
	vh   *routev3.VirtualHost // shared by every snapshot that used it; read only
	wire []byte               // vh's deterministic encoding
	// refs are the objects whose addresses the key holds: keeping them
	// alive keeps their addresses from naming other objects.
	refs []any
	gen  uint64
}

// pendingVhost is a VirtualHost a Compile built for key, cached once it
// passed validation.
type pendingVhost struct {
	key  string
	refs []any
}

// vhost returns the VirtualHost cached under key, if any.
func (c *Cache) vhost(key string) (*routev3.VirtualHost, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.vhosts[key]
	if !ok {
		return nil, false
	}
	e.gen = c.gen
	return e.vh, true
}

// vhostWire returns the encoding of vh if the Cache holds it under key.
func (c *Cache) vhostWire(key string, vh *routev3.VirtualHost) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.vhosts[key]
	if !ok || e.vh != vh {
		return nil, false
	}
	e.gen = c.gen
	return e.wire, true
}

// putVhost caches vh, which passed validation, under p.key.
func (c *Cache) putVhost(p pendingVhost, vh *routev3.VirtualHost, wire []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.vhosts[p.key] = &vhostEntry{vh: vh, wire: wire, refs: p.refs, gen: c.gen}
}

// pruneVhosts drops the stale entries; c.mu is held.
func (c *Cache) pruneVhosts(stale func(uint64) bool) {
	maps.DeleteFunc(c.vhosts, func(_ string, e *vhostEntry) bool { return stale(e.gen) })
}

// cachedServiceVhost returns the VirtualHost of a service port of the
// outbound RouteConfiguration, from the Cache when one was built for the
// same inputs, else built by serviceRoutes (and recorded in b.vhosts so
// that check caches it once it is valid).
func (b *builder) cachedServiceVhost(s *service, pt servicePort, name string, domains []string) *routev3.VirtualHost {
	build := func() *routev3.VirtualHost {
		return &routev3.VirtualHost{Name: name, Domains: domains, Routes: b.serviceRoutes(s, pt)}
	}
	if b.p.cache == nil {
		return build()
	}
	key, refs := b.vhostKey(s, pt, name, domains)
	if vh, ok := b.p.cache.vhost(key); ok {
		// With its refs: a concurrent Parse may drop the entry before
		// check, which then caches vh again.
		b.recordVhost(vh, pendingVhost{key: key, refs: refs})
		return vh
	}
	failed := b.err != nil
	vh := build()
	if !failed && b.err == nil {
		b.recordVhost(vh, pendingVhost{key: key, refs: refs})
	}
	return vh
}

// recordVhost notes that vh of this Compile is (to be) cached under p.key.
func (b *builder) recordVhost(vh *routev3.VirtualHost, p pendingVhost) {
	if b.vhosts == nil {
		b.vhosts = map[*routev3.VirtualHost]pendingVhost{}
	}
	b.vhosts[vh] = p
}

// vhostKey spells out everything serviceRoutes and the VirtualHost
// read: the name and domains, the port, the proxy's namespace and labels
// (route source matches), and either the default route's cluster and
// consistent hash or, route by route, the VirtualService's rule (by
// identity: specs are shared, read only, between revisions whose object
// did not change), its validity and owner's namespace, its resolved
// destinations and mirrors, and what each resolves to (cluster,
// consistent hash). refs holds the objects whose addresses the key
// contains.
func (b *builder) vhostKey(s *service, pt servicePort, name string, domains []string) (string, []any) {
	var k keyBuf
	var refs []any
	ptr := func(p any) {
		addr := reflect.ValueOf(p).Pointer()
		if addr != 0 {
			refs = append(refs, p)
		}
		k.int(uint64(addr))
	}
	k.str(name)
	k.int(uint64(len(domains)))
	for _, d := range domains {
		k.str(d)
	}
	k.int(uint64(pt.number))
	k.str(b.namespace)
	k.int(uint64(len(b.class.Labels)))
	for _, l := range sortedKeys(b.class.Labels) {
		k.str(l)
		k.str(b.class.Labels[l])
	}
	hash := func(ch proto.Message) {
		if ch == nil || !ch.ProtoReflect().IsValid() {
			k.int(0)
			return
		}
		w, err := proto.MarshalOptions{Deterministic: true}.Marshal(ch)
		if err != nil {
			b.fail(err)
		}
		k.int(1)
		k.str(string(w))
	}
	v := b.meshVirtualService(s.fqdn)
	if v == nil {
		k.str("default")
		k.str(clusterName(pt.number, "", s.fqdn))
		hash(portConsistentHash(s, pt.number))
		return string(k), refs
	}
	dest := func(d routeDest) {
		k.str(d.host)
		k.str(d.subset)
		k.int(uint64(d.port))
		k.int(uint64(d.weight))
		ptr(d.headers)
		ptr(d.percent)
		cluster, ds, ok := b.destCluster(d, pt.number)
		k.bool(ok)
		k.str(cluster)
		if ok {
			hash(consistentHashFor(ds, d.subset, d.port))
		}
	}
	k.str("vs")
	k.int(uint64(len(v.http)))
	for _, rt := range v.http {
		k.bool(rt.valid)
		ptr(rt.spec)
		k.str(rt.owner.ns)
		k.int(uint64(len(rt.dests)))
		for _, d := range rt.dests {
			dest(d)
		}
		k.int(uint64(len(rt.mirrors)))
		for _, d := range rt.mirrors {
			dest(d)
		}
	}
	return string(k), refs
}

// keyBuf spells a key out as length-prefixed values, so that value
// boundaries are part of it.
type keyBuf []byte

func (k *keyBuf) int(n uint64) { *k = binary.AppendUvarint(*k, n) }

func (k *keyBuf) str(s string) {
	k.int(uint64(len(s)))
	*k = append(*k, s...)
}

func (k *keyBuf) bool(v bool) {
	if v {
		k.int(1)
	} else {
		k.int(0)
	}
}

// routeConfigWire is validateResource for a RouteConfiguration with
// VirtualHosts from cachedServiceVhost: the encoding is spliced from
// each VirtualHost's (cached, or encoded and validated here), as the
// deterministic encoding of a message holding only its name (field 1)
// and virtual hosts (field 2) is. ok is false when rc has other fields or
// none of these VirtualHosts; validateResource then does the whole.
// Errors come from validating rc whole, so they read the same.
func (r *resources) routeConfigWire(rc *routev3.RouteConfiguration) (wire []byte, ok bool, err error) {
	if r.cache == nil || len(r.vhosts) == 0 {
		return nil, false, nil
	}
	only := true
	rc.ProtoReflect().Range(func(fd protoreflect.FieldDescriptor, _ protoreflect.Value) bool {
		only = fd.Number() == 1 || fd.Number() == 2
		return only
	})
	if !only {
		return nil, false, nil
	}
	vhs := rc.GetVirtualHosts()
	wires := make([][]byte, len(vhs))
	fresh := make([]bool, len(vhs))
	size := 0
	valid := true
	for i, vh := range vhs {
		p, cached := r.vhosts[vh]
		if cached {
			wires[i], cached = r.cache.vhostWire(p.key, vh)
		}
		if !cached {
			b, err := proto.MarshalOptions{Deterministic: true}.Marshal(vh)
			if err != nil {
				return nil, false, nil
			}
			wires[i], fresh[i] = b, true
			if valid && validateEncoded(vh, b, r.anyTypes) != nil {
				valid = false
			}
		}
		size += protowire.SizeTag(2) + protowire.SizeBytes(len(wires[i]))
	}
	if name := rc.GetName(); name != "" {
		wire = protowire.AppendTag(make([]byte, 0, size+len(name)+8), 1, protowire.BytesType)
		wire = protowire.AppendString(wire, name)
	} else {
		wire = make([]byte, 0, size)
	}
	for _, w := range wires {
		wire = protowire.AppendTag(wire, 2, protowire.BytesType)
		wire = protowire.AppendBytes(wire, w)
	}
	if !valid {
		return wire, true, validateEncoded(rc, wire, r.anyTypes)
	}
	for i, vh := range vhs {
		if p, ok := r.vhosts[vh]; ok && fresh[i] {
			r.cache.putVhost(p, vh, wires[i])
		}
	}
	return wire, true, nil
}
