package reconciler

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"maps"
	"slices"
	"sort"

	"github.com/fluxcd/pkg/apis/meta"
	"github.com/fluxcd/pkg/runtime/conditions"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/gitmesh/gitmesh/api/admin"
	"github.com/gitmesh/gitmesh/compiler"
	"github.com/gitmesh/gitmesh/internal/redact"
	"github.com/gitmesh/gitmesh/sources"
)

// status is what the admin API reports, plus the failures behind it.
type status struct {
	admin.Status
	// lastAttemptFailed is the failure of LastAttemptedRevision, not retried
	// until a new revision arrives.
	lastAttemptFailed error
	// lastErr is the last reconcile pass's error.
	lastErr error
	// nextID numbers rollouts when there is no Store.
	nextID uint64
}

// Status returns a copy of the current status with the fleet's proxies,
// as the admin API serves it: secrets in the RolloutPolicy (webhook URLs,
// Prometheus credentials) are redacted.
func (r *Reconciler) Status() admin.Status {
	r.mu.Lock()
	s := r.status.Status
	s.Conditions = append([]metav1.Condition(nil), r.status.Conditions...)
	s.Diagnostics = append(compiler.Diagnostics(nil), r.status.Diagnostics...)
	var ro *admin.Rollout
	if r.rollout != nil {
		cp := r.rollout.Rollout
		cp.Waves, cp.Updated, cp.Readings = slices.Clone(cp.Waves), slices.Clone(cp.Updated), slices.Clone(cp.Readings)
		ro = &cp
	}
	if r.hold != nil {
		h := *r.hold
		s.Hold = &h
	}
	assigned := maps.Clone(r.assigned)
	r.mu.Unlock()
	if ro != nil {
		p := public(*ro)
		s.Rollout = &p
	}
	if r.cfg.CA != nil {
		s.CA = r.cfg.CA()
	}
	for _, n := range r.cfg.Fleet.Nodes() {
		p := admin.ProxyStatus{
			ID: n.Workload.ID, Service: n.Workload.Service, Namespace: n.Workload.Namespace, Role: n.Workload.Role,
			Labels: n.Workload.Labels, Pod: n.Workload.Pod, Connected: n.Connected, State: admin.SyncState(n.State), Revision: assigned[n.Workload.ID], Assigned: n.Assigned, Acked: n.Acked,
		}
		if n.NACK != nil {
			p.NACK = &admin.NACK{Version: n.NACK.Version, TypeURL: n.NACK.TypeURL, Error: n.NACK.Error, At: n.NACK.At}
		}
		s.Proxies = append(s.Proxies, p)
	}
	sort.Slice(s.Proxies, func(i, j int) bool { return s.Proxies[i].ID < s.Proxies[j].ID })
	if s.Proxies == nil {
		s.Proxies = []admin.ProxyStatus{}
	}
	return s
}

// public returns a copy of ro whose RolloutPolicy shares nothing with
// ro's, with its secrets redacted: webhook URLs (whose path is often
// a token) and the userinfo and query of Prometheus addresses.
func public(ro admin.Rollout) admin.Rollout {
	ro.Policy.Webhooks = slices.Clone(ro.Policy.Webhooks)
	for i := range ro.Policy.Webhooks {
		ro.Policy.Webhooks[i].URL = redact.Opaque(ro.Policy.Webhooks[i].URL)
	}
	if ro.Policy.Analysis == nil {
		return ro
	}
	an := *ro.Policy.Analysis
	an.Metrics = slices.Clone(an.Metrics)
	for i, m := range an.Metrics {
		if m.Prometheus != nil {
			q := *m.Prometheus
			q.Address = redact.URL(q.Address)
			an.Metrics[i].Prometheus = &q
		}
	}
	ro.Policy.Analysis = &an
	return ro
}

func (s *status) init() {
	conditions.MarkUnknown(s.Object(), meta.ReadyCondition, ReasonProgressing, "waiting for the first reconciliation")
}

func (s *status) markReady(revision, version string) {
	if revision == "" {
		conditions.MarkUnknown(s.Object(), meta.ReadyCondition, ReasonProgressing, "no revision applied yet")
		return
	}
	conditions.MarkTrue(s.Object(), meta.ReadyCondition, ReasonSucceeded, "Applied revision %s (version %s)", revision, version)
}

func (s *status) markProgressing(msg string) {
	conditions.MarkUnknown(s.Object(), meta.ReadyCondition, ReasonProgressing, "%s", msg)
}

func (s *status) markHeld(msg string) {
	conditions.MarkTrue(s.Object(), meta.ReadyCondition, ReasonHeld, "%s", msg)
}

func (s *status) markFailed(reason, msg string) {
	conditions.MarkFalse(s.Object(), meta.ReadyCondition, reason, "%s", msg)
}

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
