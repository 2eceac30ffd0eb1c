// Package helm installs charts/gitmesh with the helm CLI into a real API
// server (kube-apiserver and etcd under envtest, internal/kubetest), runs
// the controller in the test process with the chart's ServiceAccount and
// RBAC, and checks what the release does: permissions, the injector
// webhook it registers, upgrade and uninstall. There is no kubelet: pods
// are admitted and stored, never run, so nothing waits for them (no
// --wait).
package helm

import (
	"os"
	"testing"

	"k8s.io/client-go/rest"

	"github.com/gitmesh/gitmesh/internal/kubetest"
)

// adminCfg reaches the control plane as an admin (system:masters).
var adminCfg *rest.Config

func TestMain(m *testing.M) {
	var stop func()
	adminCfg, stop = kubetest.Start(m)
	code := m.Run()
	stop()
	os.Exit(code)
}
