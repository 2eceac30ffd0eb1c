#!/usr/bin/env bash
# Builds the gitmesh image (Dockerfile) with the first container engine that
# answers: docker, then podman. A client whose engine does not run (docker
# installed, no daemon) does not count: `docker info` must succeed.
#
# Exit status: 0 built; 2 no container engine is running (nothing built,
# the message says how to get one); otherwise the engine's own status.
set -euo pipefail
cd "$(dirname "$0")/.."

image="${1:-ghcr.io/gitmesh/gitmesh:dev}"
engine=""
for e in docker podman; do
  if command -v "$e" >/dev/null 2>&1 && "$e" info >/dev/null 2>&1; then
    engine="$e"
    break
  fi
done
if [ -z "$engine" ]; then
  cat >&2 <<MSG
make image: no container engine is running, so $image was not built.
  docker: $(command -v docker >/dev/null 2>&1 && echo "client installed, but 'docker info' fails (no daemon?)" || echo "not installed")
  podman: $(command -v podman >/dev/null 2>&1 && echo "installed, but 'podman info' fails" || echo "not installed")
Start one (e.g. 'systemctl start docker') or build elsewhere with:
  docker build -t $image .
MSG
  exit 2
fi

revision="$(git rev-parse HEAD 2>/dev/null || echo unknown)"
version="$(git describe --tags --always --dirty 2>/dev/null || echo dev)"
echo "make image: building $image with $engine" >&2
exec "$engine" build \
  --build-arg VERSION="$version" \
  --build-arg REVISION="$revision" \
  --build-arg CREATED="$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
  -t "$image" .
