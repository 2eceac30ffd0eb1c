package auth

// AuthFilter is an access-control HTTP filter of a connection manager:
// jwt_authn or rbac. They run in their configured order before the route
// is selected, so that JWT claims reach RBAC and route matches
// (dynamic_metadata), as Envoy with clear_route_cache.
type AuthFilter struct {
	// JWT or RBAC is set: the filter is jwt_authn or rbac.
	JWT  *JWTFilter
	RBAC *RBACFilter
}

// RBACDeniedBody is Envoy's RBAC filter's local reply body.
const RBACDeniedBody = "RBAC: access denied"
