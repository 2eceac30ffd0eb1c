// Package v1alpha1 holds gitmesh's own policy kinds (apiVersion
// gitmesh.io/v1alpha1), committed to Git next to the Istio policy.
//
// The field comments are the user reference: docs/rollout-policy.md is
// written from them.
package v1alpha1

// GroupVersion is the apiVersion of the kinds in this package.
const GroupVersion = "gitmesh.io/v1alpha1"

// KindRolloutPolicy is the kind of RolloutPolicy.
const KindRolloutPolicy = "RolloutPolicy"
