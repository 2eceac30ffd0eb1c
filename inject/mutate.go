package inject

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/gitmesh/gitmesh/api/nodemeta"
)

// Operation is one RFC 6902 JSON patch operation; Mutate writes only "add".
type Operation struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value,omitempty"`
}

// Result is Mutate's decision for one pod.
type Result struct {
	// Patch is the JSON patch to apply; empty when the pod is left alone.
	Patch []Operation
	// Skipped says why the pod is left alone ("" when Patch is not empty).
	Skipped string
}

// Mutate decides whether pod gets a sidecar and returns the JSON patch
// that adds it: the proxy container, the proxy-init init container in
// iptables capture mode or HTTP_PROXY on the app containers in explicit
// mode, and the status annotation. It leaves alone (Skipped says why) a
// pod that opted out with sidecar.gitmesh.io/inject: "false" (annotation
// or label, as Istio accepts both), one already injected, and one on the
// host network. Namespace selection is the webhook configuration's; Mutate
// does not look at it. The pod is not modified.
func Mutate(pod *corev1.Pod, cfg Config) (Result, error) {
	if err := cfg.Validate(); err != nil {
		return Result{}, fmt.Errorf("injecting a sidecar: %w", err)
	}
	cfg = cfg.withDefaults()
	if v, ok := pod.Annotations[AnnotationInject]; ok && isFalse(v) {
		return Result{Skipped: "opted out by annotation " + AnnotationInject + "=" + v}, nil
	}
	if v, ok := pod.Labels[AnnotationInject]; ok && isFalse(v) {
		return Result{Skipped: "opted out by label " + AnnotationInject + "=" + v}, nil
	}
	if _, ok := pod.Annotations[AnnotationStatus]; ok {
		return Result{Skipped: "already injected"}, nil
	}
	for _, c := range pod.Spec.Containers {
		if c.Name == ProxyContainerName {
			return Result{Skipped: "already injected"}, nil
		}
	}
	if pod.Spec.HostNetwork {
		return Result{Skipped: "host network pod"}, nil
	}
	appPort, err := appPort(pod)
	if err != nil {
		return Result{}, fmt.Errorf("injecting a sidecar: %w", err)
	}

	var ops []Operation
	if cfg.CaptureMode == CaptureIPTables {
		ops = appendTo(ops, "/spec/initContainers", len(pod.Spec.InitContainers), initContainer(cfg))
	} else {
		for i, c := range pod.Spec.Containers {
			ops = append(ops, proxyEnv(i, c, cfg)...)
		}
	}
	if cfg.XDSCABundle != "" {
		ops = appendTo(ops, "/spec/volumes", len(pod.Spec.Volumes), tokenVolume())
	}
	ops = appendTo(ops, "/spec/containers", len(pod.Spec.Containers), proxyContainer(pod, cfg, appPort))
	if pod.Annotations == nil {
		ops = append(ops, Operation{Op: "add", Path: "/metadata/annotations", Value: map[string]string{AnnotationStatus: "injected"}})
	} else {
		ops = append(ops, Operation{Op: "add", Path: "/metadata/annotations/" + escape(AnnotationStatus), Value: "injected"})
	}
	return Result{Patch: ops}, nil
}

// isFalse reads an opt-out value as Istio does: "false", "n", "no", "off".
func isFalse(v string) bool {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "false", "n", "no", "off", "disabled":
		return true
	}
	return false
}

// appendTo adds v to the list at path, which has n items: the list itself
// when it is empty (JSON patch cannot append to a missing array).
func appendTo(ops []Operation, path string, n int, v any) []Operation {
	if n == 0 {
		return append(ops, Operation{Op: "add", Path: path, Value: []any{v}})
	}
	return append(ops, Operation{Op: "add", Path: path + "/-", Value: v})
}

// escape writes s as one JSON pointer token (RFC 6901).
func escape(s string) string {
	return strings.NewReplacer("~", "~0", "/", "~1").Replace(s)
}

