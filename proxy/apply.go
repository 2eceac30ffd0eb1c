package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/gitmesh/gitmesh/proxy/ads"
	"github.com/gitmesh/gitmesh/proxy/config"
	"github.com/gitmesh/gitmesh/proxy/metrics"
	"github.com/gitmesh/gitmesh/proxy/telemetry"
	"github.com/gitmesh/gitmesh/proxy/upstream"
	"google.golang.org/protobuf/proto"
)

// applier turns accepted xDS responses into applied configurations. It is
// owned by the ADS client goroutine: none of its fields need a lock.
//
// An update goes through three outcomes:
//   - rejected (NACK): it cannot be decoded, a resource in it is invalid or
//     unsupported, or a listener address cannot be bound. Nothing changes.
//   - accepted and pending (ACK): it is valid but references route
//     configurations, endpoints or clusters that have not arrived yet. A
//     missing cluster is only ever an ordering effect (a Listener or
//     RouteConfiguration that arrives before the CDS update adding its
//     cluster, or a CDS update that removes a cluster before the routes
//     move away from it), so it warms like the others and is not NACKed.
//     The applied configuration keeps serving.
//   - applied (ACK): the accepted set is complete, or WarmingTimeout has
//     passed since it became pending; a new configuration is built and
//     swapped in with one atomic store.
type applier struct {
	p        *Proxy
	accepted *config.ResourceSet
	// pendingSince is when the accepted set stopped being the applied one;
	// zero when they agree.
	pendingSince time.Time
	pools        map[upstream.PoolKey]*upstreamPool
	resolvers    map[string]*upstream.DNSResolver
	// states maps a cluster name to its live state (circuit breakers,
	// host states), kept across configurations.
	states map[string]*upstream.ClusterState
	// telemetry are the tracers and access log files in use.
	telemetry *telemetry.Sinks
}

func newApplier(p *Proxy) *applier {
	return &applier{
		p:         p,
		accepted:  config.NewResourceSet(),
		pools:     map[upstream.PoolKey]*upstreamPool{},
		resolvers: map[string]*upstream.DNSResolver{},
		states:    map[string]*upstream.ClusterState{},
		telemetry: telemetry.NewSinks(p.cfg.Workload.ID, p.dialCluster, p.log),
	}
}

// AcceptedSet returns the accepted resource set (see ads.Handler).
func (a *applier) AcceptedSet() *config.ResourceSet { return a.accepted }

var _ ads.Handler = (*applier)(nil)

// nackRecord is the last rejected update, shown by /config_dump.
type nackRecord struct {
	TypeURL     string    `json:"type_url"`
	VersionInfo string    `json:"version_info"`
	Nonce       string    `json:"nonce"`
	Error       string    `json:"error"`
	Time        time.Time `json:"time"`
}

// Handle validates a response and applies it when it completes the
// configuration. A non-nil error means NACK, with the error as detail.
func (a *applier) Handle(ctx context.Context, resp *discoveryv3.DiscoveryResponse) error {
	typeURL := resp.GetTypeUrl()
	err := a.accept(ctx, resp)
	if err != nil {
		a.p.metrics.XDSNACKs.WithLabelValues(typeURL).Inc()
		rec := &nackRecord{
			TypeURL: typeURL, VersionInfo: resp.GetVersionInfo(), Nonce: resp.GetNonce(),
			Error: err.Error(), Time: time.Now(),
		}
		prev := a.p.lastNACK.Swap(rec)
		level := slog.LevelWarn
		if prev != nil && prev.TypeURL == rec.TypeURL && prev.VersionInfo == rec.VersionInfo && prev.Error == rec.Error {
			level = slog.LevelDebug // the controller re-sent what was already rejected
		}
		a.p.log.Log(ctx, level, "rejecting xDS update", "type_url", typeURL, "version", resp.GetVersionInfo(), "error", err)
	}
	return err
}

