package auth

// NetworkRBAC is a built envoy.extensions.filters.network.rbac.v3.RBAC.
type NetworkRBAC struct {
	StatPrefix string
	Rules      *RBACFilter
}
