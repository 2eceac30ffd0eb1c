// Package kubestate keeps the reconciler's state in a Kubernetes cluster,
// for `gitmesh controller --kubernetes`: Store implements
// reconciler.StateStore on a MeshRollout custom resource (gitmesh.io/v1alpha1)
// and Secrets it owns, publishes the controller's Flux-style conditions in
// the MeshRollout's status, and EventRecorder turns rollouts and failed
// revisions into Kubernetes Events on it.
//
// # Where the state lives
//
// The MeshRollout's status is what people read (`kubectl get meshrollouts`,
// `kubectl describe`): revision, phase, wave, conditions, a bounded history,
// the kept revisions by name. What a replica that takes over resumes from
// lives in Secrets owned by the MeshRollout, because it carries secrets:
// each rollout runs under a RolloutPolicy whose webhook URLs and Prometheus
// addresses often hold tokens, and a revision's objects hold that policy.
//
//   - <name>-state: the full records (last good revision, kept revisions,
//     the in-flight rollout with the proxies it updated, the history, the
//     hold, the failed revision), gzipped JSON;
//   - <name>-rev-<hash>: one revision's objects, gzipped JSON, written once
//     per revision and deleted when no record names it any more.
//
// A Secret holds at most 1 MiB; a revision whose objects compress to more
// than MaxRevisionBytes is refused with ErrRevisionTooLarge before any write.
//
// Every write uses the resourceVersion the store last saw, so a replica
// that lost its lease and still writes fails with a conflict instead of
// overwriting its successor (ErrFenced).
package kubestate

import (
	"bytes"
	"cmp"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/gitmesh/gitmesh/api/admin"
	"github.com/gitmesh/gitmesh/api/v1alpha1"
	"github.com/gitmesh/gitmesh/reconciler"
	"github.com/gitmesh/gitmesh/sources"
)

// MaxRevisionBytes bounds the gzipped objects of one revision: a Secret
// holds at most 1 MiB, and the rest is left for its metadata.
const MaxRevisionBytes = 900 << 10

// Labels and annotations on the Secrets the store owns.
const (
	// LabelMeshRollout names the MeshRollout a Secret belongs to.
	LabelMeshRollout = "gitmesh.io/meshrollout"
	// LabelKind is "state" or "revision".
	LabelKind = "gitmesh.io/state-kind"
	// AnnotationRevision is the revision a revision Secret holds.
	AnnotationRevision = "gitmesh.io/revision"
	// SecretType is the type of the Secrets the store writes.
	SecretType corev1.SecretType = "gitmesh.io/state"
)

const (
	stateKey   = "state.json.gz"
	objectsKey = "objects.json.gz"
)

// DefaultTimeout bounds each API call of a Store.
const DefaultTimeout = 10 * time.Second

// Errors of the store.
var (
	// ErrRevisionTooLarge: a revision's objects do not fit in a Secret.
	ErrRevisionTooLarge = errors.New("revision too large to keep in a Secret")
	// ErrFenced: another replica wrote the state since this one read it;
	// this replica no longer leads.
	ErrFenced = errors.New("state written by another controller replica")
)

// Store is a reconciler.StateStore in a cluster. Create it with Open; call
// Sync when the replica starts to lead, before the reconciler restores.
// It is safe for concurrent use.
type Store struct {
	c        client.Client
	ns, name string
	identity string
	timeout  time.Duration
	log      *slog.Logger
	// dirty is signalled when the status needs publishing.
	dirty chan struct{}

	// mu protects everything below.
	mu sync.Mutex
	// obj is the MeshRollout as last read or written.
	obj *v1alpha1.MeshRollout
	// doc is the state as last read or written; docRV the state Secret's
	// resourceVersion then ("" when it does not exist yet).
	doc   stateDoc
	docRV string
}

var _ reconciler.StateStore = (*Store)(nil)

// stateDoc is the content of the state Secret.
type stateDoc struct {
	NextID uint64 `json:"nextId"`
	// Good lists the kept good revisions, newest first; Good[0] is the
	// last good one.
	Good     []revisionMeta      `json:"good,omitempty"`
	InFlight *admin.Rollout      `json:"inFlight,omitempty"`
	History  []admin.Rollout     `json:"history,omitempty"`
	Hold     *admin.Hold         `json:"hold,omitempty"`
	Failure  *reconciler.Failure `json:"failure,omitempty"`
}

