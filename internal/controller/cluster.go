package controller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/gitmesh/gitmesh/api/v1alpha1"
	"github.com/gitmesh/gitmesh/internal/leader"
	"github.com/gitmesh/gitmesh/internal/podidentity"
	"github.com/gitmesh/gitmesh/reconciler"
	"github.com/gitmesh/gitmesh/reconciler/kubestate"
	"github.com/gitmesh/gitmesh/xds"
)

// ClusterConfig runs the controller as one of several replicas in a
// Kubernetes cluster: the rollout state lives in a MeshRollout custom
// resource (instead of bbolt under StateDir), one replica leads on a Lease
// and the others stand by, Events go to the MeshRollout, and sidecars are
// checked against their Pods.
type ClusterConfig struct {
	// REST is how to reach the API server. Required.
	REST *rest.Config
	// Namespace holds the MeshRollout, its Secrets and the Lease: the
	// controller's own namespace. Required.
	Namespace string
	// Name names the MeshRollout and the Lease. Default "gitmesh".
	Name string
	// Identity names this replica in the Lease and the status. Default
	// $POD_NAME, else the host name.
	Identity string
	// LeaseDuration, RenewDeadline and RetryPeriod tune the election
	// (leader.Config); zero means client-go's defaults, 15s, 10s, 2s.
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
	// StatusInterval is how often the leader refreshes the MeshRollout's
	// status when nothing was saved. Default 2s.
	StatusInterval time.Duration
	// CheckPods refuses a sidecar whose announced pod, namespace, service
	// account or IP does not match its Pod, and takes its labels from the
	// Pod (see podidentity).
	CheckPods bool
	// PodName and PodNamespace name this replica's own Pod, which the
	// leader labels gitmesh.io/leader: "true" (leader.PodLabel) so the
	// xDS and admin Services route to it. Default $POD_NAME and
	// $POD_NAMESPACE (downward API); without a pod name nothing is
	// labelled.
	PodName, PodNamespace string
	// LeaderPodSelector is a label selector for the other replicas' Pods
	// (the release's controller labels): the leader removes
	// leader.PodLabel from those that still have it. Empty selects every
	// Pod of PodNamespace.
	LeaderPodSelector string
}

// cluster is the Kubernetes mode's part of a controller.
type cluster struct {
	cfg     ClusterConfig
	log     *slog.Logger
	store   *kubestate.Store
	events  *kubestate.EventRecorder
	elector *leader.Elector
	checker *podidentity.Checker
	labeler *leader.PodLabeler // nil without a pod name
	// synced is set once the informers have synced and the replica
	// campaigns: /readyz answers 200 on a follower from then on.
	synced atomic.Bool
	// client reads and writes the CA's Secret (ca.go).
	client client.Client
	// onLead, when set, runs when the replica starts to lead, after the
	// state is re-read (the CA re-reads its root).
	onLead func(ctx context.Context) error
}

// relabelInterval is how often the leader re-asserts leader.PodLabel
// once it holds, in case a Pod update dropped it.
const relabelInterval = 30 * time.Second

// errNotLeader refuses xDS streams and admin calls on a follower.
var errNotLeader = errors.New("this controller replica does not lead; proxies and clients reach the leader through the Service")

