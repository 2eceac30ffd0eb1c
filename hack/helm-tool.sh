#!/usr/bin/env bash
# Builds the helm CLI the chart tests run (internal/helmtest), from the Go
# module proxy, into a cache directory outside the repository:
#
#   ${HELM_TOOLS_DIR:-$HOME/.cache/gitmesh/helm/<helm version>}/helm
#
# `go install pkg@version` builds in a module of its own, so helm and its
# dependencies never reach gitmesh's go.mod. v3.21.4 rather than v3.22.0:
# the module proxy serves v3.22.0 but it is not approved on our machines.
#
# Idempotent: a binary that exists is not rebuilt (about 100 s cold).
# Concurrent runs serialise on a lock file. Prints the binary's path on its
# last line.
set -euo pipefail

HELM_VERSION="${HELM_VERSION:-v3.21.4}"
GO="${GO:-go}"
dir="${HELM_TOOLS_DIR:-${HOME}/.cache/gitmesh/helm/${HELM_VERSION}}"

mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
exec 9>"$dir/.lock"
flock 9

if [ -x "$dir/helm" ]; then
  echo "helm-tool: $dir/helm exists" >&2
else
  echo "helm-tool: building helm ${HELM_VERSION} (about 100 s cold)" >&2
  (
    cd "$dir"
    GOWORK=off GOFLAGS=-mod=mod CGO_ENABLED=0 GOBIN="$dir" \
      "$GO" install -trimpath \
      -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=${HELM_VERSION}" \
      "helm.sh/helm/v3/cmd/helm@${HELM_VERSION}"
  )
fi
echo "$dir/helm"