// revisionMeta is a kept revision without its objects.
type revisionMeta struct {
	Revision  string    `json:"revision"`
	Version   string    `json:"version"`
	AppliedAt time.Time `json:"appliedAt"`
}

// Option configures a Store.
type Option func(*Store)

// WithLogger sets the logger. If nil (the default), nothing is logged.
func WithLogger(l *slog.Logger) Option {
	return func(s *Store) {
		if l != nil {
			s.log = l
		}
	}
}

// WithIdentity names this replica in status.leader. Default: none.
func WithIdentity(id string) Option { return func(s *Store) { s.identity = id } }

// WithTimeout bounds each API call. Zero or less means DefaultTimeout.
func WithTimeout(d time.Duration) Option {
	return func(s *Store) {
		if d > 0 {
			s.timeout = d
		}
	}
}

// Open returns the store of the MeshRollout namespace/name, creating the
// MeshRollout when it does not exist, and reads the state. c must know
// the gitmesh.io/v1alpha1 types (v1alpha1.AddToScheme) and core/v1.
func Open(ctx context.Context, c client.Client, namespace, name string, opts ...Option) (*Store, error) {
	s := &Store{c: c, ns: namespace, name: name, timeout: DefaultTimeout, log: slog.New(slog.DiscardHandler), dirty: make(chan struct{}, 1)}
	for _, o := range opts {
		o(s)
	}
	if err := s.Sync(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// Object returns a copy of the MeshRollout as last read or written.
func (s *Store) Object() *v1alpha1.MeshRollout {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.obj.DeepCopy()
}

// Sync reads the MeshRollout (creating it when missing) and the state
// Secret again. A replica calls it when it starts to lead: its successor
// must restore what the previous leader wrote last.
func (s *Store) Sync(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	obj := &v1alpha1.MeshRollout{}
	err := s.c.Get(ctx, types.NamespacedName{Namespace: s.ns, Name: s.name}, obj)
	if apierrors.IsNotFound(err) {
		obj = &v1alpha1.MeshRollout{ObjectMeta: metav1.ObjectMeta{Namespace: s.ns, Name: s.name}}
		err = s.c.Create(ctx, obj)
		if apierrors.IsAlreadyExists(err) {
			err = s.c.Get(ctx, types.NamespacedName{Namespace: s.ns, Name: s.name}, obj)
		}
	}
	if err != nil {
		return fmt.Errorf("reading MeshRollout %s/%s: %w", s.ns, s.name, err)
	}
	var doc stateDoc
	rv := ""
	sec := &corev1.Secret{}
	err = s.c.Get(ctx, types.NamespacedName{Namespace: s.ns, Name: s.stateSecret()}, sec)
	switch {
	case apierrors.IsNotFound(err):
	case err != nil:
		return fmt.Errorf("reading state secret %s/%s: %w", s.ns, s.stateSecret(), err)
	default:
		if err := gunzipJSON(sec.Data[stateKey], &doc); err != nil {
			return fmt.Errorf("decoding state secret %s/%s: %w", s.ns, s.stateSecret(), err)
		}
		rv = sec.ResourceVersion
	}
	s.mu.Lock()
	s.obj, s.doc, s.docRV = obj, doc, rv
	s.mu.Unlock()
	return nil
}

func (s *Store) stateSecret() string { return s.name + "-state" }

// revisionSecret names the Secret of a revision: revisions hold '@' and
// ':', which names may not.
func (s *Store) revisionSecret(revision string) string {
	h := sha256.Sum256([]byte(revision))
	return s.name + "-rev-" + hex.EncodeToString(h[:])[:16]
}

// SaveLastGood records lg as the last good revision, first among the
// kept ones (spec.revisionLimit).
func (s *Store) SaveLastGood(lg reconciler.LastGood) error {
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	if err := s.putRevision(ctx, lg.Revision, lg.Objects); err != nil {
		return fmt.Errorf("saving last good revision: %w", err)
	}
	err := s.update(ctx, func(d *stateDoc, spec v1alpha1.MeshRolloutSpec) {
		d.Good = slices.DeleteFunc(d.Good, func(m revisionMeta) bool { return m.Revision == lg.Revision })
		d.Good = slices.Insert(d.Good, 0, revisionMeta{Revision: lg.Revision, Version: lg.Version, AppliedAt: lg.AppliedAt})
		if n := spec.EffectiveRevisionLimit(); len(d.Good) > n {
			d.Good = d.Good[:n]
		}
	})
	if err != nil {
		return fmt.Errorf("saving last good revision: %w", err)
	}
	s.collect(ctx)
	return nil
}

// LastGood returns the last good revision with its objects, or nil.
func (s *Store) LastGood() (*reconciler.LastGood, error) {
	s.mu.Lock()
	var m *revisionMeta
	if len(s.doc.Good) > 0 {
		m = &s.doc.Good[0]
	}
	s.mu.Unlock()
	if m == nil {
		return nil, nil
	}
	lg, err := s.loadGood(*m)
	if err != nil {
		return nil, fmt.Errorf("reading last good revision: %w", err)
	}
	return lg, nil
}

// GoodRevisions returns the kept good revisions with their objects.
func (s *Store) GoodRevisions() ([]reconciler.LastGood, error) {
	s.mu.Lock()
	good := slices.Clone(s.doc.Good)
	s.mu.Unlock()
	var out []reconciler.LastGood
	for _, m := range good {
		lg, err := s.loadGood(m)
		if err != nil {
			return nil, fmt.Errorf("reading good revisions: %w", err)
		}
		out = append(out, *lg)
	}
	return out, nil
}

func (s *Store) loadGood(m revisionMeta) (*reconciler.LastGood, error) {
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	objs, err := s.getRevision(ctx, m.Revision)
	if err != nil {
		return nil, err
	}
	return &reconciler.LastGood{Revision: m.Revision, Version: m.Version, Objects: objs, AppliedAt: m.AppliedAt}, nil
}

// SaveRollout records ro in the history (spec.historyLimit), assigning it
// an ID when it has none, and as the in-flight rollout with objs until
// it is done.
func (s *Store) SaveRollout(ro *admin.Rollout, objs []sources.Object) error {
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	if !ro.Phase.Done() && !s.holdsInFlight(ro) {
		if err := s.putRevision(ctx, ro.Revision, objs); err != nil {
			return fmt.Errorf("saving rollout: %w", err)
		}
	}
	id := ro.ID
	err := s.update(ctx, func(d *stateDoc, spec v1alpha1.MeshRolloutSpec) {
		if id == 0 {
			d.NextID++
			id = d.NextID
		}
		cp := *ro
		cp.ID = id
		// History is newest (highest ID) first: find ro's place in it.
		i, found := slices.BinarySearchFunc(d.History, id, func(h admin.Rollout, id uint64) int { return cmp.Compare(id, h.ID) })
		if found {
			d.History[i] = cp
		} else {
			d.History = slices.Insert(d.History, i, cp)
		}
		if n := spec.EffectiveHistoryLimit(); len(d.History) > n {
			d.History = d.History[:n]
		}
		if cp.Phase.Done() {
			if d.InFlight != nil && d.InFlight.ID == id {
				d.InFlight = nil
			}
		} else {
			d.InFlight = &cp
		}
	})
	if err != nil {
		return fmt.Errorf("saving rollout: %w", err)
	}
	ro.ID = id
	if ro.Phase.Done() {
		s.collect(ctx)
	}
	return nil
}

// holdsInFlight reports whether ro is the in-flight rollout already
// recorded, whose revision Secret its first save wrote: a rollout's
// objects do not change while it runs, so its later saves (one a step)
// need not encode them again nor ask the API server about the Secret.
func (s *Store) holdsInFlight(ro *admin.Rollout) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	inf := s.doc.InFlight
	return ro.ID != 0 && inf != nil && inf.ID == ro.ID && inf.Revision == ro.Revision
}

// InFlightRollout returns the unfinished rollout with its objects, or nil.
func (s *Store) InFlightRollout() (*reconciler.InFlight, error) {
	s.mu.Lock()
	var ro *admin.Rollout
	if s.doc.InFlight != nil {
		cp := *s.doc.InFlight
		ro = &cp
	}
	s.mu.Unlock()
	if ro == nil {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	objs, err := s.getRevision(ctx, ro.Revision)
	if err != nil {
		return nil, fmt.Errorf("reading in-flight rollout: %w", err)
	}
	return &reconciler.InFlight{Rollout: *ro, Objects: objs}, nil
}

// History returns the newest limit rollouts kept (all when limit <= 0),
// newest first.
func (s *Store) History(limit int) ([]admin.Rollout, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	h := s.doc.History
	if limit > 0 && len(h) > limit {
		h = h[:limit]
	}
	return slices.Clone(h), nil
}

// SaveHold records h (nil clears it).
func (s *Store) SaveHold(h *admin.Hold) error {
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	if err := s.update(ctx, func(d *stateDoc, _ v1alpha1.MeshRolloutSpec) { d.Hold = h }); err != nil {
		return fmt.Errorf("saving hold: %w", err)
	}
	return nil
}

// Hold returns the hold, or nil.
func (s *Store) Hold() (*admin.Hold, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.doc.Hold == nil {
		return nil, nil
	}
	h := *s.doc.Hold
	return &h, nil
}

// SaveFailure records f (nil clears it).
func (s *Store) SaveFailure(f *reconciler.Failure) error {
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	if err := s.update(ctx, func(d *stateDoc, _ v1alpha1.MeshRolloutSpec) { d.Failure = f }); err != nil {
		return fmt.Errorf("saving failed revision: %w", err)
	}
	return nil
}

// Failure returns the recorded failed revision, or nil.
func (s *Store) Failure() (*reconciler.Failure, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.doc.Failure == nil {
		return nil, nil
	}
	f := *s.doc.Failure
	return &f, nil
}

// update applies change to a copy of the state and writes it to the
// state Secret with the resourceVersion last seen; on success the copy
// becomes the state and the status is marked for publishing.
func (s *Store) update(ctx context.Context, change func(*stateDoc, v1alpha1.MeshRolloutSpec)) error {
	s.mu.Lock()
	doc, err := cloneDoc(s.doc)
	rv, spec := s.docRV, s.obj.Spec
	owner := s.ownerRef()
	s.mu.Unlock()
	if err != nil {
		return err
	}
	change(&doc, spec)
	data, err := gzipJSON(doc)
	if err != nil {
		return fmt.Errorf("encoding state: %w", err)
	}
	sec := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: s.ns, Name: s.stateSecret(), ResourceVersion: rv,
			Labels:          map[string]string{LabelMeshRollout: s.name, LabelKind: "state"},
			OwnerReferences: owner,
		},
		Type: SecretType,
		Data: map[string][]byte{stateKey: data},
	}
	if rv == "" {
		err = s.c.Create(ctx, sec)
	} else {
		err = s.c.Update(ctx, sec)
	}
	if apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("writing state secret %s/%s: %w", s.ns, s.stateSecret(), ErrFenced)
	}
	if err != nil {
		return fmt.Errorf("writing state secret %s/%s: %w", s.ns, s.stateSecret(), err)
	}
	s.mu.Lock()
	s.doc, s.docRV = doc, sec.ResourceVersion
	s.mu.Unlock()
	s.markDirty()
	return nil
}

