package proxy

import "github.com/gitmesh/gitmesh/proxy/internal/prototest"

// The builders the proxy's tests share with the sub-packages' tests, under
// the names the rig's tests use.
var (
	anyOf              = prototest.Any
	autoMTLS           = prototest.AutoMTLS
	certSecret         = prototest.CertSecret
	cla                = prototest.CLA
	claimMatcher       = prototest.ClaimMatcher
	exactHeader        = prototest.ExactHeader
	hcmListener        = prototest.HCMListener
	idAnd              = prototest.IDAnd
	idAny              = prototest.IDAny
	idClaim            = prototest.IDClaim
	idIP               = prototest.IDIP
	idOr               = prototest.IDOr
	idPrincipal        = prototest.IDPrincipal
	inline             = prototest.Inline
	inlineCluster      = prototest.InlineCluster
	istioClusterMeta   = prototest.IstioClusterMeta
	istioJWTConfig     = prototest.IstioJWTConfig
	jwtProviderFor     = prototest.JWTProviderFor
	keyPair            = prototest.KeyPair
	meshValidation     = prototest.MeshValidation
	newTestCA          = prototest.NewCA
	newTestIssuer      = prototest.NewIssuer
	pAnd               = prototest.PAnd
	pAny               = prototest.PAny
	pMethod            = prototest.PMethod
	pOr                = prototest.POr
	pPathPrefix        = prototest.PPathPrefix
	pPort              = prototest.PPort
	passthroughCluster = prototest.PassthroughCluster
	policy             = prototest.Policy
	prefixMatch        = prototest.PrefixMatch
	rbacConfig         = prototest.RBACConfig
	rootSecret         = prototest.RootSecret
	routeConfig        = prototest.RouteConfig
	sdsRef             = prototest.SDSRef
	selfSigned         = prototest.SelfSigned
	socketAddr         = prototest.SocketAddr
	spiffeID           = prototest.SPIFFEID
	staticCluster      = prototest.StaticCluster
	strMatch           = prototest.StrMatch
	toCluster          = prototest.ToCluster
	toWeighted         = prototest.ToWeighted
	vhost              = prototest.VirtualHost
)

type (
	ep     = prototest.Endpoint
	testCA = prototest.CA
)
