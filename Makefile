# The two commands a user needs are `make demo` and `make test`; each sets itself up.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)

PY_DIRS := $(wildcard operator testbed tests bench e2e runtime-images scripts)
# The real control plane (etcd, kube-apiserver, kube-controller-manager; the envtest convention) and
# the upstream CRDs: named by these variables, else ../shared beside the clone, else .tools/, where
# `make control-plane` (scripts/install-control-plane.py) fetches them, pinned by checksum.
SHARED := $(abspath ../shared)
ifeq ($(strip $(KUBEBUILDER_ASSETS)),)
KUBEBUILDER_ASSETS := $(if $(wildcard $(SHARED)/k8s/bin/kube-apiserver),$(SHARED)/k8s/bin,$(CURDIR)/.tools/k8s/bin)
endif
ifeq ($(strip $(MODELDEPLOY_THIRD_PARTY_CRDS)),)
MODELDEPLOY_THIRD_PARTY_CRDS := $(if $(wildcard $(SHARED)/third-party-crds/*.yaml),$(SHARED)/third-party-crds,$(CURDIR)/.tools/third-party-crds)
endif
export KUBEBUILDER_ASSETS MODELDEPLOY_THIRD_PARTY_CRDS

.PHONY: demo test lint unit crd golden bench control-plane tools tools-helm tools-prometheus tools-mlserver clean e2e

$(STAMP): pyproject.toml
	@echo "setup: creating .venv with $(PYTHON)"
	@$(PYTHON) -m venv $(VENV)
	@echo "setup: installing the Python packages into .venv (pip, then -e '.[dev]'; about a minute)"
	@$(BIN)/pip install --quiet --upgrade pip
	@$(BIN)/pip install --quiet -e '.[dev]'
	@rm -f $(VENV)/.installed-*
	@touch $@
	@echo "setup: .venv is ready"

# The non-Python tools, into .tools/bin; each command asks only for what it runs. Nothing is
# installed system-wide and no service is enabled (see each script's header).
tools: tools-helm tools-prometheus tools-mlserver

tools-helm: $(STAMP)  # helm and kubectl: the chart tests
	@bash scripts/install-tools.sh

tools-prometheus:  # prometheus and promtool: the analysis tests and the demo's rollouts
	@bash scripts/install-prometheus.sh

tools-mlserver:  # MLServer + scikit-learn in .tools/mlserver-venv: the model-quality gate tests and demo
	@bash scripts/install-mlserver.sh

# Found, or fetched into .tools/; offline with neither, one line says what is missing and how to
# provide it, and the command stops (non-zero) before anything else.
# The script prints its failure line on stdout (its progress on stderr); $(error) shows that line as
# make's only one, rather than the line and make's "Error 1" after it.
control-plane: $(STAMP)
	$(eval SETUP_FAILED := $$(shell $(BIN)/python scripts/install-control-plane.py --for-make))
	$(if $(SETUP_FAILED),$(error $(SETUP_FAILED)))
	@true

demo: control-plane tools-helm tools-prometheus tools-mlserver  # tools-helm: the kubectl the demo runs
	PATH="$(CURDIR)/.tools/bin:$$PATH" $(BIN)/python -m testbed.demo $(DEMO_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check $(PY_DIRS)
	$(BIN)/ruff format --check $(PY_DIRS)
	$(BIN)/mypy
	$(BIN)/mypy --strict --ignore-missing-imports runtime-images/model-puller/puller.py
	$(BIN)/mypy --strict scripts/install-control-plane.py
	$(BIN)/lint-imports

unit: $(STAMP)
	$(BIN)/pytest -q

test: control-plane tools lint
	PATH="$(CURDIR)/.tools/bin:$$PATH" $(BIN)/pytest -q

# Opt-in: a real cluster (kind) made by e2e/setup-kind.sh; see docs/e2e.md.
e2e: $(STAMP)
	@echo "setup: installing the e2e extras into .venv"
	@$(BIN)/pip install --quiet -e '.[dev,e2e]'
	$(BIN)/pytest e2e/ -v --kubeconfig $${MODELDEPLOY_E2E_KUBECONFIG:-.tools/e2e/kubeconfig}

crd: $(STAMP)
	$(BIN)/modeldeploy crd --output crds/

golden: $(STAMP)
	UPDATE_GOLDEN=1 $(BIN)/pytest -q tests/test_golden.py

# The operator against a bare-client floor on the real control plane; `make bench BENCH_ARGS="--n 1000"`.
bench: control-plane tools
	$(BIN)/python bench/reconcile_latency.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
