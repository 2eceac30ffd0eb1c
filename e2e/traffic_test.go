package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gitmesh/gitmesh/api/nodemeta"
	"github.com/gitmesh/gitmesh/internal/e2etest"
)

// TestTraffic pushes one policy that uses Istio's traffic-management
// features and checks, request by request, what the real controller and
// bundled proxies do with it: which backend answers, the status, the
// headers either side sees and how long it takes. Proxies: "client"
// (sidecar, app=client, namespace default, under a REGISTRY_ONLY
// Sidecar), "other" (sidecar, app=other, namespace other) and a gateway
// proxy (istio=ingressgateway) with an HTTP and an HTTPS server.
func TestTraffic(t *testing.T) {
	v1, v2 := echoBackend(t, "v1"), echoBackend(t, "v2")
	slow := echoBackend(t, "slow")
	var shadowHits atomic.Int64
	shadow := countingBackend(t, &shadowHits)
	flaky := flakyBackend(t)
	tcpEcho := tcpEchoBackend(t, "echo")
	certFile, keyFile, roots := selfSignedCert(t, "bookinfo.example.com")

	// Listener ports below the ephemeral range: a proxy binds them after
	// the test's own client connections took their ephemeral ports.
	// tcpService is where the client sidecar's TCP listener for the
	// tcp-echo service binds: its outbound IP and the service port.
	gwHTTP, gwHTTPS, tcpService := stableAddr(t), stableAddr(t), stableAddr(t)
	files := trafficPolicy(trafficPorts{
		v1: e2etest.PortOf(v1), v2: e2etest.PortOf(v2), slow: e2etest.PortOf(slow), shadow: e2etest.PortOf(shadow), flaky: e2etest.PortOf(flaky),
		tcpEcho: e2etest.PortOf(tcpEcho), tcp: e2etest.PortOf(tcpService),
		gwHTTP: e2etest.PortOf(gwHTTP), gwHTTPS: e2etest.PortOf(gwHTTPS),
		cert: certFile, key: keyFile,
	})

	repo := e2etest.NewGitRemote(t)
	repo.Push("traffic policy", files)
	m := startController(t, repo.URL, t.TempDir(), 200*time.Millisecond, "")
	client := e2etest.RunProxy(t, m.ctrl.XDSAddr, nodemeta.Workload{
		ID: "client-1", Service: "client", Namespace: "default", Role: nodemeta.RoleSidecar,
		Labels: map[string]string{"app": "client"}, Outbound: stableAddr(t),
	})
	other := e2etest.RunProxy(t, m.ctrl.XDSAddr, nodemeta.Workload{
		ID: "other-1", Service: "other", Namespace: "other", Role: nodemeta.RoleSidecar,
		Labels: map[string]string{"app": "other"}, Outbound: stableAddr(t),
	})
	e2etest.RunProxy(t, m.ctrl.XDSAddr, nodemeta.Workload{
		ID: "ingress-1", Service: "gateway", Namespace: "istio-system", Role: nodemeta.RoleGateway,
		Labels: map[string]string{"istio": "ingressgateway"}, Gateway: []string{gwHTTP, gwHTTPS},
	})

	targets := map[string]string{"client": client.Outbound, "other": other.Outbound, "gateway": gwHTTP, "gateway-tls": gwHTTPS}
	clients := map[string]*http.Client{"gateway-tls": tlsClient(roots, "bookinfo.example.com")}
	ready := trafficRow{name: "ready", via: "client", path: "/exact", want: trafficWant{status: 200, backend: "v2"}}
	for _, via := range []string{"client", "other", "gateway", "gateway-tls"} {
		r := ready
		r.via = via
		e2etest.Eventually(t, 30*time.Second, "policy served via "+via, func() string {
			if why := r.check(targets, clients); why != "" {
				st := m.status()
				var nacks []string
				for _, p := range st.Proxies {
					if p.NACK != nil {
						nacks = append(nacks, fmt.Sprintf("%s: %+v", p.ID, *p.NACK))
					}
				}
				return fmt.Sprintf("%s (applied %q, NACKs %v)", why, st.LastAppliedRevision, nacks)
			}
			return ""
		})
	}

	const web = "web.default.svc.cluster.local"
	rows := []trafficRow{
		{name: "uri exact", path: "/exact", want: trafficWant{status: 200, backend: "v2"}},
		{name: "uri exact is not a prefix", path: "/exact/more", want: trafficWant{status: 200, backend: "v1"}},
		{name: "uri regex", path: "/re/42", want: trafficWant{status: 200, backend: "v2"}},
		{name: "uri regex is anchored", path: "/re/42x", want: trafficWant{status: 200, backend: "v1"}},
		{name: "header prefix", path: "/", headers: map[string]string{"x-tier": "gold-plus"}, want: trafficWant{status: 200, backend: "v2"}},
		{name: "header regex", path: "/", headers: map[string]string{"x-version": "v7"}, want: trafficWant{status: 200, backend: "v2"}},
		{name: "query param", path: "/?v=2", want: trafficWant{status: 200, backend: "v2"}},
		{name: "query param other value", path: "/?v=3", want: trafficWant{status: 200, backend: "v1"}},
		{name: "method", method: http.MethodPut, path: "/", want: trafficWant{status: 200, backend: "v2"}},
		{name: "ignoreUriCase", path: "/cAsE/x", want: trafficWant{status: 200, backend: "v2"}},
		{name: "withoutHeaders absent", path: "/without", want: trafficWant{status: 200, backend: "v2"}},
		{name: "withoutHeaders present", path: "/without", headers: map[string]string{"x-skip": "1"}, want: trafficWant{status: 200, backend: "v1"}},
		{name: "withoutHeaders value, header absent", path: "/nodebug", want: trafficWant{status: 200, backend: "v2"}},
		{name: "withoutHeaders value, other value", path: "/nodebug", headers: map[string]string{"x-debug": "0"}, want: trafficWant{status: 200, backend: "v2"}},
		{name: "withoutHeaders value, excluded value", path: "/nodebug", headers: map[string]string{"x-debug": "1"}, want: trafficWant{status: 200, backend: "v1"}},
		{name: "sourceLabels match", path: "/source", want: trafficWant{status: 200, backend: "v2"}},
		{name: "sourceLabels other proxy", via: "other", path: "/source", want: trafficWant{status: 200, backend: "v1"}},
		{name: "gateway-only rule not on sidecars", path: "/gw", want: trafficWant{status: 200, backend: "v1"}},
		{name: "redirect", path: "/old", want: trafficWant{status: 301, headers: map[string]string{"Location": "http://" + web + "/new"}}},
		{name: "direct response", path: "/teapot", want: trafficWant{status: 418, body: "short and stout"}},
		{name: "rewrite uri and authority", path: "/api/items", want: trafficWant{status: 200, backend: "v1", echo: map[string]string{"Path": "/v1/items", "Host": "backend.internal"}}},
		{name: "timeout", path: "/slow", want: trafficWant{status: 504, maxDuration: 900 * time.Millisecond}},
		{name: "fault abort", path: "/abort", want: trafficWant{status: 503}},
		{name: "fault delay", path: "/delay", want: trafficWant{status: 200, backend: "v1", minDuration: 300 * time.Millisecond}},
		{name: "request and response headers", path: "/headers", headers: map[string]string{"x-drop": "secret"}, want: trafficWant{
			status: 200, backend: "v1", echo: map[string]string{"X-Env": "prod", "X-Drop": ""}, headers: map[string]string{"X-Served-By": "gitmesh"},
		}},
		{name: "cors preflight", method: http.MethodOptions, path: "/cors", headers: map[string]string{"Origin": "https://app.example.com", "Access-Control-Request-Method": "GET"}, want: trafficWant{
			status: 200, headers: map[string]string{"Access-Control-Allow-Origin": "https://app.example.com"},
		}},
		{name: "default retries hide a 503", path: "/flaky", want: trafficWant{status: 200, backend: "flaky"}},
		{name: "delegate route", path: "/team/v2", want: trafficWant{status: 200, backend: "v2"}},
		{name: "delegate catch-all", path: "/team/x", want: trafficWant{status: 200, backend: "v1"}},
		{name: "consistent hash sticks", path: "/hash", headers: map[string]string{"x-user": "alice"}, repeat: 20, want: trafficWant{status: 200, sticky: true}},
		{name: "registry only", host: "unknown.example.com", path: "/", want: trafficWant{status: 502}},
		{name: "no registry-only sidecar", via: "other", host: "unknown.example.com", path: "/", want: trafficWant{status: 404}},
		{name: "gateway routes the VirtualService", via: "gateway", path: "/exact", want: trafficWant{status: 200, backend: "v2"}},
		{name: "gateway-only rule", via: "gateway", path: "/gw", want: trafficWant{status: 200, backend: "v2"}},
		{name: "gateway httpsRedirect", via: "gateway", host: "secure.example.com", path: "/x", want: trafficWant{status: 301, headers: map[string]string{"Location": "https://secure.example.com/x"}}},
		{name: "gateway HTTPS", via: "gateway-tls", path: "/", want: trafficWant{status: 200, backend: "v1"}},
		{name: "gateway unknown host", via: "gateway", host: "nope.example.com", path: "/", want: trafficWant{status: 404}},
	}
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			if why := row.check(targets, clients); why != "" {
				t.Error(why)
			}
		})
	}

	t.Run("tcp through the sidecar", func(t *testing.T) {
		c, err := net.DialTimeout("tcp", tcpService, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, "ping")
		c.(*net.TCPConn).CloseWrite()
		if got, err := io.ReadAll(c); string(got) != "echo:ping" {
			t.Errorf("read %q (%v); want %q", got, err, "echo:ping")
		}
	})

	t.Run("no proxy NACKed", func(t *testing.T) {
		for _, p := range m.status().Proxies {
			if p.NACK != nil {
				t.Errorf("%s: %+v", p.ID, *p.NACK)
			}
		}
	})

	t.Run("mirror", func(t *testing.T) {
		before := shadowHits.Load()
		row := trafficRow{via: "client", path: "/mirror", want: trafficWant{status: 200, backend: "v1"}}
		if why := row.check(targets, clients); why != "" {
			t.Fatal(why)
		}
		e2etest.Eventually(t, 5*time.Second, "shadow receives the mirrored request", func() string {
			if shadowHits.Load() <= before {
				return "no mirrored request yet"
			}
			return ""
		})
	})
}

