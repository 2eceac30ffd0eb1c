package reconciler

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"sort"
	"time"

	"github.com/fluxcd/pkg/apis/meta"
	"github.com/fluxcd/pkg/runtime/conditions"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"

	"github.com/gitmesh/gitmesh/compiler"
	"github.com/gitmesh/gitmesh/sources"
	"github.com/gitmesh/gitmesh/xds"
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
	// Conditions holds Ready (and Reconciling while a pass runs), as Flux writes them.
	Conditions []metav1.Condition `json:"conditions"`
	// Diagnostics are the findings on the last attempted revision.
	Diagnostics compiler.Diagnostics `json:"diagnostics,omitempty"`
	// Proxies are the known proxies, sorted by id.
	Proxies []ProxyStatus `json:"proxies"`

	// Rollout is the in-flight rollout, or the last finished one.
	Rollout *Rollout `json:"rollout,omitempty"`
	// Hold is set while a manual rollback holds the fleet.
	Hold *Hold `json:"hold,omitempty"`

	// lastAttemptFailed is the failure of LastAttemptedRevision, not retried
	// until a new revision arrives.
	lastAttemptFailed error
	// lastErr is the last reconcile pass's error.
	lastErr error
	// nextID numbers rollouts when there is no Store.
	nextID uint64
}

// ProxyStatus is one proxy's sync state.
type ProxyStatus struct {
	ID        string `json:"id"`
	Service   string `json:"service"`
	Namespace string `json:"namespace"`
	Role      string `json:"role"`
	// Labels are the labels the proxy announced (wave selectors and
	// workloadSelectors match them).
	Labels    map[string]string `json:"labels,omitempty"`
	Connected bool              `json:"connected"`
	// State is SYNCED (runs what it was assigned), STALE (not yet) or NACKED
	// (rejected it, see NACK).
	State xds.SyncState `json:"state"`
	// Revision is the revision the proxy was assigned; it runs it when
	// State is SYNCED.
	Revision string `json:"revision,omitempty"`
	// Assigned and Acked are version labels: "<snapshot version>.<endpoints version>".
	Assigned string    `json:"assigned,omitempty"`
	Acked    string    `json:"acked,omitempty"`
	NACK     *xds.NACK `json:"nack,omitempty"`
}

// Status returns a copy of the current status with the fleet's proxies.
func (r *Reconciler) Status() Status {
	r.mu.Lock()
	s := r.status
	s.Conditions = append([]metav1.Condition(nil), r.status.Conditions...)
	s.Diagnostics = append(compiler.Diagnostics(nil), r.status.Diagnostics...)
	if r.rollout != nil {
		ro := *r.rollout
		ro.Waves = append([]WaveRecord(nil), ro.Waves...)
		ro.Updated = append([]string(nil), ro.Updated...)
		s.Rollout = &ro
	}
	if r.hold != nil {
		h := *r.hold
		s.Hold = &h
	}
	assigned := make(map[string]string, len(r.assigned))
	for k, v := range r.assigned {
		assigned[k] = v
	}
	r.mu.Unlock()
	for _, n := range r.cfg.Fleet.Nodes() {
		s.Proxies = append(s.Proxies, ProxyStatus{
			ID: n.Workload.ID, Service: n.Workload.Service, Namespace: n.Workload.Namespace, Role: n.Workload.Role,
			Labels: n.Workload.Labels, Connected: n.Connected, State: n.State, Revision: assigned[n.Workload.ID], Assigned: n.Assigned, Acked: n.Acked, NACK: n.NACK,
		})
	}
	sort.Slice(s.Proxies, func(i, j int) bool { return s.Proxies[i].ID < s.Proxies[j].ID })
	if s.Proxies == nil {
		s.Proxies = []ProxyStatus{}
	}
	return s
}

// Ready returns the Ready condition (nil before the first pass).
func (s Status) Ready() *metav1.Condition {
	return conditions.Get(s.object(), meta.ReadyCondition)
}

func (s *Status) init() {
	conditions.MarkUnknown(s.object(), meta.ReadyCondition, ReasonProgressing, "waiting for the first reconciliation")
}

func (s *Status) markReady(revision, version string) {
	if revision == "" {
		conditions.MarkUnknown(s.object(), meta.ReadyCondition, ReasonProgressing, "no revision applied yet")
		return
	}
	conditions.MarkTrue(s.object(), meta.ReadyCondition, ReasonSucceeded, "Applied revision %s (version %s)", revision, version)
}

func (s *Status) markProgressing(msg string) {
	conditions.MarkUnknown(s.object(), meta.ReadyCondition, ReasonProgressing, "%s", msg)
}

func (s *Status) markHeld(msg string) {
	conditions.MarkTrue(s.object(), meta.ReadyCondition, ReasonHeld, "%s", msg)
}

func (s *Status) markFailed(reason, msg string) {
	conditions.MarkFalse(s.object(), meta.ReadyCondition, reason, "%s", msg)
}

// object adapts s to fluxcd's conditions.Setter.
func (s *Status) object() *conditionsObject { return &conditionsObject{status: s} }

// conditionsObject is the smallest client.Object with conditions, so that
// fluxcd/pkg/runtime/conditions computes transitions exactly as Flux does.
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

// policyVersion hashes the objects' content in canonical form (JSON with
// sorted keys, comments dropped), ordered by kind/namespace/name.
func policyVersion(objs []sources.Object) string {
	type entry struct{ key, body string }
	entries := make([]entry, 0, len(objs))
	for _, o := range objs {
		body := string(o.YAML)
		if j, err := yaml.YAMLToJSON(o.YAML); err == nil {
			var v any
			if json.Unmarshal(j, &v) == nil {
				if c, err := json.Marshal(v); err == nil {
					body = string(c)
				}
			}
		}
		entries = append(entries, entry{o.Kind + "/" + o.Namespace + "/" + o.Name, body})
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].key < entries[j].key })
	h := sha256.New()
	for _, e := range entries {
		h.Write([]byte(e.key + "\x00" + e.body + "\x00"))
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}
