package kubestate_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fluxcd/pkg/apis/meta"
	"github.com/fluxcd/pkg/runtime/conditions"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/gitmesh/gitmesh/api/admin"
	"github.com/gitmesh/gitmesh/api/v1alpha1"
	"github.com/gitmesh/gitmesh/internal/kubetest"
	"github.com/gitmesh/gitmesh/reconciler"
	"github.com/gitmesh/gitmesh/reconciler/kubestate"
	"github.com/gitmesh/gitmesh/sources"
)

var restCfg *rest.Config

func TestMain(m *testing.M) {
	var stop func()
	restCfg, stop = kubetest.Start(m)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	_, err := kubetest.InstallCRDs(ctx, restCfg, filepath.Join("..", "..", "config", "crd"), time.Minute)
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		stop()
		os.Exit(1)
	}
	code := m.Run()
	stop()
	os.Exit(code)
}

// newClient returns a client that knows core/v1 and gitmesh.io/v1alpha1,
// and a fresh namespace.
func newClient(t *testing.T) (client.Client, kubernetes.Interface, string) {
	t.Helper()
	scheme := runtime.NewScheme()
	if err := corev1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	c, err := client.New(restCfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	cs := kubernetes.NewForConfigOrDie(restCfg)
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "kubestate-"}}
	if err := c.Create(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
	return c, cs, ns.Name
}

func objects(rev string) []sources.Object {
	return []sources.Object{{Kind: "VirtualService", Namespace: "default", Name: "reviews",
		YAML: []byte("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: reviews}\n# " + rev + "\n")}}
}

