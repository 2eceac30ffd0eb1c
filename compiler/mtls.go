package compiler

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	rawbufferv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/raw_buffer/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	networking "istio.io/api/networking/v1"

	"github.com/gitmesh/gitmesh/api/nodemeta"
)

// This file builds the client side of mTLS as Istio's cluster builder
// does (pilot/pkg/networking/core/cluster_tls.go): auto mTLS
// (transport_socket_matches that originate ISTIO_MUTUAL to the endpoints
// marked tlsMode: istio and plain text to the others) when the
// DestinationRule sets no tls, and the DestinationRule's tls otherwise
// (DISABLE, SIMPLE, MUTUAL, ISTIO_MUTUAL). See docs/xds-conventions.md,
// "mTLS (compiler/)".

// Names Istio gives the workload identity secrets and the endpoint label
// and metadata of auto mTLS.
const (
	sdsDefaultName = "default" // the workload certificate and key
	sdsRootName    = "ROOTCA"  // the trusted roots

	tlsModeLabel            = "security.istio.io/tlsMode"
	tlsModeIstio            = "istio"
	tlsModeShort            = "tlsMode"
	transportSocketMatchKey = "envoy.transport_socket_match"

	// systemCABundle is what a SIMPLE or MUTUAL DestinationRule without
	// caCertificates verifies the server against: the system roots (Istio
	// reads the "system" bundle of its proxy image, this path on Debian).
	systemCABundle = "/etc/ssl/certs/ca-certificates.crt"
)

// istioALPN is what ISTIO_MUTUAL offers: Istio's in-mesh markers. The HTTP
// protocol inside the tunnel is the cluster's (h1, or h2c options).
var istioALPN = []string{"istio-peer-exchange", "istio"}

// meshExternal reports whether s is outside the mesh (a ServiceEntry with
// location MESH_EXTERNAL, the default): Istio never applies auto mTLS to
// it.
func (s *service) meshExternal() bool {
	return s.entry != nil && s.entry.Spec.GetLocation() == networking.ServiceEntry_MESH_EXTERNAL
}

// markMeshed returns eps for service port pt with meshed set on the
// instances clients originate ISTIO_MUTUAL to: those that run a sidecar
// (a connected gitmesh sidecar, or a pod labelled
// security.istio.io/tlsMode: istio) whose PeerAuthentication on that port
// is not DISABLE (Istio's EDS mtlsChecker).
func (b *builder) markMeshed(eps []endpoint, pt servicePort) []endpoint {
	out := make([]endpoint, len(eps))
	for i, ep := range eps {
		if ep.proxied || ep.labels[tlsModeLabel] == tlsModeIstio {
			port := ep.appPort
			if port == 0 {
				port = endpointPort(ep, pt)
			}
			ep.meshed = b.p.mtls.modeFor(ep.ns, ep.labels, port) != mtlsDisable
		}
		out[i] = ep
	}
	return out
}

