package proxy

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/gitmesh/gitmesh/proxy/config"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// TestCompilerGoldenContract feeds the compiler's golden outputs (the
// resources it emits per docs/xds-conventions.md) to the proxy's config
// builder: everything the compiler emits must pass Envoy's proto
// validation (go-control-plane's ValidateAll) and be applicable. Finding no
// golden files fails it: a contract test that checks nothing must not pass.
func TestCompilerGoldenContract(t *testing.T) {
	files, _ := filepath.Glob("../compiler/testdata/*.golden.json")
	if len(files) == 0 {
		t.Fatal("no compiler golden files under ../compiler/testdata")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			// Proxyless gRPC clients (GENERATOR=grpc) get API listeners a
			// grpc-go client reads, not the bundled proxy.
			if src, err := os.ReadFile(strings.TrimSuffix(f, ".golden.json") + ".yaml"); err == nil &&
				strings.Contains(strings.SplitN(string(src), "\n", 2)[0], `"generator":"grpc"`) {
				t.Skip("proxyless gRPC output")
			}
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			var golden map[string]json.RawMessage
			if err := json.Unmarshal(b, &golden); err != nil {
				t.Fatal(err)
			}
			set := config.NewResourceSet()
			for key, typeURL := range map[string]string{"listeners": config.ListenerType, "routes": config.RouteType, "clusters": config.ClusterType, "endpoints": config.EndpointType} {
				var part struct {
					Version   string            `json:"version"`
					Resources []json.RawMessage `json:"resources"`
				}
				if raw, ok := golden[key]; ok {
					if err := json.Unmarshal(raw, &part); err != nil {
						t.Fatalf("%s: %v", key, err)
					}
				}
				res := map[string]proto.Message{}
				for _, r := range part.Resources {
					var m proto.Message
					switch typeURL {
					case config.ListenerType:
						m = &listenerv3.Listener{}
					case config.RouteType:
						m = &routev3.RouteConfiguration{}
					case config.ClusterType:
						m = &clusterv3.Cluster{}
					case config.EndpointType:
						m = &endpointv3.ClusterLoadAssignment{}
					}
					if err := protojson.Unmarshal(r, m); err != nil {
						t.Fatalf("%s: %v", key, err)
					}
					// What Envoy's proto validation rejects, Envoy NACKs.
					if err := m.(interface{ ValidateAll() error }).ValidateAll(); err != nil {
						t.Errorf("%s %q is not valid for Envoy: %v", key, config.ResourceName(m), err)
					}
					res[config.ResourceName(m)] = m
				}
				set.ByType[typeURL] = res
				set.Versions[typeURL] = part.Version
				set.Received[typeURL] = true
			}
			// Secrets come per node from the controller's CA over SDS,
			// not from the compiler: supply them as it would.
			ca := newTestCA(t, "root")
			chain, key := ca.Workload(t, spiffeID("golden"))
			set.ByType[config.SecretType] = map[string]proto.Message{"default": certSecret(chain, key), "ROOTCA": rootSecret(ca.PEM)}
			set.Versions[config.SecretType] = "1"
			set.Received[config.SecretType] = true
			cfg, missing, err := config.BuildConfig(set, nil)
			if errors.Is(err, fs.ErrNotExist) {
				// A DestinationRule's SIMPLE/MUTUAL tls names files on the
				// proxy's machine (Envoy NACKs what it cannot read too).
				t.Skipf("the output names files this machine lacks: %v", err)
			}
			if err != nil {
				t.Fatalf("the proxy would NACK the compiler's output: %v", err)
			}
			if len(missing) > 0 {
				t.Errorf("the compiler's output references missing resources: %v", describeMissing(missing))
			}
			t.Logf("%d listeners, %d clusters", len(cfg.Listeners), len(cfg.Clusters))
		})
	}
}
