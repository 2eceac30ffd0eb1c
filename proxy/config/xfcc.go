package config

import (
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/gitmesh/gitmesh/proxy/mtls"
)

func buildXFCC(hcm *hcmv3.HttpConnectionManager) mtls.XFCCConfig {
	d := hcm.GetSetCurrentClientCertDetails()
	return mtls.XFCCConfig{
		Mode:    hcm.GetForwardClientCertDetails(),
		Subject: d.GetSubject().GetValue(),
		URI:     d.GetUri(),
		DNS:     d.GetDns(),
		Cert:    d.GetCert(),
		Chain:   d.GetChain(),
	}
}