// TestStoreRoundTrip saves what the reconciler saves and reads it back
// from a second Store, as a replica that takes over does.
func TestStoreRoundTrip(t *testing.T) {
	ctx := context.Background()
	c, _, ns := newClient(t)
	s, err := kubestate.Open(ctx, c, ns, "gitmesh", kubestate.WithIdentity("replica-a"))
	if err != nil {
		t.Fatal(err)
	}
	lg := reconciler.LastGood{Revision: "main@sha1:aaa", Version: "v1", Objects: objects("aaa"), AppliedAt: time.Now().UTC().Truncate(time.Second)}
	if err := s.SaveLastGood(lg); err != nil {
		t.Fatal(err)
	}
	ro := &admin.Rollout{Revision: "main@sha1:bbb", Version: "v2", PreviousRevision: lg.Revision, Trigger: admin.TriggerCommit,
		Phase: admin.PhaseBaking, StartedAt: time.Now().UTC(), Waves: []admin.WaveRecord{{Name: "canary"}, {Name: "all"}},
		Updated: []string{"p1", "p2"}}
	ro.Policy.Webhooks = []v1alpha1.Webhook{{Name: "hook", Type: v1alpha1.WebhookEvent, URL: "http://hooks.example/secret-token"}}
	if err := s.SaveRollout(ro, objects("bbb")); err != nil {
		t.Fatal(err)
	}
	if ro.ID != 1 {
		t.Errorf("rollout ID = %d; want 1", ro.ID)
	}
	hold := &admin.Hold{Revision: lg.Revision, Head: "main@sha1:ccc", Since: time.Now().UTC().Truncate(time.Second)}
	if err := s.SaveHold(hold); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveFailure(&reconciler.Failure{Revision: "main@sha1:ddd", Reason: "RolloutFailed", Message: "NACK", Since: time.Now().UTC()}); err != nil {
		t.Fatal(err)
	}

	// A second replica reads everything back.
	s2, err := kubestate.Open(ctx, c, ns, "gitmesh", kubestate.WithIdentity("replica-b"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := s2.LastGood()
	if err != nil || got == nil || got.Revision != lg.Revision || string(got.Objects[0].YAML) != string(lg.Objects[0].YAML) {
		t.Fatalf("LastGood = %+v, %v; want %s with its objects", got, err, lg.Revision)
	}
	inf, err := s2.InFlightRollout()
	if err != nil || inf == nil {
		t.Fatalf("InFlightRollout = %v, %v; want rollout 1", inf, err)
	}
	if inf.Rollout.ID != 1 || inf.Rollout.Phase != admin.PhaseBaking || len(inf.Rollout.Updated) != 2 || inf.Rollout.Policy.Webhooks[0].URL != "http://hooks.example/secret-token" {
		t.Errorf("in-flight rollout = %+v; want rollout 1 baking with 2 updated proxies and its webhook URL", inf.Rollout)
	}
	if string(inf.Objects[0].YAML) != string(objects("bbb")[0].YAML) {
		t.Errorf("in-flight objects = %q; want bbb's", inf.Objects[0].YAML)
	}
	if h, _ := s2.Hold(); h == nil || h.Head != hold.Head {
		t.Errorf("Hold = %+v; want %+v", h, hold)
	}
	if f, _ := s2.Failure(); f == nil || f.Revision != "main@sha1:ddd" {
		t.Errorf("Failure = %+v; want main@sha1:ddd", f)
	}

	// The first replica no longer leads: its next write is fenced.
	if err := s2.SaveHold(nil); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveHold(hold); !errors.Is(err, kubestate.ErrFenced) {
		t.Errorf("deposed replica's SaveHold = %v; want ErrFenced", err)
	}

	// The rollout finishes: no longer in flight, its revision's Secret is
	// collected once it is not a good revision.
	ro.Phase, ro.Reason, ro.FinishedAt = admin.PhaseRolledBack, "proxy p1 NACKed", time.Now().UTC()
	if err := s2.SaveRollout(ro, nil); err != nil {
		t.Fatal(err)
	}
	if inf, err := s2.InFlightRollout(); err != nil || inf != nil {
		t.Errorf("InFlightRollout after the end = %+v, %v; want nil", inf, err)
	}
	h, err := s2.History(0)
	if err != nil || len(h) != 1 || h[0].Phase != admin.PhaseRolledBack {
		t.Errorf("History = %+v, %v; want rollout 1 rolled back", h, err)
	}
	var secrets corev1.SecretList
	if err := c.List(ctx, &secrets, client.InNamespace(ns), client.MatchingLabels{kubestate.LabelKind: "revision"}); err != nil {
		t.Fatal(err)
	}
	if len(secrets.Items) != 1 || secrets.Items[0].Annotations[kubestate.AnnotationRevision] != lg.Revision {
		t.Errorf("revision secrets = %d; want only the last good one's", len(secrets.Items))
	}
}

// TestRevisionTooLarge refuses objects a Secret cannot hold.
func TestRevisionTooLarge(t *testing.T) {
	c, _, ns := newClient(t)
	s, err := kubestate.Open(context.Background(), c, ns, "gitmesh")
	if err != nil {
		t.Fatal(err)
	}
	// Incompressible: 2 MiB of pseudo-random letters gzip to ~1.2 MiB.
	rng := rand.New(rand.NewPCG(1, 2))
	big := make([]byte, 2<<20)
	for i := range big {
		big[i] = byte('a' + rng.IntN(26))
	}
	err = s.SaveLastGood(reconciler.LastGood{Revision: "main@sha1:big", Objects: []sources.Object{{Kind: "ConfigMap", Name: "big", YAML: big}}})
	if !errors.Is(err, kubestate.ErrRevisionTooLarge) {
		t.Errorf("SaveLastGood of a huge revision = %v; want ErrRevisionTooLarge", err)
	}
}

// TestPublishStatus writes the columns kubectl shows and Flux's conditions.
func TestPublishStatus(t *testing.T) {
	ctx := context.Background()
	c, _, ns := newClient(t)
	s, err := kubestate.Open(ctx, c, ns, "gitmesh", kubestate.WithIdentity("replica-a"))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SaveLastGood(reconciler.LastGood{Revision: "main@sha1:aaa", Version: "v1", Objects: objects("aaa"), AppliedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name                 string
		live                 admin.Status
		phase, wave          string
		ready                metav1.ConditionStatus
		reconciling, stalled bool
	}{
		{
			name:  "rolling out",
			live:  liveStatus(metav1.ConditionUnknown, meta.ProgressingReason, "rolling out main@sha1:bbb", &admin.Rollout{ID: 2, Revision: "main@sha1:bbb", Phase: admin.PhaseBaking, Wave: 0, Waves: []admin.WaveRecord{{Name: "canary"}, {Name: "all"}}, StartedAt: time.Now()}),
			phase: "Baking", wave: "1/2 canary", ready: metav1.ConditionUnknown, reconciling: true,
		},
		{
			name:  "rolled back",
			live:  liveStatus(metav1.ConditionFalse, reconciler.ReasonRolloutFailed, "rollout of main@sha1:bbb ended RolledBack: NACK", &admin.Rollout{ID: 2, Revision: "main@sha1:bbb", Phase: admin.PhaseRolledBack, Wave: 0, Waves: []admin.WaveRecord{{Name: "canary"}, {Name: "all"}}, StartedAt: time.Now(), FinishedAt: time.Now()}),
			phase: "RolledBack", wave: "", ready: metav1.ConditionFalse, stalled: true,
		},
		{
			name:  "fetch failed",
			live:  liveStatus(metav1.ConditionFalse, reconciler.ReasonFetchFailed, "fetching source: connection refused", nil),
			ready: metav1.ConditionFalse,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := s.Publish(ctx, tt.live); err != nil {
				t.Fatal(err)
			}
			var obj v1alpha1.MeshRollout
			if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "gitmesh"}, &obj); err != nil {
				t.Fatal(err)
			}
			st := obj.Status
			if st.LastAppliedRevision != "main@sha1:aaa" || st.Leader != "replica-a" {
				t.Errorf("revision, leader = %q, %q; want main@sha1:aaa, replica-a", st.LastAppliedRevision, st.Leader)
			}
			if tt.phase != "" && (st.Phase != tt.phase || st.Wave != tt.wave) {
				t.Errorf("phase, wave = %q, %q; want %q, %q", st.Phase, st.Wave, tt.phase, tt.wave)
			}
			if r := conditions.Get(&obj, meta.ReadyCondition); r == nil || r.Status != tt.ready {
				t.Errorf("Ready = %+v; want %s", r, tt.ready)
			}
			if got := conditions.IsTrue(&obj, meta.ReconcilingCondition); got != tt.reconciling {
				t.Errorf("Reconciling = %v; want %v", got, tt.reconciling)
			}
			if got := conditions.IsTrue(&obj, meta.StalledCondition); got != tt.stalled {
				t.Errorf("Stalled = %v; want %v", got, tt.stalled)
			}
		})
	}
}

