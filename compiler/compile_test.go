package compiler

import (
	"bytes"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"google.golang.org/protobuf/proto"

	"github.com/gitmesh/gitmesh/api/nodemeta"
	"github.com/gitmesh/gitmesh/sources"
)

func compileCase(t testing.TB, objs []sources.Object, class nodemeta.ProxyClass, fleet []nodemeta.Workload) *Snapshot {
	t.Helper()
	p, diags := Parse(objs)
	if diags.HasErrors() {
		t.Fatalf("unexpected errors:\n%s", diags)
	}
	snap, err := p.Compile(class, fleet)
	if err != nil {
		t.Fatal(err)
	}
	return snap
}

// snapshotBytes is every resource's deterministic encoding, in name order.
func snapshotBytes(t testing.TB, s *Snapshot) []byte {
	t.Helper()
	var buf bytes.Buffer
	for _, typ := range []types.ResponseType{types.Listener, types.Route, types.Cluster, types.Endpoint} {
		res := s.Resources.Resources[typ]
		buf.WriteString(res.Version + "\n")
		for _, name := range sortedKeys(res.Items) {
			b, err := proto.MarshalOptions{Deterministic: true}.Marshal(res.Items[name].Resource)
			if err != nil {
				t.Fatal(err)
			}
			buf.WriteString(name + "\n")
			buf.Write(b)
		}
	}
	return buf.Bytes()
}

// TestDeterministic compiles the same policy many times (Go randomizes map
// order on every iteration), with objects and fleet in other orders, and
// wants the same bytes and versions every time.
func TestDeterministic(t *testing.T) {
	tc := loadCase(t, "testdata/bookinfo.yaml")
	objs := splitObjects("testdata/bookinfo.yaml", tc.data)
	first := compileCase(t, objs, tc.class, tc.fleet)
	want := snapshotBytes(t, first)
	for i := 0; i < 20; i++ {
		o := append([]sources.Object(nil), objs...)
		f := append([]nodemeta.Workload(nil), tc.fleet...)
		// rotate and reverse
		o = append(o[i%len(o):], o[:i%len(o)]...)
		if i%2 == 1 {
			for a, b := 0, len(f)-1; a < b; a, b = a+1, b-1 {
				f[a], f[b] = f[b], f[a]
			}
		}
		got := compileCase(t, o, tc.class, f)
		if got.Version != first.Version {
			t.Fatalf("iteration %d: version %s; want %s", i, got.Version, first.Version)
		}
		if !bytes.Equal(snapshotBytes(t, got), want) {
			t.Fatalf("iteration %d: resources differ", i)
		}
	}
}

func TestVersions(t *testing.T) {
	tc := loadCase(t, "testdata/bookinfo.yaml")
	base := compileCase(t, splitObjects("f.yaml", tc.data), tc.class, tc.fleet)
	ver := func(s *Snapshot, typ types.ResponseType) string { return s.Resources.Resources[typ].Version }

	t.Run("endpoint change keeps the snapshot version", func(t *testing.T) {
		fleet := append([]nodemeta.Workload(nil), tc.fleet[:len(tc.fleet)-2]...) // drop two workloads
		fleet[1].Inbound = "127.0.0.1:17001"
		got := compileCase(t, splitObjects("f.yaml", tc.data), tc.class, fleet)
		if got.Version != base.Version {
			t.Errorf("Version changed with endpoints: %s -> %s", base.Version, got.Version)
		}
		if ver(got, types.Endpoint) == ver(base, types.Endpoint) {
			t.Error("endpoints version did not change")
		}
		if ver(got, types.Cluster) != ver(base, types.Cluster) {
			t.Error("clusters version changed")
		}
	})
	t.Run("policy change changes the version", func(t *testing.T) {
		data := strings.Replace(string(tc.data), "weight: 50", "weight: 40", 1)
		data = strings.Replace(data, "weight: 50", "weight: 60", 1)
		got := compileCase(t, splitObjects("f.yaml", []byte(data)), tc.class, tc.fleet)
		if got.Version == base.Version || ver(got, types.Route) == ver(base, types.Route) {
			t.Error("version did not change with the routes")
		}
		if ver(got, types.Cluster) != ver(base, types.Cluster) || ver(got, types.Listener) != ver(base, types.Listener) {
			t.Error("unrelated versions changed")
		}
	})
	t.Run("file names and lines do not matter", func(t *testing.T) {
		got := compileCase(t, splitObjects("other/place.yaml", append([]byte("\n\n# moved\n"), tc.data...)), tc.class, tc.fleet)
		if got.Version != base.Version {
			t.Error("version depends on the file layout")
		}
	})
}

