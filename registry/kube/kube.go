// Package kube feeds gitmesh's service registry from the Kubernetes API
// server (Kubernetes mode, `gitmesh controller --kubernetes`): client-go
// informers watch Services, EndpointSlices, Pods and Namespaces, and every
// burst of changes rebuilds an immutable registry.Static (see Build) that
// the reconciler compiles the Git revision against with
// compiler.WithRegistry. ServiceEntries stay in Git and merge with these
// Services by the compiler's rules (docs/kubernetes.md).
//
// The watches run off the reconciler's loop: Run owns them and publishes
// a new registry only when its content hash changed, so an informer
// resync, or a Pod update nothing reads, never reaches the proxies.
package kube

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	listerscorev1 "k8s.io/client-go/listers/core/v1"
	listersdiscoveryv1 "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/gitmesh/gitmesh/registry"
)

// DefaultDebounce is how long Run gathers changes before it rebuilds.
const DefaultDebounce = 100 * time.Millisecond

// Registry is the API server feed of the service registry. Create it with
// New, run it with Run, and read it with Current and Changed; Current and
// Changed are safe for concurrent use.
type Registry struct {
	client   kubernetes.Interface
	log      *slog.Logger
	debounce time.Duration
	resync   time.Duration
	nsSel    labels.Selector // nil: every namespace

	current atomic.Pointer[published]
	builds  atomic.Uint64
	changes atomic.Uint64
	changed chan struct{} // capacity 1: a pending signal coalesces
	synced  chan struct{} // closed once the first registry is published
	once    sync.Once     // closes synced
}

// published is one built registry with its content hash.
type published struct {
	reg  *registry.Static
	hash string
}

// Option configures a Registry.
type Option func(*Registry)

// WithLogger sets the logger. If nil, logs are discarded.
func WithLogger(l *slog.Logger) Option { return func(r *Registry) { r.log = l } }

// WithDebounce sets how long Run gathers a burst of changes before it
// rebuilds (default DefaultDebounce). The first change of a burst starts
// the window; changes within it are built together.
func WithDebounce(d time.Duration) Option { return func(r *Registry) { r.debounce = d } }

// WithResync sets the informers' resync period (default 0: none). A
// resync re-delivers every cached object; the rebuild it causes is equal
// to the published registry and is not signalled.
func WithResync(d time.Duration) Option { return func(r *Registry) { r.resync = d } }

// WithNamespaceSelector keeps only the Services, EndpointSlices and Pods
// of namespaces whose labels sel matches, as Istio's
// meshConfig.discoverySelectors do. Default: every namespace.
func WithNamespaceSelector(sel labels.Selector) Option {
	return func(r *Registry) { r.nsSel = sel }
}

// New returns a Registry reading from client. It watches nothing until Run.
func New(client kubernetes.Interface, opts ...Option) *Registry {
	r := &Registry{client: client, debounce: DefaultDebounce, changed: make(chan struct{}, 1), synced: make(chan struct{})}
	for _, o := range opts {
		o(r)
	}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	if r.debounce <= 0 {
		r.debounce = DefaultDebounce
	}
	empty := registry.NewStatic(nil, nil)
	r.current.Store(&published{reg: empty, hash: Hash(empty)})
	return r
}

// Current returns the newest registry: empty before the informers synced
// (see Synced). The value never changes; a change publishes a new one.
func (r *Registry) Current() registry.Registry { return r.current.Load().reg }

// Version returns the content hash of Current.
func (r *Registry) Version() string { return r.current.Load().hash }

// Changed receives a value after Current changed. Signals coalesce: one
// receive may stand for several changes, and a reader should then read
// Current once.
func (r *Registry) Changed() <-chan struct{} { return r.changed }

// Synced is closed once the informers have listed everything and the
// first registry is published.
func (r *Registry) Synced() <-chan struct{} { return r.synced }

// Builds returns how many registries Run has built, published or not
// (equal ones are not): for tests and metrics.
func (r *Registry) Builds() uint64 { return r.builds.Load() }

// Collectors returns the registry's Prometheus metrics:
// gitmesh_kubernetes_registry_rebuilds_total (registries built) and
// gitmesh_kubernetes_registry_changes_total (registries published, each
// a push to the proxies it concerns).
func (r *Registry) Collectors() []prometheus.Collector {
	return []prometheus.Collector{
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "gitmesh_kubernetes_registry_rebuilds_total",
			Help: "Service registries built from the Kubernetes informers' caches, changed or not.",
		}, func() float64 { return float64(r.builds.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "gitmesh_kubernetes_registry_changes_total",
			Help: "Service registries from the Kubernetes API server published because their content changed.",
		}, func() float64 { return float64(r.changes.Load()) }),
	}
}

// WaitSynced blocks until Synced is closed or ctx is done.
func (r *Registry) WaitSynced(ctx context.Context) error {
	select {
	case <-r.synced:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("waiting for the Kubernetes informers to sync: %w", ctx.Err())
	}
}

