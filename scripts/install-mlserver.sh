#!/usr/bin/env bash
# Builds .tools/mlserver-venv: MLServer (a real, independent V2 inference server) with its
# scikit-learn runtime, for the model-quality gate tests (tests/test_gates_mlserver.py). Its own
# virtualenv because MLServer's pins (fastapi, pydantic-settings, numpy, protobuf, ...) are not
# the operator's, which never imports it: the tests run `mlserver start` as a process.
#
# Idempotent: a stamp named by the hash of the pins below says the venv is complete; when the pins
# change the venv is rebuilt from scratch. Packages come from PyPI through pip only.
# Tests call this on first use; `make tools` runs it too.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENV="$ROOT/.tools/mlserver-venv"
PY="${PYTHON:-python3}"

# mlserver-sklearn brings scikit-learn and joblib; pinned here so the trained models are the same
# on every machine.
PINS=(
  "mlserver==1.7.1"
  "mlserver-sklearn==1.7.1"
  "scikit-learn==1.6.1"
)

hash="$(printf '%s\n' "${PINS[@]}" | sha256sum | cut -c1-12)"
stamp="$VENV/.installed-$hash"
mkdir -p "$ROOT/.tools"
exec 9>"$ROOT/.tools/mlserver-venv.lock"
flock 9 # one builder at a time: parallel test runs share .tools
if [[ -f "$stamp" ]]; then
  echo "tools: MLServer already in .tools/mlserver-venv (${PINS[*]})"
  exit 0
fi
echo "tools: building .tools/mlserver-venv with ${PINS[*]} (a few minutes the first time)"
start=$(date +%s)
rm -rf "$VENV"
"$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${PINS[@]}"
"$VENV/bin/mlserver" --help >/dev/null
touch "$stamp"
echo "tools: .tools/mlserver-venv is ready in $(($(date +%s) - start)) s"
