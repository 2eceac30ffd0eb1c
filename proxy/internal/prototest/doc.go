// Package prototest builds the xDS protos, certificates and tokens that the
// proxy's tests and its sub-packages' tests share: listeners, route
// configurations and clusters as Istio emits them, a test CA issuing SPIFFE
// workload certificates and SDS secrets, RBAC permissions and principals,
// and a JWT issuer with its JWKS. Test support only.
package prototest
