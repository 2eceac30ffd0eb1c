package xds

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/gitmesh/gitmesh/api/nodemeta"
)

// TestAdmission refuses a node the AdmitFunc refuses, with its reason on
// the stream, and serves an admitted one as the AdmitFunc corrected it.
func TestAdmission(t *testing.T) {
	admit := func(_ context.Context, w nodemeta.Workload) (nodemeta.Workload, error) {
		if w.Pod != "reviews-1" {
			return w, errors.New("pod identity mismatch: no such pod")
		}
		w.Labels = map[string]string{"app": "reviews", "from": "pod"}
		return w, nil
	}
	s, addr := startServer(t, WithAdmission(admit))
	tests := []struct {
		name     string
		pod      string
		wantCode codes.Code
	}{
		{name: "refused", pod: "ratings-1", wantCode: codes.PermissionDenied},
		{name: "admitted", pod: "reviews-1", wantCode: codes.OK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := workload("node-" + tt.name)
			w.Pod = tt.pod
			c := connectADS(t, addr, w.Node())
			c.subscribe(t, resource.ClusterType)
			if tt.wantCode != codes.OK {
				err := c.streamErr(t)
				if status.Code(err) != tt.wantCode || !strings.Contains(status.Convert(err).Message(), "no such pod") {
					t.Errorf("stream ended with %v; want %s with the admission's reason", err, tt.wantCode)
				}
				return
			}
			n := waitNode(t, s, w.ID, "connected", func(n NodeStatus, ok bool) bool { return ok && n.Connected })
			if n.Workload.Labels["from"] != "pod" || n.Workload.Pod != "reviews-1" {
				t.Errorf("workload = %+v; want the admitted labels and pod", n.Workload)
			}
		})
	}
}

// TestStreamGate refuses streams with Unavailable while the gate is shut.
func TestStreamGate(t *testing.T) {
	_, addr := startServer(t, WithStreamGate(func() error { return errors.New("not the leader") }))
	c := connectADS(t, addr, workload("n1").Node())
	err := c.streamErr(t) // refused when it opens, before any request
	if status.Code(err) != codes.Unavailable || !strings.Contains(status.Convert(err).Message(), "not the leader") {
		t.Errorf("stream ended with %v; want Unavailable: not the leader", err)
	}
}
