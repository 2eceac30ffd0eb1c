# syntax=docker/dockerfile:1
# The gitmesh image the Helm chart runs: two static binaries, /gitmesh for
# the controller, the CLI and the sidecar's proxy-init container, and
# /gitmesh-proxy (the proxy alone, what `gitmesh proxy` runs) for the
# gateway and the sidecar, which then map a third of the binary.
#
#   make image                      # IMAGE=ghcr.io/gitmesh/gitmesh:dev
#   docker build -t gitmesh .       # the default stage, with iptables
#   docker build --target distroless -t gitmesh:distroless .
#
# The default stage carries iptables because `gitmesh proxy-init` (iptables
# capture mode) runs iptables-restore, a dynamically linked program with
# kernel-backend modules; everything else runs as uid 65532 (the sidecar as
# 1337, set by the injector). Without iptables capture (explicit mode, or
# no injector) the distroless stage is enough.

ARG GO_VERSION=1.26

FROM golang:${GO_VERSION}-trixie AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -tags kustomize_disable_go_plugin_support -o /out/gitmesh ./cmd/gitmesh \
 && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/gitmesh-proxy ./cmd/gitmesh-proxy

FROM gcr.io/distroless/static-debian12:nonroot AS distroless
ARG VERSION=dev
ARG REVISION=unknown
LABEL org.opencontainers.image.title="gitmesh" \
      org.opencontainers.image.source="https://github.com/gitmesh/gitmesh" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
COPY --from=build /out/gitmesh /out/gitmesh-proxy /
USER 65532:65532
ENTRYPOINT ["/gitmesh"]

FROM debian:trixie-slim AS runtime
ARG VERSION=dev
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="gitmesh" \
      org.opencontainers.image.description="Declarative GitOps service mesh: Istio-style YAML in Git, compiled to Envoy xDS, rolled out in waves" \
      org.opencontainers.image.source="https://github.com/gitmesh/gitmesh" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}"
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends iptables ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/gitmesh /out/gitmesh-proxy /
USER 65532:65532
ENTRYPOINT ["/gitmesh"]
