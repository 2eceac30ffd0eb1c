package helm

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/gitmesh/gitmesh/internal/helmtest"
)

// writeKubeconfig writes cfg's server and credentials as a kubeconfig
// file for the helm CLI.
func writeKubeconfig(t *testing.T, cfg *rest.Config) string {
	t.Helper()
	kc := clientcmdapi.NewConfig()
	kc.Clusters["envtest"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos["admin"] = &clientcmdapi.AuthInfo{ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData, Token: cfg.BearerToken}
	kc.Contexts["envtest"] = &clientcmdapi.Context{Cluster: "envtest", AuthInfo: "admin"}
	kc.CurrentContext = "envtest"
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// helmCmd runs helm against the control plane and fails the test when it
// fails.
type helmCmd struct {
	t   *testing.T
	env []string
}

func (h helmCmd) run(args ...string) string {
	h.t.Helper()
	out, _, err := helmtest.Run(context.Background(), h.t, h.env, args...)
	if err != nil {
		h.t.Fatalf("%v\n%s", err, out)
	}
	return out
}

// policyRepo creates a local Git repository on branch main with one
// commit of an empty policy directory.
func policyRepo(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	repo, err := git.PlainInitWithOptions(dir, &git.PlainInitOptions{InitOptions: git.InitOptions{DefaultBranch: plumbing.NewBranchReferenceName("main")}})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "README.md"), []byte("mesh policy\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	wt, err := repo.Worktree()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := wt.Add("README.md"); err != nil {
		t.Fatal(err)
	}
	sig := &object.Signature{Name: "test", Email: "test@example.com", When: time.Unix(1700000000, 0)}
	if _, err := wt.Commit("policy", &git.CommitOptions{Author: sig, Committer: sig}); err != nil {
		t.Fatal(err)
	}
	return dir
}

// helmPoll is how often the tests poll the API server (e2etest.Poll).
const helmPoll = 100 * time.Millisecond

var errNotYet = errors.New("not yet")

// deletePod deletes a Pod at once. A Pod no node ever ran (envtest has no
// kubelet) goes without a grace period; a second pass of the package's
// tests (go test -count=2) then finds its name free.
func deletePod(t testing.TB, c kubernetes.Interface, ns, name string) {
	t.Helper()
	err := c.CoreV1().Pods(ns).Delete(context.Background(), name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)})
	if err != nil && !apierrors.IsNotFound(err) {
		t.Errorf("deleting pod %s/%s: %v", ns, name, err)
	}
}