// trafficPorts are the ports and files the traffic policy refers to.
type trafficPorts struct {
	v1, v2, slow, shadow, flaky, tcpEcho, tcp, gwHTTP, gwHTTPS string
	cert, key                                                  string
}

// trafficPolicy returns the policy files of TestTraffic.
func trafficPolicy(p trafficPorts) map[string]string {
	services := fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: web}
spec:
  hosts: [web.default.svc.cluster.local]
  ports: [{number: 80, name: http}]
  resolution: STATIC
  endpoints:
  - {address: 127.0.0.1, ports: {http: %[1]s}, labels: {version: v1}}
  - {address: 127.0.0.1, ports: {http: %[2]s}, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: web}
spec:
  host: web
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
  - name: both
    trafficPolicy:
      loadBalancer:
        consistentHash: {httpHeaderName: x-user}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: slow}
spec:
  hosts: [slow]
  ports: [{number: 80, name: http}]
  resolution: STATIC
  endpoints: [{address: 127.0.0.1, ports: {http: %[3]s}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: shadow}
spec:
  hosts: [shadow]
  ports: [{number: 80, name: http}]
  resolution: STATIC
  endpoints: [{address: 127.0.0.1, ports: {http: %[4]s}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: flaky}
spec:
  hosts: [flaky]
  ports: [{number: 80, name: http}]
  resolution: STATIC
  endpoints: [{address: 127.0.0.1, ports: {http: %[5]s}}]
---
# Only the client sidecar (namespace default) sees it: a TCP service port
# is a listener on the sidecar's outbound IP, which all proxies here share.
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: tcp-echo}
spec:
  hosts: [tcp-echo]
  exportTo: [.]
  ports: [{number: %[7]s, name: tcp, protocol: TCP}]
  resolution: STATIC
  endpoints: [{address: 127.0.0.1, ports: {tcp: %[6]s}}]
`, p.v1, p.v2, p.slow, p.shadow, p.flaky, p.tcpEcho, p.tcp)
	routes := `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web}