func cloneDoc(d stateDoc) (stateDoc, error) {
	b, err := json.Marshal(d)
	if err != nil {
		return stateDoc{}, fmt.Errorf("copying state: %w", err)
	}
	var out stateDoc
	if err := json.Unmarshal(b, &out); err != nil {
		return stateDoc{}, fmt.Errorf("copying state: %w", err)
	}
	return out, nil
}

// ownerRef makes the MeshRollout own a Secret, so deleting it deletes
// them. s.mu must be held.
func (s *Store) ownerRef() []metav1.OwnerReference {
	if s.obj == nil || s.obj.UID == "" {
		return nil
	}
	return []metav1.OwnerReference{{
		APIVersion: v1alpha1.SchemeGroupVersion.String(), Kind: v1alpha1.KindMeshRollout,
		Name: s.obj.Name, UID: s.obj.UID,
	}}
}

// putRevision writes a revision's objects into its Secret unless it
// holds them already.
func (s *Store) putRevision(ctx context.Context, revision string, objs []sources.Object) error {
	data, err := gzipJSON(objs)
	if err != nil {
		return fmt.Errorf("encoding objects of %s: %w", revision, err)
	}
	if len(data) > MaxRevisionBytes {
		return fmt.Errorf("keeping %s (%d bytes gzipped, at most %d): %w", revision, len(data), MaxRevisionBytes, ErrRevisionTooLarge)
	}
	name := s.revisionSecret(revision)
	s.mu.Lock()
	owner := s.ownerRef()
	s.mu.Unlock()
	sec := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: s.ns, Name: name,
			Labels:          map[string]string{LabelMeshRollout: s.name, LabelKind: "revision"},
			Annotations:     map[string]string{AnnotationRevision: revision},
			OwnerReferences: owner,
		},
		Type: SecretType,
		Data: map[string][]byte{objectsKey: data},
	}
	err = s.c.Create(ctx, sec)
	if apierrors.IsAlreadyExists(err) {
		cur := &corev1.Secret{}
		if err := s.c.Get(ctx, types.NamespacedName{Namespace: s.ns, Name: name}, cur); err != nil {
			return fmt.Errorf("reading revision secret %s/%s: %w", s.ns, name, err)
		}
		if bytes.Equal(cur.Data[objectsKey], data) && cur.Annotations[AnnotationRevision] == revision {
			return nil
		}
		sec.ResourceVersion = cur.ResourceVersion
		err = s.c.Update(ctx, sec)
	}
	if err != nil {
		return fmt.Errorf("writing revision secret %s/%s: %w", s.ns, name, err)
	}
	return nil
}

