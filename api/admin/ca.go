package admin

import "time"

// CAStatus is the mesh certificate authority as the admin API reports it
// (GET /api/v1/ca, and Status.CA) and `gitmesh status` prints it.
type CAStatus struct {
	// TrustDomain is the trust domain of every SPIFFE id the CA issues.
	TrustDomain string `json:"trustDomain"`
	// RootFingerprint is the SHA-256 of the signing root's DER, in hex.
	RootFingerprint string `json:"rootFingerprint"`
	// RootSubject is the signing root's subject.
	RootSubject string `json:"rootSubject"`
	// RootNotAfter is when the signing root expires.
	RootNotAfter time.Time `json:"rootNotAfter"`
	// TrustedRoots is the size of the trust bundle (ROOTCA): 1, or more
	// between a root rotation and its prune.
	TrustedRoots int `json:"trustedRoots"`
	// OperatorSupplied is true when the root comes from --ca-cert and
	// --ca-key: the controller then neither rotates nor prunes it.
	OperatorSupplied bool `json:"operatorSupplied,omitempty"`
	// Workloads counts the proxies holding a certificate the controller
	// issued.
	Workloads int `json:"workloads"`
	// OldRootWorkloads are the proxies whose certificate an earlier root
	// signed (they are reissued in a rotation's second phase).
	OldRootWorkloads []string `json:"oldRootWorkloads,omitempty"`
	// NextExpiry is the earliest expiry of a workload certificate.
	NextExpiry time.Time `json:"nextExpiry,omitzero"`
}

// CA operations (CARequest.Op).
const (
	// CAOpRotate generates a new root: phase 1 pushes the bundle of old
	// and new roots to every proxy and waits for their ACKs, phase 2
	// reissues every certificate from the new root.
	CAOpRotate = "rotate"
	// CAOpPrune drops the earlier roots from the bundle; refused while a
	// connected proxy holds a certificate of one, unless Force.
	CAOpPrune = "prune"
)

// CARequest asks the controller to rotate or prune its root
// (POST /api/v1/ca, bearer token).
type CARequest struct {
	Op    string `json:"op"`
	Force bool   `json:"force,omitempty"`
}

// CAResponse answers a CARequest.
type CAResponse struct {
	// Message says what was done, for a person.
	Message string `json:"message"`
	// Status is the CA after the operation.
	Status CAStatus `json:"status"`
	// BundleAcked are the proxies that ACKed the new trust bundle in a
	// rotation's first phase; BundlePending those that did not within
	// the bound (disconnected proxies get it when they reconnect).
	BundleAcked   []string `json:"bundleAcked,omitempty"`
	BundlePending []string `json:"bundlePending,omitempty"`
	// Reissued are the proxies given a certificate of the new root, and
	// ReissuePending those that did not ACK it within the bound.
	Reissued       []string `json:"reissued,omitempty"`
	ReissuePending []string `json:"reissuePending,omitempty"`
}