spec:
  hosts: [web]
  gateways: [mesh, ingress]
  http:
  - {name: exact, match: [{uri: {exact: /exact}}], route: [{destination: {host: web, subset: v2}}]}
  - {name: regex, match: [{uri: {regex: "/re/[0-9]+"}}], route: [{destination: {host: web, subset: v2}}]}
  - {name: tier, match: [{headers: {x-tier: {prefix: gold}}}], route: [{destination: {host: web, subset: v2}}]}
  - {name: version, match: [{headers: {x-version: {regex: "v[0-9]"}}}], route: [{destination: {host: web, subset: v2}}]}
  - {name: query, match: [{queryParams: {v: {exact: "2"}}}], route: [{destination: {host: web, subset: v2}}]}
  - {name: put, match: [{method: {exact: PUT}}], route: [{destination: {host: web, subset: v2}}]}
  - {name: nocase, match: [{uri: {prefix: /CaSe}, ignoreUriCase: true}], route: [{destination: {host: web, subset: v2}}]}
  - {name: without, match: [{uri: {prefix: /without}, withoutHeaders: {x-skip: {}}}], route: [{destination: {host: web, subset: v2}}]}
  - {name: nodebug, match: [{uri: {prefix: /nodebug}, withoutHeaders: {x-debug: {exact: "1"}}}], route: [{destination: {host: web, subset: v2}}]}
  - {name: source, match: [{uri: {prefix: /source}, sourceLabels: {app: client}}], route: [{destination: {host: web, subset: v2}}]}
  - {name: gw, match: [{uri: {prefix: /gw}, gateways: [ingress]}], route: [{destination: {host: web, subset: v2}}]}
  - {name: moved, match: [{uri: {exact: /old}}], redirect: {uri: /new}}
  - {name: teapot, match: [{uri: {exact: /teapot}}], directResponse: {status: 418, body: {string: short and stout}}}
  - name: rewrite
    match: [{uri: {prefix: /api/}}]
    rewrite: {uri: /v1/, authority: backend.internal}
    route: [{destination: {host: web, subset: v1}}]
  - name: slow
    match: [{uri: {prefix: /slow}}]
    timeout: 200ms
    retries: {attempts: 0}
    route: [{destination: {host: slow}}]
  - name: abort
    match: [{uri: {prefix: /abort}}]
    fault: {abort: {httpStatus: 503, percentage: {value: 100}}}
    route: [{destination: {host: web, subset: v1}}]
  - name: delay
    match: [{uri: {prefix: /delay}}]
    fault: {delay: {fixedDelay: 300ms, percentage: {value: 100}}}
    route: [{destination: {host: web, subset: v1}}]
  - name: headers
    match: [{uri: {prefix: /headers}}]
    headers:
      request: {set: {x-env: prod}, remove: [x-drop]}
      response: {add: {x-served-by: gitmesh}}
    route: [{destination: {host: web, subset: v1}}]
  - name: mirror
    match: [{uri: {prefix: /mirror}}]
    mirror: {host: shadow}
    mirrorPercentage: {value: 100}
    route: [{destination: {host: web, subset: v1}}]
  - name: cors
    match: [{uri: {prefix: /cors}}]
    corsPolicy: {allowOrigins: [{exact: "https://app.example.com"}], allowMethods: [GET]}
    route: [{destination: {host: web, subset: v1}}]
  - {name: flaky, match: [{uri: {prefix: /flaky}}], route: [{destination: {host: flaky}}]}
  - {name: team, match: [{uri: {prefix: /team}}], delegate: {name: team, namespace: team}}
  - {name: hash, match: [{uri: {prefix: /hash}}], route: [{destination: {host: web, subset: both}}]}
  - {name: default, route: [{destination: {host: web, subset: v1}}]}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: team, namespace: team}
