"""The demo (`make demo`, or `python -m testbed.demo` from the checkout): the operator, as a
process, reconciles the examples; then two rollouts judged by Prometheus; then a model-quality gate
that stops a worse model before any traffic.

It runs on the real control plane (etcd, kube-apiserver, kube-controller-manager from
$KUBEBUILDER_ASSETS, else ../shared/k8s/bin); without those binaries it prints one line saying what
is missing and exits non-zero. It is a local simulation and says so: no container runs (a kubelet
stand-in reports the pods Ready) and Triton's metrics come from simulated exporters. The operator
(`modeldeploy run`), its reconcile passes, the analysis queries and the Prometheus server are all
real. So are the gate's model servers (part four): MLServers (testbed/mlserver.py) on the IPs the
kubelet stand-in gives the primary and canary pods, where the operator asks the models over the V2
protocol as it asks Triton in a cluster.

Every line printed with a `$ ` prompt is a command it runs, with its kubeconfig, as a user would
(`modeldeploy status`, `kubectl get events`). With --keep, the control plane and an operator stay up
at the end until Ctrl-C, for a user to look around with kubectl.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from modeldeploy.api.base import API_VERSION, GROUP, KIND
from modeldeploy.api.crd import crd
from modeldeploy.manifest_yaml import load_all
from modeldeploy.render.kinds import CHILD_KINDS
from modeldeploy.render.names import TRACK_LABEL
from testbed.controlplane import (
    ADMIN_USER,
    ControlPlane,
    ControlPlaneMissing,
    Credentials,
    find_assets,
)
from testbed.kubeapi import ApiError
from testbed.kubelet import Kubelet, PodReport
from testbed.mlserver import (
    MLServer,
    MLServerFailed,
    MLServerMissing,
    TrainedModels,
    find_venv,
    train,
)
from testbed.operator_process import OperatorProcess, modeldeploy_command
from testbed.prometheus import PrometheusMissing, PrometheusServer, find_prometheus, pod_target
from testbed.triton_exporter import Traffic, TritonExporter

ROLLOUT_EXAMPLE = "recommender"  # examples/gateway-canary.yaml
ROLLOUT_NAMESPACE = "ml-rollouts"  # its own namespace: part three's operator watches only it
DEMO_INTERVAL = 2  # seconds; a real rollout analyses every minute or so
GATES_NAMESPACE = "ml-gates"  # part four: its own namespace and its own operator, like part three
GATES_NAME = "iris"  # the ModelDeployment, and the model name MLServer serves (spec.model.name)
# The kubelet stand-in's pod IPs per track; an MLServer listens on each at Triton's HTTP port, so
# the operator reaches the models at `<Ready pod's status.podIP>:8000`, as in a cluster. All of
# 127.0.0.0/8 is loopback on Linux.
POD_IPS = {"primary": "127.0.0.2", "canary": "127.0.0.3"}
TRITON_HTTP_PORT = 8000
# The CRDs of other projects whose objects the operator renders, from the one table of child kinds:
# (plural.group, kind, version).
THIRD_PARTY = tuple((child.crd, child.kind.kind, child.kind.version) for child in CHILD_KINDS if child.crd)


def say(text: str = "") -> None:
    print(text, flush=True)


class DemoFailed(Exception):
    """A step did not happen in time; the message says which, with the operator's log tail."""


# ------------------------------------------------------------------------------------ clusters


