package auth

// NetworkRBAC is a built envoy.extensions.filters.network.rbac.v3.RBAC.
type NetworkRBAC struct {
	// StatPrefix labels the filter's metrics; Rules are its policies,
	// evaluated once per connection.
	StatPrefix string
	Rules      *RBACFilter
}
