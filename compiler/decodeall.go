package compiler

import (
	"github.com/gitmesh/gitmesh/sources"
)

// decodeObjects decodes every object of a kind decodeKind reads (with a
// name) into an objectEntry, index for index with objs (nil for the
// others, which parseObject decodes itself). Entries come from p.cache
// when it has them; the rest are decoded on all cores, each object on its
// own with its own diagnostics, so the result does not depend on the
// schedule. New entries are stored in p.cache.
func (p *Policy) decodeObjects(objs []sources.Object, defaultNS string) []*objectEntry {
	out := make([]*objectEntry, len(objs))
	var todo []int
	for i := range objs {
		obj := &objs[i]
		if !isSpecKind(obj.Kind) || obj.Name == "" {
			continue
		}
		if p.cache != nil {
			if e, ok := p.cache.object(keyOf(obj, namespaceOr(obj, defaultNS)), obj.YAML); ok {
				out[i] = e
				continue
			}
		}
		todo = append(todo, i)
	}
	parallelFor(len(todo), func(n int) {
		i := todo[n]
		out[i] = decodeEntry(&objs[i], namespaceOr(&objs[i], defaultNS))
	})
	if p.cache != nil {
		for _, i := range todo {
			p.cache.putObject(keyOf(&objs[i], namespaceOr(&objs[i], defaultNS)), out[i])
		}
	}
	return out
}

// decodeEntry decodes one object of a kind decodeKind reads, collecting
// its diagnostics apart. It reads obj and shares nothing else.
func decodeEntry(obj *sources.Object, ns string) *objectEntry {
	var local Diagnostics
	r := &reporter{obj: obj, kind: obj.Kind, ns: ns, diag: &local}
	e := &objectEntry{yaml: obj.YAML}
	if doc, err := decodeDocument(obj.YAML); err != nil {
		reportYAMLError(r, err)
		e.yamlErr = true
	} else if raw, ok := specOf(doc, r); ok {
		e.spec = decodeKind(r, obj.Kind, raw)
	}
	e.diags = local
	return e
}

// namespaceOr is obj's namespace, defaultNS when it has none.
func namespaceOr(obj *sources.Object, defaultNS string) string {
	if obj.Namespace == "" {
		return defaultNS
	}
	return obj.Namespace
}
