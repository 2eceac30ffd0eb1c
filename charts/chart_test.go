// Package charts holds the tests of the Helm charts beside it (the
// charts themselves are not Go). They run the helm CLI that `make
// helm-tool` builds; without it they skip, and fail when CI=true.
package charts

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/yaml"

	"github.com/gitmesh/gitmesh/compiler"
	"github.com/gitmesh/gitmesh/inject"
	"github.com/gitmesh/gitmesh/internal/helmtest"
)

const testURL = "https://git.example.com/acme/mesh-policy.git"

// template renders the chart as release "gitmesh" in gitmesh-system.
func template(t *testing.T, args ...string) (string, error) {
	t.Helper()
	all := append([]string{"template", "gitmesh", helmtest.ChartDir(t), "--namespace", "gitmesh-system", "--include-crds"}, args...)
	out, _, err := helmtest.Run(context.Background(), t, nil, all...)
	return out, err
}

func TestLint(t *testing.T) {
	helmtest.Binary(t)
	examples, err := filepath.Glob(filepath.Join(helmtest.ChartDir(t), "examples", "*.yaml"))
	if err != nil || len(examples) == 0 {
		t.Fatalf("no example values in charts/gitmesh/examples: %v", err)
	}
	cases := [][]string{{"--set", "git.url=" + testURL}}
	for _, ex := range examples {
		cases = append(cases, []string{"-f", ex})
	}
	for _, args := range cases {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			all := append([]string{"lint", "--strict", helmtest.ChartDir(t)}, args...)
			if out, _, err := helmtest.Run(context.Background(), t, nil, all...); err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
		})
	}
}

