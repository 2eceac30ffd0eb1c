package inject

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func testConfig(mode string) Config {
	return Config{Image: "ghcr.io/gitmesh/gitmesh:test", XDSAddress: "gitmesh-xds.gitmesh-system.svc:15010", CaptureMode: mode}
}

func appPod(mutators ...func(*corev1.Pod)) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			GenerateName: "reviews-v2-",
			Namespace:    "shop",
			Labels:       map[string]string{"app": "reviews", "version": "v2"},
		},
		Spec: corev1.PodSpec{
			ServiceAccountName: "reviews",
			Containers: []corev1.Container{{
				Name:  "reviews",
				Image: "reviews:2",
				Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 9080}},
			}},
		},
	}
	for _, m := range mutators {
		m(p)
	}
	return p
}

// apply applies a JSON patch to pod, as the API server does.
func apply(t *testing.T, pod *corev1.Pod, ops []Operation) *corev1.Pod {
	t.Helper()
	doc, err := json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := json.Marshal(ops)
	if err != nil {
		t.Fatal(err)
	}
	patch, err := jsonpatch.DecodePatch(raw)
	if err != nil {
		t.Fatalf("decoding the patch %s: %v", raw, err)
	}
	out, err := patch.Apply(doc)
	if err != nil {
		t.Fatalf("applying the patch %s: %v", raw, err)
	}
	var got corev1.Pod
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	return &got
}

func container(p *corev1.Pod, name string) *corev1.Container {
	for i := range p.Spec.Containers {
		if p.Spec.Containers[i].Name == name {
			return &p.Spec.Containers[i]
		}
	}
	return nil
}

func env(c *corev1.Container, name string) (corev1.EnvVar, bool) {
	for _, e := range c.Env {
		if e.Name == name {
			return e, true
		}
	}
	return corev1.EnvVar{}, false
}

