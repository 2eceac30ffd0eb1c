package compiler

import (
	"net/netip"
	"strings"

	"github.com/gitmesh/gitmesh/sources"
)

// clusterLocalSuffix ends the FQDN of a host written as a short name.
const clusterLocalSuffix = ".svc.cluster.local"

// resolveHost returns the FQDN of host as written in an object of
// namespace ns: a name without a dot ("reviews") means
// "reviews.<ns>.svc.cluster.local" (docs/xds-conventions.md); anything else
// is already fully qualified.
func resolveHost(host, ns string) string {
	if !strings.Contains(host, ".") {
		return host + "." + ns + clusterLocalSuffix
	}
	return host
}

// splitLocal splits "<name>.<ns>.svc.cluster.local" into name and ns.
func splitLocal(fqdn string) (name, ns string, ok bool) {
	rest, found := strings.CutSuffix(fqdn, clusterLocalSuffix)
	if !found {
		return "", "", false
	}
	name, ns, ok = strings.Cut(rest, ".")
	if !ok || name == "" || ns == "" || strings.Contains(ns, ".") {
		return "", "", false
	}
	return name, ns, true
}

// isDNSName reports whether s is a lower-case RFC 1123 host name
// ("reviews", "api.example.com").
func isDNSName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if !isDNSLabel(label) {
			return false
		}
	}
	return true
}

// isDNSLabel reports whether s is a lower-case RFC 1123 label: 1-63
// characters of a-z, 0-9 and '-', starting and ending alphanumeric.
func isDNSLabel(s string) bool {
	if s == "" || len(s) > 63 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := c >= 'a' && c <= 'z' || c >= '0' && c <= '9'
		if !alnum && (c != '-' || i == 0 || i == len(s)-1) {
			return false
		}
	}
	return true
}

// isIP reports whether s is an IPv4 or IPv6 address without a zone.
func isIP(s string) bool {
	a, err := netip.ParseAddr(s)
	return err == nil && a.Zone() == ""
}

// isHeaderName reports whether s is a valid HTTP header name (an RFC 7230
// token).
func isHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// labelsMatch reports whether labels has every key/value of selector.
func labelsMatch(selector, labels map[string]string) bool {
	for k, v := range selector {
		if lv, ok := labels[k]; !ok || lv != v {
			return false
		}
	}
	return true
}

// isPortName reports whether s is a valid port name: a DNS label, upper
// case allowed (Istio's ValidatePortName).
func isPortName(s string) bool {
	return isDNSLabel(strings.ToLower(s))
}

// isLabelKey reports whether s is a Kubernetes label key: an optional DNS
// subdomain prefix and "/", then a name of at most 63 characters of
// alphanumerics, '-', '_' and '.', starting and ending alphanumeric.
func isLabelKey(s string) bool {
	name := s
	if prefix, rest, ok := strings.Cut(s, "/"); ok {
		if len(prefix) > 253 || !isDNSName(strings.ToLower(prefix)) {
			return false
		}
		name = rest
	}
	return name != "" && len(name) <= 63 && isQualifiedName(name)
}

// isLabelValue reports whether s is a Kubernetes label value: empty, or
// at most 63 characters of alphanumerics, '-', '_' and '.', starting and
// ending alphanumeric.
func isLabelValue(s string) bool {
	return s == "" || (len(s) <= 63 && isQualifiedName(s))
}

func isQualifiedName(s string) bool {
	alnum := func(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' }
	if !alnum(s[0]) || !alnum(s[len(s)-1]) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !alnum(c) && c != '-' && c != '_' && c != '.' {
			return false
		}
	}
	return true
}

// hasField reports whether obj's document sets the field at path (as
// written, even when decoding left it out).
func hasField(obj *sources.Object, path string) bool {
	_, ok := obj.Lines[path]
	return ok
}