class Cluster:
    """What the demo needs of the control plane: a client, an operator process, and pods becoming
    ready (the kubelet stand-in, at the IP of each Pod's track)."""

    def __init__(self, plane: ControlPlane, workdir: Path, description: list[str]) -> None:
        self.plane = plane
        self.api = plane.admin
        self.workdir = workdir
        self.description = description  # the banner's lines about the API server
        self.operator: OperatorProcess | None = None
        self._started = 0
        self.pod_ips: dict[str, dict[str, str]] = {}  # namespace -> track -> IP
        self.namespaces: set[str] = set()  # every namespace the demo made: --keep's operator watches them

    def kubeconfig(self) -> Path:
        # As a user runs it: a kubeconfig, no flags. The admin's (system:masters): the chart's
        # least-privilege RBAC is proven by the test suite, not by the demo.
        admin = Credentials(user=ADMIN_USER, token=self.plane.admin_token)
        return self.plane.kubeconfig(admin, self.workdir / "kubeconfig")

    def start_operator(
        self, namespaces: list[str], *, resync_seconds: float, prometheus_url: str | None = None
    ) -> OperatorProcess:
        self.stop_operator()
        self._started += 1
        self.operator = OperatorProcess(
            kubeconfig=self.kubeconfig(),
            log=self.workdir / f"operator-{self._started}.log",
            args=[f"--namespace={ns}" for ns in namespaces],
            resync_seconds=resync_seconds,
            prometheus_url=prometheus_url,
        )
        self.operator.start(timeout=60)
        return self.operator

    def stop_operator(self) -> None:
        if self.operator is not None:
            self.operator.stop()
            self.operator = None

    def create_namespace(self, name: str) -> None:
        self.namespaces.add(name)
        with contextlib.suppress(ApiError):  # it exists already
            self.api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
        # Pods need the namespace's default ServiceAccount, which the controller manager creates.
        self.api.wait_for(
            lambda: self.api.get("v1", "ServiceAccount", name, "default"),
            timeout=60,
            what=f"the default ServiceAccount of {name}",
        )

    def set_pod_ips(self, namespace: str, by_track: Mapping[str, str]) -> None:
        """The IP the kubelet stand-in reports for the namespace's Pods, by their track label
        (others get the stand-in's default, 127.0.0.1). Set before the Pods are created."""
        self.pod_ips[namespace] = dict(by_track)

    def report(self, pod: Mapping[str, Any]) -> PodReport:
        meta = pod.get("metadata") or {}
        track = (meta.get("labels") or {}).get(TRACK_LABEL, "")
        ip = self.pod_ips.get(meta.get("namespace", ""), {}).get(track)
        return PodReport(pod_ip=ip) if ip else PodReport()

    @contextlib.contextmanager
    def pods_become_ready(self) -> Iterator[None]:
        # Binds every Pod and reports it Running and Ready, at the IP of its track.
        with Kubelet(self.plane.admin, self.report):
            yield


def third_party_crds(assets: Path) -> tuple[list[dict[str, Any]], str]:
    """The upstream CRDs ($MODELDEPLOY_THIRD_PARTY_CRDS, else ../shared/third-party-crds beside the
    binaries or the checkout), else schemaless stand-ins; and a line saying which."""
    named = os.environ.get("MODELDEPLOY_THIRD_PARTY_CRDS")
    candidates = [Path(named)] if named else []
    candidates += [assets.parent.parent / "third-party-crds", Path.cwd().parent / "shared/third-party-crds"]
    for folder in candidates:
        if folder.is_dir():
            docs = [yaml.safe_load_all(path.read_text()) for path in sorted(folder.glob("*.yaml"))]
            found = [doc for group in docs for doc in group if isinstance(doc, dict)]
            return (
                found,
                f" Gateway API, Istio and Prometheus Operator CRDs: the upstream ones, from {folder}.",
            )
    stubs = [stub_crd(name, kind, version) for name, kind, version in THIRD_PARTY]
    return stubs, " Gateway API, Istio and Prometheus Operator CRDs: schemaless stand-ins."


def stub_crd(name: str, kind: str, version: str) -> dict[str, Any]:
    """A schemaless CRD: enough for the operator to find the kind and apply its objects."""
    plural, _, group = name.partition(".")
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": name},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": plural, "singular": kind.lower(), "kind": kind, "listKind": f"{kind}List"},
            "versions": [
                {
                    "name": version,
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
                    },
                }
            ],
        },
    }


@contextlib.contextmanager
def real_cluster(assets: Path, workdir: Path) -> Iterator[Cluster]:
    (workdir / "controlplane").mkdir()
    with ControlPlane(assets=assets, workdir=workdir / "controlplane") as plane:
        version = json.loads(plane.admin.get_path("/version")).get("gitVersion", "?")
        upstream, which = third_party_crds(assets)
        plane.admin.install_crds([crd(), *upstream])
        yield Cluster(
            plane,
            workdir,
            [
                f" API server: a REAL kube-apiserver {version} with etcd and kube-controller-manager,",
                f" from {assets} (TLS, RBAC, audit log).",
                which,
                " No kubelet: a stand-in binds the Pods and reports them Ready; no container runs.",
            ],
        )


# ------------------------------------------------------------------------------------ the demo


def banner(cluster: Cluster) -> None:
    line = "=" * 78
    say(line)
    say(" the modeldeploy demo -- a LOCAL SIMULATION, not a cluster")
    for text in cluster.description:
        say(text)
    say(" The operator is `modeldeploy run`, a process of its own. There are no GPUs or Triton")
    say(" servers: Triton's metrics come from simulated exporters scraped by a real Prometheus.")
    say(" On a real cluster: helm install modeldeploy charts/modeldeploy  (docs/install.md)")
    say(line)


# (namespace, name) -> the file it came from, for messages about it.
SOURCES: dict[tuple[str, str], Path] = {}


