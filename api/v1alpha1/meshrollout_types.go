package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// KindMeshRollout is the kind of MeshRollout.
const KindMeshRollout = "MeshRollout"

// MeshRollout is the rollout state of one gitmesh controller installation
// in a Kubernetes cluster (`gitmesh controller --kubernetes`): one object
// per installation, in the controller's namespace, created by the
// controller. Its status is written by the replica that leads; people read
// it with `kubectl get meshrollouts` (the columns of `flux get`) and its
// Events with `kubectl describe`. Policy still comes from Git only: the
// spec holds retention settings, nothing about the mesh.
//
// +kubebuilder:object:generate=true
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=mr,categories=gitmesh
// +kubebuilder:printcolumn:name="Revision",type=string,JSONPath=`.status.lastAppliedRevision`
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Wave",type=string,JSONPath=`.status.wave`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Status",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].message`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type MeshRollout struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec holds retention settings.
	Spec MeshRolloutSpec `json:"spec,omitempty"`
	// Status is written by the leading controller replica.
	Status MeshRolloutStatus `json:"status,omitempty"`
}

// Defaults of MeshRolloutSpec.
const (
	DefaultHistoryLimit  = 20
	DefaultRevisionLimit = 10
)

// MeshRolloutSpec holds how much state the controller keeps.
//
// +kubebuilder:object:generate=true
type MeshRolloutSpec struct {
	// HistoryLimit is how many rollouts the history keeps (status.history
	// and `gitmesh history`), newest first. Default 20.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=200
	// +optional
	HistoryLimit int32 `json:"historyLimit,omitempty"`
	// RevisionLimit is how many promoted revisions are kept, with their
	// objects, for `gitmesh rollback --to`. Each is a Secret owned by this
	// object. Default 10.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100
	// +optional
	RevisionLimit int32 `json:"revisionLimit,omitempty"`
}

// EffectiveHistoryLimit is HistoryLimit or its default.
func (s MeshRolloutSpec) EffectiveHistoryLimit() int {
	if s.HistoryLimit > 0 {
		return int(s.HistoryLimit)
	}
	return DefaultHistoryLimit
}

// EffectiveRevisionLimit is RevisionLimit or its default.
func (s MeshRolloutSpec) EffectiveRevisionLimit() int {
	if s.RevisionLimit > 0 {
		return int(s.RevisionLimit)
	}
	return DefaultRevisionLimit
}

// MeshRolloutStatus is the controller's state as people read it. Records
// that carry secrets (the RolloutPolicy's webhook URLs and Prometheus
// credentials, the revisions' objects) live in Secrets owned by the
// MeshRollout; the status shows them redacted or by name.
//
// +kubebuilder:object:generate=true
type MeshRolloutStatus struct {
	// ObservedGeneration is the generation of the spec last acted on.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Conditions are Flux-style: Ready (True when the last good revision
	// serves and nothing failed since; False with FetchFailed,
	// BuildFailed, ValidationFailed, CompileFailed or RolloutFailed;
	// Unknown while a rollout progresses), Reconciling (True while a
	// rollout is in flight) and Stalled (True when a revision failed in a
	// way only a new commit or `gitmesh resume` fixes).
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// LastAppliedRevision is the revision every proxy not in a rollout
	// runs, e.g. main@sha1:1a2b3c.
	// +optional
	LastAppliedRevision string `json:"lastAppliedRevision,omitempty"`
	// LastAttemptedRevision is the newest revision the controller tried.
	// +optional
	LastAttemptedRevision string `json:"lastAttemptedRevision,omitempty"`
	// Phase is the phase of the in-flight rollout, or of the last one:
	// Pending, Progressing, Baking, Paused, Promoted, RolledBack, Failed,
	// Aborted, Superseded, ManualRollback or Refused (docs/rollouts.md).
	// +optional
	Phase string `json:"phase,omitempty"`
	// Wave is the in-flight rollout's wave as "<n>/<total> <name>",
	// empty when no rollout is in flight.
	// +optional
	Wave string `json:"wave,omitempty"`
	// Leader is the identity of the controller replica that leads.
	// +optional
	Leader string `json:"leader,omitempty"`
	// Rollout is the in-flight rollout, or the last one.
	// +optional
	Rollout *RolloutRecord `json:"rollout,omitempty"`
	// History lists the newest rollouts, newest first (spec.historyLimit).
	// +optional
	History []RolloutRecord `json:"history,omitempty"`
	// GoodRevisions lists the promoted revisions kept, newest first
	// (spec.revisionLimit); the first is the last good one.
	// +optional
	GoodRevisions []RevisionRecord `json:"goodRevisions,omitempty"`
	// Hold is set while a manual rollback holds the fleet.
	// +optional
	Hold *HoldRecord `json:"hold,omitempty"`
	// Failure is the revision whose rollout failed; it is not rolled out
	// again until a new commit or `gitmesh resume`.
	// +optional
	Failure *FailureRecord `json:"failure,omitempty"`
	// StateSecret names the Secret holding the full records (with the
	// RolloutPolicy each rollout ran under), from which a replica that
	// takes over resumes.
	// +optional
	StateSecret string `json:"stateSecret,omitempty"`
}

// RolloutRecord is one rollout, as `gitmesh history` shows it.
//
// +kubebuilder:object:generate=true
type RolloutRecord struct {
	// ID numbers rollouts from 1 in the order they started.
	ID int64 `json:"id"`
	// Revision is the revision rolled out.
	Revision string `json:"revision"`
	// Version is the compiled configuration's version.
	// +optional
	Version string `json:"version,omitempty"`
	// PreviousRevision is the revision it replaced.
	// +optional
	PreviousRevision string `json:"previousRevision,omitempty"`
	// Trigger says what started it: initial, commit, rollback, resume...
	// +optional
	Trigger string `json:"trigger,omitempty"`
	// Phase is where it is or how it ended.
	Phase string `json:"phase"`
	// Reason says why it ended so, e.g. which proxy NACKed.
	// +optional
	Reason string `json:"reason,omitempty"`
	// Wave is the wave it reached, as "<n>/<total> <name>".
	// +optional
	Wave string `json:"wave,omitempty"`
	// Updated is how many proxies run its revision.
	// +optional
	Updated int32 `json:"updated,omitempty"`
	// StartedAt and FinishedAt bound it.
	StartedAt metav1.Time `json:"startedAt"`
	// +optional
	FinishedAt *metav1.Time `json:"finishedAt,omitempty"`
}

// RevisionRecord is a kept revision.
//
// +kubebuilder:object:generate=true
type RevisionRecord struct {
	// Revision is e.g. main@sha1:1a2b3c.
	Revision string `json:"revision"`
	// Version is its compiled configuration's version.
	// +optional
	Version string `json:"version,omitempty"`
	// AppliedAt is when it was promoted.
	// +optional
	AppliedAt *metav1.Time `json:"appliedAt,omitempty"`
	// Secret names the Secret holding its objects (gzipped YAML).
	Secret string `json:"secret"`
}

// HoldRecord is a manual rollback's hold.
//
// +kubebuilder:object:generate=true
type HoldRecord struct {
	// Revision is the revision the fleet is held at.
	Revision string `json:"revision"`
	// Head is the revision that is not rolled out again until a new commit.
	// +optional
	Head string `json:"head,omitempty"`
	// Since is when the hold started.
	Since metav1.Time `json:"since"`
}

// FailureRecord is a revision whose rollout failed.
//
// +kubebuilder:object:generate=true
type FailureRecord struct {
	// Revision is the failed revision.
	Revision string `json:"revision"`
	// Reason is the Ready condition's reason, e.g. RolloutFailed.
	Reason string `json:"reason"`
	// Message says why.
	// +optional
	Message string `json:"message,omitempty"`
	// Since is when it failed.
	Since metav1.Time `json:"since"`
}

// MeshRolloutList is a list of MeshRollouts.
//
// +kubebuilder:object:generate=true
// +kubebuilder:object:root=true
type MeshRolloutList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	// Items are the MeshRollouts.
	Items []MeshRollout `json:"items"`
}

// GetConditions returns the status conditions (fluxcd/pkg/runtime/conditions.Getter).
func (in *MeshRollout) GetConditions() []metav1.Condition { return in.Status.Conditions }

// SetConditions sets the status conditions (fluxcd/pkg/runtime/conditions.Setter).
func (in *MeshRollout) SetConditions(c []metav1.Condition) { in.Status.Conditions = c }
