#!/usr/bin/env bash
# Creates (or reuses) a kind cluster with everything the modeldeploy e2e suite needs:
#   - Envoy Gateway (which brings the Gateway API CRDs), a GatewayClass "eg" and the Gateway
#     gateway/inference-gateway that the ModelDeployments attach their routes to;
#   - kube-prometheus-stack (Prometheus Operator + one Prometheus in "monitoring", whose Service
#     prometheus-operated is the chart's default prometheusUrl), set to pick up every PodMonitor;
#   - optionally prometheus-adapter (WITH_PROMETHEUS_ADAPTER=1), for HPAs on Triton's queue time;
#   - the operator and model-puller images, built from this checkout and loaded into the node;
#   - NVIDIA's Triton image, pulled into the node ahead of time (it is large: ~10 GB);
#   - the e2e namespace.
# Then it writes a kubeconfig and prints the command that runs the suite.
#
# Idempotent: every step checks or upgrades in place, so running it again repairs a half-made
# cluster. Delete everything with: kind delete cluster --name "$CLUSTER".
#
# Needs: docker, kind (>= 0.32, for the 1.36 node image), kubectl, helm (>= 3.8, for OCI charts). See docs/e2e.md.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"

CLUSTER="${MODELDEPLOY_E2E_CLUSTER:-modeldeploy-e2e}"
NAMESPACE="${MODELDEPLOY_E2E_NAMESPACE:-modeldeploy-e2e}"
KUBECONFIG_OUT="${MODELDEPLOY_E2E_KUBECONFIG:-$ROOT/.tools/e2e/kubeconfig}"
# The images the chart will run; the tag "e2e" never exists in a registry, so nothing is pulled by mistake.
OPERATOR_IMAGE="${MODELDEPLOY_E2E_OPERATOR_IMAGE:-ghcr.io/modeldeploy/modeldeploy-operator:e2e}"
PULLER_IMAGE="${MODELDEPLOY_E2E_PULLER_IMAGE:-ghcr.io/modeldeploy/model-puller:e2e}"
TRITON_IMAGE="${MODELDEPLOY_E2E_TRITON_IMAGE:-nvcr.io/nvidia/tritonserver:25.10-py3}"

# Versions this suite was written against. Override any of them from the environment.
# The node: Kubernetes 1.36, the minor of the test control plane (scripts/install-control-plane.py)
# and of the kubectl the tests use (scripts/install-tools.sh). v1.36.1 is kind v0.32.0's default
# node image, with the digest kind's own source names at that tag; a patch behind the control
# plane's v1.36.2 (same minor, same APIs). Not yet run: the machine that wrote this has no Docker.
KIND_NODE_IMAGE="${KIND_NODE_IMAGE:-kindest/node:v1.36.1@sha256:3489c7674813ba5d8b1a9977baea8a6e553784dab7b84759d1014dbd78f7ebd5}"
# Envoy Gateway's compatibility matrix lists Kubernetes 1.30-1.33 for v1.5 (the 1.34 node before
# was outside it too); unchanged until a run on kind can check a newer release with the 1.36 node.
ENVOY_GATEWAY_VERSION="${ENVOY_GATEWAY_VERSION:-v1.5.8}"
KUBE_PROMETHEUS_STACK_VERSION="${KUBE_PROMETHEUS_STACK_VERSION:-79.12.0}"
PROMETHEUS_ADAPTER_VERSION="${PROMETHEUS_ADAPTER_VERSION:-5.2.0}"
WITH_PROMETHEUS_ADAPTER="${WITH_PROMETHEUS_ADAPTER:-0}"
SKIP_BUILD="${SKIP_BUILD:-0}"  # 1: the images are already in the node (e.g. a rerun without code changes)

log() { printf '\n==> %s\n' "$*" >&2; }
die() { printf 'setup-kind: %s\n' "$*" >&2; exit 1; }

need() {
  command -v "$1" >/dev/null 2>&1 || die "'$1' is not installed or not on PATH: $2"
}
need docker "install Docker Engine (or Docker Desktop) and start it"
need kind "install kind >= 0.32 (https://kind.sigs.k8s.io/docs/user/quick-start/#installation)"
need kubectl "install kubectl >= 1.35 (one minor of the 1.36 node at most)"
need helm "install helm >= 3.8 (OCI charts)"
docker info >/dev/null 2>&1 || die "docker is installed but its daemon does not answer (is it running? may you use it?)"

mkdir -p "$(dirname "$KUBECONFIG_OUT")"
export KUBECONFIG="$KUBECONFIG_OUT"
kc() { kubectl --kubeconfig "$KUBECONFIG_OUT" "$@"; }
hm() { helm --kubeconfig "$KUBECONFIG_OUT" "$@"; }

# ------------------------------------------------------------------------------ the cluster
if kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
  log "kind cluster '$CLUSTER' exists: reusing it"
else
  log "creating kind cluster '$CLUSTER' ($KIND_NODE_IMAGE)"
  # One node: the model store is a ReadWriteOnce local-path volume that every Triton pod mounts.
  kind create cluster --name "$CLUSTER" --image "$KIND_NODE_IMAGE" --wait 180s --config - <<'EOF'
kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
nodes:
  - role: control-plane
EOF
fi
kind get kubeconfig --name "$CLUSTER" >"$KUBECONFIG_OUT"
chmod 600 "$KUBECONFIG_OUT"
kc wait --for=condition=Ready node --all --timeout=180s
NODE="$(kind get nodes --name "$CLUSTER" | head -n1)"

