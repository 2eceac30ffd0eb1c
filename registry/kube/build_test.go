package kube

import (
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/gitmesh/gitmesh/registry"
)

func ptr[T any](v T) *T { return &v }

func service(ns, name string, mut func(*corev1.Service)) *corev1.Service {
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": name},
			Ports:    []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("web")}},
		},
	}
	if mut != nil {
		mut(s)
	}
	return s
}

func pod(ns, name, ip string, labels map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Ports: []corev1.ContainerPort{{Name: "web", ContainerPort: 8080}}}}},
		Status:     corev1.PodStatus{PodIP: ip},
	}
}

type ep struct {
	addr  string
	ready *bool
	pod   string
}

func slice(ns, name, svc string, port int32, eps ...ep) *discoveryv1.EndpointSlice {
	es := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr("http"), Port: ptr(port), Protocol: ptr(corev1.ProtocolTCP)}},
	}
	for _, e := range eps {
		x := discoveryv1.Endpoint{Addresses: []string{e.addr}, Conditions: discoveryv1.EndpointConditions{Ready: e.ready}}
		if e.pod != "" {
			x.TargetRef = &corev1.ObjectReference{Kind: "Pod", Name: e.pod}
		}
		es.Endpoints = append(es.Endpoints, x)
	}
	return es
}

