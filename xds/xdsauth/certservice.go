package xdsauth

import (
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"
	securityv1alpha1 "istio.io/api/security/v1alpha1"

	"github.com/gitmesh/gitmesh/api/nodemeta"
	"github.com/gitmesh/gitmesh/ca"
	"github.com/gitmesh/gitmesh/xds"
)

// Keys of the metadata Struct of a CreateCertificate request in which a
// join-token caller declares who it is. NAMESPACE, SERVICE_ACCOUNT, NAME
// and LABELS are the node metadata keys (api/nodemeta); LABELS is a
// Struct of strings.
const (
	MetaNodeID = "NODE_ID"
)

// CertService is Istio's certificate service
// (istio.io/api/security/v1alpha1 IstioCertificateService) for nodes: it
// signs a caller's CSR with the identity its credential binds.
//
// The caller authenticates with "authorization: Bearer <token>" metadata,
// tried against each Authenticator in turn (the join token, a Kubernetes
// ServiceAccount token), or, without one, with the verified client
// certificate of its TLS connection (a renewal: the new certificate binds
// what the current one does).
type CertService struct {
	securityv1alpha1.UnimplementedIstioCertificateServiceServer

	authority Authorities
	auth      []Authenticator
	maxTTL    time.Duration
	log       *slog.Logger
}

// NewCertService returns a CertService that issues certificates of at most
// maxTTL (ca.DefaultCertTTL when zero or less) from authority.
func NewCertService(authority Authorities, maxTTL time.Duration, log *slog.Logger, auth ...Authenticator) *CertService {
	if maxTTL <= 0 {
		maxTTL = ca.DefaultCertTTL
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &CertService{authority: authority, auth: auth, maxTTL: maxTTL, log: log}
}

// Register registers the service on s (xds.WithServices).
func (c *CertService) Register(s grpc.ServiceRegistrar) {
	securityv1alpha1.RegisterIstioCertificateServiceServer(s, c)
}

// CreateCertificate authenticates the caller and signs its CSR.
func (c *CertService) CreateCertificate(ctx context.Context, req *securityv1alpha1.IstioCertificateRequest) (*securityv1alpha1.IstioCertificateResponse, error) {
	p := xds.PeerOf(ctx)
	b, how, err := c.authenticate(ctx, p, req.GetMetadata())
	if err != nil {
		c.log.Warn("refusing certificate request", "peer", p.AddrString(), "error", err)
		return nil, err
	}
	leaf, err := b.Leaf()
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	leaf.TTL = c.maxTTL
	if d := time.Duration(req.GetValidityDuration()) * time.Second; d > 0 && d < leaf.TTL {
		leaf.TTL = d
	}
	cert, err := c.authority.Authority().SignCSR([]byte(req.GetCsr()), leaf)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "signing the certificate request of node %s: %v", b.NodeID, err)
	}
	c.log.Info("issued node certificate", "node_id", b.NodeID, "identity", b.ID.String(), "pod", b.Pod,
		"credential", how, "not_after", cert.Leaf.NotAfter, "peer", p.AddrString())
	return &securityv1alpha1.IstioCertificateResponse{CertChain: splitPEM(cert.ChainPEM)}, nil
}

// authenticate returns the Binding to issue and how the caller proved it.
func (c *CertService) authenticate(ctx context.Context, p xds.Peer, meta *structpb.Struct) (Binding, string, error) {
	if tok, ok := bearer(ctx); ok {
		declared, err := declaredBinding(meta, c.authority.Authority().TrustDomain())
		if err != nil {
			return Binding{}, "", status.Errorf(codes.InvalidArgument, "certificate request: %v", err)
		}
		for _, a := range c.auth {
			b, err := a.Authenticate(ctx, tok, declared)
			if errors.Is(err, ErrUnknownToken) {
				continue
			}
			if err != nil {
				return Binding{}, "", status.Errorf(codes.PermissionDenied, "certificate request: %v", err)
			}
			if err := b.ID.Validate(); err != nil {
				return Binding{}, "", status.Errorf(codes.InvalidArgument, "certificate request: %v", err)
			}
			return b, fmt.Sprintf("%T", a), nil
		}
		return Binding{}, "", status.Error(codes.Unauthenticated, "certificate request: the bearer token is neither the join token nor a valid ServiceAccount token for audience "+Audience)
	}
	if len(p.Chain) == 0 {
		return Binding{}, "", status.Error(codes.Unauthenticated, "certificate request: no credential (send authorization: Bearer <join token> or present the current client certificate)")
	}
	if _, err := c.authority.Authority().Verify(p.Chain); err != nil {
		return Binding{}, "", status.Errorf(codes.Unauthenticated, "certificate request: %v", err)
	}
	b, err := BindingOf(p.Chain[0])
	if err != nil {
		return Binding{}, "", status.Errorf(codes.PermissionDenied, "certificate request: %v", err)
	}
	return b, "certificate", nil
}

// declaredBinding reads what a caller declares in the request metadata.
func declaredBinding(meta *structpb.Struct, trustDomain string) (Binding, error) {
	f := meta.GetFields()
	str := func(k string) string { return f[k].GetStringValue() }
	b := Binding{
		NodeID: str(MetaNodeID),
		ID:     ca.WorkloadIdentity(trustDomain, str(nodemeta.KeyNamespace), str(nodemeta.KeyServiceAccount)),
		Pod:    str(nodemeta.KeyPodName),
	}
	if b.NodeID == "" {
		return Binding{}, fmt.Errorf("metadata %s (the node id) is required", MetaNodeID)
	}
	if l := f[nodemeta.KeyLabels].GetStructValue(); l != nil {
		b.Labels = map[string]string{}
		for k, v := range l.GetFields() {
			s, ok := v.GetKind().(*structpb.Value_StringValue)
			if !ok {
				return Binding{}, fmt.Errorf("metadata %s.%s is not a string", nodemeta.KeyLabels, k)
			}
			b.Labels[k] = s.StringValue
		}
	}
	return b, nil
}

// DeclaredMetadata is the request metadata in which a join-token caller
// declares b.
func DeclaredMetadata(b Binding) *structpb.Struct {
	f := map[string]*structpb.Value{
		MetaNodeID:                 structpb.NewStringValue(b.NodeID),
		nodemeta.KeyNamespace:      structpb.NewStringValue(b.ID.Namespace),
		nodemeta.KeyServiceAccount: structpb.NewStringValue(b.ID.ServiceAccount),
	}
	if b.Pod != "" {
		f[nodemeta.KeyPodName] = structpb.NewStringValue(b.Pod)
	}
	if len(b.Labels) > 0 {
		l := &structpb.Struct{Fields: map[string]*structpb.Value{}}
		for k, v := range b.Labels {
			l.Fields[k] = structpb.NewStringValue(v)
		}
		f[nodemeta.KeyLabels] = structpb.NewStructValue(l)
	}
	return &structpb.Struct{Fields: f}
}

// splitPEM returns each PEM block of chain on its own, as cert_chain
// carries them (leaf first, root last).
func splitPEM(chain []byte) []string {
	var out []string
	for rest := chain; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return out
		}
		out = append(out, string(pem.EncodeToMemory(b)))
	}
}
