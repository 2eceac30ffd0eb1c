package reconciler

import (
	"bytes"
	"context"
	"time"

	"github.com/gitmesh/gitmesh/compiler"
	"github.com/gitmesh/gitmesh/registry"
	"github.com/gitmesh/gitmesh/sources"
)

// JWKSResolver fetches the JWKS documents that RequestAuthentication
// jwksUri values name. *jwks.Resolver implements it.
type JWKSResolver interface {
	// Resolve returns the document of each URI and the error of each URI
	// that has none. Documents cached for less than maxAge may be returned
	// without a fetch (0: fetch). It must honour ctx's deadline and be safe
	// for concurrent use.
	Resolve(ctx context.Context, uris []string, maxAge time.Duration) (map[string][]byte, map[string]error)
}

// jwksSet is what a revision was parsed with: fetched documents and
// failures by jwksUri.
type jwksSet struct {
	keys map[string][]byte
	errs map[string]error
}

func (j jwksSet) options() []compiler.Option {
	if j.keys == nil && j.errs == nil {
		return nil
	}
	return []compiler.Option{compiler.WithJWKS(j.keys), compiler.WithJWKSErrors(j.errs)}
}

// equal reports whether j and o would compile alike: same documents, same
// failed URIs.
func (j jwksSet) equal(o jwksSet) bool {
	if len(j.keys) != len(o.keys) || len(j.errs) != len(o.errs) {
		return false
	}
	for uri, body := range j.keys {
		if !bytes.Equal(body, o.keys[uri]) {
			return false
		}
	}
	for uri := range j.errs {
		if _, ok := o.errs[uri]; !ok {
			return false
		}
	}
	return true
}

// parseWithJWKS parses objs and, when the policy names jwksUri values and
// a resolver is configured, resolves them under ctx (documents cached for
// less than the refresh interval are reused) and parses again with them.
// Off the Run goroutine only: it waits on the network.
func (r *Reconciler) parseWithJWKS(ctx context.Context, objs []sources.Object, opts ...compiler.Option) (*compiler.Policy, compiler.Diagnostics, registry.Registry, jwksSet) {
	policy, diags, reg := r.parse(objs, opts...)
	uris := policy.JWKSURIs()
	if r.cfg.JWKS == nil || len(uris) == 0 || diags.HasErrors() {
		return policy, diags, reg, jwksSet{}
	}
	var set jwksSet
	set.keys, set.errs = r.cfg.JWKS.Resolve(ctx, uris, r.cfg.JWKSRefresh)
	policy, diags, reg = r.parse(objs, append(opts, set.options()...)...)
	return policy, diags, reg, set
}

// startJWKSRefresh fetches the jwksUri documents of the stable revision
// and of the rollout's canary again, off the Run goroutine (documents
// younger than maxAge may come from the resolver's cache; 0 fetches);
// jwksDone applies a change. Run goroutine only.
func (r *Reconciler) startJWKSRefresh(ctx context.Context, maxAge time.Duration) {
	if r.cfg.JWKS == nil {
		return
	}
	r.mu.Lock()
	targets := []*served{r.stable}
	if r.rollout != nil && !r.rollout.Phase.Done() {
		targets = append(targets, r.rollout.Canary)
	}
	r.mu.Unlock()
	for _, s := range targets {
		if s == nil || s.Policy == nil {
			continue
		}
		uris := s.Policy.JWKSURIs()
		if len(uris) == 0 {
			continue
		}
		r.offLoop(ctx, r.cfg.FetchTimeout, func(ctx context.Context) func(context.Context) {
			var set jwksSet
			set.keys, set.errs = r.cfg.JWKS.Resolve(ctx, uris, maxAge)
			return func(ctx context.Context) { r.jwksDone(ctx, s, set) }
		})
	}
}

// jwksDone takes refreshed keys in the Run goroutine: when they differ
// from what s was parsed with (and s is still the stable revision or the
// canary), s is parsed again with them and the fleet re-synced, so a
// rotated identity-provider key reaches the proxies without a commit.
func (r *Reconciler) jwksDone(ctx context.Context, s *served, set jwksSet) {
	r.mu.Lock()
	current := s == r.stable || r.rollout != nil && !r.rollout.Phase.Done() && s == r.rollout.Canary
	r.mu.Unlock()
	if !current || set.equal(s.jwks) {
		return
	}
	policy, diags, reg := r.parse(s.Objects, set.options()...)
	if diags.HasErrors() {
		r.log.Error("revision does not parse with the refreshed JWKS; keeping the previous keys",
			"revision", s.Revision, "error", summarizeDiagnostics(diags))
		return
	}
	r.log.Info("JWKS changed; recompiling", "revision", s.Revision, "uris", len(set.keys)+len(set.errs))
	s.Policy, s.reg, s.jwks = policy, reg, set
	s.classes, s.fleetKey = map[string]*compiler.Snapshot{}, ""
	r.syncFleet(ctx)
}
