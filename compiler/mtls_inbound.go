package compiler

import (
	"fmt"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tlsinspectorv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// This file builds the server side of mTLS on a sidecar's inbound
// listener, as Istio's inbound listener does with the PeerAuthentication
// that applies to the workload (pilot/pkg/security/authn): a TLS inspector
// tells TLS from plain text, and the filter chains the mode allows serve
// them. STRICT: only the mTLS chain, so a plain-text connection matches no
// chain and is closed. PERMISSIVE (also without any PeerAuthentication):
// the mTLS chain and a plain-text chain. DISABLE: only plain text.

// Transport protocols the TLS inspector reports.
const (
	transportTLS = "tls"
	transportRaw = "raw_buffer"
)

// secureInbound rewrites the sidecar's inbound listener l, built with one
// plain-text HTTP filter chain, for the PeerAuthentication mode of the
// workload's application port appPort. Every change to the inbound HTTP
// connection manager must be made before: the mTLS chain is a copy.
func (b *builder) secureInbound(l *listenerv3.Listener, appPort uint32) error {
	if len(l.GetFilterChains()) != 1 {
		return fmt.Errorf("building listener %s: want one filter chain to secure, have %d", l.GetName(), len(l.GetFilterChains()))
	}
	mode := b.p.mtls.modeFor(b.namespace, b.class.Labels, appPort)
	inspector, err := marshalAny(&tlsinspectorv3.TlsInspector{})
	if err != nil {
		return fmt.Errorf("building listener %s: %w", l.GetName(), err)
	}
	l.ListenerFilters = append(l.ListenerFilters, &listenerv3.ListenerFilter{
		Name:       wellknown.TlsInspector,
		ConfigType: &listenerv3.ListenerFilter_TypedConfig{TypedConfig: inspector},
	})
	plain := l.GetFilterChains()[0]
	var chains []*listenerv3.FilterChain
	if mode != mtlsDisable {
		chain := proto.Clone(plain).(*listenerv3.FilterChain)
		chain.FilterChainMatch = &listenerv3.FilterChainMatch{TransportProtocol: transportTLS}
		ts, err := downstreamMTLSSocket()
		if err != nil {
			return fmt.Errorf("building listener %s: %w", l.GetName(), err)
		}
		chain.TransportSocket = ts
		err = setClientCertDetails(chain, hcmv3.HttpConnectionManager_APPEND_FORWARD,
			&hcmv3.HttpConnectionManager_SetCurrentClientCertDetails{Subject: wrapperspb.Bool(true), Uri: true, Dns: true})
		if err != nil {
			return fmt.Errorf("building listener %s: %w", l.GetName(), err)
		}
		chains = append(chains, chain)
	}
	if mode != mtlsStrict {
		if mode != mtlsDisable {
			plain.FilterChainMatch = &listenerv3.FilterChainMatch{TransportProtocol: transportRaw}
		}
		if err := setClientCertDetails(plain, hcmv3.HttpConnectionManager_SANITIZE, nil); err != nil {
			return fmt.Errorf("building listener %s: %w", l.GetName(), err)
		}
		chains = append(chains, plain)
	}
	l.FilterChains = chains
	return nil
}

// downstreamMTLSSocket terminates mTLS with the workload certificate (SDS
// "default"), requires a client certificate chaining to SDS "ROOTCA" (any
// SPIFFE id: authorization decides who may call), and offers h2 and
// http/1.1.
func downstreamMTLSSocket() (*corev3.TransportSocket, error) {
	return tlsSocket(&tlsv3.DownstreamTlsContext{
		RequireClientCertificate: wrapperspb.Bool(true),
		CommonTlsContext: &tlsv3.CommonTlsContext{
			TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{sdsSecret(sdsDefaultName)},
			ValidationContextType: &tlsv3.CommonTlsContext_CombinedValidationContext{
				CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
					DefaultValidationContext:         &tlsv3.CertificateValidationContext{},
					ValidationContextSdsSecretConfig: sdsSecret(sdsRootName),
				},
			},
			AlpnProtocols: []string{"h2", "http/1.1"},
		},
	})
}

// setClientCertDetails sets how the HTTP connection managers of chain
// treat X-Forwarded-Client-Cert: APPEND_FORWARD with the peer's subject,
// URI and DNS SANs behind mTLS (Istio's inbound), SANITIZE on plain text,
// where no client certificate vouches for the header.
func setClientCertDetails(chain *listenerv3.FilterChain, fcc hcmv3.HttpConnectionManager_ForwardClientCertDetails, set *hcmv3.HttpConnectionManager_SetCurrentClientCertDetails) error {
	for _, f := range chain.GetFilters() {
		if f.GetName() != wellknown.HTTPConnectionManager {
			continue
		}
		err := editHCM(f, func(hcm *hcmv3.HttpConnectionManager) {
			hcm.ForwardClientCertDetails = fcc
			hcm.SetCurrentClientCertDetails = set
		})
		if err != nil {
			return err
		}
	}
	return nil
}