spec:
  exportTo: [default]
  http:
  - {match: [{uri: {prefix: /team/v2}}], route: [{destination: {host: web.default.svc.cluster.local, subset: v2}}]}
  - route: [{destination: {host: web.default.svc.cluster.local, subset: v1}}]
`
	edge := fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: ingress}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: %[1]s, name: http, protocol: HTTP}
    hosts: ["*"]
  - port: {number: %[1]s, name: http-secure, protocol: HTTP}
    hosts: [secure.example.com]
    tls: {httpsRedirect: true}
  - port: {number: %[2]s, name: https, protocol: HTTPS}
    hosts: ["*"]
    tls: {mode: SIMPLE, serverCertificate: %[3]s, privateKey: %[4]s}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: client}
spec:
  workloadSelector: {labels: {app: client}}
  outboundTrafficPolicy: {mode: REGISTRY_ONLY}
`, p.gwHTTP, p.gwHTTPS, p.cert, p.key)
	return map[string]string{"policy/services.yaml": services, "policy/routes.yaml": routes, "policy/edge.yaml": edge}
}

// trafficRow is one request and what must come back.
type trafficRow struct {
	name    string
	via     string // "client" (default), "other", "gateway", "gateway-tls"
	method  string // default GET
	host    string // default web.default.svc.cluster.local
	path    string
	headers map[string]string
	repeat  int // send it this many times (default 1); sticky checks all went to one backend
	want    trafficWant
}

