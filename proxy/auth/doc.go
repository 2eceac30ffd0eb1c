// Package auth evaluates the proxy's access-control filters at request
// time: Envoy's HTTP and network RBAC (policies of permissions and
// principals) and JWT authentication (jwt_authn: token extraction,
// verification against a provider's JWKS, requirement trees). It only
// reads the values package config builds from xDS.
package auth
