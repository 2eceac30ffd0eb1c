package redact

import "testing"

func TestURL(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"plain", "https://git.example.com/mesh.git", "https://git.example.com/mesh.git"},
		{"userinfo", "https://bob:s3cret@git.example.com/mesh.git", "https://git.example.com/mesh.git"},
		{"token query", "http://prom:9090/api?token=abc#x", "http://prom:9090/api"},
		{"scp-like", "git@github.com:org/repo.git", "github.com:org/repo.git"},
		{"broken url with userinfo", "http://u:p@%zz/x", "http://%zz/x"},
		{"path", "/srv/repo", "/srv/repo"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := URL(tt.in); got != tt.want {
				t.Errorf("URL(%q) = %q; want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestOpaque(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"path token", "https://hooks.example.com/services/T0/B1/secret", "https://hooks.example.com/…"},
		{"root", "http://127.0.0.1:9000/", "http://127.0.0.1:9000"},
		{"query only", "http://127.0.0.1:9000?k=v", "http://127.0.0.1:9000/…"},
		{"userinfo", "https://u:p@h.example.com", "https://h.example.com"},
		{"not a url", "s3cret", "<redacted url>"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Opaque(tt.in); got != tt.want {
				t.Errorf("Opaque(%q) = %q; want %q", tt.in, got, tt.want)
			}
		})
	}
}
