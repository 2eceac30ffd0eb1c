package kube

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gitmesh/gitmesh/api/nodemeta"
	"github.com/gitmesh/gitmesh/ca"
	"github.com/gitmesh/gitmesh/internal/podidentity"
	"github.com/gitmesh/gitmesh/internal/testnet"
	"github.com/gitmesh/gitmesh/xds"
	"github.com/gitmesh/gitmesh/xds/xdsauth"
	"github.com/gitmesh/gitmesh/xds/xdsauth/tokenreview"
)

// TestJoinWithServiceAccountToken: in Kubernetes mode a sidecar joins
// with its projected ServiceAccount token (audience gitmesh), checked with
// the API server's TokenReview: its certificate carries the token's
// namespace, service account and pod whatever it declares, so a token of
// another namespace cannot claim this one; a token for another audience
// is refused.
func TestJoinWithServiceAccountToken(t *testing.T) {
	mine, theirs := newCluster(t), newCluster(t)
	tokMine := mine.podToken(t, "reviews", "reviews-1", "10.0.0.7", gitmeshAudience)
	tokTheirs := theirs.podToken(t, "intruder", "intruder-1", "10.0.0.8", gitmeshAudience)
	tokOtherAudience := mine.podToken(t, "reviews", "reviews-2", "10.0.0.9", "vault")

	m, err := ca.NewRoot(ca.DefaultTrustDomain, 0, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	authority, err := ca.New(ca.DefaultTrustDomain, m)
	if err != nil {
		t.Fatal(err)
	}
	jt, err := xdsauth.NewJoinToken("the-join-token-0123456789abcdef")
	if err != nil {
		t.Fatal(err)
	}
	serverTLS := xdsauth.NewServerTLS(xdsauth.Static(authority), ca.Identity{Namespace: "gitmesh", ServiceAccount: "gitmesh"}, []string{"127.0.0.1"})
	s := xds.NewServer(
		xds.WithGRPCServerOptions(grpc.Creds(credentials.NewTLS(serverTLS.Config()))),
		xds.WithClientCertificates(),
		xds.WithServices(xdsauth.NewCertService(xdsauth.Static(authority), 0, nil, jt, tokenreview.New(mine.cs)).Register),
		xds.WithAdmission(xdsauth.NewAdmitter(xdsauth.Static(authority), podidentity.New(podidentity.Client{Interface: mine.cs}).Check, nil).Admit),
	)
	lis := testnet.Listen(t)
	testnet.Serve(t, lis, s.Serve)
	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, authority.Bundle(), 0o644); err != nil {
		t.Fatal(err)
	}
	join := func(t *testing.T, token string, declared xdsauth.Binding) (*xdsauth.Joiner, error) {
		t.Helper()
		f := filepath.Join(t.TempDir(), "token")
		if err := os.WriteFile(f, []byte(token), 0o600); err != nil {
			t.Fatal(err)
		}
		j, err := xdsauth.NewJoiner(xdsauth.JoinConfig{XDSAddr: lis.Addr().String(), CAFile: caFile, TokenFile: f, Declared: declared})
		if err != nil {
			t.Fatal(err)
		}
		jctx, jcancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer jcancel()
		return j, j.Join(jctx)
	}

	t.Run("own pod", func(t *testing.T) {
		j, err := join(t, tokMine, xdsauth.Binding{NodeID: "reviews-1", ID: ca.Identity{Namespace: "kube-system", ServiceAccount: "admin"}})
		if err != nil {
			t.Fatal(err)
		}
		b, err := xdsauth.BindingOf(j.Certificate())
		if err != nil {
			t.Fatal(err)
		}
		if b.ID.Namespace != mine.ns || b.ID.ServiceAccount != "reviews" || b.Pod != "reviews-1" || b.NodeID != "reviews-1" {
			t.Fatalf("binding %+v; want the token's namespace %s, service account reviews, pod reviews-1", b, mine.ns)
		}
		w := nodemeta.Workload{ID: "reviews-1", Service: "reviews", Namespace: mine.ns, ServiceAccount: "reviews", Pod: "reviews-1",
			InstanceIPs: []string{"10.0.0.7"}, Role: nodemeta.RoleSidecar, Outbound: "127.0.0.1:15001",
			Labels: map[string]string{"app": "forged"}}
		if err := adsOnce(s, lis.Addr().String(), j.Credentials(), w); err != nil {
			t.Fatalf("ADS as its own pod: %v", err)
		}
		n, _ := s.Node("reviews-1")
		if n.Workload.Labels["app"] != "reviews" {
			t.Errorf("labels %v; want the Pod's (app=reviews)", n.Workload.Labels)
		}
	})
	t.Run("token of another namespace", func(t *testing.T) {
		j, err := join(t, tokTheirs, xdsauth.Binding{NodeID: "reviews-1", ID: ca.Identity{Namespace: mine.ns, ServiceAccount: "reviews"}})
		if err != nil {
			t.Fatal(err)
		}
		w := nodemeta.Workload{ID: "reviews-1", Service: "reviews", Namespace: mine.ns, ServiceAccount: "reviews", Pod: "reviews-1",
			InstanceIPs: []string{"10.0.0.7"}, Role: nodemeta.RoleSidecar, Outbound: "127.0.0.1:15001"}
		err = adsOnce(s, lis.Addr().String(), j.Credentials(), w)
		if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "namespace") {
			t.Fatalf("ADS claiming namespace %s with a token of %s = %v; want PermissionDenied", mine.ns, theirs.ns, err)
		}
	})
	t.Run("other audience", func(t *testing.T) {
		_, err := join(t, tokOtherAudience, xdsauth.Binding{NodeID: "reviews-2"})
		if err == nil || !strings.HasPrefix(err.Error(), "xds: join refused: ") {
			t.Fatalf("join with a token for audience vault = %v; want refused", err)
		}
	})
}

