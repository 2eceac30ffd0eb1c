package auth

import (
	"net/netip"

	"github.com/gitmesh/gitmesh/proxy/match"
	"github.com/gitmesh/gitmesh/proxy/routing"
)

// RBACAction is what a matching RBAC policy does.
type RBACAction int

const (
	// The RBAC actions: ALLOW lets only matching requests through, DENY
	// blocks matching ones, LOG only records the match.
	RBACAllow RBACAction = iota
	RBACDeny
	RBACLog
)

// RBACFilter is a built envoy.extensions.filters.http.rbac.v3.RBAC. A
// filter without rules (only shadow_rules, which the proxy ignores)
// enforces nothing.
type RBACFilter struct {
	// Enforce is false for a filter without rules, which allows everything.
	Enforce  bool
	Action   RBACAction
	Policies []RBACPolicy // sorted by name, as Envoy's std::map iterates them
}

// RBACPolicy is one named policy: it matches when any permission and any
// principal match.
type RBACPolicy struct {
	Name        string
	Permissions []RBACRule
	Principals  []RBACRule
}

// RuleKind is the kind of one RBAC matcher.
type RuleKind int

const (
	// The matcher kinds, named after the Permission and Principal fields.
	RuleAny RuleKind = iota
	RuleAnd
	RuleOr
	RuleNot
	RuleHeader
	RuleURLPath
	RuleMetadata
	RuleDestIP
	RuleDestPort
	RuleDestPortRange
	RuleSNI
	RuleAuthenticated
	RuleDirectRemoteIP // direct_remote_ip and the deprecated source_ip
	RuleRemoteIP
)

// RBACRule is a built rbac.v3.Permission or rbac.v3.Principal. As in
// Envoy (filters/common/rbac/matchers.h), both protos build into the same
// tree of matchers: and/or/not, header, url_path and metadata mean the
// same on either side; the other kinds come from one side only.
type RBACRule struct {
	Kind     RuleKind
	Children []RBACRule         // and, or, not (one)
	Str      *match.StringMatch // url_path.path, requested_server_name, authenticated.principal_name (nil: any)
	Header   *routing.HeaderMatch
	Metadata *routing.MetadataMatcher
	// CIDR is the prefix of the IP matchers (destination_ip,
	// direct_remote_ip, remote_ip).
	CIDR    netip.Prefix
	Port    uint32 // destination_port, or the range start
	PortEnd uint32 // range end (exclusive)
}