# --------------------------------------------------------------------------- Envoy Gateway
log "Envoy Gateway $ENVOY_GATEWAY_VERSION (with the Gateway API CRDs)"
hm upgrade --install eg oci://docker.io/envoyproxy/gateway-helm --version "$ENVOY_GATEWAY_VERSION" \
  --namespace envoy-gateway-system --create-namespace --wait --timeout 10m
kc wait --for=condition=Available deployment/envoy-gateway -n envoy-gateway-system --timeout=300s

# A ClusterIP proxy Service: kind has no load balancer, and a pending LoadBalancer address would keep
# the Gateway from being Programmed. The suite reaches it with kubectl port-forward.
kc create namespace gateway --dry-run=client -o yaml | kc apply -f -
kc apply -f - <<'EOF'
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: EnvoyProxy
metadata:
  name: cluster-ip
  namespace: envoy-gateway-system
spec:
  provider:
    type: Kubernetes
    kubernetes:
      envoyService:
        type: ClusterIP
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata:
  name: eg
spec:
  controllerName: gateway.envoyproxy.io/gatewayclass-controller
  parametersRef:
    group: gateway.envoyproxy.io
    kind: EnvoyProxy
    name: cluster-ip
    namespace: envoy-gateway-system
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: inference-gateway
  namespace: gateway
spec:
  gatewayClassName: eg
  listeners:
    - name: http
      protocol: HTTP
      port: 80
      allowedRoutes:
        namespaces:
          from: All
EOF
kc wait --for=condition=Programmed gateway/inference-gateway -n gateway --timeout=300s

# ---------------------------------------------------------------------------------- Prometheus
log "kube-prometheus-stack $KUBE_PROMETHEUS_STACK_VERSION (Prometheus Operator + Prometheus)"
# Only what rollout analysis needs: no Grafana, Alertmanager or node exporter. The selectors are
# opened so that Prometheus scrapes the PodMonitors the operator creates in any namespace.
hm upgrade --install kps oci://ghcr.io/prometheus-community/charts/kube-prometheus-stack \
  --version "$KUBE_PROMETHEUS_STACK_VERSION" --namespace monitoring --create-namespace \
  --set grafana.enabled=false \
  --set alertmanager.enabled=false \
  --set nodeExporter.enabled=false \
  --set prometheus.prometheusSpec.scrapeInterval=15s \
  --set prometheus.prometheusSpec.podMonitorSelectorNilUsesHelmValues=false \
  --set prometheus.prometheusSpec.serviceMonitorSelectorNilUsesHelmValues=false \
  --set prometheus.prometheusSpec.ruleSelectorNilUsesHelmValues=false \
  --set prometheus.prometheusSpec.retention=6h \
  --wait --timeout 15m
# The Prometheus pod is created by the operator after helm returns: wait for it to exist, then be Ready.
for _ in $(seq 60); do
  [[ -n "$(kc get pod -n monitoring -l app.kubernetes.io/name=prometheus -o name 2>/dev/null)" ]] && break
  sleep 5
done
kc wait --for=condition=Ready pod -l app.kubernetes.io/name=prometheus -n monitoring --timeout=600s

if [[ "$WITH_PROMETHEUS_ADAPTER" == 1 ]]; then
  log "prometheus-adapter $PROMETHEUS_ADAPTER_VERSION"
  hm upgrade --install prometheus-adapter oci://ghcr.io/prometheus-community/charts/prometheus-adapter \
    --version "$PROMETHEUS_ADAPTER_VERSION" --namespace monitoring \
    --set prometheus.url=http://prometheus-operated.monitoring.svc --set prometheus.port=9090 \
    --wait --timeout 10m
fi

# -------------------------------------------------------------------------------------- images
if [[ "$SKIP_BUILD" == 1 ]]; then
  log "SKIP_BUILD=1: not building the operator and puller images"
else
  log "building $OPERATOR_IMAGE and $PULLER_IMAGE"
  docker build -f "$ROOT/runtime-images/operator/Dockerfile" -t "$OPERATOR_IMAGE" "$ROOT"
  docker build -t "$PULLER_IMAGE" "$ROOT/runtime-images/model-puller"
  kind load docker-image --name "$CLUSTER" "$OPERATOR_IMAGE" "$PULLER_IMAGE"
fi

# Pulled by the node itself (no copy through the host's docker), once: Triton's image is the slow part.
if docker exec "$NODE" crictl inspecti "$TRITON_IMAGE" >/dev/null 2>&1; then
  log "$TRITON_IMAGE is already on $NODE"
else
  log "pulling $TRITON_IMAGE into $NODE (large: this takes a while the first time)"
  docker exec "$NODE" crictl pull "$TRITON_IMAGE"
fi

# ----------------------------------------------------------------------------------- namespace
log "namespace $NAMESPACE"
kc create namespace "$NAMESPACE" --dry-run=client -o yaml | kc apply -f -
# Triton's pods meet the restricted profile; enforce it so that a regression shows up here.
kc label namespace "$NAMESPACE" --overwrite \
  pod-security.kubernetes.io/enforce=restricted pod-security.kubernetes.io/enforce-version=latest

cat >&2 <<EOF

Cluster '$CLUSTER' is ready. Run the suite with:

  .venv/bin/pytest e2e/ --kubeconfig "$KUBECONFIG_OUT" --e2e-namespace "$NAMESPACE" \\
      --operator-image "$OPERATOR_IMAGE" --puller-image "$PULLER_IMAGE"

Delete the cluster with: kind delete cluster --name "$CLUSTER"
EOF
