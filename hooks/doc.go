// Package hooks receives push webhooks from Git hosts and asks the
// controller to fetch at once, so that a push reaches the proxies without
// waiting for the next poll.
//
// A Handler serves three endpoints, all authenticated with one shared
// secret:
//
//	POST /hooks/github   X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>
//	POST /hooks/gitlab   X-Gitlab-Token: <secret>
//	POST /hooks/generic  X-Signature-256: sha256=<hex HMAC-SHA256 of the body>
//
// A request that is not authenticated gets 401 and triggers nothing; a body
// over the size limit gets 413. A delivery id seen recently
// (X-GitHub-Delivery, X-Gitlab-Event-UUID, X-Delivery-Id) is a replay: it
// is answered 202 and triggers nothing. GitHub's ping event is answered 200.
// A push whose ref names another branch than the one followed is answered
// 202 without a trigger; anything else that is authenticated triggers,
// since a fetch of an unchanged branch is cheap.
package hooks
