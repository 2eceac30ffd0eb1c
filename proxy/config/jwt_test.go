package config_test

import (
	"testing"

	"github.com/gitmesh/gitmesh/proxy/config"
	"github.com/gitmesh/gitmesh/proxy/internal/prototest"
)

func TestJWTFilterRejectsUnsupportedFields(t *testing.T) {
	good := prototest.NewIssuer(t, "iss", "k1")
	p := prototest.JWTProviderFor(good)
	p.RequireExpiration = true
	_, fe := config.BuildJWTAuthn(prototest.IstioJWTConfig(t, p))
	if fe == nil || fe.Field != ".providers[origins-0]" {
		t.Fatalf("got %+v; want an error at .providers[origins-0]", fe)
	}
}
