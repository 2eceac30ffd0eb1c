package e2e

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	grpcxds "google.golang.org/grpc/xds" // registers the xds resolver, balancers and HTTP filters

	"github.com/gitmesh/gitmesh/api/admin"
	"github.com/gitmesh/gitmesh/internal/e2etest"
)

// echoServer is a gRPC TestService backend that answers every UnaryCall
// with its name in SimpleResponse.hostname, after the duration in the
// request's echo-sleep metadata if any.
type echoServer struct {
	testpb.UnimplementedTestServiceServer
	name string
}

func (s echoServer) UnaryCall(ctx context.Context, _ *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	if v := metadata.ValueFromIncomingContext(ctx, "echo-sleep"); len(v) > 0 {
		d, err := time.ParseDuration(v[0])
		if err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "echo-sleep: %v", err)
		}
		select {
		case <-time.After(d):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return &testpb.SimpleResponse{Hostname: s.name}, nil
}

// grpcBackend starts a plaintext gRPC TestService named name on loopback
// and returns its address.
func grpcBackend(t testing.TB, name string) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	testpb.RegisterTestServiceServer(s, echoServer{name: name})
	go s.Serve(l)
	t.Cleanup(s.Stop)
	return l.Addr().String()
}

// grpcBootstrap is the xDS bootstrap of a proxyless gRPC client of the
// controller at xdsAddr (docs/proxyless-grpc.md).
func grpcBootstrap(xdsAddr, nodeID string) string {
	return fmt.Sprintf(`{
  "xds_servers": [{"server_uri": %q, "channel_creds": [{"type": "insecure"}], "server_features": ["xds_v3"]}],
  "node": {"id": %q, "cluster": "grpc-client", "metadata": {"GENERATOR": "grpc", "NAMESPACE": "default"}}
}`, xdsAddr, nodeID)
}