// newCluster connects to the API server, opens the MeshRollout (creating
// it) and prepares the election.
func newCluster(ctx context.Context, cfg ClusterConfig, log *slog.Logger) (*cluster, error) {
	if cfg.REST == nil || cfg.Namespace == "" {
		return nil, errors.New("kubernetes mode: a REST config and a namespace are required")
	}
	if cfg.Name == "" {
		cfg.Name = "gitmesh"
	}
	if cfg.Identity == "" {
		cfg.Identity = os.Getenv("POD_NAME")
	}
	if cfg.Identity == "" {
		h, err := os.Hostname()
		if err != nil {
			return nil, fmt.Errorf("kubernetes mode: naming this replica: %w", err)
		}
		cfg.Identity = h
	}
	if cfg.StatusInterval <= 0 {
		cfg.StatusInterval = 2 * time.Second
	}
	if cfg.PodName == "" {
		cfg.PodName = os.Getenv("POD_NAME")
	}
	if cfg.PodNamespace == "" {
		cfg.PodNamespace = os.Getenv("POD_NAMESPACE")
	}
	if cfg.PodNamespace == "" {
		cfg.PodNamespace = cfg.Namespace
	}
	scheme := runtime.NewScheme()
	if err := corev1.AddToScheme(scheme); err != nil {
		return nil, fmt.Errorf("kubernetes mode: %w", err)
	}
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		return nil, fmt.Errorf("kubernetes mode: %w", err)
	}
	c, err := client.New(cfg.REST, client.Options{Scheme: scheme})
	if err != nil {
		return nil, fmt.Errorf("kubernetes mode: creating client: %w", err)
	}
	cs, err := kubernetes.NewForConfig(cfg.REST)
	if err != nil {
		return nil, fmt.Errorf("kubernetes mode: creating clientset: %w", err)
	}
	store, err := kubestate.Open(ctx, c, cfg.Namespace, cfg.Name,
		kubestate.WithIdentity(cfg.Identity), kubestate.WithLogger(log.With("component", "kubestate")))
	if err != nil {
		return nil, fmt.Errorf("kubernetes mode: %w", err)
	}
	el, err := leader.New(leader.Config{
		Client: cs, Namespace: cfg.Namespace, Name: cfg.Name, Identity: cfg.Identity,
		LeaseDuration: cfg.LeaseDuration, RenewDeadline: cfg.RenewDeadline, RetryPeriod: cfg.RetryPeriod,
		Logger: log.With("component", "leader"),
	})
	if err != nil {
		return nil, fmt.Errorf("kubernetes mode: %w", err)
	}
	cl := &cluster{cfg: cfg, log: log, store: store, elector: el, client: c,
		events: kubestate.NewEventRecorder(cs, store.Object(), cfg.Identity)}
	if cfg.PodName != "" {
		if cl.labeler, err = leader.NewPodLabeler(cs, cfg.PodNamespace, cfg.PodName, cfg.LeaderPodSelector, log.With("component", "leader")); err != nil {
			return nil, fmt.Errorf("kubernetes mode: %w", err)
		}
	} else {
		log.Warn("no pod name ($POD_NAME): the leader does not label its Pod, so Services selecting " + leader.PodLabel + " find no endpoint")
	}
	if cfg.CheckPods {
		cl.checker = podidentity.New(podidentity.Client{Interface: cs})
	}
	return cl, nil
}

// xdsOptions gate streams on leadership and admit nodes by their Pods.
func (cl *cluster) xdsOptions() []xds.Option {
	opts := []xds.Option{xds.WithStreamGate(func() error {
		if !cl.elector.Leading() {
			return errNotLeader
		}
		return nil
	})}
	if cl.checker != nil {
		opts = append(opts, xds.WithAdmission(cl.checker.Check))
	}
	return opts
}

// adminHandler answers /api/ with 503 on a follower: its reconciler does
// not run, so it can neither act nor report. A follower's /readyz
// answers 200 ("standby") once its informers have synced, so every
// replica is Ready and a PodDisruptionBudget can evict any of them; the
// Services route to the leader by leader.PodLabel instead. The leader's
// /readyz is the reconciler's; /healthz and /metrics answer on every
// replica.
func (cl *cluster) adminHandler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if cl.elector.Leading() {
			next.ServeHTTP(w, req)
			return
		}
		switch {
		case req.URL.Path == "/readyz" && req.Method == http.MethodGet:
			if !cl.synced.Load() {
				http.Error(w, "waiting for the Kubernetes informers to sync", http.StatusServiceUnavailable)
				return
			}
			fmt.Fprintln(w, "standby")
		case strings.HasPrefix(req.URL.Path, "/api/"):
			http.Error(w, errNotLeader.Error(), http.StatusServiceUnavailable)
		default:
			next.ServeHTTP(w, req)
		}
	})
}

