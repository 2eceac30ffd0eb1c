package helmtest

import (
	"strings"
	"testing"
)

func TestDecodeStrict(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		wantErr string
		want    int
	}{
		{name: "good", want: 2, in: `# Source: c/templates/a.yaml
apiVersion: v1
kind: ServiceAccount
metadata:
  name: a
---
# Source: c/templates/b.yaml
apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata:
  name: b
spec:
  selector: {matchLabels: {a: b}}
  endpoints: [{port: http, path: /metrics}]
`},
		{name: "unknown field", wantErr: "c/templates/d.yaml: Deployment d", in: `# Source: c/templates/d.yaml
apiVersion: apps/v1
kind: Deployment
metadata:
  name: d
spec:
  replica: 2
`},
		{name: "unknown field of another project's kind", wantErr: "intervall", in: `apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata:
  name: b
spec:
  endpoints: [{port: http, intervall: 5s}]
`},
		{name: "duplicate field", wantErr: "already set", in: `apiVersion: v1
kind: ConfigMap
metadata:
  name: a
  name: b
`},
		{name: "unknown kind", wantErr: "unknown kind", in: "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w\n"},
		{name: "no name", wantErr: "without a name", in: "apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n"},
		{name: "comments only", want: 0, in: "# Source: c/templates/empty.yaml\n---\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			objs, err := DecodeStrict(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v; want one naming %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(objs) != tt.want {
				t.Fatalf("%d objects; want %d", len(objs), tt.want)
			}
		})
	}
}
