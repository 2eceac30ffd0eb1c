// Package tokenreview authenticates proxies that join a locked control
// plane with a projected Kubernetes ServiceAccount token, through the API
// server's TokenReview. It is the controller's side only, kept apart from
// package xdsauth so that the proxy, which joins, does not link the
// Kubernetes client.
package tokenreview

import (
	"context"
	"fmt"
	"slices"
	"strings"

	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/gitmesh/gitmesh/ca"
	"github.com/gitmesh/gitmesh/xds/xdsauth"
)

// podNameExtra is the TokenReview user extra naming the Pod a projected
// token is bound to.
const podNameExtra = "authentication.kubernetes.io/pod-name"

// Authenticator authenticates projected ServiceAccount tokens (audience
// xdsauth.Audience) with the API server's TokenReview, as istiod does: the
// identity is the token's namespace and service account, the pod its
// bound pod. The caller declares only its node id.
type Authenticator struct {
	client kubernetes.Interface
}

// New returns an Authenticator that asks client's
// API server (the controller's ServiceAccount needs create on
// authentication.k8s.io tokenreviews).
func New(client kubernetes.Interface) *Authenticator { return &Authenticator{client: client} }

var _ xdsauth.Authenticator = (*Authenticator)(nil)

// Authenticate reviews token. A token that is not a JWT is not of its
// kind; one the API server does not authenticate, for another audience,
// of a user that is not a ServiceAccount or bound to no pod is refused.
func (t *Authenticator) Authenticate(ctx context.Context, token string, declared xdsauth.Binding) (xdsauth.Binding, error) {
	if strings.Count(token, ".") != 2 {
		return xdsauth.Binding{}, fmt.Errorf("service account token: %w", xdsauth.ErrUnknownToken)
	}
	tr, err := t.client.AuthenticationV1().TokenReviews().Create(ctx, &authenticationv1.TokenReview{
		Spec: authenticationv1.TokenReviewSpec{Token: token, Audiences: []string{xdsauth.Audience}},
	}, metav1.CreateOptions{})
	if err != nil {
		return xdsauth.Binding{}, fmt.Errorf("reviewing the service account token: %w", err)
	}
	st := tr.Status
	if !st.Authenticated {
		return xdsauth.Binding{}, fmt.Errorf("service account token not authenticated: %s", st.Error)
	}
	if !slices.Contains(st.Audiences, xdsauth.Audience) {
		return xdsauth.Binding{}, fmt.Errorf("service account token is for audiences %v, want %q", st.Audiences, xdsauth.Audience)
	}
	parts := strings.Split(st.User.Username, ":")
	if len(parts) != 4 || parts[0] != "system" || parts[1] != "serviceaccount" {
		return xdsauth.Binding{}, fmt.Errorf("token of user %q is not a service account's", st.User.Username)
	}
	pod := st.User.Extra[podNameExtra]
	if len(pod) != 1 || pod[0] == "" {
		return xdsauth.Binding{}, fmt.Errorf("service account token of %s is bound to no pod (use a projected token)", st.User.Username)
	}
	return xdsauth.Binding{
		NodeID: declared.NodeID,
		ID:     ca.Identity{TrustDomain: declared.ID.TrustDomain, Namespace: parts[2], ServiceAccount: parts[3]},
		Pod:    pod[0],
	}, nil
}
