// Package e2e holds gitmesh's end-to-end tests: a real git server on
// loopback, the controller, bundled proxies and httptest backends, all in
// this process, driven with the git CLI as a user would.
package e2e

import (
	"context"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/gitmesh/gitmesh/api/admin"
	"github.com/gitmesh/gitmesh/api/nodemeta"
	"github.com/gitmesh/gitmesh/internal/controller"
	"github.com/gitmesh/gitmesh/internal/e2etest"
	"github.com/gitmesh/gitmesh/internal/testnet"
)

// mesh is a running controller with its proxies.
type mesh struct {
	t      testing.TB
	ctrl   *controller.Controller
	cancel context.CancelFunc
}

// startController starts a controller against repoURL polling every interval.
func startController(t testing.TB, repoURL, stateDir string, interval time.Duration, xdsAddr string) *mesh {
	t.Helper()
	cfg := controllerConfig(t, repoURL, stateDir, interval)
	if xdsAddr != "" {
		cfg.XDSAddr = xdsAddr
	}
	return startControllerConfig(t, cfg)
}

// controllerConfig is the tests' controller Config: repoURL's policy/
// polled every interval, xDS and admin on free loopback ports, state in
// stateDir, logging to t.
func controllerConfig(t testing.TB, repoURL, stateDir string, interval time.Duration) controller.Config {
	return controller.Config{
		RepoURL: repoURL, Path: "policy", Interval: interval,
		XDSAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", StateDir: stateDir,
		Logger: e2etest.Logger(t).With("component", "controller"),
	}
}

// stop stops the controller (proxies keep running), waiting at most
// controllerStopTimeout for it.
func (m *mesh) stop() { m.stopWithin(controllerStopTimeout) }

// startProxy runs a client sidecar with an outbound listener until the test
// ends and returns its outbound and admin addresses.
func startProxy(t testing.TB, xdsAddr, id string) (outbound, admin string) {
	t.Helper()
	w := e2etest.RunProxy(t, xdsAddr, nodemeta.Workload{
		ID: id, Service: "client", Namespace: "default", Role: nodemeta.RoleSidecar,
		Labels: map[string]string{"app": "client"}, Outbound: testnet.FreeAddr(t),
	})
	return w.Outbound, w.Admin
}

// status reads the controller's status through its admin API.
func (m *mesh) status() admin.Status {
	return m.ctrl.Reconciler.Status()
}

// proxiedClient returns a client that sends through the forward proxy at
// proxyURL.
func proxiedClient(proxyURL *url.URL) *http.Client {
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL)}}
}