// TestTemplate renders the defaults and each example, decodes every
// manifest strictly into the Kubernetes API types, and checks what each
// case is for.
func TestTemplate(t *testing.T) {
	helmtest.Binary(t)
	dir := helmtest.ChartDir(t)
	tests := []struct {
		name  string
		args  []string
		check func(t *testing.T, objs []helmtest.Object)
	}{
		{
			name: "defaults",
			args: []string{"--set", "git.url=" + testURL},
			check: func(t *testing.T, objs []helmtest.Object) {
				d := deployment(t, objs, "gitmesh")
				pod := d.Spec.Template.Spec
				if sc := pod.SecurityContext; sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
					t.Errorf("pod securityContext = %+v; want runAsNonRoot and seccomp RuntimeDefault", sc)
				}
				c := pod.Containers[0]
				if sc := c.SecurityContext; sc == nil || !*sc.ReadOnlyRootFilesystem || *sc.AllowPrivilegeEscalation || !slices.Contains(sc.Capabilities.Drop, "ALL") {
					t.Errorf("container securityContext = %+v; want read-only, no escalation, ALL dropped", sc)
				}
				if c.Resources.Requests.Cpu().IsZero() || c.Resources.Limits.Memory().IsZero() {
					t.Errorf("resources = %+v; want requests and limits", c.Resources)
				}
				if c.LivenessProbe.HTTPGet.Path != "/healthz" || c.ReadinessProbe.HTTPGet.Path != "/readyz" {
					t.Errorf("probes on %s and %s; want /healthz and /readyz", c.LivenessProbe.HTTPGet.Path, c.ReadinessProbe.HTTPGet.Path)
				}
				if !slices.ContainsFunc(pod.Volumes, func(v corev1.Volume) bool { return v.Name == "state" && v.EmptyDir != nil }) {
					t.Error("no emptyDir state volume")
				}
				if !slices.Contains(c.Args, "--repo="+testURL) || !slices.Contains(c.Args, "--injector-hosts=gitmesh-injector.gitmesh-system.svc,gitmesh-injector.gitmesh-system.svc.cluster.local") {
					t.Errorf("controller args %q lack the repository or the injector's hosts", c.Args)
				}
				if got := helmtest.Find(objs, "PodDisruptionBudget", ""); len(got) != 0 {
					t.Errorf("one replica has a PodDisruptionBudget: %v", got)
				}
				for _, kind := range []string{"ServiceMonitor", "Certificate"} {
					if got := helmtest.Find(objs, kind, ""); len(got) != 0 {
						t.Errorf("a %s by default", kind)
					}
				}
				checkDashboards(t, objs)
				mwc := webhook(t, objs)
				if *mwc.FailurePolicy != admissionregistrationv1.Fail || mwc.ClientConfig.Service == nil || mwc.ClientConfig.Service.Name != "gitmesh-injector" || len(mwc.ClientConfig.CABundle) != 0 {
					t.Errorf("webhook = %+v; want failurePolicy Fail, the injector Service, no caBundle (the controller's)", mwc)
				}
				if mwc.NamespaceSelector.MatchLabels[inject.NamespaceLabel] != "enabled" {
					t.Errorf("namespaceSelector = %+v; want %s=enabled", mwc.NamespaceSelector, inject.NamespaceLabel)
				}
				cfg := injectorConfig(t, objs)
				if cfg.CaptureMode != inject.CaptureIPTables || cfg.XDSAddress != "gitmesh-xds.gitmesh-system.svc:15010" || cfg.Image != "ghcr.io/gitmesh/gitmesh:0.1.0" {
					t.Errorf("injector config = %+v", cfg)
				}
				if !slices.Contains(c.Args, "--leader-pod-selector=app.kubernetes.io/name=gitmesh,app.kubernetes.io/instance=gitmesh,app.kubernetes.io/component=controller") {
					t.Errorf("controller args %q lack the leader pod selector", c.Args)
				}
				if !slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool {
					return e.Name == "POD_NAME" && e.ValueFrom != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.name"
				}) ||
					!slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool {
						return e.Name == "POD_NAMESPACE" && e.ValueFrom != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.namespace"
					}) {
					t.Errorf("controller env %+v lacks POD_NAME and POD_NAMESPACE from the downward API", c.Env)
				}
				// The xDS and admin Services route to the leader's Pod only.
				for _, name := range []string{"gitmesh-xds", "gitmesh-admin"} {
					svc := service(t, objs, name)
					if svc.Spec.Selector["gitmesh.io/leader"] != "true" || svc.Spec.Selector["app.kubernetes.io/component"] != "controller" {
						t.Errorf("Service %s selects %v; want the controller's labels and gitmesh.io/leader=true", name, svc.Spec.Selector)
					}
				}
				if sel := service(t, objs, "gitmesh-injector").Spec.Selector; sel["gitmesh.io/leader"] != "" {
					t.Errorf("the injector Service selects %v; want every replica", sel)
				}
				// Pods: patch in the release namespace (the Role), never
				// anywhere else (the ClusterRole).
				if !slices.ContainsFunc(role(t, objs).Rules, func(r rbacv1.PolicyRule) bool {
					return slices.Contains(r.Resources, "pods") && slices.Equal(r.Verbs, []string{"get", "list", "patch"})
				}) {
					t.Errorf("the Role %+v does not grant get, list, patch on pods", role(t, objs).Rules)
				}
				for _, r := range clusterRole(t, objs).Rules {
					if slices.Contains(r.Resources, "pods") && slices.ContainsFunc(r.Verbs, func(v string) bool { return v != "get" && v != "list" && v != "watch" }) {
						t.Errorf("the ClusterRole writes pods: %+v", r)
					}
				}
				if len(helmtest.Find(objs, "CustomResourceDefinition", "meshrollouts.gitmesh.io")) != 1 {
					t.Error("no MeshRollout CRD")
				}
				if len(helmtest.Find(objs, "Deployment", "gitmesh-gateway")) != 1 || len(helmtest.Find(objs, "Service", "gitmesh-gateway")) != 1 {
					t.Error("no gateway Deployment and Service")
				}
			},
		},
		{
			name: "examples/ha.yaml",
			args: []string{"-f", filepath.Join(dir, "examples", "ha.yaml")},
			check: func(t *testing.T, objs []helmtest.Object) {
				if d := deployment(t, objs, "gitmesh"); *d.Spec.Replicas != 3 {
					t.Errorf("replicas = %d; want 3", *d.Spec.Replicas)
				}
				if got := helmtest.Find(objs, "PodDisruptionBudget", ""); len(got) != 2 {
					t.Errorf("%d PodDisruptionBudgets; want one for the controller and one for the gateway", len(got))
				}
				if pdb := helmtest.Find(objs, "PodDisruptionBudget", "gitmesh"); len(pdb) != 1 || pdb[0].Obj.(*policyv1.PodDisruptionBudget).Spec.MinAvailable.IntValue() != 1 {
					t.Errorf("controller PodDisruptionBudget %v; want minAvailable 1 (every replica is Ready, so one can always be evicted)", pdb)
				}
			},
		},
		{
			name: "examples/private-repo.yaml",
			args: []string{"-f", filepath.Join(dir, "examples", "private-repo.yaml")},
			check: func(t *testing.T, objs []helmtest.Object) {
				pod := deployment(t, objs, "gitmesh").Spec.Template.Spec
				if !slices.Contains(pod.Containers[0].Args, "--secret-dir=/etc/gitmesh/git") ||
					!slices.ContainsFunc(pod.Volumes, func(v corev1.Volume) bool { return v.Secret != nil && v.Secret.SecretName == "mesh-git" }) {
					t.Errorf("git.secretRef not mounted as --secret-dir: args %q", pod.Containers[0].Args)
				}
				if len(pod.ImagePullSecrets) != 1 || pod.ImagePullSecrets[0].Name != "acme-registry" {
					t.Errorf("imagePullSecrets = %v", pod.ImagePullSecrets)
				}
			},
		},
		{
			name: "examples/signed-commits.yaml",
			args: []string{"-f", filepath.Join(dir, "examples", "signed-commits.yaml")},
			check: func(t *testing.T, objs []helmtest.Object) {
				pod := deployment(t, objs, "gitmesh").Spec.Template.Spec
				args := pod.Containers[0].Args
				for _, want := range []string{"--verify-pgp-keys=/etc/gitmesh/verify/pgp", "--webhook-secret-file=/etc/gitmesh/webhook/secret"} {
					if !slices.Contains(args, want) {
						t.Errorf("controller args %q lack %s", args, want)
					}
				}
				if slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, "--verify-ssh-keys") }) {
					t.Errorf("controller args %q have --verify-ssh-keys although git.verify.sshKey is empty", args)
				}
				for _, secret := range []string{"mesh-verify", "mesh-webhook"} {
					if !slices.ContainsFunc(pod.Volumes, func(v corev1.Volume) bool { return v.Secret != nil && v.Secret.SecretName == secret }) {
						t.Errorf("Secret %s is not mounted", secret)
					}
				}
			},
		},
		{
			name: "examples/explicit-capture.yaml",
			args: []string{"-f", filepath.Join(dir, "examples", "explicit-capture.yaml")},
			check: func(t *testing.T, objs []helmtest.Object) {
				if cfg := injectorConfig(t, objs); cfg.CaptureMode != inject.CaptureExplicit {
					t.Errorf("captureMode = %q; want explicit", cfg.CaptureMode)
				}
				if *webhook(t, objs).FailurePolicy != admissionregistrationv1.Ignore {
					t.Error("failurePolicy is not Ignore")
				}
				if len(helmtest.Find(objs, "Deployment", "gitmesh-gateway")) != 0 {
					t.Error("a gateway although gateway.enabled=false")
				}
			},
		},
		{
			name: "examples/observability.yaml",
			args: []string{"-f", filepath.Join(dir, "examples", "observability.yaml")},
			check: func(t *testing.T, objs []helmtest.Object) {
				for _, kind := range []string{"ServiceMonitor", "Certificate", "Issuer"} {
					if len(helmtest.Find(objs, kind, "")) != 1 {
						t.Errorf("no %s", kind)
					}
				}
				checkDashboards(t, objs)
				for _, cm := range dashboardConfigMaps(objs) {
					if cm.Annotations["grafana_folder"] != "gitmesh" {
						t.Errorf("ConfigMap %s annotations %v; want grafana_folder: gitmesh", cm.Name, cm.Annotations)
					}
				}
				if len(helmtest.Find(objs, "Secret", "gitmesh-injector-tls")) != 0 {
					t.Error("the chart writes the injector's Secret although cert-manager issues it")
				}
				if mwc := helmtest.Find(objs, "MutatingWebhookConfiguration", ""); mwc[0].Obj.(*admissionregistrationv1.MutatingWebhookConfiguration).Annotations["cert-manager.io/inject-ca-from"] != "gitmesh-system/gitmesh-injector-tls" {
					t.Error("the webhook configuration lacks cert-manager's inject-ca-from")
				}
				if args := deployment(t, objs, "gitmesh").Spec.Template.Spec.Containers[0].Args; !slices.Contains(args, "--injector-cert-manager") {
					t.Errorf("controller args %q lack --injector-cert-manager", args)
				}
			},
		},
		{
			name: "dashboards disabled",
			args: []string{"--set", "git.url=" + testURL, "--set", "dashboards.enabled=false"},
			check: func(t *testing.T, objs []helmtest.Object) {
				if cms := dashboardConfigMaps(objs); len(cms) != 0 {
					t.Errorf("%d dashboard ConfigMaps with dashboards.enabled=false", len(cms))
				}
			},
		},
		{
			name: "locked control plane by default",
			args: []string{"--set", "git.url=" + testURL},
			check: func(t *testing.T, objs []helmtest.Object) {
				args := deployment(t, objs, "gitmesh").Spec.Template.Spec.Containers[0].Args
				for _, want := range []string{"--xds-auth=required", "--admin-auth=writes",
					"--xds-san=gitmesh-xds,gitmesh-xds.gitmesh-system,gitmesh-xds.gitmesh-system.svc,gitmesh-xds.gitmesh-system.svc.cluster.local"} {
					if !slices.Contains(args, want) {
						t.Errorf("controller args %q lack %s", args, want)
					}
				}
				if !slices.ContainsFunc(clusterRole(t, objs).Rules, func(r rbacv1.PolicyRule) bool {
					return slices.Contains(r.APIGroups, "authentication.k8s.io") && slices.Equal(r.Resources, []string{"tokenreviews"}) && slices.Equal(r.Verbs, []string{"create"})
				}) {
					t.Error("the ClusterRole cannot create tokenreviews")
				}
				gw := deployment(t, objs, "gitmesh-gateway").Spec.Template.Spec
				if !slices.Contains(gw.Containers[0].Args, "--join-token-file=/var/run/secrets/gitmesh/tokens/token") ||
					!slices.Contains(gw.Containers[0].Args, "--xds-ca-file=/etc/gitmesh/xds-ca/ca.pem") {
					t.Errorf("gateway args %q do not join", gw.Containers[0].Args)
				}
				if !slices.ContainsFunc(gw.Volumes, func(v corev1.Volume) bool {
					return v.Projected != nil && v.Projected.Sources[0].ServiceAccountToken.Audience == "gitmesh" &&
						*v.Projected.Sources[0].ServiceAccountToken.ExpirationSeconds == 3600
				}) || !slices.ContainsFunc(gw.Volumes, func(v corev1.Volume) bool {
					return v.ConfigMap != nil && v.ConfigMap.Name == "gitmesh-xds-ca" && *v.ConfigMap.Optional
				}) {
					t.Errorf("gateway volumes %+v lack the projected token or the CA ConfigMap", gw.Volumes)
				}
			},
		},
		{
			name: "xds auth none, admin auth all",
			args: []string{"--set", "git.url=" + testURL, "--set", "controller.xdsAuth=none", "--set", "controller.adminAuth=all"},
			check: func(t *testing.T, objs []helmtest.Object) {
				args := deployment(t, objs, "gitmesh").Spec.Template.Spec.Containers[0].Args
				if !slices.Contains(args, "--xds-auth=none") || !slices.Contains(args, "--admin-auth=all") ||
					slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, "--xds-san") }) {
					t.Errorf("controller args %q", args)
				}
				for _, r := range clusterRole(t, objs).Rules {
					if slices.Contains(r.Resources, "tokenreviews") {
						t.Error("tokenreviews permission although xdsAuth=none")
					}
				}
				gw := deployment(t, objs, "gitmesh-gateway").Spec.Template.Spec
				if len(gw.Volumes) != 0 || slices.ContainsFunc(gw.Containers[0].Args, func(a string) bool { return strings.HasPrefix(a, "--join-token-file") }) {
					t.Errorf("gateway joins although xdsAuth=none: %q", gw.Containers[0].Args)
				}
			},
		},
		{
			name: "meshConfig",
			args: []string{"--set", "git.url=" + testURL, "--set-json", `meshConfig={"extensionProviders":[{"name":"otel","opentelemetry":{"service":"otel-collector.observability.svc.cluster.local","port":4317}}],"defaultProviders":{"accessLogging":["envoy"]}}`},
			check: func(t *testing.T, objs []helmtest.Object) {
				got := helmtest.Find(objs, "ConfigMap", "gitmesh-mesh")
				if len(got) != 1 {
					t.Fatalf("%d mesh ConfigMaps; want 1", len(got))
				}
				mc, err := compiler.ReadMeshConfig([]byte(got[0].Obj.(*corev1.ConfigMap).Data["mesh"]))
				if err != nil {
					t.Fatalf("the controller would refuse the mesh config: %v", err)
				}
				if len(mc.GetExtensionProviders()) != 1 || mc.GetExtensionProviders()[0].GetOpentelemetry().GetPort() != 4317 {
					t.Errorf("mesh config %v", mc)
				}
				pod := deployment(t, objs, "gitmesh").Spec.Template.Spec
				if !slices.Contains(pod.Containers[0].Args, "--mesh-config=/etc/gitmesh/mesh/mesh") ||
					!slices.ContainsFunc(pod.Volumes, func(v corev1.Volume) bool { return v.ConfigMap != nil && v.ConfigMap.Name == "gitmesh-mesh" }) {
					t.Errorf("the controller does not read the mesh ConfigMap: args %q", pod.Containers[0].Args)
				}
			},
		},
		{
			name: "injector disabled, webhook URL",
			args: []string{"--set", "git.url=" + testURL, "--set", "injector.enabled=false"},
			check: func(t *testing.T, objs []helmtest.Object) {
				if len(helmtest.Find(objs, "MutatingWebhookConfiguration", "")) != 0 || len(helmtest.Find(objs, "ConfigMap", "gitmesh-injector")) != 0 {
					t.Error("injector objects although injector.enabled=false")
				}
				for _, r := range clusterRole(t, objs).Rules {
					if slices.Contains(r.Resources, "mutatingwebhookconfigurations") {
						t.Error("webhook permissions although injector.enabled=false")
					}
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := template(t, tt.args...)
			if err != nil {
				t.Fatal(err)
			}
			objs, err := helmtest.DecodeStrict(out)
			if err != nil {
				t.Fatalf("decoding the rendered manifests strictly:\n%v", err)
			}
			for _, o := range objs {
				if o.Namespace != "" && o.Namespace != "gitmesh-system" {
					t.Errorf("%s %s in namespace %s; want the release's", o.GVK.Kind, o.Name, o.Namespace)
				}
			}
			tt.check(t, objs)
		})
	}
}

