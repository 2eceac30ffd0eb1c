# gitmesh's habits. `make help` lists them.
GO          ?= go
# Fuzz budgets are iteration counts, not durations: go test turns a duration
# into a context deadline, and its coordinator can report that deadline as a
# failure ("context deadline exceeded") on a loaded machine having found nothing.
FUZZTIME    ?= 5000x
FUZZTIME_SMALL ?= 20000x
PKGS        := ./...
# go test's -timeout applies to each package's test binary. A test that
# hangs fails after it, with every goroutine's stack, instead of holding CI:
# unit packages take seconds, so UNIT_TIMEOUT is short; the end-to-end
# tests take about 2.5 minutes under the race detector on a 2-core machine.
UNIT_TIMEOUT ?= 5m
E2E_TIMEOUT  ?= 15m
# RACE_PKGS run under the race detector in `make test`: the controller's
# loop and its off-loop I/O, the xDS server, the proxy, and the end-to-end
# tests, which exercise all of them together (measured on a 2-core machine
# shared with other jobs: e2e 1m50s-2m20s, 1m40s without -race; the rest
# about 30s; plus builds).
RACE_PKGS   := ./reconciler/... ./xds/... ./proxy/... ./e2e/...
STATICCHECK ?= $(shell command -v staticcheck || echo $$($(GO) env GOPATH)/bin/staticcheck)
# Packages whose tests run against a real API server (internal/kubetest).
KUBE_PKGS   := ./internal/kubetest/... ./reconciler/kubestate/... ./internal/podidentity/... ./e2e/kube/...
# Packages whose tests run the helm CLI (internal/helmtest).
HELM_PKGS   := ./charts/... ./internal/helmtest/... ./e2e/helm/...
IMAGE       ?= ghcr.io/gitmesh/gitmesh:dev

.PHONY: help test unit race e2e fuzz lint tools bench bench-go bench-tools bench-e2e generate build clean kube-tools test-kubernetes helm-tool test-helm image

help: ## show this help
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

test: kube-tools helm-tool lint unit race fuzz ## everything CI runs: lint, unit tests, race-checked end-to-end tests (local, Kubernetes, Helm), brief fuzzing

# unit leaves e2e/... to race, so make test runs the end-to-end tests once,
# under the race detector.
unit: ## go test of every package but e2e/... (each within UNIT_TIMEOUT)
	$(GO) test -count=1 -timeout $(UNIT_TIMEOUT) $$($(GO) list $(PKGS) | grep -Ev '/e2e(/|$$)')

race: ## go test -race over reconciler, xds, proxy and the end-to-end tests
	$(GO) test -race -count=1 -timeout $(E2E_TIMEOUT) $(RACE_PKGS)

e2e: ## only the end-to-end tests (real git server, controller, proxies, backends), without -race
	$(GO) test -count=1 -timeout $(E2E_TIMEOUT) -v ./e2e/...

fuzz: ## run each fuzz target briefly (FUZZTIME, default 5000x: the compiler and its YAML reader; proxy matchers, access-log formats and webhook payloads FUZZTIME_SMALL, 20000x)
	$(GO) test ./compiler -run '^$$' -fuzz '^FuzzCompile$$' -fuzztime $(FUZZTIME)
	$(GO) test ./compiler -run '^$$' -fuzz '^FuzzYAMLTree$$' -fuzztime $(FUZZTIME)
	$(GO) test ./proxy/config -run '^$$' -fuzz '^FuzzParseLogFormat$$' -fuzztime $(FUZZTIME_SMALL)
	$(GO) test ./proxy/routing -run '^$$' -fuzz '^FuzzDomainMatch$$' -fuzztime $(FUZZTIME_SMALL)
	$(GO) test ./proxy/routing -run '^$$' -fuzz '^FuzzPathMatch$$' -fuzztime $(FUZZTIME_SMALL)
	$(GO) test ./proxy/routing -run '^$$' -fuzz '^FuzzHeaderMatch$$' -fuzztime $(FUZZTIME_SMALL)
	$(GO) test ./proxy/routing -run '^$$' -fuzz '^FuzzQueryParamMatch$$' -fuzztime $(FUZZTIME_SMALL)
	$(GO) test ./proxy/auth -run '^$$' -fuzz '^FuzzNormalizePath$$' -fuzztime $(FUZZTIME_SMALL)
	$(GO) test ./hooks -run '^$$' -fuzz '^FuzzParsePush$$' -fuzztime $(FUZZTIME_SMALL)

