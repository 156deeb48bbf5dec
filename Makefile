# zdr: the two commands that matter are `make demo` and `make test` (README).
SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV := .venv
PY := $(VENV)/bin/python
export KUBECONFIG ?= $(CURDIR)/.cluster/kubeconfig
export PATH := $(CURDIR)/.cluster/bin:$(PATH)

.PHONY: help venv binaries cluster cluster-down images operator-image crd test test-unit test-go test-e2e lint run argo demo bench bench-load

help: ## list the targets
	@awk -F':.*## ' '/^[a-z-]+:.*## / {printf "  make %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(VENV)/.installed: pyproject.toml
	@echo "==> installing Python packages into $(VENV)"
	@test -x $(PY) || python3 -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip
	@$(PY) -m pip install -q -e '.[test]'
	@touch $@

venv: $(VENV)/.installed ## create the virtualenv with the package and test tools

binaries: ## build (or reuse from ~/.cache/zdr) the Kubernetes and etcd binaries
	@bash hack/install-deps.sh
	@bash hack/build-binaries.sh

cluster: ## start the local single-node Kubernetes (no-op when it runs)
	@bash hack/cluster-up.sh

cluster-down: ## stop the local cluster and clean up the host
	@bash hack/cluster-down.sh

images: ## rebuild the test app and pause images and import them into containerd
	@bash hack/images.sh --force

operator-image: venv ## build the operator's OCI image (Debian packages + wheels, no engine) and import it
	@bash hack/operator-image.sh

crd: venv ## install the CRD into the current cluster
	@kubectl apply --server-side --force-conflicts -k crds/

test-unit: venv ## unit tests (no cluster)
	@$(PY) -m pytest tests/unit -q

test-go: ## the test app's Go tests
	@cd testapp && GOTOOLCHAIN=local go test ./...

lint: venv ## ruff and mypy --strict (the operator and the traffic instrument)
	@$(VENV)/bin/ruff check operator tests bench hack
	@$(VENV)/bin/mypy
	@$(VENV)/bin/mypy --strict --follow-imports=silent bench/prober bench/flows.py bench/load.py bench/vegeta.py bench/kernel.py

test: venv cluster ## every test: unit, Go, and end to end on the local cluster
	@$(MAKE) --no-print-directory test-go
	@$(PY) -m pytest tests/unit -v
	@$(MAKE) --no-print-directory test-e2e ZDR_E2E_KUBECONFIG=$(CURDIR)/.cluster/kubeconfig ZDR_IMAGE_LOADER=containerd

ZDR_IMAGE_LOADER ?= containerd
test-e2e: venv ## end-to-end tests on the cluster ZDR_E2E_KUBECONFIG names, images loaded by ZDR_IMAGE_LOADER (containerd, kind, registry)
	@test -n "$(ZDR_E2E_KUBECONFIG)" || { echo "set ZDR_E2E_KUBECONFIG (make test runs them on the local cluster)"; exit 2; }
	@bash hack/images.sh --build-only
	@bash hack/operator-image.sh --build-only
	@set -e; exports="$$(bash hack/load-images.sh $(ZDR_IMAGE_LOADER))"; eval "$$exports"; \
		ZDR_E2E_KUBECONFIG=$(ZDR_E2E_KUBECONFIG) $(PY) -m pytest tests/e2e -v

run: venv crd ## run the operator against the current kubeconfig
	@$(VENV)/bin/kopf run --standalone --all-namespaces -m zdr.handlers

argo: venv cluster ## the Argo Rollouts controller (the bench's peer) against the local cluster, until Ctrl-C
	@$(PY) -m bench.argo

demo: venv cluster crd ## a rollout under live traffic, start to finish
	@$(PY) -m bench.demo

BENCH_ARGS ?=
bench: venv cluster crd ## the zero-downtime benchmark, 3 runs of each scenario (table, JSON, PNG); BENCH_ARGS=--help
	@$(PY) -m bench.run $(BENCH_ARGS)

bench-load: venv cluster crd ## 10 runs of each zdr strategy beside two busy loops, graceful app (docs/bench/loaded)
	@$(PY) -m bench.run --only deployment,zdr-rolling,zdr-bluegreen,zdr-canary --runs 10 --load 2 \
		--shutdown graceful --drain 1s --out docs/bench/loaded $(BENCH_ARGS)