// appPort is the TCP port the sidecar's inbound listener forwards to: the
// sidecar.gitmesh.io/app-port annotation, else the first TCP port the
// first container declares; 0 when there is none (no inbound listener).
func appPort(pod *corev1.Pod) (int32, error) {
	if v, ok := pod.Annotations[AnnotationAppPort]; ok {
		n, err := strconv.ParseUint(v, 10, 16)
		if err != nil || n == 0 {
			return 0, fmt.Errorf("annotation %s: %q is not a port number", AnnotationAppPort, v)
		}
		return int32(n), nil
	}
	for _, c := range pod.Spec.Containers {
		for _, p := range c.Ports {
			if p.Protocol == "" || p.Protocol == corev1.ProtocolTCP {
				return p.ContainerPort, nil
			}
		}
	}
	return 0, nil
}

// serviceName is the pod's service as Istio's canonical service reads it:
// service.istio.io/canonical-name, app.kubernetes.io/name, then app.
func serviceName(pod *corev1.Pod) string {
	for _, k := range []string{"service.istio.io/canonical-name", "app.kubernetes.io/name", "app"} {
		if v := pod.Labels[k]; v != "" {
			return v
		}
	}
	return ""
}

// downwardEnv is the pod identity the proxy announces and the controller
// checks against the Pod object (issue 10): Istio's names.
func downwardEnv() []corev1.EnvVar {
	field := func(name, path string) corev1.EnvVar {
		return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: path}}}
	}
	return []corev1.EnvVar{
		field("POD_NAME", "metadata.name"),
		field("POD_NAMESPACE", "metadata.namespace"),
		field("SERVICE_ACCOUNT", "spec.serviceAccountName"),
		field("INSTANCE_IP", "status.podIP"),
	}
}

// proxyContainer is the sidecar: gitmesh-proxy (ProxyCommand, what
// `gitmesh proxy` runs) as uid ProxyUID, no capabilities, a read-only root
// file system.
func proxyContainer(pod *corev1.Pod, cfg Config, appPort int32) corev1.Container {
	args := []string{
		"--xds=" + cfg.XDSAddress,
		"--id=$(POD_NAME).$(POD_NAMESPACE)",
		"--namespace=$(POD_NAMESPACE)",
		"--outbound=127.0.0.1:" + itoa(cfg.OutboundPort),
		"--admin=0.0.0.0:" + itoa(cfg.AdminPort),
	}
	if svc := serviceName(pod); svc != "" {
		args = append(args, "--service="+svc)
	}
	if len(pod.Labels) > 0 {
		args = append(args, "--labels="+nodemeta.FormatLabels(pod.Labels))
	}
	if cfg.CaptureMode == CaptureIPTables {
		// docs/capture.md: REDIRECT sends inbound connections to the pod's
		// address, so the inbound listener listens there.
		args = append(args, "--interception-mode="+nodemeta.InterceptionRedirect)
		if appPort != 0 {
			args = append(args, "--inbound=$(INSTANCE_IP):"+itoa(cfg.InboundPort), "--app=127.0.0.1:"+itoa(appPort))
		}
	}
	env := downwardEnv()
	var mounts []corev1.VolumeMount
	if cfg.XDSCABundle != "" {
		args = append(args, "--join-token-file="+TokenMountPath+"/token")
		env = append(env, corev1.EnvVar{Name: "GITMESH_XDS_CA", Value: cfg.XDSCABundle})
		mounts = append(mounts, corev1.VolumeMount{Name: TokenVolume, MountPath: TokenMountPath, ReadOnly: true})
	}
	return corev1.Container{
		Name:            ProxyContainerName,
		Image:           cfg.Image,
		ImagePullPolicy: cfg.ImagePullPolicy,
		Command:         []string{ProxyCommand},
		Args:            args,
		Env:             env,
		VolumeMounts:    mounts,
		Ports:           []corev1.ContainerPort{{Name: "gitmesh-admin", ContainerPort: cfg.AdminPort, Protocol: corev1.ProtocolTCP}},
		ReadinessProbe: &corev1.Probe{
			ProbeHandler:     corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/ready", Port: intstr.FromInt32(cfg.AdminPort)}},
			PeriodSeconds:    2,
			FailureThreshold: 30,
		},
		Resources: cfg.Resources,
		SecurityContext: &corev1.SecurityContext{
			RunAsUser:                ptr.To(cfg.ProxyUID),
			RunAsGroup:               ptr.To(cfg.ProxyUID),
			RunAsNonRoot:             ptr.To(true),
			ReadOnlyRootFilesystem:   ptr.To(true),
			AllowPrivilegeEscalation: ptr.To(false),
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		},
	}
}

