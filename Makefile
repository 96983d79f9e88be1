# The two commands a user needs are `make demo` and `make test`; each sets itself up.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)

PY_DIRS := $(wildcard operator testbed tests bench e2e runtime-images)
# The real control plane (etcd, kube-apiserver, kube-controller-manager), the envtest convention.
KUBEBUILDER_ASSETS ?= $(abspath ../shared/k8s/bin)
export KUBEBUILDER_ASSETS

.PHONY: demo test lint unit crd golden bench tools tools-helm tools-prometheus tools-mlserver clean e2e

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

demo: $(STAMP) tools-prometheus tools-mlserver
	PATH="$(CURDIR)/.tools/bin:$$PATH" $(BIN)/python -m testbed.demo $(DEMO_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check $(PY_DIRS)
	$(BIN)/ruff format --check $(PY_DIRS)
	$(BIN)/mypy
	$(BIN)/mypy --strict --ignore-missing-imports runtime-images/model-puller/puller.py
	$(BIN)/lint-imports

unit: $(STAMP)
	$(BIN)/pytest -q

test: tools lint
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
bench: tools
	$(BIN)/python bench/reconcile_latency.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
