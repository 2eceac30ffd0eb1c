package main

import (
	"context"
	"slices"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/gitmesh/gitmesh/inject"
	"github.com/gitmesh/gitmesh/internal/helmtest"
	"github.com/gitmesh/gitmesh/internal/proxycmd"
)

// TestChartArgsParse parses every command line the chart and the injector
// write with the real commands' flags, so a renamed or removed flag fails
// here rather than in a pod's crash loop.
func TestChartArgsParse(t *testing.T) {
	helmtest.Binary(t)
	for _, mode := range []string{inject.CaptureIPTables, inject.CaptureExplicit} {
		t.Run(mode, func(t *testing.T) {
			out, _, err := helmtest.Run(context.Background(), t, nil, "template", "gitmesh", helmtest.ChartDir(t),
				"--namespace", "gitmesh-system", "--set", "git.url=https://git.example.com/mesh.git",
				"--set", "git.secretRef.name=creds", "--set", "git.verify.secretRef.name=keys", "--set", "git.verify.pgpKey=pgp",
				"--set", "git.verify.sshKey=ssh", "--set", "webhook.secretRef.name=hook", "--set", "injector.captureMode="+mode,
				"--set", "injector.proxy.excludeOutboundPorts={5432}", "--set", "controller.extraArgs={--max-repo-size=512MiB}")
			if err != nil {
				t.Fatal(err)
			}
			objs, err := helmtest.DecodeStrict(out)
			if err != nil {
				t.Fatal(err)
			}
			var cfg inject.Config
			for _, o := range helmtest.Find(objs, "ConfigMap", "gitmesh-injector") {
				if err := yaml.UnmarshalStrict([]byte(o.Obj.(*corev1.ConfigMap).Data["config.yaml"]), &cfg); err != nil {
					t.Fatal(err)
				}
			}
			var containers []corev1.Container
			for _, o := range helmtest.Find(objs, "Deployment", "") {
				containers = append(containers, o.Obj.(*appsv1.Deployment).Spec.Template.Spec.Containers...)
			}
			pod := &corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Ports: []corev1.ContainerPort{{ContainerPort: 8080}}}}}}
			pod.Labels = map[string]string{"app": "reviews"}
			res, err := inject.Mutate(pod, cfg)
			if err != nil {
				t.Fatal(err)
			}
			for _, op := range res.Patch {
				switch v := op.Value.(type) {
				case corev1.Container:
					containers = append(containers, v)
				case []any:
					for _, c := range v {
						if c, ok := c.(corev1.Container); ok {
							containers = append(containers, c)
						}
					}
				}
			}
			if len(containers) < 3 {
				t.Fatalf("%d containers found; want the controller, the gateway and the sidecar", len(containers))
			}
			for _, c := range containers {
				switch {
				case len(c.Command) == 0:
					parseArgs(t, c.Name, c.Args)
				case slices.Equal(c.Command, []string{inject.ProxyCommand}):
					parseProxyArgs(t, c.Name, c.Args)
				default:
					t.Errorf("container %s runs %q; want gitmesh (the image's entrypoint) or %s", c.Name, c.Command, inject.ProxyCommand)
				}
			}
		})
	}
}

// parseProxyArgs parses args with the flags of gitmesh-proxy.
func parseProxyArgs(t *testing.T, container string, args []string) {
	t.Helper()
	cmd := proxycmd.New(proxycmd.Options{Use: "gitmesh-proxy"})
	if err := cmd.ParseFlags(args); err != nil {
		t.Errorf("container %s: gitmesh-proxy %q: %v", container, args, err)
	}
	if rest := cmd.Flags().Args(); len(rest) != 0 {
		t.Errorf("container %s: gitmesh-proxy takes no arguments; got %q", container, rest)
	}
}

// parseArgs parses args[1:] with the flags of the subcommand args[0].
func parseArgs(t *testing.T, container string, args []string) {
	t.Helper()
	if len(args) == 0 {
		t.Fatalf("container %s has no args", container)
	}
	root := newRootCmd()
	cmd, _, err := root.Find(args[:1])
	if err != nil || cmd == root {
		t.Fatalf("container %s: no command %q", container, args[0])
	}
	keep := args[1:]
	if err := cmd.ParseFlags(keep); err != nil {
		t.Errorf("container %s: gitmesh %s %q: %v", container, args[0], keep, err)
	}
	if rest := cmd.Flags().Args(); len(rest) != 0 {
		t.Errorf("container %s: gitmesh %s takes no arguments; got %q", container, args[0], rest)
	}
}
