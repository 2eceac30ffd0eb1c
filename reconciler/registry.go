package reconciler

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/gitmesh/gitmesh/compiler"
	"github.com/gitmesh/gitmesh/registry"
	"github.com/gitmesh/gitmesh/sources"
)

// Registry is a live service registry (Kubernetes mode: the API server's
// Services, EndpointSlices and Pods). *kube.Registry implements it.
type Registry interface {
	// Current returns the newest registry; the value never changes once
	// returned. Must be safe for concurrent use.
	Current() registry.Registry
	// Changed receives a value after Current changed (signals may
	// coalesce).
	Changed() <-chan struct{}
}

// registryChanged is the Registry's signal, or nil (never ready) without
// one.
func (r *Reconciler) registryChanged() <-chan struct{} {
	if r.cfg.Registry == nil {
		return nil
	}
	return r.cfg.Registry.Changed()
}

// parse parses objs with the Reconciler's options and, in Kubernetes
// mode, against the registry's current view, which it returns with the
// policy (nil otherwise). Safe off the Run goroutine.
func (r *Reconciler) parse(objs []sources.Object, opts ...compiler.Option) (*compiler.Policy, compiler.Diagnostics, registry.Registry) {
	var reg registry.Registry
	opts = append([]compiler.Option{compiler.WithDefaultNamespace(r.cfg.DefaultNamespace), compiler.WithCache(r.compiled)}, opts...)
	if r.cfg.TrustDomain != "" {
		opts = append(opts, compiler.WithTrustDomain(r.cfg.TrustDomain))
	}
	opts = append(opts, compiler.WithMeshConfig(r.cfg.MeshConfig)) // nil: no providers, names still checked
	if r.cfg.Registry != nil {
		reg = r.cfg.Registry.Current()
		opts = append(opts, compiler.WithRegistry(reg))
	}
	policy, diags := compiler.Parse(objs, opts...)
	return policy, diags, reg
}

// registryDone takes a registry change in the Run goroutine: the stable
// and in-flight revisions are parsed again against it (see
// refreshRegistry) and every node re-synced. The compiler hashes each
// resource type apart, so an endpoint-only change re-sends only
// endpoints; the rollout's state is not touched. When the services
// themselves changed, a revision that failed validation or compilation
// is tried again: it may have named a Service the cluster lacked.
func (r *Reconciler) registryDone(ctx context.Context) {
	r.syncFleet(ctx)
	key := servicesKey(r.cfg.Registry.Current())
	if key == r.servicesKey {
		return // endpoints only: what validation reads is the same
	}
	r.servicesKey = key
	r.mu.Lock()
	var se *stepError
	retry := errors.As(r.status.lastAttemptFailed, &se) && (se.reason == ReasonValidationFailed || se.reason == ReasonCompileFailed)
	if retry {
		r.status.lastAttemptFailed = nil
	}
	revision := r.status.LastAttemptedRevision
	r.mu.Unlock()
	if retry {
		r.log.Info("cluster services changed; trying the failed revision again", "revision", revision)
		r.startFetch(ctx)
	}
}

// servicesKey identifies what validation reads of reg: each service's
// host, namespace, ports and visibility, not its endpoints.
func servicesKey(reg registry.Registry) string {
	h := sha256.New()
	for _, s := range reg.Services() {
		fmt.Fprintf(h, "%s\x00%s\x00%q\x00", s.Hostname, s.Namespace, s.ExportTo)
		for _, p := range s.Ports {
			fmt.Fprintf(h, "%s/%d/%s/%d/%s\x00", p.Name, p.Number, p.Protocol, p.TargetPort, p.TargetPortName)
		}
		h.Write([]byte{'\n'})
	}
	return hex.EncodeToString(h.Sum(nil))
}

// refreshRegistry parses s again when it was parsed against another
// registry than the current one, and drops its compiled classes so the
// next compile uses the new policy. A revision that no longer validates
// against the cluster (a VirtualService names a Service that was
// deleted) keeps its previous policy and is logged: the proxies keep what
// they run rather than lose routes, until the cluster or Git fixes it.
// Run goroutine only.
func (r *Reconciler) refreshRegistry(s *served) {
	if r.cfg.Registry == nil || s == nil {
		return
	}
	reg := r.cfg.Registry.Current()
	if s.reg == reg {
		return
	}
	policy, diags, reg := r.parse(s.Objects, s.jwks.options()...)
	s.reg = reg
	if diags.HasErrors() {
		r.log.Error("revision does not validate against the cluster's services; serving it as compiled before",
			"revision", s.Revision, "error", summarizeDiagnostics(diags))
		return
	}
	s.Policy = policy
	s.classes, s.fleetKey = map[string]*compiler.Snapshot{}, ""
}