// getRevision reads a revision's objects from its Secret.
func (s *Store) getRevision(ctx context.Context, revision string) ([]sources.Object, error) {
	name := s.revisionSecret(revision)
	sec := &corev1.Secret{}
	if err := s.c.Get(ctx, types.NamespacedName{Namespace: s.ns, Name: name}, sec); err != nil {
		return nil, fmt.Errorf("reading revision secret %s/%s: %w", s.ns, name, err)
	}
	if got := sec.Annotations[AnnotationRevision]; got != revision {
		return nil, fmt.Errorf("reading revision secret %s/%s: it holds %q, not %q", s.ns, name, got, revision)
	}
	var objs []sources.Object
	if err := gunzipJSON(sec.Data[objectsKey], &objs); err != nil {
		return nil, fmt.Errorf("decoding revision secret %s/%s: %w", s.ns, name, err)
	}
	return objs, nil
}

// collect deletes the revision Secrets no record names (best effort: a
// leftover is collected next time).
func (s *Store) collect(ctx context.Context) {
	s.mu.Lock()
	keep := map[string]bool{}
	for _, m := range s.doc.Good {
		keep[s.revisionSecret(m.Revision)] = true
	}
	if s.doc.InFlight != nil {
		keep[s.revisionSecret(s.doc.InFlight.Revision)] = true
	}
	s.mu.Unlock()
	var list corev1.SecretList
	if err := s.c.List(ctx, &list, client.InNamespace(s.ns), client.MatchingLabels{LabelMeshRollout: s.name, LabelKind: "revision"}); err != nil {
		s.log.Warn("listing revision secrets", "error", err)
		return
	}
	for i := range list.Items {
		sec := &list.Items[i]
		if keep[sec.Name] {
			continue
		}
		if err := s.c.Delete(ctx, sec); err != nil && !apierrors.IsNotFound(err) {
			s.log.Warn("deleting revision secret", "secret", sec.Name, "error", err)
		}
	}
}

func gzipJSON(v any) ([]byte, error) {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if err := json.NewEncoder(zw).Encode(v); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// maxInflated bounds what gunzipJSON inflates, against a gzip bomb in a
// Secret someone else wrote.
const maxInflated = 256 << 20

func gunzipJSON(b []byte, v any) error {
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		return err
	}
	defer zr.Close()
	return json.NewDecoder(io.LimitReader(zr, maxInflated)).Decode(v)
}