func (a *applier) accept(ctx context.Context, resp *discoveryv3.DiscoveryResponse) error {
	typeURL := resp.GetTypeUrl()
	if !slices.Contains(config.XDSTypes[:], typeURL) {
		return fmt.Errorf("type %q: %w", typeURL, config.ErrUnsupported)
	}
	res, err := config.DecodeResources(typeURL, resp.GetResources())
	if err != nil {
		return fmt.Errorf("%s response: %w", config.KindName(typeURL), err)
	}
	subscribed := a.accepted.Subscriptions()[typeURL]
	cand := a.accepted.With(typeURL, resp.GetVersionInfo(), res, subscribed)
	if config.WildcardType(typeURL) {
		// New clusters or listeners change the subscriptions; keep only
		// what is still referenced.
		cand = cand.Pruned(cand.Subscriptions())
	}
	cfg, missing, err := config.BuildConfig(cand, a.p.secrets)
	var re *config.ResourceError
	switch {
	case err == nil:
	case errors.As(err, &re) && !attributable(re, typeURL, res):
		// The update is valid but leaves another type's resource pointing
		// at something it removed; that resource's own update is expected
		// next (Envoy's make-before-break order sends CDS first).
		a.p.log.Info("xDS update accepted, waiting for dependent resources", "type_url", typeURL,
			"version", resp.GetVersionInfo(), "waiting_on", err.Error())
		cfg, missing = nil, []config.MissingRef{{TypeURL: re.TypeURL, Name: re.Name}}
	default:
		return err
	}
	if typeURL == config.ListenerType {
		addrs, err := listenerAddrs(cand)
		if err != nil {
			return err
		}
		if err := a.p.listeners.reserve(addrs); err != nil {
			return err
		}
	}
	a.accepted = cand
	// A rotated secret serves the next handshake at once, even while the
	// rest of the set warms.
	config.UpdateSecrets(a.p.secrets, cand)
	if len(missing) > 0 {
		if a.pendingSince.IsZero() {
			a.pendingSince = time.Now()
		}
		if cfg != nil {
			a.p.log.Debug("xDS update accepted, waiting for referenced resources", "type_url", typeURL,
				"version", resp.GetVersionInfo(), "missing", describeMissing(missing))
		}
		a.syncListeners()
		return nil
	}
	a.Apply(ctx, cfg)
	return nil
}

// WarmingDeadline returns when a pending set is applied regardless of the
// resources it still misses.
func (a *applier) WarmingDeadline() (time.Time, bool) {
	if a.pendingSince.IsZero() {
		return time.Time{}, false
	}
	return a.pendingSince.Add(a.p.cfg.WarmingTimeout), true
}

// WarmingExpired applies the accepted set with its missing route
// configurations and endpoints treated as empty, as Envoy does after
// initial_fetch_timeout, and its missing clusters as absent: routes to them
// answer 503 with flag NC and TCP connections to them are closed, as in
// Envoy. A set that still fails to build (or that has never seen listeners
// and clusters) keeps waiting.
func (a *applier) WarmingExpired(ctx context.Context) {
	cfg, missing, err := config.BuildConfig(a.accepted, a.p.secrets)
	if err != nil {
		a.p.log.Warn("warming timed out; the accepted xDS set does not build yet", "error", err)
		a.pendingSince = time.Now()
		return
	}
	for _, m := range missing {
		if m.Name == "" {
			a.pendingSince = time.Now()
			return
		}
	}
	a.p.log.Warn("warming timed out; applying without the missing resources", "missing", describeMissing(missing))
	a.Apply(ctx, cfg)
}