const gitmeshAudience = xdsauth.Audience

// podToken creates service account sa, a Pod name running as it with ip,
// and returns a token for audience bound to that Pod, as the kubelet
// projects one.
func (c *cluster) podToken(t *testing.T, sa, name, ip, audience string) string {
	t.Helper()
	ctx, cancel := c.ctx()
	defer cancel()
	if _, err := c.cs.CoreV1().ServiceAccounts(c.ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{}); err != nil && !strings.Contains(err.Error(), "already exists") {
		t.Fatal(err)
	}
	pod, err := c.cs.CoreV1().Pods(c.ns).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: c.ns, Labels: map[string]string{"app": sa}},
		Spec:       corev1.PodSpec{ServiceAccountName: sa, Containers: []corev1.Container{{Name: "app", Image: "registry.invalid/app:1"}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pod.Status.PodIP, pod.Status.PodIPs = ip, []corev1.PodIP{{IP: ip}}
	if pod, err = c.cs.CoreV1().Pods(c.ns).UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	exp := int64(3600)
	tr, err := c.cs.CoreV1().ServiceAccounts(c.ns).CreateToken(ctx, sa, &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
		Audiences: []string{audience}, ExpirationSeconds: &exp,
		BoundObjectRef: &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID},
	}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("requesting a token for %s/%s: %v", c.ns, sa, err)
	}
	return tr.Status.Token
}

// adsOnce opens an ADS stream as w and waits until s serves the node
// (admitted) or the stream ends (refused).
func adsOnce(s *xds.Server, addr string, creds credentials.TransportCredentials, w nodemeta.Workload) error {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		return err
	}
	// A Send on a stream the server already ended fails with io.EOF;
	// Recv then returns the server's status.
	_ = st.Send(&discoveryv3.DiscoveryRequest{Node: w.Node(), TypeUrl: resource.ListenerType})
	ended := make(chan error, 1)
	go func() {
		_, err := st.Recv()
		ended <- err
	}()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-ended:
			return err
		case <-tick.C:
			if n, ok := s.Node(w.ID); ok && n.Connected {
				return nil
			}
		}
	}
}