func TestBuild(t *testing.T) {
	v1 := map[string]string{"app": "reviews", "version": "v1"}
	v2 := map[string]string{"app": "reviews", "version": "v2"}
	tests := []struct {
		name string
		in   Snapshot
		want map[string][]registry.Endpoint // by hostname
		// wantTargetPort is the reviews port's resolved targetPort.
		wantTargetPort uint32
	}{
		{
			name: "endpoints carry the labels and service account of the pod their targetRef names",
			in: Snapshot{
				Services: []*corev1.Service{service("shop", "reviews", nil)},
				EndpointSlices: []*discoveryv1.EndpointSlice{slice("shop", "reviews-a", "reviews", 8080,
					ep{"10.0.0.2", nil, "reviews-v2"}, ep{"10.0.0.1", ptr(true), "reviews-v1"})},
				Pods: []*corev1.Pod{pod("shop", "reviews-v1", "10.0.0.1", v1), func() *corev1.Pod {
					p := pod("shop", "reviews-v2", "10.0.0.2", v2)
					p.Spec.ServiceAccountName = "reviews"
					return p
				}()},
			},
			want: map[string][]registry.Endpoint{"reviews.shop.svc.cluster.local": {
				{Address: "10.0.0.1", Ports: map[string]uint32{"http": 8080}, Labels: v1, Ready: true, Workload: "reviews-v1", ServiceAccount: "default"},
				{Address: "10.0.0.2", Ports: map[string]uint32{"http": 8080}, Labels: v2, Ready: true, Workload: "reviews-v2", ServiceAccount: "reviews"},
			}},
			wantTargetPort: 8080,
		},
		{
			name: "ready=false stays listed, not ready; a duplicate address in two slices is kept once",
			in: Snapshot{
				Services: []*corev1.Service{service("shop", "reviews", nil)},
				EndpointSlices: []*discoveryv1.EndpointSlice{
					slice("shop", "reviews-a", "reviews", 8080, ep{"10.0.0.1", ptr(false), "reviews-v1"}),
					slice("shop", "reviews-b", "reviews", 8080, ep{"10.0.0.1", ptr(false), "reviews-v1"}, ep{"10.0.0.3", ptr(true), ""}),
				},
			},
			want: map[string][]registry.Endpoint{"reviews.shop.svc.cluster.local": {
				{Address: "10.0.0.1", Ports: map[string]uint32{"http": 8080}, Ready: false, Workload: "reviews-v1"},
				{Address: "10.0.0.3", Ports: map[string]uint32{"http": 8080}, Ready: true},
			}},
		},
		{
			name: "slices of another namespace or service, and FQDN slices, are not this service's",
			in: Snapshot{
				Services: []*corev1.Service{service("shop", "reviews", nil)},
				EndpointSlices: []*discoveryv1.EndpointSlice{
					slice("other", "reviews-a", "reviews", 8080, ep{"10.0.1.1", nil, ""}),
					slice("shop", "ratings-a", "ratings", 8080, ep{"10.0.1.2", nil, ""}),
					func() *discoveryv1.EndpointSlice {
						es := slice("shop", "reviews-fqdn", "reviews", 8080, ep{"reviews.example.com", nil, ""})
						es.AddressType = discoveryv1.AddressTypeFQDN
						return es
					}(),
				},
			},
			want: map[string][]registry.Endpoint{"reviews.shop.svc.cluster.local": nil},
		},
		{
			name: "ExternalName services are left out",
			in: Snapshot{Services: []*corev1.Service{
				service("shop", "reviews", nil),
				service("shop", "legacy", func(s *corev1.Service) {
					s.Spec.Type = corev1.ServiceTypeExternalName
					s.Spec.ExternalName = "legacy.example.com"
				}),
			}},
			want: map[string][]registry.Endpoint{"reviews.shop.svc.cluster.local": nil},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg := Build(tt.in)
			got := map[string][]registry.Endpoint{}
			for _, s := range reg.Services() {
				got[s.Hostname] = s.Endpoints
				if s.Name == "reviews" && s.Ports[0].TargetPort != tt.wantTargetPort {
					t.Errorf("reviews targetPort = %d; want %d", s.Ports[0].TargetPort, tt.wantTargetPort)
				}
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("endpoints by host:\n got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestHash(t *testing.T) {
	base := Snapshot{
		Services:       []*corev1.Service{service("shop", "reviews", nil)},
		EndpointSlices: []*discoveryv1.EndpointSlice{slice("shop", "reviews-a", "reviews", 8080, ep{"10.0.0.1", nil, "reviews-v1"})},
		Pods:           []*corev1.Pod{pod("shop", "reviews-v1", "10.0.0.1", map[string]string{"app": "reviews"})},
	}
	h := Hash(Build(base))
	tests := []struct {
		name     string
		mut      func(s Snapshot) Snapshot
		wantSame bool
	}{
		{"rebuilt from equal objects", func(s Snapshot) Snapshot { return s }, true},
		{"a pod status change nothing reads", func(s Snapshot) Snapshot {
			p := s.Pods[0].DeepCopy()
			p.Status.Phase = corev1.PodRunning
			p.ResourceVersion = "42"
			s.Pods = []*corev1.Pod{p}
			return s
		}, true},
		{"an endpoint goes unready", func(s Snapshot) Snapshot {
			s.EndpointSlices = []*discoveryv1.EndpointSlice{slice("shop", "reviews-a", "reviews", 8080, ep{"10.0.0.1", ptr(false), "reviews-v1"})}
			return s
		}, false},
		{"a pod label changes", func(s Snapshot) Snapshot {
			p := s.Pods[0].DeepCopy()
			p.Labels["version"] = "v2"
			s.Pods = []*corev1.Pod{p}
			return s
		}, false},
		{"the exportTo annotation changes", func(s Snapshot) Snapshot {
			s.Services = []*corev1.Service{service("shop", "reviews", func(s *corev1.Service) {
				s.Annotations = map[string]string{registry.ExportToAnnotation: "."}
			})}
			return s
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Hash(Build(tt.mut(base)))
			if same := got == h; same != tt.wantSame {
				t.Errorf("hash equal = %v; want %v", same, tt.wantSame)
			}
		})
	}
}

// TestTrimKeepsWhatBuildReads: the informers' transform drops what Build
// does not read, so a registry built from trimmed objects hashes as one
// built from the objects themselves.
func TestTrimKeepsWhatBuildReads(t *testing.T) {
	full := pod("shop", "reviews-v1", "10.0.0.1", map[string]string{"app": "reviews", "version": "v1"})
	full.Annotations = map[string]string{"kubectl.kubernetes.io/last-applied-configuration": "{...}"}
	full.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}
	full.Spec.ServiceAccountName = "reviews" // Build reads it: trim must keep it
	full.Spec.Containers[0].Image = "example.com/reviews:1"
	full.Spec.Containers[0].Ports = append(full.Spec.Containers[0].Ports, corev1.ContainerPort{ContainerPort: 9000})
	full.Spec.InitContainers = []corev1.Container{{Name: "init", Ports: []corev1.ContainerPort{{Name: "metrics", ContainerPort: 15090}}}}
	svc := service("shop", "reviews", nil)
	svc.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}
	es := slice("shop", "reviews-a", "reviews", 8080, ep{"10.0.0.1", nil, "reviews-v1"})

	want := Hash(Build(Snapshot{Services: []*corev1.Service{svc}, EndpointSlices: []*discoveryv1.EndpointSlice{es}, Pods: []*corev1.Pod{full}}))
	var trimmed Snapshot
	for _, obj := range []any{full.DeepCopy(), svc.DeepCopy(), es.DeepCopy()} {
		out, err := trim(obj)
		if err != nil {
			t.Fatalf("trim: %v", err)
		}
		switch o := out.(type) {
		case *corev1.Pod:
			if o.Annotations != nil || o.ManagedFields != nil || o.Spec.Containers[0].Image != "" {
				t.Errorf("trimmed pod keeps %+v", o)
			}
			trimmed.Pods = append(trimmed.Pods, o)
		case *corev1.Service:
			if o.ManagedFields != nil {
				t.Errorf("trimmed service keeps managedFields")
			}
			trimmed.Services = append(trimmed.Services, o)
		case *discoveryv1.EndpointSlice:
			trimmed.EndpointSlices = append(trimmed.EndpointSlices, o)
		}
	}
	if got := Hash(Build(trimmed)); got != want {
		t.Errorf("registry from trimmed objects differs from the one from full objects")
	}
	if tomb, err := trim("tombstone"); err != nil || tomb != "tombstone" {
		t.Errorf("trim(non-object) = %v, %v; want it unchanged", tomb, err)
	}
}