// trafficWant is the expected outcome of a trafficRow.
type trafficWant struct {
	status      int
	backend     string            // the backend's name (its body), when it answered
	body        string            // the exact body, for responses the proxy makes
	headers     map[string]string // response headers ("" means absent)
	echo        map[string]string // what the backend saw: Path, Host or a request header ("" means absent)
	minDuration time.Duration
	maxDuration time.Duration
	sticky      bool // every repeat reached the same backend
}

// check sends the row's request(s) and returns "" or why they failed.
func (r trafficRow) check(targets map[string]string, clients map[string]*http.Client) string {
	via := r.via
	if via == "" {
		via = "client"
	}
	method, host := r.method, r.host
	if method == "" {
		method = http.MethodGet
	}
	if host == "" {
		host = "web.default.svc.cluster.local"
	}
	hc := clients[via]
	scheme := "https"
	if hc == nil {
		hc, scheme = noRedirectClient(), "http"
	}
	seen := map[string]bool{}
	for range max(r.repeat, 1) {
		req, err := http.NewRequest(method, scheme+"://"+targets[via]+r.path, nil)
		if err != nil {
			return err.Error()
		}
		req.Host = host
		for k, v := range r.headers {
			req.Header.Set(k, v)
		}
		start := time.Now()
		resp, err := hc.Do(req)
		if err != nil {
			return fmt.Sprintf("%s %s via %s: %v", method, r.path, via, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		took := time.Since(start)
		w := r.want
		what := fmt.Sprintf("%s %s%s via %s", method, host, r.path, via)
		switch {
		case resp.StatusCode != w.status:
			return fmt.Sprintf("%s: status %d (%q, flags %q); want %d", what, resp.StatusCode, body, resp.Header.Get("X-Envoy-Response-Flags"), w.status)
		case w.backend != "" && resp.Header.Get("X-Backend") != w.backend:
			return fmt.Sprintf("%s: answered by %q; want %q", what, resp.Header.Get("X-Backend"), w.backend)
		case w.body != "" && strings.TrimSpace(string(body)) != w.body:
			return fmt.Sprintf("%s: body %q; want %q", what, body, w.body)
		case w.minDuration > 0 && took < w.minDuration:
			return fmt.Sprintf("%s: took %s; want at least %s", what, took, w.minDuration)
		case w.maxDuration > 0 && took > w.maxDuration:
			return fmt.Sprintf("%s: took %s; want at most %s", what, took, w.maxDuration)
		}
		for k, v := range w.headers {
			if got := resp.Header.Get(k); got != v {
				return fmt.Sprintf("%s: response header %s = %q; want %q", what, k, got, v)
			}
		}
		for k, v := range w.echo {
			if got := resp.Header.Get("X-Echo-" + k); got != v {
				return fmt.Sprintf("%s: the backend saw %s = %q; want %q", what, k, got, v)
			}
		}
		seen[resp.Header.Get("X-Backend")] = true
	}
	if r.want.sticky && len(seen) != 1 {
		return fmt.Sprintf("%s via %s: reached %v; want one backend for every request", r.path, via, seen)
	}
	return ""
}

// echoBackend answers with its name in the body and X-Backend, and echoes
// what it saw: X-Echo-Path, X-Echo-Host and X-Echo-<header> for every
// request header. "slow" waits a second first.
func echoBackend(t testing.TB, name string) *httptest.Server {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if name == "slow" {
			select {
			case <-time.After(time.Second):
			case <-r.Context().Done():
				return
			}
		}
		w.Header().Set("X-Backend", name)
		w.Header().Set("X-Echo-Path", r.URL.Path)
		w.Header().Set("X-Echo-Host", r.Host)
		for k, v := range r.Header {
			w.Header().Set("X-Echo-"+k, strings.Join(v, ","))
		}
		io.WriteString(w, name)
	}))
	t.Cleanup(s.Close)
	return s
}

