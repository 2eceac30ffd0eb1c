package registry

import (
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestServiceAddresses: a Service's cluster IPs are its addresses (what a
// captured client dials); a headless Service has none.
func TestServiceAddresses(t *testing.T) {
	for _, tc := range []struct {
		name string
		spec corev1.ServiceSpec
		want []string
	}{
		{name: "cluster IP", spec: corev1.ServiceSpec{ClusterIP: "10.96.0.10", ClusterIPs: []string{"10.96.0.10"}}, want: []string{"10.96.0.10"}},
		{name: "dual stack", spec: corev1.ServiceSpec{ClusterIP: "10.96.0.10", ClusterIPs: []string{"10.96.0.10", "fd00::10"}}, want: []string{"10.96.0.10", "fd00::10"}},
		{name: "headless", spec: corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone, ClusterIPs: []string{corev1.ClusterIPNone}}},
		{name: "not allocated yet", spec: corev1.ServiceSpec{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := ServiceFromKubernetes(&corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "reviews", Namespace: "shop"}, Spec: tc.spec}, "")
			if !slices.Equal(s.Addresses, tc.want) {
				t.Errorf("Addresses = %q; want %q", s.Addresses, tc.want)
			}
		})
	}
}
