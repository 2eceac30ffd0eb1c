package leader

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
)

// PodLabel marks the leading replica's Pod. The chart's xDS and admin
// Services select it, so they route to the leader while every replica
// stays Ready (docs/kubernetes.md, "HA").
const PodLabel = "gitmesh.io/leader"

// PodLabeler moves PodLabel to the leading replica's Pod. Create it with
// NewPodLabeler.
type PodLabeler struct {
	client    kubernetes.Interface
	namespace string
	name      string
	selector  labels.Selector
	log       *slog.Logger
}

// NewPodLabeler returns a PodLabeler for the Pod namespace/name. selector
// (a label selector, e.g. the release's controller labels; empty selects
// every Pod of the namespace) bounds the Pods it unlabels: the other
// replicas of the same installation.
func NewPodLabeler(client kubernetes.Interface, namespace, name, selector string, log *slog.Logger) (*PodLabeler, error) {
	if client == nil || namespace == "" || name == "" {
		return nil, errors.New("creating pod labeler: a client, a namespace and a pod name are required")
	}
	sel, err := labels.Parse(selector)
	if err != nil {
		return nil, fmt.Errorf("creating pod labeler: parsing selector %q: %w", selector, err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &PodLabeler{client: client, namespace: namespace, name: name, selector: sel, log: log}, nil
}

// Pod is the namespace/name of the Pod it labels.
func (p *PodLabeler) Pod() string { return p.namespace + "/" + p.name }

// Claim labels this replica's Pod, then removes the label from every
// other Pod the selector matches that still has it (a former leader that
// crashed without removing its own). The own Pod goes first, so the
// Services always have an endpoint; a proxy that reaches a former
// leader meanwhile is refused and reconnects.
func (p *PodLabeler) Claim(ctx context.Context) error {
	if err := p.patch(ctx, p.name, true); err != nil {
		return fmt.Errorf("labelling pod %s: %w", p.Pod(), err)
	}
	req, err := labels.NewRequirement(PodLabel, "=", []string{"true"})
	if err != nil {
		return fmt.Errorf("listing labelled pods: %w", err)
	}
	pods, err := p.client.CoreV1().Pods(p.namespace).List(ctx, metav1.ListOptions{LabelSelector: p.selector.Add(*req).String()})
	if err != nil {
		return fmt.Errorf("listing labelled pods in %s: %w", p.namespace, err)
	}
	var errs []error
	for _, pod := range pods.Items {
		if pod.Name == p.name {
			continue
		}
		if err := p.patch(ctx, pod.Name, false); err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("unlabelling former leader pod %s/%s: %w", p.namespace, pod.Name, err))
			continue
		}
		p.log.Info("unlabelled a former leader's pod", "pod", p.namespace+"/"+pod.Name)
	}
	return errors.Join(errs...)
}

// Release removes the label from this replica's Pod (a leader that stops
// cleanly), so the Services stop routing to it before it exits.
func (p *PodLabeler) Release(ctx context.Context) error {
	if err := p.patch(ctx, p.name, false); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("unlabelling pod %s: %w", p.Pod(), err)
	}
	return nil
}

// patch sets (or removes) PodLabel on a Pod with a JSON merge patch,
// which needs only the patch verb.
func (p *PodLabeler) patch(ctx context.Context, pod string, set bool) error {
	var value any // nil removes the label
	if set {
		value = "true"
	}
	body, err := json.Marshal(map[string]any{"metadata": map[string]any{"labels": map[string]any{PodLabel: value}}})
	if err != nil {
		return err
	}
	_, err = p.client.CoreV1().Pods(p.namespace).Patch(ctx, pod, types.MergePatchType, body, metav1.PatchOptions{})
	return err
}