func TestCompileRoles(t *testing.T) {
	tc := loadCase(t, "testdata/bookinfo.yaml")
	p, _ := Parse(splitObjects("f.yaml", tc.data))
	count := func(s *Snapshot, typ types.ResponseType) int { return len(s.Resources.Resources[typ].Items) }
	tests := []struct {
		name                string
		class               nodemeta.ProxyClass
		listeners, clusters int
		wantErr             bool
	}{
		{"sidecar in and out", tc.class, 2, 8, false},
		{"sidecar outbound only", nodemeta.ProxyClass{Role: nodemeta.RoleSidecar, Outbound: "127.0.0.1:15001"}, 1, 7, false},
		{"sidecar inbound without app", nodemeta.ProxyClass{Inbound: "127.0.0.1:15006"}, 0, 7, false},
		{"gateway", nodemeta.ProxyClass{Role: nodemeta.RoleGateway, Gateway: []string{"0.0.0.0:8080"}}, 0, 7, false},
		{"grpc", nodemeta.ProxyClass{Role: nodemeta.RoleSidecar, Generator: nodemeta.GeneratorGRPC, Outbound: "127.0.0.1:15001"}, 32, 7, false}, // API listeners (grpc.go), no outbound listener
		{"bad role", nodemeta.ProxyClass{Role: "router"}, 0, 0, true},
		{"bad address", nodemeta.ProxyClass{Outbound: "nowhere"}, 0, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := p.Compile(tt.class, tc.fleet)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v; wantErr %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if got := count(s, types.Listener); got != tt.listeners {
				t.Errorf("listeners = %d; want %d", got, tt.listeners)
			}
			if got := count(s, types.Cluster); got != tt.clusters {
				t.Errorf("clusters = %d; want %d", got, tt.clusters)
			}
			if err := s.Resources.Consistent(); err != nil {
				t.Errorf("not consistent: %v", err)
			}
		})
	}
	var nilPolicy *Policy
	if _, err := nilPolicy.Compile(tc.class, nil); !errors.Is(err, ErrNilPolicy) {
		t.Errorf("nil policy: err = %v; want ErrNilPolicy", err)
	}
}

// FuzzCompile parses and compiles arbitrary YAML: it must never panic, and
// a policy without errors must always compile.
func FuzzCompile(f *testing.F) {
	for _, dir := range []string{"testdata/*.yaml", "testdata/invalid/*.yaml"} {
		files, _ := globFiles(dir)
		for _, file := range files {
			data, err := os.ReadFile(file)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data)
		}
	}
	tc := loadCase(f, "testdata/bookinfo.yaml")
	f.Fuzz(func(t *testing.T, data []byte) {
		p, diags := Parse(splitObjects("fuzz.yaml", data))
		for _, class := range []nodemeta.ProxyClass{tc.class, {Role: nodemeta.RoleGateway}} {
			_, err := p.Compile(class, tc.fleet)
			if err != nil && !diags.HasErrors() {
				t.Fatalf("valid policy does not compile: %v\n%s", err, data)
			}
		}
	})
}

func TestFleetAddresses(t *testing.T) {
	tc := loadCase(t, "testdata/gateway.yaml")
	p, _ := Parse(splitObjects("f.yaml", tc.data))
	fleet := []nodemeta.Workload{
		{ID: "a", Labels: map[string]string{"app": "web"}, Inbound: "localhost:15006"},
		{ID: "b", Labels: map[string]string{"app": "web"}, Inbound: "web-b.internal:15006"}, // not an IP: left out
		{ID: "c", Labels: map[string]string{"app": "web"}, Inbound: "10.0.0.3:15006", Namespace: "other"},
		{ID: "d", Labels: map[string]string{"app": "web"}, Inbound: "10.0.0.4:15006", Generator: nodemeta.GeneratorGRPC},
		{ID: "e", Labels: map[string]string{"app": "web"}, Inbound: "10.0.0.5:15006", Role: nodemeta.RoleGateway},
		{ID: "f", Labels: map[string]string{"app": "api"}, Inbound: "10.0.0.6:15006"},
		{ID: "g", Labels: map[string]string{"app": "web"}},
	}
	class := nodemeta.ProxyClass{Outbound: "127.0.0.1:15001", Inbound: "localhost:15006", App: "localhost:8080"}
	s, err := p.Compile(class, fleet)
	if err != nil {
		t.Fatal(err)
	}
	items := s.Resources.Resources[types.Endpoint].Items
	cla := items["outbound|80||web.default.svc.cluster.local"].Resource.(interface {
		String() string
	}).String()
	if !strings.Contains(cla, `"127.0.0.1"`) || strings.Count(cla, "socket_address") != 1 {
		t.Errorf("want only workload a at 127.0.0.1, got %s", cla)
	}
}