func liveStatus(ready metav1.ConditionStatus, reason, msg string, ro *admin.Rollout) admin.Status {
	st := admin.Status{LastAppliedRevision: "main@sha1:aaa", Rollout: ro}
	st.Conditions = []metav1.Condition{{Type: meta.ReadyCondition, Status: ready, Reason: reason, Message: msg, LastTransitionTime: metav1.Now()}}
	return st
}

// TestEvents records a rollout and a failed revision and finds the Events
// in the API server, the repeated failure aggregated into one.
func TestEvents(t *testing.T) {
	ctx := context.Background()
	c, cs, ns := newClient(t)
	s, err := kubestate.Open(ctx, c, ns, "gitmesh")
	if err != nil {
		t.Fatal(err)
	}
	rec := kubestate.NewEventRecorder(cs, s.Object(), "replica-a")
	defer rec.Shutdown()
	ev := admin.Event{RolloutID: 3, Revision: "main@sha1:bbb", Version: "v2"}
	for _, step := range []struct {
		phase admin.Phase
		wave  string
	}{{admin.PhasePending, ""}, {admin.PhaseProgressing, "canary"}, {admin.PhaseProgressing, "all"}, {admin.PhaseRolledBack, "all"}} {
		ev.Phase, ev.Wave = step.phase, step.wave
		if step.phase == admin.PhaseRolledBack {
			ev.Reason = "proxy p1 NACKed main@sha1:bbb: unknown cluster"
		}
		rec.RolloutEvent(ev)
	}
	for range 3 {
		rec.ReconcileFailed("main@sha1:ccc", reconciler.ReasonValidationFailed, "validating main@sha1:ccc: 1 error(s): vs.yaml:3: GM0101")
	}
	want := map[string]string{
		kubestate.EventRolloutStarted:     "rollout 3 of main@sha1:bbb started",
		kubestate.EventWaveStarted:        "wave canary started",
		kubestate.EventWavePromoted:       "wave canary passed; wave all started",
		kubestate.EventRolledBack:         "rolled back (RolledBack): proxy p1 NACKed",
		reconciler.ReasonValidationFailed: "vs.yaml:3",
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		list, err := cs.CoreV1().Events(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		missing := []string{}
		counts := map[string]int32{}
		for reason, text := range want {
			found := false
			for _, e := range list.Items {
				if e.Reason == reason && strings.Contains(e.Message, text) && e.InvolvedObject.Kind == v1alpha1.KindMeshRollout && e.InvolvedObject.Name == "gitmesh" {
					found = true
					counts[reason] = e.Count
				}
			}
			if !found {
				missing = append(missing, reason)
			}
		}
		if len(missing) == 0 && counts[reconciler.ReasonValidationFailed] == 3 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("events missing %v or ValidationFailed count %d != 3; have %d events", missing, counts[reconciler.ReasonValidationFailed], len(list.Items))
		}
		time.Sleep(100 * time.Millisecond) // polling the API server, with a deadline
	}
}