// TestTemplateRejects renders values the chart must refuse, with a message
// that names the problem.
func TestTemplateRejects(t *testing.T) {
	helmtest.Binary(t)
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{name: "no git.url", args: nil, wantErr: "git.url is required"},
		{name: "unknown top-level key", args: []string{"--set", "git.url=" + testURL, "--set", "controler.replicas=2"}, wantErr: "additional properties 'controler' not allowed"},
		{name: "unknown nested key", args: []string{"--set", "git.url=" + testURL, "--set", "injector.captureMod=explicit"}, wantErr: "captureMod"},
		{name: "replicas not an integer", args: []string{"--set", "git.url=" + testURL, "--set-string", "controller.replicas=two"}, wantErr: "/controller/replicas"},
		{name: "git.url not a string", args: []string{"--set-json", `git.url=["a"]`}, wantErr: "/git/url"},
		{name: "unknown capture mode", args: []string{"--set", "git.url=" + testURL, "--set", "injector.captureMode=ebpf"}, wantErr: "/injector/captureMode"},
		{name: "unknown failure policy", args: []string{"--set", "git.url=" + testURL, "--set", "injector.failurePolicy=Retry"}, wantErr: "/injector/failurePolicy"},
		{name: "bad interval", args: []string{"--set", "git.url=" + testURL, "--set", "git.interval=5 minutes"}, wantErr: "/git/interval"},
		{name: "gateway port out of range", args: []string{"--set", "git.url=" + testURL, "--set", "gateway.ports[0].name=http", "--set", "gateway.ports[0].port=70000"}, wantErr: "/gateway/ports/0/port"},
		{name: "two refs", args: []string{"--set", "git.url=" + testURL, "--set", "git.branch=main", "--set", "git.tag=v1"}, wantErr: "at most one of git.branch, git.tag"},
		{name: "verify secret without a key", args: []string{"--set", "git.url=" + testURL, "--set", "git.verify.secretRef.name=keys"}, wantErr: "set git.verify.pgpKey or git.verify.sshKey"},
		{name: "verify key without a secret", args: []string{"--set", "git.url=" + testURL, "--set", "git.verify.sshKey=ssh"}, wantErr: "need git.verify.secretRef.name"},
		{name: "unknown webhook key", args: []string{"--set", "git.url=" + testURL, "--set", "webhook.secret=x"}, wantErr: "/webhook"},
		{name: "webhook URL not https", args: []string{"--set", "git.url=" + testURL, "--set", "injector.webhook.url=http://127.0.0.1/inject"}, wantErr: "/injector/webhook/url"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := template(t, tt.args...)
			if err == nil {
				t.Fatalf("helm template %q succeeded; want an error naming %q", tt.args, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error = %v; want one naming %q", err, tt.wantErr)
			}
		})
	}
}