// dialXDS opens a channel to target ("xds:///<host>:<port>") whose xds
// resolver reads its own bootstrap, so the process needs no
// GRPC_XDS_BOOTSTRAP* environment at start.
func dialXDS(t testing.TB, xdsAddr, nodeID, target string) testpb.TestServiceClient {
	t.Helper()
	rb, err := grpcxds.NewXDSResolverWithConfigForTesting([]byte(grpcBootstrap(xdsAddr, nodeID)))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(target, grpc.WithResolvers(rb), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return testpb.NewTestServiceClient(conn)
}

// grpcSplit makes n UnaryCalls with the given outgoing metadata (key,
// value pairs) and counts the backends that answered. Errors count under
// "error: <code>".
func grpcSplit(c testpb.TestServiceClient, n int, md ...string) map[string]int {
	got := map[string]int{}
	for range n {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if len(md) > 0 {
			ctx = metadata.AppendToOutgoingContext(ctx, md...)
		}
		resp, err := c.UnaryCall(ctx, &testpb.SimpleRequest{})
		cancel()
		if err != nil {
			got["error: "+err.Error()]++
			continue
		}
		got[resp.GetHostname()]++
	}
	return got
}

// echoPolicy is a gRPC service "echo" with two static endpoints (v1, v2),
// its subsets, and a VirtualService that sends end-user: jason to v2 and
// splits the rest w1/w2 between v1 and v2.
func echoPolicy(v1, v2 string, w1, w2 int) map[string]string {
	return map[string]string{
		"policy/echo.yaml": fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: echo
spec:
  hosts:
  - echo.default.svc.cluster.local
  location: MESH_INTERNAL
  ports:
  - number: 9090
    name: grpc
    protocol: GRPC
  resolution: STATIC
  endpoints:
  - address: 127.0.0.1
    ports:
      grpc: %s
    labels:
      version: v1
  - address: 127.0.0.1
    ports:
      grpc: %s
    labels:
      version: v2
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: echo
spec:
  host: echo
  subsets:
  - name: v1
    labels:
      version: v1
  - name: v2
    labels:
      version: v2
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: echo
spec:
  hosts:
  - echo
  http:
  - name: jason
    match:
    - headers:
        end-user:
          exact: jason
    route:
    - destination:
        host: echo
        subset: v2
  - name: split
    route:
    - destination:
        host: echo
        subset: v1
      weight: %d
    - destination:
        host: echo
        subset: v2
      weight: %d
`, e2etest.PortOf(v1), e2etest.PortOf(v2), w1, w2),
	}
}

// TestProxylessGRPC is issue 4's user story: a stock grpc-go client with
// the xds resolver and a bootstrap pointing at the controller dials
// xds:///echo.default.svc.cluster.local:9090 and is routed by the same
// VirtualService a sidecar reads: weights, a push that changes them, and a
// header match on outgoing metadata.
func TestProxylessGRPC(t *testing.T) {
	v1, v2 := grpcBackend(t, "v1"), grpcBackend(t, "v2")
	repo := e2etest.NewGitRemote(t)
	repo.Push("echo: 100/0", echoPolicy(v1, v2, 100, 0))
	m := startController(t, repo.URL, t.TempDir(), 200*time.Millisecond, "")

	client := dialXDS(t, m.ctrl.XDSAddr, "grpc-client-1", "xds:///echo.default.svc.cluster.local:9090")
	e2etest.Eventually(t, 20*time.Second, "100/0", func() string { return only(grpcSplit(client, 20), "v1") })

	t.Run("header match routes to v2", func(t *testing.T) {
		if why := only(grpcSplit(client, 20, "end-user", "jason"), "v2"); why != "" {
			t.Error(why)
		}
		if why := only(grpcSplit(client, 20, "end-user", "mallory"), "v1"); why != "" {
			t.Error(why)
		}
	})

	t.Run("the client is a SYNCED node", func(t *testing.T) {
		e2etest.Eventually(t, 10*time.Second, "grpc-client-1 SYNCED", func() string {
			for _, p := range m.status().Proxies {
				if p.ID == "grpc-client-1" {
					if p.Connected && p.State == admin.StateSynced {
						return ""
					}
					return fmt.Sprintf("%+v", p)
				}
			}
			return "grpc-client-1 is not in the fleet"
		})
	})

	t.Run("push splits 20/80", func(t *testing.T) {
		pushed := time.Now()
		sha := repo.Push("echo: 20/80", echoPolicy(v1, v2, 20, 80))
		e2etest.Eventually(t, 20*time.Second, "revision applied and the client synced", func() string { return synced(m, sha, 1) })
		const n = 500
		var got map[string]int
		e2etest.Eventually(t, 10*time.Second, "about 100/400", func() string {
			got = grpcSplit(client, n)
			// p=0.2 of 500: mean 100, sd 9; accept 60..140.
			if got["v1"]+got["v2"] != n || got["v1"] < 60 || got["v1"] > 140 {
				return fmt.Sprintf("got %v; want about 100/400 (v1 within 60..140)", got)
			}
			return ""
		})
		t.Logf("push to 20/80 on the gRPC client: %s; split %v", time.Since(pushed).Round(time.Millisecond), got)
		if why := only(grpcSplit(client, 20, "end-user", "jason"), "v2"); why != "" {
			t.Errorf("header match after the push: %s", why)
		}
	})

	t.Run("short names resolve in the client's namespace", func(t *testing.T) {
		for i, target := range []string{"xds:///echo:9090", "xds:///echo.default:9090", "xds:///echo.default.svc.cluster.local"} {
			c := dialXDS(t, m.ctrl.XDSAddr, fmt.Sprintf("grpc-client-short-%d", i), target)
			e2etest.Eventually(t, 20*time.Second, target, func() string {
				got := grpcSplit(c, 20, "end-user", "jason")
				if why := only(got, "v2"); why != "" {
					return why
				}
				return ""
			})
		}
	})

	t.Run("fault abort for jason", func(t *testing.T) {
		// grpc-go runs the fault filter gitmesh puts in every API listener
		// with the route's typed_per_filter_config.
		policy := echoPolicy(v1, v2, 20, 80)
		for k, v := range policy {
			policy[k] = strings.Replace(v, "        end-user:\n          exact: jason\n", "        end-user:\n          exact: jason\n    fault:\n      abort:\n        percentage:\n          value: 100\n        httpStatus: 503\n", 1)
		}
		sha := repo.Push("echo: abort jason", policy)
		e2etest.Eventually(t, 20*time.Second, "revision applied and the client synced", func() string { return synced(m, sha, 1) })
		got := grpcSplit(client, 20, "end-user", "jason")
		for k := range got {
			if !strings.Contains(k, "code = Unavailable") {
				t.Errorf("end-user jason: got %v; want only Unavailable (HTTP 503)", got)
				break
			}
		}
		if got := grpcSplit(client, 50); got["v1"]+got["v2"] != 50 {
			t.Errorf("no end-user: got %v; want every RPC answered", got)
		}
	})

	t.Run("VirtualService timeout bounds the RPC", func(t *testing.T) {
		policy := echoPolicy(v1, v2, 20, 80)
		for k, v := range policy {
			policy[k] = strings.Replace(v, "        end-user:\n          exact: jason\n", "        end-user:\n          exact: jason\n    timeout: 300ms\n", 1)
		}
		sha := repo.Push("echo: jason times out after 300ms", policy)
		e2etest.Eventually(t, 20*time.Second, "revision applied and the client synced", func() string { return synced(m, sha, 1) })
		if why := only(grpcSplit(client, 5, "end-user", "jason"), "v2"); why != "" {
			t.Errorf("end-user jason, fast backend: %s", why)
		}
		start := time.Now()
		got := grpcSplit(client, 1, "end-user", "jason", "echo-sleep", "3s")
		took := time.Since(start)
		deadlineOnly := len(got) == 1
		for k := range got {
			// grpc-go words it "context deadline exceeded" or, when the
			// stream is reset first, "stream terminated by RST_STREAM".
			deadlineOnly = deadlineOnly && strings.Contains(k, "code = DeadlineExceeded")
		}
		if !deadlineOnly || took > 2*time.Second {
			t.Errorf("end-user jason, backend sleeping 3s: got %v in %s; want DeadlineExceeded after about 300ms", got, took)
		}
		t.Logf("end-user jason, backend sleeping 3s: %v in %s", got, took.Round(time.Millisecond))
	})

	t.Run("a host the mesh does not know fails the RPC", func(t *testing.T) {
		// grpc-go waits for a listener it never received (its
		// does-not-exist timer is 15s), so the RPC runs into its deadline.
		c := dialXDS(t, m.ctrl.XDSAddr, "grpc-client-unknown", "xds:///nowhere.default.svc.cluster.local:9090")
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if resp, err := c.UnaryCall(ctx, &testpb.SimpleRequest{}); err == nil {
			t.Errorf("got an answer from %q; want an error", resp.GetHostname())
		}
	})
}
