// Package kube holds gitmesh's end-to-end tests of Kubernetes mode: a real
// kube-apiserver and etcd (internal/kubetest, one control plane for the
// package), Services, EndpointSlices and Pods created in it with addresses
// where real backends listen, policy from a real git server, a controller
// in this process and real bundled proxies.
//
// The API server refuses loopback addresses in EndpointSlices, so the test
// binary runs in a network namespace of its own whose lo also holds
// testAddrs (see netns_linux_test.go); it needs root or unprivileged user
// namespaces, and the ip command. The package is skipped when those or the
// control-plane binaries (make kube-tools) are missing, and fails then when
// CI=true.
package kube

import (
	"os"
	"testing"

	"k8s.io/client-go/rest"

	"github.com/gitmesh/gitmesh/internal/kubetest"
)

// apiServer is the package's control plane (admin credentials).
var apiServer *rest.Config

func TestMain(m *testing.M) {
	if code := inNetNS(); code >= 0 {
		os.Exit(code) // the tests ran in the namespace, or cannot run
	}
	var stop func()
	apiServer, stop = kubetest.Start(m)
	code := m.Run()
	stop()
	os.Exit(code)
}
