// Package match implements Envoy's string matchers (exact, prefix,
// suffix, contains, safe_regex; ignore_case folding ASCII letters only),
// which routing, RBAC, CORS and SAN verification share.
package match
