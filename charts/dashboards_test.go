package charts

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/gitmesh/gitmesh/internal/grafanatest"
	"github.com/gitmesh/gitmesh/internal/helmtest"
)

// wantDashboards are the dashboards the chart ships, by file.
var wantDashboards = []string{"control-plane.json", "mesh.json", "service.json", "workload.json"}

// TestDashboardsStructure checks every shipped dashboard's structure:
// unique panel ids, gridPos, data sources through ${datasource}, only
// defined variables, no hard-coded URLs (e2e/dashboards_test.go runs
// their queries against a real Prometheus).
func TestDashboardsStructure(t *testing.T) {
	dir := grafanatest.Dir(t)
	ds := grafanatest.Load(t, dir)
	if len(ds) != len(wantDashboards) {
		t.Fatalf("%d dashboards in %s; want %v", len(ds), dir, wantDashboards)
	}
	uids := map[string]bool{}
	for i, d := range ds {
		t.Run(d.File, func(t *testing.T) {
			if d.File != wantDashboards[i] {
				t.Errorf("file %s; want %s", d.File, wantDashboards[i])
			}
			if uids[d.UID] {
				t.Errorf("uid %s is not unique", d.UID)
			}
			uids[d.UID] = true
			raw, err := os.ReadFile(filepath.Join(dir, d.File))
			if err != nil {
				t.Fatal(err)
			}
			for _, err := range grafanatest.Validate(d, raw) {
				t.Error(err)
			}
			if len(d.AllPanels()) < 6 {
				t.Errorf("%d panels; want at least 6", len(d.AllPanels()))
			}
		})
	}
}

// TestValidateCatchesBrokenDashboards: the structure check refuses what
// it is there to refuse.
func TestValidateCatchesBrokenDashboards(t *testing.T) {
	good := `{"uid":"u","title":"t","schemaVersion":39,
	"templating":{"list":[{"name":"datasource","type":"datasource","query":"prometheus"}]},
	"panels":[{"id":1,"type":"timeseries","title":"a","datasource":{"type":"prometheus","uid":"${datasource}"},
	  "gridPos":{"h":8,"w":12,"x":0,"y":0},"targets":[{"refId":"A","expr":"up"}]}]}`
	tests := []struct {
		name, from, to, want string
	}{
		{name: "good", want: ""},
		{name: "duplicate id", from: `"panels":[`, to: `"panels":[{"id":1,"type":"row","title":"r","gridPos":{"h":1,"w":24,"x":0,"y":0}},`, want: "not unique"},
		{name: "hard-coded datasource", from: `"uid":"${datasource}"`, to: `"uid":"P1809F7CD0C75ACF3"`, want: "want ${datasource}"},
		{name: "too wide", from: `"x":0,"y":0`, to: `"x":16,"y":0`, want: "outside 24 columns"},
		{name: "undefined variable", from: `"expr":"up"`, to: `"expr":"up{job=\"$job\"}"`, want: "$job is not a template variable"},
		{name: "url", from: `"title":"a"`, to: `"title":"a","links":[{"url":"http://grafana.example.com/d/x"}]`, want: "hard-coded URL"},
		{name: "no datasource variable", from: `"query":"prometheus"`, to: `"query":"loki"`, want: "no template variable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			raw := good
			if tt.from != "" {
				raw = strings.Replace(good, tt.from, tt.to, 1)
			}
			if err := os.WriteFile(filepath.Join(dir, "d.json"), []byte(raw), 0o644); err != nil {
				t.Fatal(err)
			}
			errs := grafanatest.Validate(grafanatest.Load(t, dir)[0], []byte(raw))
			var got []string
			for _, err := range errs {
				got = append(got, err.Error())
			}
			joined := strings.Join(got, "\n")
			switch {
			case tt.want == "" && len(errs) > 0:
				t.Errorf("errors %q; want none", joined)
			case tt.want != "" && !strings.Contains(joined, tt.want):
				t.Errorf("errors %q; want one naming %q", joined, tt.want)
			}
		})
	}
}

// dashboardConfigMaps returns the rendered ConfigMaps labelled for
// Grafana's sidecar.
func dashboardConfigMaps(objs []helmtest.Object) []*corev1.ConfigMap {
	var out []*corev1.ConfigMap
	for _, o := range helmtest.Find(objs, "ConfigMap", "") {
		cm := o.Obj.(*corev1.ConfigMap)
		if cm.Labels["grafana_dashboard"] == "1" {
			out = append(out, cm)
		}
	}
	return out
}

// checkDashboards wants one ConfigMap per shipped dashboard, each holding
// the file byte for byte.
func checkDashboards(t *testing.T, objs []helmtest.Object) {
	t.Helper()
	cms := dashboardConfigMaps(objs)
	if len(cms) != len(wantDashboards) {
		t.Fatalf("%d dashboard ConfigMaps; want %d", len(cms), len(wantDashboards))
	}
	for i, file := range wantDashboards {
		name := strings.TrimSuffix(file, ".json")
		cm := cms[i]
		if cm.Name != "gitmesh-dashboard-"+name {
			t.Errorf("ConfigMap %s; want gitmesh-dashboard-%s", cm.Name, name)
			continue
		}
		want, err := os.ReadFile(filepath.Join(grafanatest.Dir(t), file))
		if err != nil {
			t.Fatal(err)
		}
		if got := cm.Data["gitmesh-"+file]; got != strings.TrimSuffix(string(want), "\n") {
			t.Errorf("ConfigMap %s data[gitmesh-%s] differs from %s (%d bytes; want %d)", cm.Name, file, file, len(got), len(want)-1)
		}
	}
}