// Apply attaches pools and resolvers to cfg, swaps it in, then releases
// what the previous configuration used alone.
func (a *applier) Apply(ctx context.Context, cfg *config.MeshConfig) {
	usedPools := map[upstream.PoolKey]bool{}
	usedResolvers := map[string]bool{}
	for name, c := range cfg.Clusters {
		st, ok := a.states[name]
		if !ok {
			st = upstream.NewClusterState()
			a.states[name] = st
		}
		c.State, c.Metrics, c.Series = st, a.p.metrics, &metrics.SeriesCache{}
		if !c.HTTP2 {
			c.ConnSlots = st.Slots(c.Limits.MaxConnections)
		}
		if c.Endpoints != nil {
			st.Adopt(c.Endpoints.Endpoints, false)
			c.Endpoints.ClusterState = st
		}
		k := c.PoolKey()
		pool, ok := a.pools[k]
		if !ok {
			pool = newUpstreamPool(a.p, k)
			a.pools[k] = pool
		}
		c.Pool = pool
		usedPools[k] = true
		if len(c.DNSTargets) > 0 {
			dk := c.DNSKey()
			r, ok := a.resolvers[dk]
			if !ok {
				r = upstream.StartDNSResolver(ctx, a.p.log, a.p.cfg.Resolver, c, a.p.cfg.DNSRefreshRate)
				a.resolvers[dk] = r
			}
			c.DNS = r
			usedResolvers[dk] = true
		}
	}
	a.telemetry.Attach(cfg.Telemetry())
	cfg.AppliedAt = time.Now()
	a.p.current.Store(cfg)
	a.telemetry.Release()
	a.pendingSince = time.Time{}
	a.syncListeners()
	a.p.applied.Store(cfg)
	for k, pool := range a.pools {
		if !usedPools[k] {
			delete(a.pools, k)
			pool.CloseIdle()
		}
	}
	for k, r := range a.resolvers {
		if !usedResolvers[k] {
			delete(a.resolvers, k)
			r.Stop()
		}
	}
	for name := range a.states {
		if _, ok := cfg.Clusters[name]; !ok {
			delete(a.states, name)
		}
	}
	a.p.metrics.XDSApplied.Inc()
	attrs := []any{"listeners", len(cfg.Listeners), "clusters", len(cfg.Clusters)}
	for _, t := range config.XDSTypes {
		attrs = append(attrs, slog.String(config.KindName(t)+"_version", cfg.Resources.Versions[t]))
	}
	a.p.log.Info("applied xDS configuration", attrs...)
}

// syncListeners serves the applied configuration's addresses and closes
// sockets neither it nor the accepted listeners use.
func (a *applier) syncListeners() {
	var serve map[string]*config.ListenerConfig
	if cfg := a.p.current.Load(); cfg != nil {
		serve = cfg.Listeners
	}
	keep, _ := listenerAddrs(a.accepted)
	a.p.listeners.sync(serve, keep)
}

// close stops every resolver and tracer, closes idle upstream connections
// and access log files.
func (a *applier) close() {
	for k, r := range a.resolvers {
		delete(a.resolvers, k)
		r.Stop()
	}
	for k, pool := range a.pools {
		delete(a.pools, k)
		pool.CloseIdle()
	}
	a.telemetry.Close()
}

// listenerAddrs maps the addresses of a set's listeners to their names.
func listenerAddrs(set *config.ResourceSet) (map[string]string, error) {
	out := map[string]string{}
	for name, m := range set.ByType[config.ListenerType] {
		l := m.(*listenerv3.Listener)
		if bp := l.GetBindToPort(); bp != nil && !bp.GetValue() {
			continue // receives handed-off connections only
		}
		addr, err := config.ListenerAddr(l)
		if err != nil {
			return nil, &config.ResourceError{TypeURL: config.ListenerType, Name: name, Field: "address.socket_address", Err: err}
		}
		out[addr] = name
	}
	return out, nil
}

func describeMissing(ms []config.MissingRef) []string {
	out := make([]string, 0, len(ms))
	for _, m := range ms {
		if m.Name == "" {
			out = append(out, "first "+config.KindName(m.TypeURL)+" response")
			continue
		}
		out = append(out, config.KindName(m.TypeURL)+" "+m.Name)
	}
	return out
}

// attributable reports whether a build error is caused by the response
// being handled (then it is NACKed) rather than by an earlier accepted
// resource that now points at something the response removed.
func attributable(re *config.ResourceError, typeURL string, res map[string]proto.Message) bool {
	if re.TypeURL == config.EndpointType {
		return true
	}
	if re.TypeURL != typeURL {
		return false
	}
	_, inResponse := res[re.Name]
	return config.WildcardType(typeURL) || inResponse
}
