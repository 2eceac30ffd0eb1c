package review

import (
	"reflect"
	"strings"
	"testing"

	"github.com/gitmesh/gitmesh/api/admin"
)

func TestParseClass(t *testing.T) {
	tests := []struct {
		in       string
		wantName string
		wantErr  bool
	}{
		{in: "role=sidecar,service=reviews,namespace=default", wantName: "reviews (sidecar, default)"},
		{in: "service=reviews", wantName: "reviews (sidecar, default)"},
		{in: "role=gateway", wantName: "gateways (default)"},
		{in: "role=sidecar,namespace=shop", wantName: "any sidecar (shop)"},
		{in: "generator=grpc,service=client", wantName: "client (grpc client, default)"},
		{in: "role=router", wantErr: true},
		{in: "service", wantErr: true},
		{in: "colour=blue", wantErr: true},
	}
	for _, tt := range tests {
		c, err := ParseClass(tt.in)
		if (err != nil) != tt.wantErr {
			t.Errorf("ParseClass(%q) error = %v; want error %v", tt.in, err, tt.wantErr)
			continue
		}
		if err == nil && c.Name != tt.wantName {
			t.Errorf("ParseClass(%q).Name = %q; want %q", tt.in, c.Name, tt.wantName)
		}
	}
}

func TestLiveClasses(t *testing.T) {
	st := &admin.Status{Proxies: []admin.ProxyStatus{
		{ID: "reviews-v1-1", Service: "reviews", Namespace: "default", Role: "sidecar", Connected: true},
		{ID: "reviews-v2-1", Service: "reviews", Namespace: "default", Role: "sidecar", Connected: true},
		{ID: "reviews-v2-2", Service: "reviews", Namespace: "default", Role: "sidecar", Connected: false},
		{ID: "gw-1", Service: "gateway", Namespace: "default", Role: "gateway", Connected: true},
		{ID: "frontend-1", Service: "frontend", Namespace: "default", Role: "sidecar", Connected: true},
	}}
	var got []string
	var counts []int
	for _, c := range LiveClasses(st) {
		got = append(got, c.Name)
		counts = append(counts, c.Proxies)
	}
	want := []string{"frontend (sidecar, default)", "reviews (sidecar, default)", "gateways (default)"}
	if !reflect.DeepEqual(got, want) || !reflect.DeepEqual(counts, []int{1, 2, 1}) {
		t.Errorf("LiveClasses = %v %v; want %v [1 2 1]", got, counts, want)
	}
}

func TestLiveBlastRadius(t *testing.T) {
	r := fixtureRepo(t)
	repo, err := OpenRepo(r.dir)
	if err != nil {
		t.Fatal(err)
	}
	st := &admin.Status{Proxies: []admin.ProxyStatus{
		{ID: "reviews-1", Service: "reviews", Namespace: "default", Role: "sidecar", Connected: true},
		{ID: "reviews-2", Service: "reviews", Namespace: "default", Role: "sidecar", Connected: true},
		{ID: "gw-1", Service: "gateway", Namespace: "default", Role: "gateway", Connected: true},
	}}
	ctx := t.Context()
	rep, err := Compare(repo.Load(ctx, "v1.0", "", "policy", ""), repo.Load(ctx, "weights", "", "policy", ""),
		Options{Live: LiveClasses(st)})
	if err != nil {
		t.Fatal(err)
	}
	// Derived: reviews (2 live proxies), any sidecar (0); the gateway has no
	// derived class and gets its own. A mesh route change reaches sidecars.
	want := BlastRadius{Classes: 2, Total: 3, Live: true, Proxies: 2, LiveTotal: 3}
	if rep.Blast != want {
		t.Errorf("Blast = %+v; want %+v", rep.Blast, want)
	}
}

func TestGatewayClassDiff(t *testing.T) {
	r := newTestRepo(t)
	gateway := `---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: ingress
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 8080, name: http, protocol: HTTP}
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: edge
spec:
  hosts: ["*"]
  gateways: [ingress]
  http:
  - route:
    - destination: {host: reviews, subset: v1}
`
	r.write("mesh.yaml", servicesYAML+"---\n"+reviewsYAML+gateway)
	r.commit("init", "")
	r.write("mesh.yaml", servicesYAML+"---\n"+reviewsYAML+strings.Replace(gateway, "subset: v1}", "subset: v2}", 1))
	r.commit("edge to v2", "")
	repo, err := OpenRepo(r.dir)
	if err != nil {
		t.Fatal(err)
	}
	base, head := repo.Load(t.Context(), "HEAD~1", "", "", ""), repo.Load(t.Context(), "HEAD", "", "", "")
	if base.Diagnostics.HasErrors() || head.Diagnostics.HasErrors() {
		t.Fatalf("fixture has errors:\n%s\n%s", base.Diagnostics, head.Diagnostics)
	}
	var names []string
	var gw Class
	for _, c := range DeriveClasses("", base, head) {
		names = append(names, c.Name)
		if c.Class.Role == "gateway" {
			gw = c
		}
	}
	want := []string{"reviews (sidecar, default)", "any sidecar (default)", "gateways istio=ingressgateway (default)"}
	if !reflect.DeepEqual(names, want) {
		t.Errorf("DeriveClasses = %v; want %v", names, want)
	}
	if !reflect.DeepEqual(gw.Class.Gateway, []string{"0.0.0.0:8080"}) {
		t.Errorf("gateway addresses = %v; want [0.0.0.0:8080]", gw.Class.Gateway)
	}
	rep, err := Compare(base, head, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range rep.Classes {
		var got []string
		for _, ch := range c.Changes {
			got = append(got, ch.Type+" "+ch.Label+": "+ch.Detail)
		}
		switch c.Class.Class.Role {
		case "gateway":
			if len(got) != 1 || !strings.Contains(got[0], "reviews:9080/v1 100% -> reviews:9080/v2 100%") {
				t.Errorf("gateway changes = %q; want its route to go from v1 to v2", got)
			}
		default:
			if len(got) != 0 {
				t.Errorf("%s changes = %q; want none (the VirtualService is bound to the gateway only)", c.Name, got)
			}
		}
	}
}