def load_examples(directory: Path) -> list[dict[str, Any]]:
    """The ModelDeployments of every *.yaml file, each with its namespace (else `default`, as
    kubectl would)."""
    docs: list[dict[str, Any]] = []
    for path in sorted(directory.glob("*.yaml")):
        try:
            found = load_all(path.read_text())
        except (yaml.YAMLError, UnicodeDecodeError) as error:
            raise DemoFailed(f"{path}: not YAML: {str(error).splitlines()[0]}") from None
        for doc in found:
            if isinstance(doc, dict) and doc.get("apiVersion") == API_VERSION and doc.get("kind") == KIND:
                meta = doc.setdefault("metadata", {})
                meta["namespace"] = meta.get("namespace") or "default"
                SOURCES[(meta["namespace"], str(meta.get("name")))] = path
                docs.append(doc)
    return docs


def why_not(cluster: Cluster, namespace: str, name: str) -> str:
    """What the object's status says about itself: its phase, message and Degraded condition."""
    current = status(cluster, namespace, name)
    if not current:
        return f"{namespace}/{name} has no status yet (the operator has not reconciled it)"
    parts = [f"{namespace}/{name} is {current.get('phase', '-')}: {current.get('message', '')}".rstrip(": ")]
    for cond in current.get("conditions") or []:
        if cond.get("type") == "Degraded" and cond.get("status") == "True":
            parts.append(f"Degraded ({cond.get('reason')}): {cond.get('message', '')}")
    return "; ".join(parts)


