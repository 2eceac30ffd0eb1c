// Package admin holds the wire types of the controller's admin API
// (/api/v1/...): the status, proxies, rollouts and history the controller
// serves, the operations a person can ask of a rollout, and the event body
// posted to webhooks. The CLI, `gitmesh diff --live` and scripts decode
// them; the package imports nothing of the controller, so offline tools
// stay free of its gRPC and database dependencies.
package admin

import (
	"time"

	"github.com/fluxcd/pkg/apis/meta"
	"github.com/fluxcd/pkg/runtime/conditions"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/gitmesh/gitmesh/compiler"
)

// Status is the controller's state as the admin API reports it
// (GET /api/v1/status) and `gitmesh status` prints it.
type Status struct {
	// LastAppliedRevision is the revision proxies are given, e.g. "main@sha1:3f2c...".
	LastAppliedRevision string `json:"lastAppliedRevision,omitempty"`
	// LastAppliedVersion is a content hash of the applied policy: a commit
	// that changes only comments or formatting keeps it.
	LastAppliedVersion string `json:"lastAppliedVersion,omitempty"`
	// LastAttemptedRevision is the newest revision fetched.
	LastAttemptedRevision string `json:"lastAttemptedRevision,omitempty"`
	// LastReconcileTime is when the last pass started (UTC).
	LastReconcileTime time.Time `json:"lastReconcileTime,omitzero"`
	// Conditions holds Ready, as Flux writes it.
	Conditions []metav1.Condition `json:"conditions"`
	// Diagnostics are the findings on the last attempted revision.
	Diagnostics compiler.Diagnostics `json:"diagnostics,omitempty"`
	// Proxies are the known proxies, sorted by id.
	Proxies []ProxyStatus `json:"proxies"`

	// Rollout is the in-flight rollout, or the last finished one.
	Rollout *Rollout `json:"rollout,omitempty"`
	// Hold is set while a manual rollback holds the fleet.
	Hold *Hold `json:"hold,omitempty"`

	// CA is the mesh certificate authority; nil when the controller runs
	// none.
	CA *CAStatus `json:"ca,omitempty"`
}

// Ready returns the Ready condition (nil before the first pass).
func (s Status) Ready() *metav1.Condition {
	return conditions.Get(s.Object(), meta.ReadyCondition)
}

// Object adapts s to fluxcd's conditions.Setter, so that
// fluxcd/pkg/runtime/conditions reads and computes its conditions (and
// their transitions) exactly as Flux does.
func (s *Status) Object() conditions.Setter { return &conditionsObject{status: s} }

// conditionsObject is the smallest client.Object with conditions.
type conditionsObject struct {
	metav1.TypeMeta
	metav1.ObjectMeta
	status *Status
}

func (o *conditionsObject) GetConditions() []metav1.Condition  { return o.status.Conditions }
func (o *conditionsObject) SetConditions(c []metav1.Condition) { o.status.Conditions = c }
func (o *conditionsObject) DeepCopyObject() runtime.Object {
	cp := *o.status
	cp.Conditions = append([]metav1.Condition(nil), o.status.Conditions...)
	return &conditionsObject{TypeMeta: o.TypeMeta, ObjectMeta: *o.ObjectMeta.DeepCopy(), status: &cp}
}

var _ conditions.Setter = (*conditionsObject)(nil)

// SyncState says whether a proxy runs the version assigned to it.
type SyncState string

// Sync states, as `gitmesh status` prints them.
const (
	// StateSynced: the proxy ACKed every resource type of its assigned version.
	StateSynced SyncState = "SYNCED"
	// StateStale: the proxy does not (yet) run its assigned version, or has
	// none assigned.
	StateStale SyncState = "STALE"
	// StateNacked: the proxy rejected its assigned version (see ProxyStatus.NACK).
	StateNacked SyncState = "NACKED"
)

// ProxyStatus is one proxy's sync state.
type ProxyStatus struct {
	ID        string `json:"id"`
	Service   string `json:"service"`
	Namespace string `json:"namespace"`
	Role      string `json:"role"`
	// Labels are the labels the proxy announced (wave selectors and
	// workloadSelectors match them).
	Labels map[string]string `json:"labels,omitempty"`
	// Pod is the proxy's pod (in Namespace) in the Kubernetes mode, checked
	// against the Pod object before it was served; "" elsewhere.
	Pod       string `json:"pod,omitempty"`
	Connected bool   `json:"connected"`
	// State is SYNCED (runs what it was assigned), STALE (not yet) or NACKED
	// (rejected it, see NACK).
	State SyncState `json:"state"`
	// Revision is the revision the proxy was assigned; it runs it when
	// State is SYNCED.
	Revision string `json:"revision,omitempty"`
	// Assigned and Acked are version labels: "<snapshot version>.<endpoints version>".
	Assigned string `json:"assigned,omitempty"`
	Acked    string `json:"acked,omitempty"`
	NACK     *NACK  `json:"nack,omitempty"`
}

// NACK is a proxy's rejection of a version.
type NACK struct {
	// Version is the rejected version label.
	Version string
	// TypeURL is the rejected resource type.
	TypeURL string
	// Error is the error_detail message the proxy sent.
	Error string
	// At is when the NACK arrived.
	At time.Time
}

// Hold is a manual rollback's hold: the controller serves Revision and
// does not roll out Head again until a new commit arrives or resume.
type Hold struct {
	Revision string    `json:"revision"`
	Head     string    `json:"head,omitempty"`
	Since    time.Time `json:"since"`
}
