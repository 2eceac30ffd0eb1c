package registry

import (
	"reflect"
	"testing"

	"github.com/gitmesh/gitmesh/sources"
)

func object(apiVersion, kind, ns, name, yaml string) sources.Object {
	return sources.Object{
		APIVersion: apiVersion, Kind: kind, Namespace: ns, Name: name, YAML: []byte(yaml),
		Origin: sources.Origin{File: "k8s.yaml", Line: 1},
	}
}

const reviewsService = `apiVersion: v1
kind: Service
metadata:
  name: reviews
  annotations:
    networking.istio.io/exportTo: ".,tools"
spec:
  selector: {app: reviews}
  ports:
  - {name: http, port: 9080}
  - {name: http-admin, port: 9090, targetPort: admin}
  - {name: metrics, port: 9100, targetPort: 9101}
  - {name: dns, port: 53, protocol: UDP}
`

const reviewsDeployment = `apiVersion: apps/v1
kind: Deployment
metadata: {name: reviews-v2}
spec:
  selector: {matchLabels: {app: reviews, version: v2}}
  template:
    metadata: {labels: {app: reviews, version: v2}}
    spec:
      containers:
      - name: reviews
        image: example.com/reviews:2
        ports:
        - {name: admin, containerPort: 9091}
`

func TestFromObjects(t *testing.T) {
	objs := []sources.Object{
		object("v1", "Service", "", "reviews", reviewsService),
		object("apps/v1", "Deployment", "", "reviews-v2", reviewsDeployment),
		object("v1", "ConfigMap", "", "settings", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\n"),
		object("networking.istio.io/v1", "VirtualService", "", "reviews", "kind: VirtualService\n"),
		object("apps/v1", "StatefulSet", "data", "db", "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: db, namespace: data}\nspec:\n  template:\n    metadata: {labels: {app: db}}\n"),
		object("v1", "Pod", "data", "debug", "apiVersion: v1\nkind: Pod\nmetadata: {name: debug, namespace: data, labels: {app: debug}}\nspec: {containers: [{name: c, image: x}]}\n"),
		object("v1", "Service", "", "reviews", reviewsService),
		object("v1", "Service", "", "broken", "apiVersion: v1\nkind: Service\nmetadata: {name: broken}\nspec: {ports: 80}\n"),
	}
	reg, findings := FromObjects(objs, "default")

	svcs := reg.Services()
	if len(svcs) != 1 {
		t.Fatalf("got %d services; want 1", len(svcs))
	}
	s := svcs[0]
	wantPorts := []Port{
		{Name: "http", Number: 9080, Protocol: ProtocolHTTP, Field: "spec.ports[0]"},
		{Name: "http-admin", Number: 9090, Protocol: ProtocolHTTP, TargetPort: 9091, TargetPortName: "admin", Field: "spec.ports[1]"},
		{Name: "metrics", Number: 9100, Protocol: ProtocolUnknown, TargetPort: 9101, Field: "spec.ports[2]"},
	}
	if s.Hostname != "reviews.default.svc.cluster.local" || s.Namespace != "default" || s.Source != SourceKubernetes {
		t.Errorf("got host %q namespace %q source %q", s.Hostname, s.Namespace, s.Source)
	}
	if !reflect.DeepEqual(s.Ports, wantPorts) {
		t.Errorf("ports:\ngot  %+v\nwant %+v", s.Ports, wantPorts)
	}
	if !reflect.DeepEqual(s.Selector, map[string]string{"app": "reviews"}) {
		t.Errorf("selector: got %v", s.Selector)
	}
	if !reflect.DeepEqual(s.ExportTo, []string{"default", "tools"}) || !s.ExportedTo("tools") || s.ExportedTo("other") || s.ExportedToAll() {
		t.Errorf("exportTo: got %v", s.ExportTo)
	}

	var kinds []string
	for _, w := range reg.Workloads() {
		kinds = append(kinds, w.Namespace+"/"+w.Kind+"/"+w.Name)
	}
	wantKinds := []string{"data/Pod/debug", "data/StatefulSet/db", "default/Deployment/reviews-v2"}
	if !reflect.DeepEqual(kinds, wantKinds) {
		t.Errorf("workloads: got %v; want %v", kinds, wantKinds)
	}
	if got := SelectedWorkloads(reg, s); len(got) != 1 || got[0].Labels["version"] != "v2" {
		t.Errorf("SelectedWorkloads: got %v", got)
	}

	type short struct {
		Name   string
		Field  string
		Reason Reason
	}
	var got []short
	for _, f := range findings {
		got = append(got, short{f.Object.Name, f.Field, f.Reason})
	}
	want := []short{
		{"reviews", "spec.ports[2].name", ReasonPortName},
		{"reviews", "metadata.name", ReasonDuplicate},
		{"broken", "spec", ReasonInvalid},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("findings:\ngot  %+v\nwant %+v", got, want)
	}
}

func TestParseExportTo(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"", nil},
		{" ", nil},
		{".", []string{"shop"}},
		{"*", []string{"*"}},
		{"~", []string{"~"}},
		{" ., tools ,", []string{"shop", "tools"}},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if got := ParseExportTo(tt.in, "shop"); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ParseExportTo(%q) = %v; want %v", tt.in, got, tt.want)
			}
		})
	}
}