lint: ## gofmt, go vet (and staticcheck when installed)
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	@if [ -x "$(STATICCHECK)" ]; then $(STATICCHECK) $(PKGS); else echo "staticcheck not installed (make tools installs it); skipped"; fi

kube-tools: ## build kube-apiserver and etcd once into KUBE_TOOLS_DIR (default ~/.cache/gitmesh/kube/<version>)
	GO=$(GO) ./hack/kube-tools.sh

test-kubernetes: kube-tools ## only the tests against a real API server (envtest)
	$(GO) test -count=1 -timeout 15m $(KUBE_PKGS)
	$(GO) test -count=1 -timeout 15m -run '^TestKubernetes' ./e2e/

helm-tool: ## build helm once into HELM_TOOLS_DIR (default ~/.cache/gitmesh/helm/<version>), outside go.mod
	GO=$(GO) ./hack/helm-tool.sh

test-helm: kube-tools helm-tool ## only the chart tests: lint, template, strict decoding, install/upgrade/uninstall on envtest
	$(GO) test -count=1 -timeout 15m $(HELM_PKGS) ./inject/...
	$(GO) test -count=1 -run '^TestChartArgsParse$$' ./cmd/gitmesh/

image: ## build the container image IMAGE with docker or podman; exits 2 with a message when no engine runs
	@./hack/image.sh "$(IMAGE)"

tools: ## install staticcheck (from the Go module proxy)
	$(GO) install honnef.co/go/tools/cmd/staticcheck@v0.8.2

# BENCH selects one part of the harness (dataplane, compiler or
# controlplane; default all); BENCH_QUICK=1 is a smoke run of about two
# minutes. Results go to bench-results/ (gitignored), plots to
# docs/performance/ (committed with docs/performance.md).
BENCH       ?= all
bench: ## the benchmark harness: data plane vs HAProxy/nginx, compiler, control plane (BENCH=dataplane|compiler|controlplane, BENCH_QUICK=1); docs/performance.md
	@if [ "$(BENCH)" = all ] || [ "$(BENCH)" = dataplane ]; then $(MAKE) --no-print-directory bench-tools; fi
	$(GO) build -o bin/gitmesh-bench ./cmd/gitmesh-bench
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w" -tags kustomize_disable_go_plugin_support -o bin/gitmesh ./cmd/gitmesh  # as the image builds it
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w" -o bin/gitmesh-proxy ./cmd/gitmesh-proxy
	bin/gitmesh-bench -bench $(BENCH) -quick=$(if $(filter 1,$(BENCH_QUICK)),true,false) -gitmesh bin/gitmesh -gitmesh-proxy bin/gitmesh-proxy -results bench-results -plots docs/performance

bench-go: ## the Go benchmarks (compiler, proxy) with go test -bench
	$(GO) test -run '^$$' -bench . -benchmem $(PKGS)

bench-tools: ## install wrk, HAProxy, nginx and h2load (nghttp2-client) from Debian when missing (as root)
	@missing=""; for t in wrk:wrk haproxy:haproxy nginx:nginx h2load:nghttp2-client; do \
		command -v $${t%%:*} >/dev/null 2>&1 || missing="$$missing $${t#*:}"; done; \
	if [ -z "$$missing" ]; then echo "bench tools present"; \
	elif [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing; \
	else echo "missing:$$missing (run as root, or apt-get install them)"; exit 1; fi

bench-e2e: ## end-to-end timings: git push -> traffic, time to rollback (median of 5)
	$(GO) test -run '^$$' -bench . -benchtime 5x ./e2e/

CONTROLLER_GEN ?= $(GO) run sigs.k8s.io/controller-tools/cmd/controller-gen@v0.23.0

generate: ## regenerate the MeshRollout CRD (config/crd) and its deep copies with controller-gen
	GOFLAGS=-mod=mod $(CONTROLLER_GEN) object:headerFile=hack/boilerplate.go.txt paths=./api/v1alpha1/...
	GOFLAGS=-mod=mod $(CONTROLLER_GEN) crd paths=./api/v1alpha1/... output:crd:artifacts:config=config/crd
	cp config/crd/gitmesh.io_meshrollouts.yaml charts/gitmesh/crds/

build: ## build bin/gitmesh and bin/gitmesh-proxy (the sidecar's slim binary)
	$(GO) build -tags kustomize_disable_go_plugin_support -o bin/gitmesh ./cmd/gitmesh
	$(GO) build -o bin/gitmesh-proxy ./cmd/gitmesh-proxy

clean: ## remove build output and the demo directory
	rm -rf bin gitmesh-demo
