package compiler

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"maps"
	"slices"
	"sync"

	"google.golang.org/protobuf/proto"

	"github.com/gitmesh/gitmesh/sources"
)

// cacheKeepGens is how many Parse calls an unused Cache entry survives.
// The reconciler parses a few revisions per change (the candidate, and on
// a registry change the stable and in-flight ones again), so an object
// unchanged across consecutive revisions is always found.
const cacheKeepGens = 8

// Cache keeps work Parse and Compile did for earlier revisions, so that a
// revision differing from the last in a few objects costs little more
// than what those objects touch: decoded and validated specs, keyed by
// the object's content (YAML, origin, names), and resources that passed
// ValidateAll, keyed by their deterministic encoding. Output is
// byte-identical with and without a Cache.
//
// Pass one Cache with WithCache to every Parse of a sequence of revisions
// (the reconciler keeps one for its lifetime). A Cache is safe for
// concurrent use; entries unused for several Parse calls are dropped, so
// it holds about two revisions' worth. The zero value is not usable; use
// NewCache.
type Cache struct {
	mu sync.Mutex // guards every field below
	// gen counts Parse calls; entries record the last gen that used them.
	gen uint64
	// objects are decoded specs by object identity and content: the
	// latest objectVersions contents of each identity.
	objects map[objectKey][]*objectEntry
	// valid are resources that passed validateDeep, by the SHA-256 of
	// their type and deterministic encoding, with their last gen.
	valid map[[sha256.Size]byte]uint64
	// groups are services' clusters by clusterKey; encoded holds the
	// encodings of the validated ones (clustercache.go).
	groups  map[[sha256.Size]byte]*clusterGroup
	encoded map[proto.Message]encoded
	// vhosts are outbound VirtualHosts by vhostKey (vhostcache.go).
	vhosts map[string]*vhostEntry
}

// NewCache returns an empty Cache.
func NewCache() *Cache {
	return &Cache{
		objects: map[objectKey][]*objectEntry{},
		valid:   map[[sha256.Size]byte]uint64{},
		groups:  map[[sha256.Size]byte]*clusterGroup{},
		encoded: map[proto.Message]encoded{},
		vhosts:  map[string]*vhostEntry{},
	}
}

// WithCache makes Parse, and Compile of the Policy it returns, reuse and
// fill c. c keeps references to the objects' YAML, which must not be
// modified afterwards (sources never does). If c is nil, nothing is cached
// (the default).
func WithCache(c *Cache) Option {
	return func(o *options) { o.cache = c }
}

// objectVersions is how many contents of one object a Cache keeps: the
// reconciler parses the stable and the in-flight revision in turn.
const objectVersions = 2

// objectKey and the YAML are everything parseObject's decoding reads of an
// object: equal keys and YAML decode to equal specs and equal diagnostics
// (Object.Lines derives from the YAML and its origin).
type objectKey struct {
	ns         string // after defaulting
	apiVersion string
	kind       string
	namespace  string
	name       string
	origin     sources.Origin
}

// objectEntry is one object's decoding: its spec (nil when it did not
// decode) and the diagnostics decoding reported. spec is shared by every
// Policy that used the entry and must not be modified.
type objectEntry struct {
	yaml    []byte // the object's YAML (shared with the revision that decoded it; read only)
	spec    proto.Message
	diags   Diagnostics
	yamlErr bool // the YAML did not decode (diags says why)
	gen     uint64
}

func keyOf(obj *sources.Object, ns string) objectKey {
	return objectKey{
		ns: ns, apiVersion: obj.APIVersion, kind: obj.Kind, namespace: obj.Namespace,
		name: obj.Name, origin: obj.Origin,
	}
}

// begin starts a Parse: it advances the generation and, every
// cacheKeepGens calls, drops entries older than cacheKeepGens.
func (c *Cache) begin() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	if c.gen%cacheKeepGens != 0 {
		return
	}
	stale := func(gen uint64) bool { return c.gen-gen >= cacheKeepGens }
	for k, es := range c.objects {
		es = slices.DeleteFunc(es, func(e *objectEntry) bool { return stale(e.gen) })
		if len(es) == 0 {
			delete(c.objects, k)
		} else {
			c.objects[k] = es
		}
	}
	maps.DeleteFunc(c.valid, func(_ [sha256.Size]byte, gen uint64) bool { return stale(gen) })
	maps.DeleteFunc(c.groups, func(_ [sha256.Size]byte, g *clusterGroup) bool { return stale(g.gen) })
	maps.DeleteFunc(c.encoded, func(_ proto.Message, e encoded) bool { return stale(e.gen) })
	c.pruneVhosts(stale)
}

// object returns the decoding of the object with key k and YAML yaml, if
// cached.
func (c *Cache) object(k objectKey, yaml []byte) (*objectEntry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range c.objects[k] {
		if bytes.Equal(e.yaml, yaml) {
			e.gen = c.gen
			return e, true
		}
	}
	return nil, false
}

// putObject stores the decoding e of the object with key k, dropping the
// least recently used of its other contents beyond objectVersions.
func (c *Cache) putObject(k objectKey, e *objectEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e.gen = c.gen
	es := append([]*objectEntry{e}, c.objects[k]...)
	slices.SortStableFunc(es, func(a, b *objectEntry) int { return cmp.Compare(b.gen, a.gen) })
	c.objects[k] = es[:min(len(es), objectVersions)]
}

// validated reports whether a resource with this encoding hash passed
// validation before, marking it used.
func (c *Cache) validated(sum [sha256.Size]byte) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.valid[sum]
	if ok {
		c.valid[sum] = c.gen
	}
	return ok
}

// putValid records that a resource with this encoding hash is valid.
func (c *Cache) putValid(sum [sha256.Size]byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.valid[sum] = c.gen
}