// TestCRDIsGenerated keeps the chart's CRD equal to the one
// controller-gen writes (make generate).
func TestCRDIsGenerated(t *testing.T) {
	const name = "gitmesh.io_meshrollouts.yaml"
	chart, err := os.ReadFile(filepath.Join("gitmesh", "crds", name))
	if err != nil {
		t.Fatal(err)
	}
	gen, err := os.ReadFile(filepath.Join("..", "config", "crd", name))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(chart, gen) {
		t.Errorf("charts/gitmesh/crds/%s differs from config/crd/%s: run make generate", name, name)
	}
}

func deployment(t *testing.T, objs []helmtest.Object, name string) *appsv1.Deployment {
	t.Helper()
	got := helmtest.Find(objs, "Deployment", name)
	if len(got) != 1 {
		t.Fatalf("%d Deployments %s; want 1", len(got), name)
	}
	return got[0].Obj.(*appsv1.Deployment)
}

func webhook(t *testing.T, objs []helmtest.Object) admissionregistrationv1.MutatingWebhook {
	t.Helper()
	got := helmtest.Find(objs, "MutatingWebhookConfiguration", "")
	if len(got) != 1 {
		t.Fatalf("%d MutatingWebhookConfigurations; want 1", len(got))
	}
	mwc := got[0].Obj.(*admissionregistrationv1.MutatingWebhookConfiguration)
	if len(mwc.Webhooks) != 1 {
		t.Fatalf("%d webhooks; want 1", len(mwc.Webhooks))
	}
	return mwc.Webhooks[0]
}

