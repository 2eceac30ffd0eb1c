package main

import (
	"os"
	"path/filepath"
	"testing"
)

func TestKubeRESTConfig(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "config")
	if err := os.WriteFile(good, []byte(`apiVersion: v1
kind: Config
clusters:
- name: c
  cluster: {server: "https://127.0.0.1:6443"}
users:
- name: u
  user: {token: "t"}
contexts:
- name: x
  context: {cluster: c, user: u}
current-context: x
`), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		kubeconfig string
		env        map[string]string
		wantHost   string
		wantErr    bool
	}{
		{name: "--kubeconfig", kubeconfig: good, wantHost: "https://127.0.0.1:6443"},
		{name: "$KUBECONFIG outside a cluster", env: map[string]string{"KUBECONFIG": good}, wantHost: "https://127.0.0.1:6443"},
		{name: "a missing --kubeconfig", kubeconfig: filepath.Join(dir, "missing"), wantErr: true},
		{name: "in a pod without a service account", env: map[string]string{"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("KUBERNETES_SERVICE_HOST", "")
			t.Setenv("KUBECONFIG", filepath.Join(dir, "none"))
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			cfg, err := kubeRESTConfig(tt.kubeconfig)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("got config for %s; want an error", cfg.Host)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Host != tt.wantHost {
				t.Errorf("host = %q; want %q", cfg.Host, tt.wantHost)
			}
		})
	}
}