// tcpEchoBackend is a TCP server on a free loopback port that answers
// "<name>:" and echoes what it reads until the client half-closes. It
// returns its address.
func tcpEchoBackend(t testing.TB, name string) string {
	t.Helper()
	return tcpEchoOn(t, "127.0.0.1:0", name)
}

// tcpEchoOn is a TCP server on addr that answers "<name>:" and echoes
// what it reads. It returns its address.
func tcpEchoOn(t testing.TB, addr, name string) string {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.WriteString(c, name+":")
				io.Copy(c, c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		e2etest.WaitDone(t, "tcp echo server "+name, done, e2etest.StopTimeout)
	})
	return ln.Addr().String()
}

// countingBackend counts its requests.
func countingBackend(t testing.TB, n *atomic.Int64) *httptest.Server {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		n.Add(1)
		w.Header().Set("X-Backend", "shadow")
	}))
	t.Cleanup(s.Close)
	return s
}

// flakyBackend answers 503 to every other request.
func flakyBackend(t testing.TB) *httptest.Server {
	var n atomic.Int64
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if n.Add(1)%2 == 1 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("X-Backend", "flaky")
		io.WriteString(w, "flaky")
	}))
	t.Cleanup(s.Close)
	return s
}

// stableAddr returns a free loopback address whose port is below Linux's
// ephemeral range (32768+), so that no client socket of the test can hold
// it by the time a proxy listens on it.
func stableAddr(t testing.TB) string {
	t.Helper()
	start := 20000 + int(time.Now().UnixNano()%10000)
	for i := 0; i < 2000; i++ {
		addr := fmt.Sprintf("127.0.0.1:%d", 20000+(start-20000+i*7)%12000)
		l, err := net.Listen("tcp", addr)
		if err != nil {
			continue
		}
		l.Close()
		return addr
	}
	t.Fatal("no free port below 32000")
	return ""
}

// noRedirectClient returns redirects as responses.
func noRedirectClient() *http.Client {
	return &http.Client{
		Timeout:       5 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// tlsClient trusts roots and sends serverName as SNI.
func tlsClient(roots *x509.CertPool, serverName string) *http.Client {
	c := noRedirectClient()
	c.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: serverName}}
	return c
}

// selfSignedCert writes a self-signed certificate for name and its key to
// files and returns their paths and a pool trusting it.
func selfSignedCert(t testing.TB, name string) (certFile, keyFile string, roots *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	roots = x509.NewCertPool()
	roots.AddCert(cert)
	return certFile, keyFile, roots
}