// tokenVolume is the projected ServiceAccount token a sidecar joins with.
func tokenVolume() corev1.Volume {
	return corev1.Volume{Name: TokenVolume, VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
		Sources: []corev1.VolumeProjection{{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{
			Audience: TokenAudience, ExpirationSeconds: ptr.To[int64](TokenExpiration), Path: "token",
		}}},
	}}}
}

// initContainer runs `gitmesh proxy-init` (issue 10's iptables capture)
// as root with NET_ADMIN and NET_RAW, then exits.
func initContainer(cfg Config) corev1.Container {
	args := []string{
		"proxy-init",
		"--proxy-uid=" + strconv.FormatInt(cfg.ProxyUID, 10),
		"--outbound-port=" + itoa(cfg.OutboundPort),
		"--inbound-port=" + itoa(cfg.InboundPort),
		// The proxy's admin port must reach the proxy, not be redirected.
		"--exclude-inbound-ports=" + joinPorts(append([]int32{cfg.AdminPort}, cfg.ExcludeInboundPorts...)),
	}
	if len(cfg.ExcludeOutboundPorts) > 0 {
		args = append(args, "--exclude-outbound-ports="+joinPorts(cfg.ExcludeOutboundPorts))
	}
	return corev1.Container{
		Name:            InitContainerName,
		Image:           cfg.Image,
		ImagePullPolicy: cfg.ImagePullPolicy,
		Args:            args,
		SecurityContext: &corev1.SecurityContext{
			RunAsUser:                ptr.To[int64](0),
			RunAsNonRoot:             ptr.To(false),
			ReadOnlyRootFilesystem:   ptr.To(true),
			AllowPrivilegeEscalation: ptr.To(false),
			Capabilities: &corev1.Capabilities{
				Add:  []corev1.Capability{"NET_ADMIN", "NET_RAW"},
				Drop: []corev1.Capability{"ALL"},
			},
		},
	}
}

// proxyEnv points container i's HTTP clients at the sidecar (explicit
// capture): HTTP_PROXY and NO_PROXY in both spellings (curl reads only
// the lower-case http_proxy), unless the container sets them itself.
func proxyEnv(i int, c corev1.Container, cfg Config) []Operation {
	set := map[string]bool{}
	for _, e := range c.Env {
		set[e.Name] = true
	}
	proxyURL := "http://127.0.0.1:" + itoa(cfg.OutboundPort)
	want := []corev1.EnvVar{
		{Name: "HTTP_PROXY", Value: proxyURL},
		{Name: "http_proxy", Value: proxyURL},
		{Name: "NO_PROXY", Value: "localhost,127.0.0.1,::1"},
		{Name: "no_proxy", Value: "localhost,127.0.0.1,::1"},
	}
	var add []corev1.EnvVar
	for _, e := range want {
		if !set[e.Name] {
			add = append(add, e)
		}
	}
	if len(add) == 0 {
		return nil
	}
	path := "/spec/containers/" + strconv.Itoa(i) + "/env"
	if len(c.Env) == 0 {
		return []Operation{{Op: "add", Path: path, Value: add}}
	}
	ops := make([]Operation, len(add))
	for j, e := range add {
		ops[j] = Operation{Op: "add", Path: path + "/-", Value: e}
	}
	return ops
}

func itoa(n int32) string { return strconv.FormatInt(int64(n), 10) }

func joinPorts(ports []int32) string {
	s := make([]string, len(ports))
	sorted := append([]int32(nil), ports...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i] < sorted[j] })
	for i, p := range sorted {
		s[i] = itoa(p)
	}
	return strings.Join(s, ",")
}
