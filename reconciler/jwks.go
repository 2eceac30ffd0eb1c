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

// defaultJWKSRefresh is Config.JWKSRefresh's default (istiod's).
const defaultJWKSRefresh = 20 * time.Minute

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

// startJWKSRefresh fetches the stable revision's jwksUri documents again,
// off the Run goroutine; jwksDone applies a change. Run goroutine only.
func (r *Reconciler) startJWKSRefresh(ctx context.Context) {
	r.mu.Lock()
	stable := r.stable
	r.mu.Unlock()
	if r.cfg.JWKS == nil || stable == nil || stable.Policy == nil {
		return
	}
	uris := stable.Policy.JWKSURIs()
	if len(uris) == 0 {
		return
	}
	r.offLoop(ctx, r.cfg.FetchTimeout, func(ctx context.Context) func(context.Context) {
		var set jwksSet
		set.keys, set.errs = r.cfg.JWKS.Resolve(ctx, uris, 0)
		return func(ctx context.Context) { r.jwksDone(ctx, stable, set) }
	})
}

// jwksDone takes refreshed keys in the Run goroutine: when they differ
// from what the stable revision was parsed with (and it is still stable),
// it is parsed again with them and the fleet re-synced, so a rotated
// identity-provider key reaches the proxies without a commit.
func (r *Reconciler) jwksDone(ctx context.Context, s *served, set jwksSet) {
	r.mu.Lock()
	current := r.stable
	r.mu.Unlock()
	if current != s || set.equal(s.jwks) {
		return
	}
	policy, diags, reg := r.parse(s.Objects, set.options()...)
	if diags.HasErrors() {
		r.log.Error("stable revision does not parse with the refreshed JWKS; keeping the previous keys",
			"revision", s.Revision, "error", summarizeDiagnostics(diags))
		return
	}
	r.log.Info("JWKS changed; recompiling the stable revision", "revision", s.Revision, "uris", len(set.keys)+len(set.errs))
	s.Policy, s.reg, s.jwks = policy, reg, set
	s.classes, s.fleetKey = map[string]*compiler.Snapshot{}, ""
	r.syncFleet(ctx)
}
