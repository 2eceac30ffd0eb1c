package xds

import (
	"fmt"
	"testing"
)

// TestNameLists checks that equal lists of names share one copy, and that
// different, short or evicted lists are kept as they are.
func TestNameLists(t *testing.T) {
	list := func(n int, prefix string) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = fmt.Sprintf("%s-%03d", prefix, i) // a new string each time
		}
		return out
	}
	same := func(a, b []string) bool { return len(a) > 0 && len(b) > 0 && &a[0] == &b[0] }

	l := newNameLists()
	first := l.intern(list(100, "cluster"))
	tests := []struct {
		name  string
		names []string
		share bool
	}{
		{"an equal list", list(100, "cluster"), true},
		{"a longer list", list(101, "cluster"), false},
		{"other names", list(100, "route"), false},
		{"the same names in another order", reversed(list(100, "cluster")), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := l.intern(tt.names)
			if fmt.Sprint(got) != fmt.Sprint(tt.names) {
				t.Fatalf("intern changed the list: %v", got)
			}
			if same(got, first) != tt.share {
				t.Errorf("shares the first list = %t; want %t", same(got, first), tt.share)
			}
		})
	}
	short := list(minInternedNames-1, "cluster")
	if got := l.intern(short); !same(got, short) {
		t.Error("a short list was replaced")
	}
	for i := range maxInternedLists {
		l.intern(list(minInternedNames, fmt.Sprint("fill", i)))
	}
	if got := l.intern(list(100, "cluster")); same(got, first) {
		t.Error("still sharing after the table was full and started again")
	}
}

func reversed(s []string) []string {
	for i, j := 0, len(s)-1; i < j; i, j = i+1, j-1 {
		s[i], s[j] = s[j], s[i]
	}
	return s
}