// serviceSANs returns the SPIFFE ids of the service accounts of eps,
// sorted: the identities ISTIO_MUTUAL accepts from the service.
func (b *builder) serviceSANs(eps []endpoint) []string {
	var out []string
	for _, ep := range eps {
		if ep.sa != "" {
			out = append(out, b.p.mtls.spiffeID(ep.ns, ep.sa))
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// applyClusterTLS sets the transport socket of cluster c of service port
// pt (subset subsetName) from the DestinationRule's tls for it (nil when
// unset) or, without one, auto mTLS. sans are the service's identities.
// Proxyless gRPC clients get neither: grpc-go takes certificate providers,
// not SDS, and rejects transport_socket_matches.
func (b *builder) applyClusterTLS(c *clusterv3.Cluster, s *service, pt servicePort, subsetName string, tls *networking.ClientTLSSettings, sans []string) error {
	if b.class.Generator == nodemeta.GeneratorGRPC {
		return nil
	}
	sni := fmt.Sprintf("outbound_.%d_.%s_.%s", pt.number, subsetName, s.fqdn)
	if tls == nil {
		if !b.autoMTLS(s) {
			return nil
		}
		ts, err := istioMutualSocket(uriMatchers(sans), sni)
		if err != nil {
			return fmt.Errorf("building cluster %s: %w", c.GetName(), err)
		}
		raw, err := marshalAny(&rawbufferv3.RawBuffer{})
		if err != nil {
			return fmt.Errorf("building cluster %s: %w", c.GetName(), err)
		}
		c.TransportSocketMatches = []*clusterv3.Cluster_TransportSocketMatch{
			{
				Name:            "tlsMode-" + tlsModeIstio,
				Match:           transportSocketMatchMetadata(),
				TransportSocket: ts,
			},
			{
				Name:  "tlsMode-disabled",
				Match: &structpb.Struct{},
				TransportSocket: &corev3.TransportSocket{
					Name:       wellknown.TransportSocketRawBuffer,
					ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: raw},
				},
			},
		}
		return nil
	}
	var ts *corev3.TransportSocket
	var err error
	switch tls.GetMode() {
	case networking.ClientTLSSettings_DISABLE:
		return nil
	case networking.ClientTLSSettings_ISTIO_MUTUAL:
		matchers := uriMatchers(sans)
		if tls.GetSubjectAltNames() != nil {
			matchers = sanMatchers(tls.GetSubjectAltNames())
		}
		ts, err = istioMutualSocket(matchers, cmp.Or(tls.GetSni(), sni))
	case networking.ClientTLSSettings_SIMPLE, networking.ClientTLSSettings_MUTUAL:
		if tls.GetCredentialName() != "" {
			return nil // reported (GM0104); Istio's sidecars leave the cluster plain text
		}
		ts, err = userTLSSocket(tls, pt)
	}
	if err != nil {
		return fmt.Errorf("building cluster %s: %w", c.GetName(), err)
	}
	c.TransportSocket = ts
	return nil
}

// autoMTLS reports whether a cluster of s without DestinationRule tls
// originates mTLS to meshed endpoints: auto mTLS is on, s is in the mesh,
// and its namespace's PeerAuthentication does not disable mTLS (Istio's
// BestEffortInferServiceMTLSMode).
func (b *builder) autoMTLS(s *service) bool {
	return b.p.mtls.auto && !s.meshExternal() && b.p.mtls.namespaceMode(s.namespace) != mtlsDisable
}

// istioMutualSocket is the ISTIO_MUTUAL transport socket: the workload
// certificate (SDS "default"), peers verified against SDS "ROOTCA" and
// sans (any SPIFFE id chaining to the roots when empty), Istio's ALPN.
func istioMutualSocket(sans []*tlsv3.SubjectAltNameMatcher, sni string) (*corev3.TransportSocket, error) {
	return tlsSocket(&tlsv3.UpstreamTlsContext{
		CommonTlsContext: &tlsv3.CommonTlsContext{
			TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{sdsSecret(sdsDefaultName)},
			ValidationContextType: &tlsv3.CommonTlsContext_CombinedValidationContext{
				CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
					DefaultValidationContext:         &tlsv3.CertificateValidationContext{MatchTypedSubjectAltNames: sans},
					ValidationContextSdsSecretConfig: sdsSecret(sdsRootName),
				},
			},
			AlpnProtocols: istioALPN,
		},
		Sni: sni,
	})
}

// userTLSSocket is the transport socket of DestinationRule tls SIMPLE or
// MUTUAL: certificates from files (Istio serves the same files over SDS),
// the server verified against caCertificates (the system roots when
// unset) and subjectAltNames unless insecureSkipVerify, ALPN h2 on
// HTTP/2 ports.
func userTLSSocket(tls *networking.ClientTLSSettings, pt servicePort) (*corev3.TransportSocket, error) {
	common := &tlsv3.CommonTlsContext{}
	if tls.GetMode() == networking.ClientTLSSettings_MUTUAL {
		common.TlsCertificates = []*tlsv3.TlsCertificate{{
			CertificateChain: fileSource(tls.GetClientCertificate()),
			PrivateKey:       fileSource(tls.GetPrivateKey()),
		}}
	}
	if !tls.GetInsecureSkipVerify().GetValue() {
		common.ValidationContextType = &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
			TrustedCa:                 fileSource(cmp.Or(tls.GetCaCertificates(), systemCABundle)),
			MatchTypedSubjectAltNames: sanMatchers(tls.GetSubjectAltNames()),
		}}
	}
	if pt.protocol == protoHTTP2 || pt.protocol == protoGRPC {
		common.AlpnProtocols = []string{"h2"}
	}
	return tlsSocket(&tlsv3.UpstreamTlsContext{CommonTlsContext: common, Sni: tls.GetSni()})
}

// tlsSocket is the envoy.transport_sockets.tls transport socket of an
// Upstream- or DownstreamTlsContext.
func tlsSocket(ctx proto.Message) (*corev3.TransportSocket, error) {
	a, err := marshalAny(ctx)
	if err != nil {
		return nil, err
	}
	return &corev3.TransportSocket{
		Name:       wellknown.TransportSocketTLS,
		ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: a},
	}, nil
}

// sdsSecret references SDS secret name over ADS.
func sdsSecret(name string) *tlsv3.SdsSecretConfig {
	return &tlsv3.SdsSecretConfig{Name: name, SdsConfig: adsConfigSource()}
}

// uriMatchers matches each SPIFFE id exactly as a URI SAN.
func uriMatchers(ids []string) []*tlsv3.SubjectAltNameMatcher {
	var out []*tlsv3.SubjectAltNameMatcher
	for _, id := range ids {
		out = append(out, sanMatcher(tlsv3.SubjectAltNameMatcher_URI, id))
	}
	return out
}

// sanMatchers matches each of a DestinationRule's subjectAltNames exactly,
// as a URI SAN when it has a scheme (spiffe://...), an IP SAN when it is
// an IP address, else a DNS SAN. (Istio writes them to Envoy's deprecated
// untyped match_subject_alt_names, which tries every type.)
func sanMatchers(names []string) []*tlsv3.SubjectAltNameMatcher {
	var out []*tlsv3.SubjectAltNameMatcher
	for _, n := range names {
		typ := tlsv3.SubjectAltNameMatcher_DNS
		if strings.Contains(n, "://") {
			typ = tlsv3.SubjectAltNameMatcher_URI
		} else if _, err := netip.ParseAddr(n); err == nil {
			typ = tlsv3.SubjectAltNameMatcher_IP_ADDRESS
		}
		out = append(out, sanMatcher(typ, n))
	}
	return out
}

func sanMatcher(typ tlsv3.SubjectAltNameMatcher_SanType, v string) *tlsv3.SubjectAltNameMatcher {
	return &tlsv3.SubjectAltNameMatcher{
		SanType: typ,
		Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: v}},
	}
}

// transportSocketMatchMetadata is the metadata of a meshed LbEndpoint that
// selects the cluster's "tlsMode-istio" transport socket.
func transportSocketMatchMetadata() *structpb.Struct {
	return &structpb.Struct{Fields: map[string]*structpb.Value{tlsModeShort: structpb.NewStringValue(tlsModeIstio)}}
}