func TestMutate(t *testing.T) {
	tests := []struct {
		name        string
		cfg         Config
		pod         *corev1.Pod
		wantSkipped string
		wantErr     string
		check       func(t *testing.T, got *corev1.Pod)
	}{
		{
			name: "locked control plane: projected token and CA bundle",
			cfg: func() Config {
				c := testConfig(CaptureIPTables)
				c.XDSCABundle = "-----BEGIN CERTIFICATE-----\nroot\n-----END CERTIFICATE-----\n"
				return c
			}(),
			pod: appPod(func(p *corev1.Pod) {
				p.Spec.Volumes = []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
			}),
			check: func(t *testing.T, got *corev1.Pod) {
				if len(got.Spec.Volumes) != 2 || got.Spec.Volumes[1].Name != TokenVolume {
					t.Fatalf("volumes = %+v; want data and %s", got.Spec.Volumes, TokenVolume)
				}
				sat := got.Spec.Volumes[1].Projected.Sources[0].ServiceAccountToken
				if sat.Audience != "gitmesh" || *sat.ExpirationSeconds != 3600 || sat.Path != "token" {
					t.Errorf("projected token = %+v; want audience gitmesh, 3600s, path token", sat)
				}
				p := container(got, ProxyContainerName)
				if !slices.Contains(p.Args, "--join-token-file=/var/run/secrets/gitmesh/tokens/token") {
					t.Errorf("proxy args %q lack --join-token-file", p.Args)
				}
				if e, ok := env(p, "GITMESH_XDS_CA"); !ok || !strings.Contains(e.Value, "BEGIN CERTIFICATE") {
					t.Errorf("proxy env GITMESH_XDS_CA = %+v", e)
				}
				if len(p.VolumeMounts) != 1 || p.VolumeMounts[0].Name != TokenVolume || !p.VolumeMounts[0].ReadOnly {
					t.Errorf("proxy mounts = %+v", p.VolumeMounts)
				}
				if app := container(got, "reviews"); len(app.VolumeMounts) != 0 {
					t.Errorf("the app container got mounts %+v", app.VolumeMounts)
				}
			},
		},
		{
			name: "locked control plane on a pod without volumes",
			cfg: func() Config {
				c := testConfig(CaptureExplicit)
				c.XDSCABundle = "pem"
				return c
			}(),
			pod: appPod(),
			check: func(t *testing.T, got *corev1.Pod) {
				if len(got.Spec.Volumes) != 1 || got.Spec.Volumes[0].Name != TokenVolume {
					t.Fatalf("volumes = %+v; want %s", got.Spec.Volumes, TokenVolume)
				}
			},
		},
		{
			name: "iptables capture adds proxy-init and the proxy",
			cfg:  testConfig(CaptureIPTables),
			pod:  appPod(),
			check: func(t *testing.T, got *corev1.Pod) {
				if len(got.Spec.InitContainers) != 1 || got.Spec.InitContainers[0].Name != InitContainerName {
					t.Fatalf("init containers = %+v; want only %s", got.Spec.InitContainers, InitContainerName)
				}
				ic := got.Spec.InitContainers[0]
				if !slices.Contains(ic.SecurityContext.Capabilities.Add, "NET_ADMIN") || *ic.SecurityContext.RunAsUser != 0 {
					t.Errorf("init container security = %+v; want root with NET_ADMIN", ic.SecurityContext)
				}
				for _, want := range []string{"proxy-init", "--proxy-uid=1337", "--outbound-port=15001", "--inbound-port=15006", "--exclude-inbound-ports=15020"} {
					if !slices.Contains(ic.Args, want) {
						t.Errorf("init args %q lack %q", ic.Args, want)
					}
				}
				p := container(got, ProxyContainerName)
				if p == nil {
					t.Fatalf("no %s container in %+v", ProxyContainerName, got.Spec.Containers)
				}
				if !slices.Equal(p.Command, []string{ProxyCommand}) || slices.Contains(p.Args, "proxy") {
					t.Errorf("proxy command %q args %q; want %s with the proxy's flags only", p.Command, p.Args, ProxyCommand)
				}
				for _, want := range []string{"--xds=gitmesh-xds.gitmesh-system.svc:15010", "--id=$(POD_NAME).$(POD_NAMESPACE)",
					"--namespace=$(POD_NAMESPACE)", "--service=reviews", "--labels=app=reviews,version=v2",
					"--inbound=$(INSTANCE_IP):15006", "--app=127.0.0.1:9080", "--outbound=127.0.0.1:15001", "--interception-mode=REDIRECT"} {
					if !slices.Contains(p.Args, want) {
						t.Errorf("proxy args %q lack %q", p.Args, want)
					}
				}
				for name, path := range map[string]string{"POD_NAME": "metadata.name", "POD_NAMESPACE": "metadata.namespace",
					"SERVICE_ACCOUNT": "spec.serviceAccountName", "INSTANCE_IP": "status.podIP"} {
					e, ok := env(p, name)
					if !ok || e.ValueFrom == nil || e.ValueFrom.FieldRef == nil || e.ValueFrom.FieldRef.FieldPath != path {
						t.Errorf("proxy env %s = %+v; want the downward API's %s", name, e, path)
					}
				}
				sc := p.SecurityContext
				if *sc.RunAsUser != 1337 || !*sc.RunAsNonRoot || !*sc.ReadOnlyRootFilesystem || !slices.Contains(sc.Capabilities.Drop, "ALL") {
					t.Errorf("proxy security = %+v; want uid 1337, non-root, read-only, no capabilities", sc)
				}
				if _, ok := env(container(got, "reviews"), "HTTP_PROXY"); ok {
					t.Error("iptables capture set HTTP_PROXY on the app")
				}
				if got.Annotations[AnnotationStatus] != "injected" {
					t.Errorf("annotations = %v; want %s=injected", got.Annotations, AnnotationStatus)
				}
			},
		},
		{
			name: "explicit capture sets HTTP_PROXY and adds no init container",
			cfg:  testConfig(CaptureExplicit),
			pod: appPod(func(p *corev1.Pod) {
				p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "worker", Image: "w", Env: []corev1.EnvVar{{Name: "A", Value: "1"}}})
				p.Annotations = map[string]string{"team": "shop"}
			}),
			check: func(t *testing.T, got *corev1.Pod) {
				if len(got.Spec.InitContainers) != 0 {
					t.Errorf("init containers = %+v; want none", got.Spec.InitContainers)
				}
				for _, name := range []string{"reviews", "worker"} {
					c := container(got, name)
					for _, k := range []string{"HTTP_PROXY", "http_proxy"} {
						if e, _ := env(c, k); e.Value != "http://127.0.0.1:15001" {
							t.Errorf("%s %s = %q; want http://127.0.0.1:15001", name, k, e.Value)
						}
					}
					if e, _ := env(c, "NO_PROXY"); !strings.Contains(e.Value, "127.0.0.1") {
						t.Errorf("%s NO_PROXY = %q; want loopback excluded", name, e.Value)
					}
				}
				if e, _ := env(container(got, "worker"), "A"); e.Value != "1" {
					t.Error("the worker's own env was lost")
				}
				p := container(got, ProxyContainerName)
				if slices.ContainsFunc(p.Args, func(a string) bool {
					return strings.HasPrefix(a, "--inbound") || strings.HasPrefix(a, "--interception")
				}) {
					t.Errorf("explicit proxy args %q have an inbound listener; traffic reaches the app directly", p.Args)
				}
				if got.Annotations["team"] != "shop" || got.Annotations[AnnotationStatus] != "injected" {
					t.Errorf("annotations = %v; want team kept and %s added", got.Annotations, AnnotationStatus)
				}
			},
		},
		{
			name: "explicit capture keeps a container's own HTTP_PROXY",
			cfg:  testConfig(CaptureExplicit),
			pod: appPod(func(p *corev1.Pod) {
				p.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "HTTP_PROXY", Value: "http://corp:3128"}}
			}),
			check: func(t *testing.T, got *corev1.Pod) {
				c := container(got, "reviews")
				if e, _ := env(c, "HTTP_PROXY"); e.Value != "http://corp:3128" {
					t.Errorf("HTTP_PROXY = %q; want the container's own", e.Value)
				}
				if e, _ := env(c, "http_proxy"); e.Value != "http://127.0.0.1:15001" {
					t.Errorf("http_proxy = %q; want the sidecar", e.Value)
				}
			},
		},
		{
			name: "existing init containers run before proxy-init",
			cfg:  testConfig(""),
			pod: appPod(func(p *corev1.Pod) {
				p.Spec.InitContainers = []corev1.Container{{Name: "migrate", Image: "m"}}
			}),
			check: func(t *testing.T, got *corev1.Pod) {
				var names []string
				for _, c := range got.Spec.InitContainers {
					names = append(names, c.Name)
				}
				if want := []string{"migrate", InitContainerName}; !slices.Equal(names, want) {
					t.Errorf("init containers = %q; want %q", names, want)
				}
			},
		},
		{
			name: "app-port annotation chooses the inbound target",
			cfg:  testConfig(CaptureIPTables),
			pod: appPod(func(p *corev1.Pod) {
				p.Annotations = map[string]string{AnnotationAppPort: "8443"}
			}),
			check: func(t *testing.T, got *corev1.Pod) {
				if p := container(got, ProxyContainerName); !slices.Contains(p.Args, "--app=127.0.0.1:8443") {
					t.Errorf("proxy args %q; want --app=127.0.0.1:8443", p.Args)
				}
			},
		},
		{
			name: "a pod without ports gets no inbound listener",
			cfg:  testConfig(CaptureIPTables),
			pod:  appPod(func(p *corev1.Pod) { p.Spec.Containers[0].Ports = nil; p.Labels = nil }),
			check: func(t *testing.T, got *corev1.Pod) {
				p := container(got, ProxyContainerName)
				for _, a := range p.Args {
					if strings.HasPrefix(a, "--app") || strings.HasPrefix(a, "--labels") || strings.HasPrefix(a, "--service") {
						t.Errorf("proxy args %q have %s", p.Args, a)
					}
				}
			},
		},
		{
			name:    "a bad app-port annotation is an error",
			cfg:     testConfig(CaptureIPTables),
			pod:     appPod(func(p *corev1.Pod) { p.Annotations = map[string]string{AnnotationAppPort: "http"} }),
			wantErr: AnnotationAppPort,
		},
		{
			name:        "opt-out annotation",
			cfg:         testConfig(CaptureIPTables),
			pod:         appPod(func(p *corev1.Pod) { p.Annotations = map[string]string{AnnotationInject: "false"} }),
			wantSkipped: "opted out by annotation",
		},
		{
			name:        "opt-out label",
			cfg:         testConfig(CaptureIPTables),
			pod:         appPod(func(p *corev1.Pod) { p.Labels[AnnotationInject] = "false" }),
			wantSkipped: "opted out by label",
		},
		{
			name:        "already injected",
			cfg:         testConfig(CaptureIPTables),
			pod:         appPod(func(p *corev1.Pod) { p.Annotations = map[string]string{AnnotationStatus: "injected"} }),
			wantSkipped: "already injected",
		},
		{
			name: "a proxy container already there",
			cfg:  testConfig(CaptureIPTables),
			pod: appPod(func(p *corev1.Pod) {
				p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: ProxyContainerName, Image: "x"})
			}),
			wantSkipped: "already injected",
		},
		{
			name:        "host network",
			cfg:         testConfig(CaptureIPTables),
			pod:         appPod(func(p *corev1.Pod) { p.Spec.HostNetwork = true }),
			wantSkipped: "host network",
		},
		{
			name:    "a config without image",
			cfg:     Config{XDSAddress: "x:1"},
			pod:     appPod(),
			wantErr: "image is required",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before, _ := json.Marshal(tt.pod)
			res, err := Mutate(tt.pod, tt.cfg)
			if after, _ := json.Marshal(tt.pod); string(after) != string(before) {
				t.Error("Mutate modified its pod")
			}
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v; want one naming %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.wantSkipped != "" {
				if len(res.Patch) != 0 || !strings.Contains(res.Skipped, tt.wantSkipped) {
					t.Fatalf("Mutate = %+v; want no patch, skipped %q", res, tt.wantSkipped)
				}
				return
			}
			if len(res.Patch) == 0 {
				t.Fatalf("Mutate skipped the pod: %s", res.Skipped)
			}
			got := apply(t, tt.pod, res.Patch)
			tt.check(t, got)

			// Idempotent: an injected pod is not patched again.
			again, err := Mutate(got, tt.cfg)
			if err != nil || len(again.Patch) != 0 {
				t.Errorf("second Mutate = %+v, %v; want no patch", again, err)
			}
		})
	}
}

func TestLoadConfig(t *testing.T) {
	tests := []struct {
		name    string
		yaml    string
		wantErr string
	}{
		{name: "good", yaml: "image: gitmesh:1\nxdsAddress: x:15010\ncaptureMode: explicit\nresources:\n  requests:\n    cpu: 10m\n"},
		{name: "unknown field", yaml: "image: gitmesh:1\nxdsAddress: x:15010\ncaptureMod: explicit\n", wantErr: "captureMod"},
		{name: "bad mode", yaml: "image: gitmesh:1\nxdsAddress: x:15010\ncaptureMode: ebpf\n", wantErr: `captureMode "ebpf"`},
		{name: "missing address", yaml: "image: gitmesh:1\n", wantErr: "xdsAddress is required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := t.TempDir() + "/config.yaml"
			if err := writeFile(path, tt.yaml); err != nil {
				t.Fatal(err)
			}
			_, err := LoadConfig(path)
			if tt.wantErr == "" && err != nil {
				t.Fatalf("LoadConfig: %v", err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("LoadConfig err = %v; want one naming %q", err, tt.wantErr)
			}
		})
	}
}
