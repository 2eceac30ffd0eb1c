package match

import (
	"regexp"
	"strings"
)

// StringKind is how a StringMatch compares: one of Envoy's StringMatcher forms.
type StringKind int

const (
	// The StringMatcher forms: exact, prefix, suffix, contains and safe_regex.
	StrExact StringKind = iota
	StrPrefix
	StrSuffix
	StrContains
	StrRegex
)

// StringMatch is a built envoy.type.matcher.v3.StringMatcher. Immutable.
type StringMatch struct {
	Kind StringKind
	// Value is the string to compare with; lowercased when IgnoreCase.
	Value string
	// Re is the compiled safe_regex, for StrRegex only (which ignores IgnoreCase, as Envoy does).
	Re *regexp.Regexp
	// IgnoreCase folds ASCII letters only, as Envoy's ignore_case.
	IgnoreCase bool
}

// LowerASCII lowercases the ASCII letters of s, as Envoy's case-insensitive
// matching does (strings.ToLower would also fold "\u212a", the Kelvin sign,
// to "k"), without allocating when there are none in upper case.
func LowerASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; 'A' <= c && c <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if c := b[j]; 'A' <= c && c <= 'Z' {
					b[j] = c + 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}

// equalFoldASCII is strings.EqualFold for ASCII letters only.
func equalFoldASCII(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// HasPrefix is strings.HasPrefix, folding ASCII letters when ignoreCase.
func HasPrefix(s, prefix string, ignoreCase bool) bool {
	if ignoreCase {
		return len(s) >= len(prefix) && equalFoldASCII(s[:len(prefix)], prefix)
	}
	return strings.HasPrefix(s, prefix)
}

// Matches reports whether v matches, as Envoy's StringMatcher does.
func (s *StringMatch) Matches(v string) bool {
	switch s.Kind {
	case StrExact:
		if s.IgnoreCase {
			return equalFoldASCII(v, s.Value)
		}
		return v == s.Value
	case StrPrefix:
		return HasPrefix(v, s.Value, s.IgnoreCase)
	case StrSuffix:
		if s.IgnoreCase {
			return len(v) >= len(s.Value) && equalFoldASCII(v[len(v)-len(s.Value):], s.Value)
		}
		return strings.HasSuffix(v, s.Value)
	case StrContains:
		if s.IgnoreCase {
			return strings.Contains(LowerASCII(v), s.Value)
		}
		return strings.Contains(v, s.Value)
	case StrRegex:
		return s.Re.MatchString(v)
	}
	return false
}