func service(t *testing.T, objs []helmtest.Object, name string) *corev1.Service {
	t.Helper()
	got := helmtest.Find(objs, "Service", name)
	if len(got) != 1 {
		t.Fatalf("%d Services %s; want 1", len(got), name)
	}
	return got[0].Obj.(*corev1.Service)
}

func role(t *testing.T, objs []helmtest.Object) *rbacv1.Role {
	t.Helper()
	got := helmtest.Find(objs, "Role", "")
	if len(got) != 1 {
		t.Fatalf("%d Roles; want 1", len(got))
	}
	return got[0].Obj.(*rbacv1.Role)
}

func clusterRole(t *testing.T, objs []helmtest.Object) *rbacv1.ClusterRole {
	t.Helper()
	got := helmtest.Find(objs, "ClusterRole", "")
	if len(got) != 1 {
		t.Fatalf("%d ClusterRoles; want 1", len(got))
	}
	return got[0].Obj.(*rbacv1.ClusterRole)
}

// injectorConfig reads the injector's ConfigMap as the controller does.
func injectorConfig(t *testing.T, objs []helmtest.Object) inject.Config {
	t.Helper()
	got := helmtest.Find(objs, "ConfigMap", "gitmesh-injector")
	if len(got) != 1 {
		t.Fatalf("%d injector ConfigMaps; want 1", len(got))
	}
	var cfg inject.Config
	if err := yaml.UnmarshalStrict([]byte(got[0].Obj.(*corev1.ConfigMap).Data["config.yaml"]), &cfg); err != nil {
		t.Fatalf("reading the injector config: %v", err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return cfg
}