def wait(
    cluster: Cluster,
    predicate: Callable[[], Any],
    timeout: float,
    what: str,
    about: tuple[str, str] | None = None,
) -> Any:
    """`predicate()` once true; else DemoFailed saying why, from the status of `about` (ns, name)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            reason = f"\n  {why_not(cluster, *about)}" if about else ""
            source = f" ({SOURCES[about]})" if about in SOURCES else ""
            tail = cluster.operator.tail(2000) if cluster.operator else ""
            raise DemoFailed(
                f"timed out after {timeout:.0f}s waiting for {what}{source}{reason}\n"
                f"operator log (tail):\n{tail}"
            )
        time.sleep(0.1)


def status(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    obj = cluster.api.get(API_VERSION, KIND, namespace, name) or {}
    result: dict[str, Any] = obj.get("status") or {}
    return result


def children(cluster: Cluster, namespace: str, name: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for child in CHILD_KINDS:
        with contextlib.suppress(ApiError):  # a kind this cluster does not serve
            found += cluster.api.list(
                child.kind.api_version, child.kind.kind, namespace, f"{GROUP}/name={name}"
            )
    return found


def status_table(cluster: Cluster, docs: list[dict[str, Any]]) -> None:
    rows = [("NAME", "PHASE", "MODEL", "VERSION", "READY", "URL")]
    for doc in docs:
        meta = doc["metadata"]
        current = status(cluster, meta["namespace"], meta["name"])
        model = doc["spec"]["model"]
        # Before the Deployment reports its pods, status.replicas is 0: show the wanted count.
        wanted = current.get("replicas") or (doc["spec"].get("scaling") or {}).get("minReplicas", 1)
        ready = f"{current.get('readyReplicas', 0)}/{wanted}"
        rows.append(
            (
                meta["name"],
                current.get("phase", "-"),
                model["name"],
                model["version"],
                ready,
                current.get("url", ""),
            )
        )
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        say("  " + "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)))


def namespaces_of(docs: list[dict[str, Any]]) -> list[str]:
    return sorted({doc["metadata"]["namespace"] for doc in docs})


def prepare_namespaces(cluster: Cluster, docs: list[dict[str, Any]]) -> None:
    """What the examples expect a cluster to have: their namespaces, the RuntimeClasses that a GPU
    cluster's NVIDIA toolkit installs (admission rejects a Pod naming a missing one), and the
    storage Secrets they name (placeholders: nothing is pulled)."""
    for namespace in namespaces_of(docs):
        cluster.create_namespace(namespace)
    for handler in sorted({doc["spec"].get("runtime", {}).get("runtimeClassName") for doc in docs} - {None}):
        cluster.api.apply(
            {
                "apiVersion": "node.k8s.io/v1",
                "kind": "RuntimeClass",
                "metadata": {"name": handler},
                "handler": handler,
            }
        )
    secrets = {
        (doc["metadata"]["namespace"], ref["name"])
        for doc in docs
        if (ref := doc["spec"]["model"].get("storageSecretRef"))
    }
    for namespace, name in sorted(secrets):
        cluster.api.apply(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": name, "namespace": namespace},
                "stringData": {"AWS_ACCESS_KEY_ID": "demo", "AWS_SECRET_ACCESS_KEY": "demo"},
            }
        )


def part_one(cluster: Cluster, docs: list[dict[str, Any]], examples: Path) -> None:
    count = f"{len(docs)} {KIND}{'' if len(docs) == 1 else 's'}"
    say(f"\n[1/4] {count} from {examples}/, applied server-side")
    say("      (what `kubectl apply --server-side -f` sends, by the demo's own client: no kubectl runs)")
    for doc in docs:
        meta = doc["metadata"]
        try:
            cluster.api.apply(doc)
        except ApiError as error:
            source = SOURCES.get((meta["namespace"], str(meta.get("name"))), examples)
            raise DemoFailed(
                f"{source}: the API server refused {KIND} {meta.get('name')}: {error.message}"
            ) from None
    for doc in docs:
        meta = doc["metadata"]
        namespace, name = meta["namespace"], meta["name"]

        def created(namespace: str = namespace, name: str = name) -> list[dict[str, Any]]:
            # The status is written after every child was applied: then the list is complete.
            phase = status(cluster, namespace, name).get("phase")
            if phase == "Failed":  # an invalid spec: nothing will come, say why now
                source = SOURCES.get((namespace, name), "")
                raise DemoFailed(f"{source}: {why_not(cluster, namespace, name)}")
            done = bool(phase)
            return children(cluster, namespace, name) if done else []

        found = wait(cluster, created, 60, f"the children of {name}", about=(namespace, name))
        listing = ", ".join(sorted(f"{c['kind']}/{c['metadata']['name']}" for c in found))
        say(f"  {namespace}/{name}: {listing}")
    say("\n  Status while the models load (no pod is ready yet):")
    status_table(cluster, docs)


def part_two(cluster: Cluster, docs: list[dict[str, Any]]) -> None:
    say("\n[2/4] The pods become ready (simulated); the operator reports Stable:")
    for doc in docs:
        meta = doc["metadata"]
        namespace, name = meta["namespace"], meta["name"]

        def stable(namespace: str = namespace, name: str = name) -> bool:
            return status(cluster, namespace, name).get("phase") == "Stable"

        wait(cluster, stable, 90, f"{name} to be Stable", about=(namespace, name))
    status_table(cluster, docs)
    first = docs[0]["metadata"]
    say(f"\n  Conditions of {first['name']}:")
    for cond in status(cluster, first["namespace"], first["name"]).get("conditions", []):
        message = f": {cond['message']}" if cond.get("message") else ""
        say(f"    {cond['type']:<11} {cond['status']:<5} {cond['reason']}{message}")


def rollout_manifest(doc: dict[str, Any], version: str) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    out["metadata"] = {"name": doc["metadata"]["name"], "namespace": ROLLOUT_NAMESPACE}
    out["spec"]["model"]["version"] = version
    base = out["spec"]["model"]["storageUri"].rsplit("/", 1)[0]
    out["spec"]["model"]["storageUri"] = f"{base}/{version}"
    out["spec"]["rollout"] = {
        "strategy": "Canary",
        "steps": [{"weight": 10}, {"weight": 50}],
        "interval": f"{DEMO_INTERVAL}s",
        "failureThreshold": 2,
        "progressDeadline": "60s",
        "analysis": {
            "minSampleCount": 20,
            "metrics": [
                {"name": "success-rate", "template": "successRate", "min": 0.99},
                {"name": "latency", "template": "requestLatencyMs", "relativeToPrimary": {"maxRatio": 1.2}},
            ],
        },
    }
    return out


def until_outcome(
    cluster: Cluster,
    namespace: str,
    name: str,
    each: Callable[[float, dict[str, Any]], None],
    timeout: float = 120,
) -> dict[str, Any]:
    """Poll the status, handing each to `each(seconds since the start, status)`, until the rollout
    ends: Stable or RolledBack with a new history entry. The status it ended with."""
    outcomes = len(status(cluster, namespace, name).get("history") or [])
    start = time.monotonic()
    while time.monotonic() < start + timeout:
        current = status(cluster, namespace, name)
        each(time.monotonic() - start, current)
        if current.get("phase") in ("Stable", "RolledBack") and len(current.get("history") or []) > outcomes:
            return current
        time.sleep(0.1)
    tail = cluster.operator.tail(2000) if cluster.operator else ""
    raise DemoFailed(f"the rollout of {name} did not end within {timeout:.0f}s; operator log (tail):\n{tail}")


def follow(cluster: Cluster, namespace: str, name: str, timeout: float = 120) -> dict[str, Any]:
    """Print each change of phase, step, weight and analysis until the rollout ends."""
    seen: list[tuple[Any, ...]] = [()]

    def each(elapsed: float, current: dict[str, Any]) -> None:
        phase = current.get("phase")
        key = (phase, current.get("step"), current.get("canaryWeight"), current.get("lastAnalysisAt"))
        if key == seen[0]:
            return
        seen[0] = key
        say(f"  +{elapsed:4.1f}s  {phase or '-':<11} {current.get('message', '')}")
        for result in current.get("analysis") or []:
            value = result.get("value")
            shown = f"{value:.4g}" if isinstance(value, int | float) else "no data"
            verdict, reason = result["verdict"], result.get("reason", "")
            say(f"           analysis {result['name']} = {shown}: {verdict} ({reason})")

    return until_outcome(cluster, namespace, name, each, timeout)


@contextlib.contextmanager
def metrics(namespace: str, name: str, model: str) -> Iterator[tuple[TritonExporter, PrometheusServer]]:
    with (
        TritonExporter(model, traffic=Traffic(rate=80, latency_ms=20)) as primary,
        TritonExporter(model, traffic=Traffic(rate=40, latency_ms=21)) as canary,
    ):
        targets = [
            pod_target(primary.address, namespace=namespace, name=name, track="primary"),
            pod_target(canary.address, namespace=namespace, name=name, track="canary"),
        ]
        with PrometheusServer(targets) as prometheus:
            yield canary, prometheus


def part_three(cluster: Cluster, examples: Path) -> None:
    say("\n[3/4] Two rollouts of the Gateway API example, gated by Prometheus analysis")
    if find_prometheus() is None:
        say(
            "  skipped: the prometheus binary is missing (`make tools-prometheus` unpacks it into .tools/bin)"
        )
        return
    doc = next((d for d in load_examples(examples) if d["metadata"]["name"] == ROLLOUT_EXAMPLE), None)
    if doc is None:
        say(f"  skipped: no ModelDeployment {ROLLOUT_EXAMPLE} (examples/gateway-canary.yaml) in {examples}/")
        return
    namespace, name, model = ROLLOUT_NAMESPACE, doc["metadata"]["name"], doc["spec"]["model"]["name"]
    say(f"  (demo speed: analysis every {DEMO_INTERVAL}s instead of every minute; 2 steps: 10%, 50%;")
    say(f"   in namespace {namespace}, watched by an operator restarted with --resync-seconds=1)")
    say("  Starting a real Prometheus and simulated Triton metrics for the primary and the canary...")
    first = rollout_manifest(doc, doc["spec"]["model"]["version"])
    prepare_namespaces(cluster, [first])
    with metrics(namespace, name, model) as (canary, prometheus):
        cluster.start_operator([namespace], resync_seconds=1.0, prometheus_url=prometheus.url)
        cluster.api.apply(first)
        wait(
            cluster,
            lambda: status(cluster, namespace, name).get("phase") == "Stable",
            90,
            f"{name} to be Stable",
            about=(namespace, name),
        )
        good = str(int(doc["spec"]["model"]["version"]) + 1)
        say(f"\n  Version {good}: a healthy canary (0% errors, latency like the primary's)")
        cluster.api.apply(rollout_manifest(doc, good))
        entry = follow(cluster, namespace, name)["history"][0]
        say(f"  => {entry['result']}: {entry['reason']}")

        bad = str(int(good) + 1)
        canary.set_traffic(failure_ratio=0.10)
        say(f"\n  Version {bad}: a bad canary (10% of its requests fail)")
        cluster.api.apply(rollout_manifest(doc, bad))
        final = follow(cluster, namespace, name)
        entry = final["history"][0]
        say(f"  => {entry['result']}: {entry['reason']}")
        serving = final.get("stableModelVersion")
        say(f"     The spec still says version {bad}; the primary keeps serving version {serving}.")
        say(f"     Change the spec or run `modeldeploy retry {name} -n {namespace}` to try again.")
        show_what_a_user_sees(cluster, namespace, name)


def show_what_a_user_sees(cluster: Cluster, namespace: str, name: str) -> None:
    """What a user looks at next: `modeldeploy status` (with the history) and the object's Events."""
    # Run as a user runs it, a process with the kubeconfig: the demo checks the CLI from outside too.
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig())}
    say(f"\n  Run as a user runs them, with KUBECONFIG={env['KUBECONFIG']}:")
    say(f"\n  $ modeldeploy status {name} -n {namespace}")
    shown = subprocess.run(
        [*modeldeploy_command(), "status", name, "-n", namespace],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    for line in (shown.stdout + shown.stderr).splitlines():
        say(f"  {line}")
    kubectl = find_kubectl()
    if kubectl is None:
        say(f"\n  (the Events of {name} are not shown: kubectl is missing; `make tools-helm` installs it)")
        return
    # resourceVersion grows with every write: the order they were posted (timestamps are in seconds).
    args = [
        "get",
        "events",
        "-n",
        namespace,
        "--field-selector",
        f"involvedObject.kind={KIND},involvedObject.name={name}",
        "--sort-by=.metadata.resourceVersion",
    ]
    say(f"\n  $ kubectl {' '.join(args)}")
    listed = subprocess.run(
        [str(kubectl), *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    for line in (listed.stdout + listed.stderr).splitlines():
        say(f"  {line}")


def find_kubectl() -> Path | None:
    """kubectl on PATH (`make demo` puts .tools/bin first, where `make tools-helm` installs it), else
    beside the control plane's binaries (the envtest archive ships one)."""
    found = shutil.which("kubectl")
    if found:
        return Path(found)
    with contextlib.suppress(ControlPlaneMissing):
        beside = find_assets() / "kubectl"
        if beside.is_file() and os.access(beside, os.X_OK):
            return beside
    return None


# ------------------------------------------------------------------- part four: the gates


def gates_manifest(version: str) -> dict[str, Any]:
    """The iris ModelDeployment: replica-ratio traffic (no router), one Canary step, and gates."""
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": GATES_NAME, "namespace": GATES_NAMESPACE},
        "spec": {
            "model": {"name": GATES_NAME, "version": version, "storageUri": f"s3://models/iris/{version}"},
            "runtime": {"gpus": 0},
            "scaling": {"minReplicas": 1, "maxReplicas": 1},
            "rollout": {
                "strategy": "Canary",
                "steps": [{"weight": 50}],
                "interval": f"{DEMO_INTERVAL}s",
                "progressDeadline": "60s",
                # No metrics analysis here: part three shows it; this part is about the gate.
                "analysis": {"metrics": []},
                "gates": {
                    "contract": {"enabled": True},
                    "goldenSet": {
                        "configMapKeyRef": {"name": "iris-golden", "key": "golden.jsonl"},
                        "batchSize": 16,
                    },
                    "minAccuracy": 0.92,
                    "minAgreement": 0.9,
                    "maxLatencyP95": "500ms",
                    "timeout": "1m",
                },
            },
        },
    }


@dataclass
class GateWatch:
    """What a rollout's statuses showed while it ran: the largest canary weight, and the tracks
    the Service selected while the gate ran (replica-ratio traffic goes where the Service points)."""

    max_weight: int = 0
    selected_while_gated: set[str] = field(default_factory=set)


def gate_timeline(seen: dict[str, tuple[Any, ...]], current: Mapping[str, Any], elapsed: float) -> list[str]:
    """The timeline's lines for one status read: a change of phase, message or weight, and a change
    of the gate's state; `seen` holds what was printed last and is updated. One status write can
    carry both, and then they are printed in the order they happened: a gate that ended (Passed,
    Failed) caused the weight or phase change written with it, so it comes first; a gate that
    started (Running) was caused by the phase change, so it comes after."""
    phase, gate = current.get("phase"), current.get("gate") or {}
    lines: list[str] = []
    key = (phase, current.get("message"), current.get("canaryWeight"))
    if key != seen.get("status"):
        seen["status"] = key
        weight = current.get("canaryWeight") or 0
        message = textwrap.shorten(str(current.get("message", "")), 84, placeholder="...")
        lines.append(f"  +{elapsed:4.1f}s  {phase or '-':<11} weight {weight:>2}%  {message}")
    run = (gate.get("startedAt"), gate.get("state"))
    if gate and run != seen.get("gate"):
        seen["gate"] = run
        verdict = f": {gate['message']}" if gate.get("message") else ""
        line = f"gate ({gate.get('stage')}) {gate.get('state')}{verdict}"
        gate_line = f"  +{elapsed:4.1f}s  {textwrap.shorten(line, 96, placeholder='...')}"
        if gate.get("state") == "Running":
            lines.append(gate_line)
        else:
            lines.insert(0, gate_line)
    return lines


def follow_gate(cluster: Cluster, watch: GateWatch, timeout: float = 120) -> dict[str, Any]:
    """Print each change of phase, message and gate state until the rollout of iris ends."""
    namespace, name = GATES_NAMESPACE, GATES_NAME
    seen: dict[str, tuple[Any, ...]] = {}

    def each(elapsed: float, current: dict[str, Any]) -> None:
        gate = current.get("gate") or {}
        watch.max_weight = max(watch.max_weight, int(current.get("canaryWeight") or 0))
        # A gate seen in any state while the weight is still 0 is the pre-traffic gate: a quick run
        # may start and end between two looks, and the Service is what it was while it ran.
        if gate.get("state") == "Running" or (gate and not int(current.get("canaryWeight") or 0)):
            service = cluster.api.get("v1", "Service", namespace, name) or {}
            selector = (service.get("spec") or {}).get("selector") or {}
            watch.selected_while_gated.add(selector.get(TRACK_LABEL, "both tracks"))
        for line in gate_timeline(seen, current, elapsed):
            say(line)

    return until_outcome(cluster, namespace, name, each, timeout)


def show_checks(checks: list[dict[str, Any]]) -> None:
    rows = [("CHECK", "VALUE", "THRESHOLD", "VERDICT", "MESSAGE")]
    for check in checks:
        value, threshold = check.get("value"), check.get("threshold")
        rows.append(
            (
                check["name"],
                f"{value:.4g}" if isinstance(value, int | float) else "-",
                f"{threshold:.4g}" if isinstance(threshold, int | float) else "-",
                check.get("verdict", "-"),
                check.get("message", ""),
            )
        )
    widths = [max(len(str(row[i])) for row in rows) for i in range(4)]
    for row in rows:
        cells = [str(cell).ljust(width) for cell, width in zip(row[:4], widths, strict=True)]
        say("       " + "  ".join([*cells, row[4]]))


def show_history(entry: Mapping[str, Any]) -> None:
    say(
        f"     history[0]: {entry.get('result')} revision {entry.get('revision')} "
        f"v{entry.get('modelVersion')} at {entry.get('at')}: {entry.get('reason')}"
    )


def primary_generation(cluster: Cluster) -> int:
    primary = cluster.api.get("apps/v1", "Deployment", GATES_NAMESPACE, f"{GATES_NAME}-primary") or {}
    return int((primary.get("metadata") or {}).get("generation") or 0)


class ModelServers:
    """The MLServers standing in for the Triton pods of each track, one at a time per track."""

    def __init__(self, venv: Path, trained: TrainedModels, workdir: Path) -> None:
        self.venv, self.trained, self.workdir = venv, trained, workdir
        self.running: dict[str, MLServer] = {}

    def serve(self, track: str, variant: str) -> MLServer:
        self.stop(track)
        server = MLServer(
            self.venv,
            self.trained,
            {GATES_NAME: variant},
            host=POD_IPS[track],
            port=TRITON_HTTP_PORT,
            workdir=self.workdir / f"mlserver-{track}-{variant}",
        )
        try:
            server.start()
        except MLServerFailed as error:
            raise DemoFailed(f"{error}\nmlserver log (tail):\n{error.details}") from None
        self.running[track] = server
        say(f"  MLServer: {variant} as model {GATES_NAME!r} on {server.address} ({track} pods' IP)")
        return server

    def stop(self, track: str) -> None:
        server = self.running.pop(track, None)
        if server is not None:
            server.stop()

    def stop_all(self) -> None:
        for track in list(self.running):
            self.stop(track)


def part_four(cluster: Cluster) -> None:
    say("\n[4/4] A model-quality gate stops a worse model before it gets any traffic")
    intro = (
        "MLServer (a real V2 inference server, in .tools/mlserver-venv) serves scikit-learn models "
        f"trained here on iris, standing in for Triton. The kubelet stand-in gives primary pods the IP "
        f"{POD_IPS['primary']} and canary pods {POD_IPS['canary']}; the operator asks the model at "
        f"<Ready pod IP>:{TRITON_HTTP_PORT}, as it asks Triton in a cluster."
    )
    for line in textwrap.wrap(intro, 94):
        say(f"  {line}")
    try:
        venv = find_venv()
    except MLServerMissing as error:
        say(f"  skipped: {error}")
        return
    try:
        trained = train(venv, cluster.workdir / "iris-models")
    except MLServerFailed as error:
        raise DemoFailed(f"{error}\n{error.details}") from None
    scores = ", ".join(f"{m} {a:.4g}" for m, a in trained.accuracy.items() if m != "iris-narrow")
    gates = (
        "Gates (spec.rollout.gates): the contract unchanged; on a golden set of "
        f"{len(trained.golden.splitlines())} labelled examples (ConfigMap iris-golden, key golden.jsonl) "
        "accuracy >= 0.92, agreement with the primary >= 0.9, p95 latency <= 500ms. "
        f"scikit-learn's own accuracy on that set: {scores}."
    )
    for line in textwrap.wrap(gates, 94):
        say(f"  {line}")
    namespace, name = GATES_NAMESPACE, GATES_NAME
    cluster.set_pod_ips(namespace, POD_IPS)
    prepare_namespaces(cluster, [gates_manifest("1")])
    cluster.api.apply(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "iris-golden", "namespace": namespace},
            "data": {"golden.jsonl": trained.golden},
        }
    )
    servers = ModelServers(venv, trained, cluster.workdir)
    try:
        servers.serve("primary", "iris-primary")
        cluster.start_operator([namespace], resync_seconds=1.0)
        cluster.api.apply(gates_manifest("1"))
        wait(
            cluster,
            lambda: status(cluster, namespace, name).get("phase") == "Stable",
            90,
            f"{name} to be Stable",
            about=(namespace, name),
        )
        say("  Version 1 (iris-primary) is Stable.")

        say("\n  Version 2: iris-good, as accurate as the primary")
        servers.serve("canary", "iris-good")
        cluster.api.apply(gates_manifest("2"))
        final = follow_gate(cluster, GateWatch())
        entry = final["history"][0]
        say(f"  => {entry['result']}: {entry['reason']}")
        show_checks(entry.get("gate") or [])
        # The new primary pods run version 2: its model serves at the primary's IP now.
        servers.serve("primary", "iris-good")
        servers.stop("canary")

        say("\n  Version 3: iris-worse, a depth-1 tree (it tells at most two of the three species apart)")
        servers.serve("canary", "iris-worse")
        generation = primary_generation(cluster)
        watch = GateWatch()
        cluster.api.apply(gates_manifest("3"))
        final = follow_gate(cluster, watch)
        say(f"  => {final['history'][0]['result']}: {final['history'][0]['reason']}")
        conditions: list[dict[str, Any]] = final.get("conditions") or []
        degraded = next((c for c in conditions if c.get("type") == "Degraded"), {})
        say(f"     condition Degraded={degraded.get('status')} reason {degraded.get('reason')}")
        say("     status.gate.checks:")
        show_checks((final.get("gate") or {}).get("checks") or [])
        show_history(final["history"][0])
        untouched = primary_generation(cluster) == generation
        tracks = ", ".join(sorted(watch.selected_while_gated)) or "-"
        say(
            f"     The primary was {'untouched' if untouched else 'CHANGED'} (Deployment {name}-primary "
            f"at generation {generation}) and still serves version {final.get('stableModelVersion')}."
        )
        say(
            f"     No traffic moved: canaryWeight stayed {watch.max_weight} in every status seen, and the "
            f"Service selected track {tracks} while the gate ran."
        )
    finally:
        servers.stop_all()


