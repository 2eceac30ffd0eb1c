package review

import (
	"strings"
	"testing"
)

func TestCompactRedactsSecrets(t *testing.T) {
	tests := []struct {
		in   any
		want string
	}{
		{map[string]any{"url": "https://user:pa55@hooks.example.com/x"}, "{url: \"https://hooks.example.com/<redacted>\"}"},
		{map[string]any{"token": "abc", "name": "n"}, "{name: n, token: <redacted>}"},
		{"http://127.0.0.1:9090", "\"http://127.0.0.1:9090\""},
		{[]any{"a", "b"}, "[a, b]"},
		{"100", "\"100\""},
	}
	for _, tt := range tests {
		if got := compact(tt.in); got != tt.want {
			t.Errorf("compact(%v) = %s; want %s", tt.in, got, tt.want)
		}
	}
}

func TestDiffSecretObject(t *testing.T) {
	d := &differ{secretTree: secretTree("Secret")}
	d.diff("", map[string]any{"data": map[string]any{"key": "czNjcjN0"}}, map[string]any{"data": map[string]any{"key": "bmV3"}})
	if len(d.out) != 1 || strings.Contains(d.out[0].String(), "czNjcjN0") || strings.Contains(d.out[0].String(), "bmV3") {
		t.Errorf("diff of a Secret = %v; want one redacted change", d.out)
	}
}

func TestDiffListsByName(t *testing.T) {
	a := []any{map[string]any{"name": "v1", "labels": "x"}, map[string]any{"name": "v2"}}
	b := []any{map[string]any{"name": "v2"}, map[string]any{"name": "v1", "labels": "y"}}
	d := &differ{}
	d.diff("subsets", a, b)
	if len(d.out) != 1 || d.out[0].Path != "subsets[1].labels" {
		t.Errorf("reordered named list diff = %v; want one change at subsets[1].labels", d.out)
	}
}
