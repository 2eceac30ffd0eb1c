package hooks

import (
	"strings"
	"testing"
)

func TestParsePush(t *testing.T) {
	tests := []struct {
		name       string
		body       string
		wantBranch string
		wantOK     bool
		wantErr    bool
	}{
		{"github push", `{"ref":"refs/heads/main","before":"a","after":"b","repository":{"full_name":"o/r"}}`, "main", true, false},
		{"gitlab push", `{"object_kind":"push","ref":"refs/heads/release/1.x"}`, "release/1.x", true, false},
		{"tag", `{"ref":"refs/tags/v1"}`, "", false, false},
		{"no ref", `{"zen":"x"}`, "", false, false},
		{"empty body", ``, "", false, false},
		{"bare heads prefix", `{"ref":"refs/heads/"}`, "", false, false},
		{"ref not a string", `{"ref":1}`, "", false, true},
		{"not json", `ref=refs/heads/main`, "", false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := ParsePush([]byte(tt.body))
			if (err != nil) != tt.wantErr {
				t.Fatalf("got error %v; want error %v", err, tt.wantErr)
			}
			b, ok := p.Branch()
			if b != tt.wantBranch || ok != tt.wantOK {
				t.Errorf("got %q, %v; want %q, %v", b, ok, tt.wantBranch, tt.wantOK)
			}
		})
	}
}

func FuzzParsePush(f *testing.F) {
	for _, s := range []string{
		`{"ref":"refs/heads/main"}`, `{"ref":"refs/tags/v1"}`, `{}`, ``, `null`, `[]`, `{"ref":null}`,
		`{"ref":"refs/heads/\u00e9"}`, `{"ref":"refs/heads/a","ref":"refs/heads/b"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		p, err := ParsePush(body)
		if err != nil {
			if p != (Push{}) {
				t.Errorf("error %v with a non-zero Push %+v", err, p)
			}
			return
		}
		b, ok := p.Branch()
		if ok != (b != "") {
			t.Errorf("Branch() = %q, %v: ok must mean non-empty", b, ok)
		}
		if ok && "refs/heads/"+b != p.Ref {
			t.Errorf("Branch() = %q does not come from Ref %q", b, p.Ref)
		}
		if !ok && strings.HasPrefix(p.Ref, "refs/heads/") && len(p.Ref) > len("refs/heads/") {
			t.Errorf("Ref %q names a branch but Branch() says none", p.Ref)
		}
	})
}
