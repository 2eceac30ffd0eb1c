// Package kubetest starts a real Kubernetes control plane for tests:
// kube-apiserver and etcd on loopback under controller-runtime's envtest
// (no kubelet, no controllers: objects are what the test creates), one per
// test package, from its TestMain:
//
//	var cfg *rest.Config // the control plane's admin credentials
//
//	func TestMain(m *testing.M) {
//		var stop func()
//		cfg, stop = kubetest.Start(m)
//		code := m.Run()
//		stop()
//		os.Exit(code)
//	}
//
// Start finds the binaries with AssetsDir. When they are missing it
// prints how to build them (make kube-tools) and exits the test binary
// with status 0, skipping the package; when the CI environment variable
// is "true" it exits with status 1 instead. Put Kubernetes tests in a
// package of their own (e2e/kube) so that the skip takes nothing else
// with it.
//
// The binaries are built once per machine by hack/kube-tools.sh into
// $KUBE_TOOLS_DIR, default $HOME/.cache/gitmesh/kube/<KubeVersion>; set
// KUBEBUILDER_ASSETS to use binaries from elsewhere. Set
// KUBEBUILDER_ATTACH_CONTROL_PLANE_OUTPUT=true to see their output.
package kubetest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/client-go/rest"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// KubeVersion is the kube-apiserver version hack/kube-tools.sh builds
// and the cache directory is named after.
const KubeVersion = "v1.37.2"

// StartTimeout bounds how long Start waits for etcd and for the API
// server to become ready.
const StartTimeout = 90 * time.Second

// ErrNoAssets is returned by AssetsDir when the binaries are missing.
var ErrNoAssets = errors.New("kube-apiserver and etcd not built")

// AssetsDir returns the directory holding the kube-apiserver and etcd
// binaries: $KUBEBUILDER_ASSETS when set, else $KUBE_TOOLS_DIR, else
// $HOME/.cache/gitmesh/kube/<KubeVersion>. The error wraps ErrNoAssets
// when either binary is missing there.
func AssetsDir() (string, error) {
	dir := os.Getenv("KUBEBUILDER_ASSETS")
	if dir == "" {
		dir = os.Getenv("KUBE_TOOLS_DIR")
	}
	if dir == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("finding the kube tools directory: %w", err)
		}
		dir = filepath.Join(home, ".cache", "gitmesh", "kube", KubeVersion)
	}
	for _, bin := range []string{"kube-apiserver", "etcd"} {
		if fi, err := os.Stat(filepath.Join(dir, bin)); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
			return dir, fmt.Errorf("looking for %s in %s: %w", bin, dir, ErrNoAssets)
		}
	}
	return dir, nil
}

// Option configures the control plane Start starts.
type Option func(*envtest.Environment)

// WithCRDDirectory installs the CustomResourceDefinitions of the YAML
// files in dir (relative to the test package's directory) before Start
// returns; a missing directory fails Start.
func WithCRDDirectory(dir string) Option {
	return func(env *envtest.Environment) {
		env.CRDDirectoryPaths = append(env.CRDDirectoryPaths, dir)
		env.ErrorIfCRDPathMissing = true
	}
}

// Start starts a control plane for the tests of m's package and returns
// the rest.Config of an admin user (system:masters) and a function that
// stops the control plane and removes its data. Call it from TestMain,
// before m.Run. It never returns when the control plane cannot start:
// missing binaries exit 0 with a message (1 when $CI is "true"), any
// other failure exits 1.
func Start(m *testing.M, opts ...Option) (*rest.Config, func()) {
	_ = m // the package whose tests run; Start may skip it (see the package doc)
	dir, err := AssetsDir()
	if err != nil {
		if errors.Is(err, ErrNoAssets) {
			msg := fmt.Sprintf("kubetest: %v\n"+
				"kubetest: build them once with `make kube-tools` (about 8 min, into %s), or set KUBEBUILDER_ASSETS\n", err, dir)
			if os.Getenv("CI") == "true" {
				fmt.Fprint(os.Stderr, msg+"kubetest: FAIL: CI=true requires the Kubernetes tests to run\n")
				os.Exit(1)
			}
			fmt.Fprint(os.Stderr, msg+"kubetest: SKIP: every test of this package needs the API server\n")
			os.Exit(0)
		}
		fmt.Fprintf(os.Stderr, "kubetest: %v\n", err)
		os.Exit(1)
	}
	// envtest logs through controller-runtime's logger, which warns (with
	// a stack trace) when it was never set.
	ctrllog.SetLogger(logr.Discard())
	env := &envtest.Environment{
		BinaryAssetsDirectory:    dir,
		ControlPlaneStartTimeout: StartTimeout,
		ControlPlaneStopTimeout:  30 * time.Second,
	}
	for _, o := range opts {
		o(env)
	}
	cfg, err := env.Start()
	if err != nil {
		_ = env.Stop()
		fmt.Fprintf(os.Stderr, "kubetest: starting kube-apiserver and etcd from %s: %v\n", dir, err)
		os.Exit(1)
	}
	return cfg, func() {
		if err := env.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "kubetest: stopping the control plane: %v\n", err)
		}
	}
}
