#!/usr/bin/env bash
# Builds the control-plane binaries the Kubernetes tests run under
# controller-runtime's envtest: kube-apiserver and etcd, from the Go module
# proxy, into a cache directory outside the repository:
#
#   ${KUBE_TOOLS_DIR:-$HOME/.cache/gitmesh/kube/<kubernetes version>}/{kube-apiserver,etcd}
#
# Each binary is built in its own scratch module under that directory, so
# nothing reaches gitmesh's go.mod. kube-apiserver comes from
# k8s.io/kubernetes, whose go.mod requires its staging modules (k8s.io/api,
# k8s.io/apiserver, ...) at v0.0.0 and replaces them with ./staging paths that
# the module proxy does not serve: the scratch module replaces each of them
# with the published k8s.io/X v0.<minor>.<patch> instead.
#
# Idempotent: a binary that exists is not rebuilt. Concurrent runs (several
# worktrees on one machine) serialise on a lock file. Prints the directory
# (for KUBEBUILDER_ASSETS) on its last line.
set -euo pipefail

KUBE_VERSION="${KUBE_VERSION:-v1.37.2}"
ETCD_VERSION="${ETCD_VERSION:-v3.7.3}"
GO="${GO:-go}"
dir="${KUBE_TOOLS_DIR:-${HOME}/.cache/gitmesh/kube/${KUBE_VERSION}}"

mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
exec 9>"$dir/.lock"
flock 9

# The scratch modules must not see the caller's module or workspace.
export GOWORK=off GOFLAGS="-mod=mod -buildvcs=false" CGO_ENABLED=0

build_etcd() {
  local src="$dir/src/etcd"
  rm -rf "$src" && mkdir -p "$src"
  (
    cd "$src"
    "$GO" mod init gitmesh.local/kube-tools/etcd >/dev/null 2>&1
    "$GO" get "go.etcd.io/etcd/server/v3@${ETCD_VERSION}"
    "$GO" build -trimpath -o "$dir/etcd.tmp" go.etcd.io/etcd/server/v3
  )
  mv "$dir/etcd.tmp" "$dir/etcd"
}

build_apiserver() {
  local src="$dir/src/kube-apiserver"
  local staging="v0.${KUBE_VERSION#v1.}"
  rm -rf "$src" && mkdir -p "$src"
  (
    cd "$src"
    "$GO" mod init gitmesh.local/kube-tools/kube-apiserver >/dev/null 2>&1
    # k8s.io/kubernetes's own go.mod names the staging modules it requires at v0.0.0.
    local gomod
    gomod="$("$GO" mod download -json "k8s.io/kubernetes@${KUBE_VERSION}" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",*$/\1/p')"
    [ -f "$gomod" ] || { echo "kube-tools: no go.mod for k8s.io/kubernetes@${KUBE_VERSION}" >&2; exit 1; }
    local mods
    mods="$(awk '$1 ~ /^k8s\.io\// && $2 == "v0.0.0" {print $1}' "$gomod" | sort -u)"
    [ -n "$mods" ] || { echo "kube-tools: no staging modules found in $gomod" >&2; exit 1; }
    local args=(-require="k8s.io/kubernetes@${KUBE_VERSION}")
    for m in $mods; do
      args+=(-replace="${m}=${m}@${staging}")
    done
    "$GO" mod edit "${args[@]}"
    "$GO" get "k8s.io/kubernetes/cmd/kube-apiserver@${KUBE_VERSION}"
    local minor="${KUBE_VERSION#v1.}"; minor="${minor%%.*}"
    local pkg=k8s.io/component-base/version
    "$GO" build -trimpath -o "$dir/kube-apiserver.tmp" \
      -ldflags "-s -w -X ${pkg}.gitVersion=${KUBE_VERSION} -X ${pkg}.gitMajor=1 -X ${pkg}.gitMinor=${minor} -X ${pkg}.gitTreeState=clean" \
      k8s.io/kubernetes/cmd/kube-apiserver
  )
  mv "$dir/kube-apiserver.tmp" "$dir/kube-apiserver"
}

if [ -x "$dir/etcd" ]; then
  echo "kube-tools: $dir/etcd exists" >&2
else
  echo "kube-tools: building etcd ${ETCD_VERSION} (about 1.5 min)" >&2
  build_etcd
fi
if [ -x "$dir/kube-apiserver" ]; then
  echo "kube-tools: $dir/kube-apiserver exists" >&2
else
  echo "kube-tools: building kube-apiserver ${KUBE_VERSION} (about 6-8 min cold)" >&2
  build_apiserver
fi
echo "$dir"