def keep_up(cluster: Cluster) -> None:
    """--keep: the control plane, the kubelet stand-in and an operator watching every namespace of
    the demo stay up until Ctrl-C, for a user to look around with kubectl."""
    cluster.start_operator(sorted(cluster.namespaces), resync_seconds=5.0)
    kubeconfig = cluster.kubeconfig()
    say("\n--keep: the control plane and the operator stay up; press Ctrl-C to tear everything down.")
    say(f"  kubeconfig: {kubeconfig}")
    say(f"  try:        kubectl --kubeconfig {kubeconfig} get mdep -A -w")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        say("\nCtrl-C: tearing down.")


def demo(
    cluster: Cluster, docs: list[dict[str, Any]], examples: Path, rollouts: bool, keep: bool = False
) -> None:
    banner(cluster)
    prepare_namespaces(cluster, docs)
    operator = cluster.start_operator(namespaces_of(docs), resync_seconds=5.0)
    pid = operator.process.pid if operator.process else "?"
    say(f"\nAPI server: {cluster.api.url}  (the operator: `modeldeploy run`, pid {pid})")
    part_one(cluster, docs, examples)
    with cluster.pods_become_ready():
        part_two(cluster, docs)
        if rollouts:
            try:
                part_three(cluster, examples)
            except PrometheusMissing as error:
                say(f"  skipped: {error}")
            part_four(cluster)
        else:
            say("\n[3/4] skipped (--no-rollouts)")
            say("[4/4] skipped (--no-rollouts)")
        if keep:
            keep_up(cluster)


