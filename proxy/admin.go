package proxy

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/gitmesh/gitmesh/proxy/config"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/protobuf/encoding/protojson"
)

// AdminHandler returns the admin endpoint's handler:
//
//	/ready        200 once a first full configuration is applied, else 503
//	/healthz      200 while the process serves
//	/metrics      Prometheus metrics (Istio's request metrics, xDS client metrics)
//	/config_dump  JSON: applied resources with their versions, secrets (keys redacted), the last NACK
func (p *Proxy) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ready", func(w http.ResponseWriter, _ *http.Request) {
		if !p.Ready() {
			http.Error(w, "no configuration applied yet", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(p.metrics.Reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /config_dump", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if err := enc.Encode(p.ConfigDump()); err != nil {
			p.log.Debug("writing config dump", "error", err)
		}
	})
	return mux
}

// ConfigDump is what /config_dump serves.
type ConfigDump struct {
	// NodeID is this proxy's node id.
	NodeID string `json:"node_id"`
	// Ready is Proxy.Ready.
	Ready bool `json:"ready"`
	// AppliedAt is when the applied configuration was swapped in.
	AppliedAt *time.Time `json:"applied_at,omitempty"`
	// Versions maps a type URL to the version_info of the applied resources.
	Versions map[string]string `json:"versions,omitempty"`
	// Listeners, Routes, Clusters, Endpoints are the applied resources as
	// protojson, sorted by name.
	Listeners []json.RawMessage `json:"listeners,omitempty"`
	Routes    []json.RawMessage `json:"routes,omitempty"`
	Clusters  []json.RawMessage `json:"clusters,omitempty"`
	Endpoints []json.RawMessage `json:"endpoints,omitempty"`
	// Secrets are the accepted SDS secrets (name, version_info,
	// last_updated, secret) with private keys shown as "[redacted]", as
	// Envoy's dynamic_active_secrets.
	Secrets []json.RawMessage `json:"secrets,omitempty"`
	// BoundAddresses are the traffic sockets currently open.
	BoundAddresses []string `json:"bound_addresses,omitempty"`
	// LastNACK is the most recently rejected update, if any.
	LastNACK *nackRecord `json:"last_nack,omitempty"`
}

// ConfigDump returns the applied configuration and the last NACK.
func (p *Proxy) ConfigDump() ConfigDump {
	d := ConfigDump{NodeID: p.cfg.Workload.ID, Ready: p.Ready(), LastNACK: p.lastNACK.Load(), BoundAddresses: p.listeners.addrs()}
	if m := p.secrets.Current.Load(); m != nil {
		for _, name := range config.SortedKeys(*m) {
			d.Secrets = append(d.Secrets, (*m)[name].Dump())
		}
	}
	cfg := p.applied.Load()
	if cfg == nil {
		return d
	}
	d.AppliedAt = &cfg.AppliedAt
	d.Versions = cfg.Resources.Versions
	marshal := func(typeURL string) []json.RawMessage {
		res := cfg.Resources.ByType[typeURL]
		out := make([]json.RawMessage, 0, len(res))
		for _, name := range config.SortedKeys(res) {
			b, err := protojson.Marshal(res[name])
			if err != nil {
				b, _ = json.Marshal(map[string]string{"name": name, "error": err.Error()})
			}
			out = append(out, b)
		}
		return out
	}
	d.Listeners = marshal(config.ListenerType)
	d.Routes = marshal(config.RouteType)
	d.Clusters = marshal(config.ClusterType)
	d.Endpoints = marshal(config.EndpointType)
	return d
}

// listenAdmin binds the admin address.
func (p *Proxy) listenAdmin(addr string) (*http.Server, net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("binding admin address %s: %w", addr, err)
	}
	srv := &http.Server{
		Handler:           p.AdminHandler(),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(p.log.Handler(), slog.LevelDebug),
	}
	return srv, ln, nil
}

// serveAdmin serves until ctx is done, then shuts the server down.
func (p *Proxy) serveAdmin(ctx context.Context, srv *http.Server, ln net.Listener) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && err != http.ErrServerClosed {
			p.log.Error("admin server stopped", "error", err)
		}
	}()
	p.log.Info("serving admin", "address", ln.Addr().String())
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
	}
	<-done
}