// run campaigns; while this replica leads, it re-reads the state its
// predecessor wrote, runs the reconciler and publishes the MeshRollout's
// status. It returns when ctx is done (nil) or leadership is lost
// (leader.ErrLostLeadership); the caller then stops the whole replica.
func (cl *cluster) run(ctx context.Context, rec *reconciler.Reconciler) error {
	defer cl.events.Shutdown()
	cl.synced.Store(true)
	return cl.elector.Run(ctx, func(ctx context.Context) error {
		labelCtx, stopLabel := context.WithCancel(ctx)
		labelled := make(chan struct{})
		go func() {
			defer close(labelled)
			cl.labelPod(labelCtx)
		}()
		defer func() {
			stopLabel()
			<-labelled
			cl.unlabelPod(ctx)
		}()
		if err := cl.store.Sync(ctx); err != nil {
			return fmt.Errorf("reading the state at the start of leadership: %w", err)
		}
		if cl.onLead != nil {
			if err := cl.onLead(ctx); err != nil {
				return fmt.Errorf("starting to lead: %w", err)
			}
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			cl.store.PublishStatus(ctx, rec, cl.cfg.StatusInterval)
		}()
		err := rec.Run(ctx)
		<-done
		return err
	})
}

// labelPod claims leader.PodLabel for this replica's Pod while ctx (the
// leadership) lasts: at once, retried every RetryPeriod until it
// succeeds, then every relabelInterval.
func (cl *cluster) labelPod(ctx context.Context) {
	if cl.labeler == nil {
		return
	}
	retry := cl.cfg.RetryPeriod
	if retry <= 0 {
		retry = leader.DefaultRetryPeriod
	}
	t := time.NewTimer(0)
	defer t.Stop()
	claimed := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := cl.labeler.Claim(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			cl.log.Error("routing the Services to this leader", "pod", cl.labeler.Pod(), "err", err)
			t.Reset(retry)
			continue
		}
		if !claimed {
			claimed = true
			cl.log.Info("labelled this leader's pod; the Services route to it", "pod", cl.labeler.Pod(), "label", leader.PodLabel)
		}
		t.Reset(relabelInterval)
	}
}

// unlabelPod removes leader.PodLabel from this replica's Pod when it
// stops leading, so the Services stop routing to it at once; a replica
// that cannot (it crashed, or lost the API server) is unlabelled by its
// successor.
func (cl *cluster) unlabelPod(ctx context.Context) {
	if cl.labeler == nil {
		return
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := cl.labeler.Release(rctx); err != nil {
		cl.log.Warn("leaving leadership with the pod label in place; the next leader removes it", "err", err)
	}
}

// Leading reports whether the replica leads (always true outside the
// Kubernetes mode).
func (c *Controller) Leading() bool {
	return c.cluster == nil || c.cluster.elector.Leading()
}

// state is where a controller keeps its state: bbolt under StateDir, or
// a cluster.
type state struct {
	store   reconciler.StateStore
	closeDB func() error
	cluster *cluster // nil outside the Kubernetes mode
}

// openState opens the bbolt store, or the cluster's when cfg.Cluster is set.
func openState(ctx context.Context, cfg Config, log *slog.Logger) (*state, error) {
	if cfg.Cluster == nil {
		db, err := reconciler.OpenStore(cfg.StateDir, 5*time.Second)
		if err != nil {
			return nil, err
		}
		return &state{store: db, closeDB: db.Close}, nil
	}
	cl, err := newCluster(ctx, *cfg.Cluster, log)
	if err != nil {
		return nil, err
	}
	return &state{store: cl.store, closeDB: func() error { return nil }, cluster: cl}, nil
}

func (st *state) xdsOptions() []xds.Option {
	if st.cluster == nil {
		return nil
	}
	return st.cluster.xdsOptions()
}

func (st *state) recorder() reconciler.Recorder {
	if st.cluster == nil {
		return nil
	}
	return st.cluster.events
}

func (st *state) adminHandler(h http.Handler) http.Handler {
	if st.cluster == nil {
		return h
	}
	return st.cluster.adminHandler(h)
}