// listers are the informers' caches Run reads when it builds.
type listers struct {
	services   listerscorev1.ServiceLister
	slices     listersdiscoveryv1.EndpointSliceLister
	pods       listerscorev1.PodLister
	namespaces listerscorev1.NamespaceLister
}

// Run starts the informers, publishes the first registry once they have
// synced, then rebuilds after every burst of changes until ctx is done.
// While the API server is unreachable the informers retry and the last
// published registry stays current. Run returns nil when ctx is done;
// call it once.
func (r *Registry) Run(parent context.Context) error {
	ctx, cancel := context.WithCancel(parent)
	factory := informers.NewSharedInformerFactoryWithOptions(r.client, r.resync, informers.WithTransform(trim))
	defer func() {
		cancel()
		factory.Shutdown() // waits for the informers' goroutines
	}()
	dirty := make(chan struct{}, 1)
	notify := func() {
		select {
		case dirty <- struct{}{}:
		default:
		}
	}
	handler := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { notify() },
		UpdateFunc: func(any, any) { notify() },
		DeleteFunc: func(any) { notify() },
	}
	l := listers{
		services:   factory.Core().V1().Services().Lister(),
		slices:     factory.Discovery().V1().EndpointSlices().Lister(),
		pods:       factory.Core().V1().Pods().Lister(),
		namespaces: factory.Core().V1().Namespaces().Lister(),
	}
	var synced []cache.InformerSynced
	for _, inf := range []cache.SharedIndexInformer{
		factory.Core().V1().Services().Informer(),
		factory.Discovery().V1().EndpointSlices().Informer(),
		factory.Core().V1().Pods().Informer(),
		factory.Core().V1().Namespaces().Informer(),
	} {
		reg, err := inf.AddEventHandler(handler)
		if err != nil {
			return fmt.Errorf("watching the API server: %w", err)
		}
		synced = append(synced, reg.HasSynced)
	}
	factory.Start(ctx.Done())
	// Synced once every informer has listed and delivered its initial
	// list to the handler.
	if !cache.WaitForCacheSync(ctx.Done(), synced...) {
		if parent.Err() != nil {
			return nil // stopped before the first sync
		}
		return fmt.Errorf("syncing the Kubernetes informers: %w", context.Cause(ctx))
	}
	select {
	case <-dirty: // the initial list's events: the rebuild below reads them all
	default:
	}
	r.rebuild(l)
	r.once.Do(func() { close(r.synced) })
	r.log.Info("kubernetes registry synced", "services", len(r.Current().Services()), "workloads", len(r.Current().Workloads()))

	var window <-chan time.Time // non-nil while a burst is being gathered
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-dirty:
			if window == nil {
				window = time.After(r.debounce)
			}
		case <-window:
			window = nil
			r.rebuild(l)
		}
	}
}

// rebuild builds a registry from the caches and publishes it when its
// hash differs from the current one.
func (r *Registry) rebuild(l listers) {
	snap, err := r.snapshot(l)
	if err != nil {
		r.log.Error("listing the informer caches", "error", err)
		return
	}
	reg := Build(snap)
	r.builds.Add(1)
	h := Hash(reg)
	if h == r.current.Load().hash {
		return
	}
	r.current.Store(&published{reg: reg, hash: h})
	r.changes.Add(1)
	r.log.Debug("kubernetes registry changed", "version", h[:12], "services", len(reg.Services()))
	select {
	case r.changed <- struct{}{}:
	default:
	}
}

// snapshot lists the caches, keeping the namespaces the selector picks.
func (r *Registry) snapshot(l listers) (Snapshot, error) {
	var s Snapshot
	svcs, err := l.services.List(labels.Everything())
	if err != nil {
		return s, fmt.Errorf("listing services: %w", err)
	}
	ess, err := l.slices.List(labels.Everything())
	if err != nil {
		return s, fmt.Errorf("listing endpointslices: %w", err)
	}
	pods, err := l.pods.List(labels.Everything())
	if err != nil {
		return s, fmt.Errorf("listing pods: %w", err)
	}
	keep := func(string) bool { return true }
	if r.nsSel != nil {
		nss, err := l.namespaces.List(r.nsSel)
		if err != nil {
			return s, fmt.Errorf("listing namespaces: %w", err)
		}
		in := map[string]bool{}
		for _, ns := range nss {
			in[ns.Name] = true
		}
		keep = func(ns string) bool { return in[ns] }
	}
	for _, x := range svcs {
		if keep(x.Namespace) {
			s.Services = append(s.Services, x)
		}
	}
	for _, x := range ess {
		if keep(x.Namespace) {
			s.EndpointSlices = append(s.EndpointSlices, x)
		}
	}
	for _, x := range pods {
		if keep(x.Namespace) {
			s.Pods = append(s.Pods, x)
		}
	}
	return s, nil
}
