package config

import (
	"github.com/gitmesh/gitmesh/proxy/auth"
	"google.golang.org/protobuf/types/known/anypb"
)

// buildAuthFilter builds the jwt_authn or rbac filter named name; ok is
// false for other names.
func buildAuthFilter(name string, tc *anypb.Any) (auth.AuthFilter, bool, *fieldError) {
	if name != JWTAuthnFilterName && name != RBACFilterName {
		return auth.AuthFilter{}, false, nil
	}
	if tc == nil {
		return auth.AuthFilter{}, true, fieldErr(".typed_config", "missing")
	}
	var f auth.AuthFilter
	var fe *fieldError
	if name == JWTAuthnFilterName {
		f.JWT, fe = BuildJWTAuthn(tc)
	} else {
		f.RBAC, fe = BuildRBAC(tc)
	}
	if fe != nil {
		fe.Field = ".typed_config" + fe.Field
		return auth.AuthFilter{}, true, fe
	}
	return f, true, nil
}
