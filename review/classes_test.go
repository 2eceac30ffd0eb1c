package review

import (
	"reflect"
	"testing"

	"github.com/gitmesh/gitmesh/reconciler"
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
	st := &reconciler.Status{Proxies: []reconciler.ProxyStatus{
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
	st := &reconciler.Status{Proxies: []reconciler.ProxyStatus{
		{ID: "reviews-1", Service: "reviews", Namespace: "default", Role: "sidecar", Connected: true},
		{ID: "reviews-2", Service: "reviews", Namespace: "default", Role: "sidecar", Connected: true},
		{ID: "gw-1", Service: "gateway", Namespace: "default", Role: "gateway", Connected: true},
	}}
	ctx := t.Context()
	rep, err := Compare(repo.Load(ctx, "v1.0", "", "policy", ""), repo.Load(ctx, "weights", "", "policy", ""),
		Options{Classes: LiveClasses(st), Live: true})
	if err != nil {
		t.Fatal(err)
	}
	// A route change reaches sidecars; gateways get no routes yet.
	want := BlastRadius{Classes: 1, Total: 2, Live: true, Proxies: 2, LiveTotal: 3}
	if rep.Blast != want {
		t.Errorf("Blast = %+v; want %+v", rep.Blast, want)
	}
}

func TestDeriveClassesWithGateway(t *testing.T) {
	r := newTestRepo(t)
	r.write("mesh.yaml", servicesYAML+`---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: ingress
spec:
  selector: {istio: ingressgateway}
`)
	r.commit("init", "")
	repo, err := OpenRepo(r.dir)
	if err != nil {
		t.Fatal(err)
	}
	s := repo.Load(t.Context(), "main", "", "", "")
	var got []string
	for _, c := range DeriveClasses("", s) {
		got = append(got, c.Name)
	}
	want := []string{"reviews (sidecar, default)", "any sidecar (default)", "gateways (default)"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("DeriveClasses = %v; want %v", got, want)
	}
}