def run(examples: Path, rollouts: bool = True, keep: bool = False) -> int:
    if not examples.is_dir():
        raise DemoFailed(f"--examples {examples}: no such directory")
    docs = load_examples(examples)
    if not docs:
        raise DemoFailed(f"--examples {examples}: no {KIND} ({API_VERSION}) in its *.yaml files")
    assets = find_assets()  # ControlPlaneMissing: one line, before anything starts
    workdir = Path(tempfile.mkdtemp(prefix="modeldeploy-demo-"))
    try:
        with real_cluster(assets, workdir) as cluster:
            try:
                demo(cluster, docs, examples, rollouts, keep)
            finally:
                cluster.stop_operator()  # also when a step failed or on Ctrl-C: no process is left
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    say("\nDone: everything above ran locally and has been torn down.")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m testbed.demo",
        description="Run the operator on a local real control plane (KUBEBUILDER_ASSETS, else "
        "../shared/k8s/bin) with a kubelet stand-in, a real Prometheus and real MLServers.",
    )
    parser.add_argument("--examples", default="examples", help="directory of ModelDeployment YAML files")
    parser.add_argument(
        "--no-rollouts",
        dest="rollouts",
        action="store_false",
        help="stop after part two (the examples Ready), skipping parts three and four (the Prometheus-"
        "judged rollouts and the model-quality gate); without it the demo runs all four parts",
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="at the end, leave the control plane and the operator up and print the kubeconfig and a "
        "kubectl command to try; Ctrl-C tears everything down",
    )
    args = parser.parse_args(argv)
    try:
        return run(Path(args.examples), rollouts=args.rollouts, keep=args.keep)
    except KeyboardInterrupt:
        return 130
    except ControlPlaneMissing as error:
        print(f"demo: the real control plane is missing: {error}", file=sys.stderr)
        return 2
    except (DemoFailed, ApiError, OSError, RuntimeError) as error:
        print(f"demo failed: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
