"""Reconcile benchmark on the real control plane: the operator as a process, against a bare-client floor.

Starts etcd + kube-apiserver + kube-controller-manager from $KUBEBUILDER_ASSETS (testbed.controlplane),
a kubelet stand-in (testbed.kubelet, its own process) that makes every Pod Ready, and installs our CRD,
the upstream third-party CRDs and the Helm chart's ClusterRole. Then, in one run on one server:

1. The floor (bench/floor_client.py, a process logged in as its own ServiceAccount bound to the
   chart's ClusterRole): --n ModelDeployments applied at once; it watches them and applies their
   children, the same bodies the operator sends, and does nothing else.
2. The operator (`modeldeploy run`, cluster-wide, logged in by a kubeconfig with the token of the
   chart's ServiceAccount): the same --n objects in a namespace of their own, once the floor's
   namespace is deleted (the operator watches every namespace, as the chart installs it).
   Latency = the user's apply of a ModelDeployment -> the last of its children seen through a watch.
   Requests per object, by verb, come from the API server's audit log (the operator's user only).
3. At rest: the operator restarted with --resync-seconds (10 by default) on the same objects; over
   --passes whole resync periods, the audit log gives the requests and the writes per pass.
4. The operator's peak RSS (VmHWM in /proc/<pid>/status; `modeldeploy run` starts no child process).

Run: ``make bench`` (200 objects) or ``.venv/bin/python bench/reconcile_latency.py --n 1000``.
docs/benchmark.md explains the method and the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # testbed/, beside bench/: not installed

from modeldeploy.api.resource import ObjectRef, parse_spec
from modeldeploy.handlers.config import OperatorConfig
from modeldeploy.render.options import RenderOptions
from modeldeploy.rollout.plan import steady_children
from testbed.controlplane import (
    ControlPlane,
    ControlPlaneMissing,
    Credentials,
    find_assets,
    verb_counts,
    writes,
)
from testbed.kubeapi import ApiError, KubeApi
from testbed.operator_process import OperatorProcess

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "fraud-scorer.yaml"
FLOOR_CLIENT = ROOT / "bench" / "floor_client.py"
KUBELET = ROOT / "bench" / "kubelet_stand_in.py"
CHART = ROOT / "charts" / "modeldeploy"
THIRD_PARTY_CRDS = Path(
    os.environ.get("MODELDEPLOY_THIRD_PARTY_CRDS", ROOT.parent / "shared" / "third-party-crds")
)
RELEASE, RELEASE_NAMESPACE = "modeldeploy", "modeldeploy-system"
FLOOR_NS, OPERATOR_NS = "bench-floor", "bench-operator"
FLOOR_SA = "modeldeploy-bench-floor"
MD = ("modeldeploy.io/v1alpha1", "ModelDeployment")
RBAC = "rbac.authorization.k8s.io"
STARTED = time.monotonic()


def log(message: str) -> None:
    print(f"[{time.monotonic() - STARTED:6.1f}s] {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------- objects


def manifest(name: str, namespace: str) -> dict[str, Any]:
    """examples/fraud-scorer.yaml under another name: Deployment, Service, HPA, PodMonitor."""
    doc: dict[str, Any] = copy.deepcopy(_EXAMPLE)
    doc["metadata"]["name"] = name
    doc["metadata"]["namespace"] = namespace
    return doc


_EXAMPLE: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())


def expected_children() -> list[tuple[str, str]]:
    """(apiVersion, kind) of each child the operator and the floor create for the example."""
    parent = ObjectRef(name="x", namespace="x", uid="0", generation=1)
    rendered = steady_children(parent, parse_spec(_EXAMPLE["spec"]), RenderOptions())
    return [(child["apiVersion"], child["kind"]) for child in rendered]


# ---------------------------------------------------------------------------------- audit log


class AuditTail:
    """The audit log, read incrementally; only the events of `users` are kept."""

    def __init__(self, path: Path, users: set[str]) -> None:
        self.path = path
        self.users = users
        self.offset = path.stat().st_size if path.exists() else 0
        self.events: list[dict[str, Any]] = []
        self.last_new: dict[str, float] = {}  # user -> monotonic time a new event of theirs was read

    def read(self) -> int:
        """Reads what was appended; returns the number of kept events so far (a mark)."""
        with self.path.open("rb") as handle:
            handle.seek(self.offset)
            data = handle.read()
        end = data.rfind(b"\n") + 1  # only whole lines; the rest is still being written
        self.offset += end
        now = time.monotonic()
        for line in data[:end].splitlines():
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                user = event.get("user", {}).get("username")
                if user in self.users:
                    self.events.append(event)
                    self.last_new[user] = now
        return len(self.events)

    def of(self, user: str, start: int, end: int | None = None) -> list[dict[str, Any]]:
        return [e for e in self.events[start:end] if e["user"]["username"] == user]

    def wait_quiet(self, user: str, quiet: float, timeout: float, check: Callable[[], None]) -> int:
        """Until `user` sent nothing for `quiet` seconds; returns the mark."""
        deadline = time.monotonic() + timeout
        self.read()
        since = max(self.last_new.get(user, 0.0), time.monotonic())
        while True:
            check()
            time.sleep(0.2)
            mark = self.read()
            last = self.last_new.get(user, 0.0)
            if last > since:
                since = last
            if time.monotonic() - since >= quiet:
                return mark
            if time.monotonic() > deadline:
                raise TimeoutError(f"{user} did not go quiet within {timeout:g}s")


def request_kind(event: dict[str, Any]) -> str:
    ref = event.get("objectRef") or {}
    resource = ref.get("resource") or event.get("requestURI", "?").split("?")[0]
    if ref.get("subresource"):
        resource += "/" + ref["subresource"]
    return f"{event['verb']} {resource}"


def timestamp(event: dict[str, Any], key: str = "stageTimestamp") -> float:
    return datetime.datetime.fromisoformat(event[key].replace("Z", "+00:00")).timestamp()


# ------------------------------------------------------------------------------------ watches


@dataclass
class Observer:
    """Watches one namespace: when each child first appears, and each ModelDeployment's phase.

    Every time is `time.perf_counter()` in this process when the watch event arrived, the same clock
    as the applies' start times."""

    cp: ControlPlane
    namespace: str
    child_kinds: list[tuple[str, str]]
    children: dict[str, dict[tuple[str, str], float]] = field(default_factory=dict)  # owner -> seen
    complete: dict[str, float] = field(default_factory=dict)  # owner -> its last child seen
    phases: dict[str, str] = field(default_factory=dict)
    stable: dict[str, float] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _ready: threading.Semaphore = field(default_factory=lambda: threading.Semaphore(0))

    def start(self) -> None:
        for api_version, kind in [*self.child_kinds, MD]:
            thread = threading.Thread(target=self._watch, args=(api_version, kind), daemon=True)
            thread.start()
            self._threads.append(thread)
        for _ in self._threads:
            if not self._ready.acquire(timeout=60):
                raise TimeoutError(f"the watches did not start: {self.errors[-3:]}")

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=15)

    def _watch(self, api_version: str, kind: str) -> None:
        api = self.cp.api()  # a client (and connection) of its own per watch
        first = True
        while not self._stop.is_set():
            try:
                # Discovery may lag a new CRD: a kind not served yet is an ApiError, and a retry.
                items, version = api.listing(api_version, kind, self.namespace)
                for item in items:
                    self._seen(kind, item)
                if first:
                    self._ready.release()
                    first = False
                while not self._stop.is_set():
                    for event in api.watch(api_version, kind, self.namespace, version, timeout_seconds=5):
                        if event.get("type") == "ERROR":
                            raise ApiError(410, event.get("object", {}))  # list again
                        obj = event.get("object", {})
                        version = obj.get("metadata", {}).get("resourceVersion", version)
                        if event.get("type") in ("ADDED", "MODIFIED"):
                            self._seen(kind, obj)
            except (ApiError, OSError, ValueError) as error:
                if not self._stop.is_set():
                    self.errors.append(f"watch {kind}: {error}")
                    time.sleep(0.2)
        api.close()

    def _seen(self, kind: str, obj: dict[str, Any]) -> None:
        now = time.perf_counter()
        meta = obj.get("metadata", {})
        with self._lock:
            if kind == MD[1]:
                phase = (obj.get("status") or {}).get("phase")
                if phase:
                    self.phases[meta["name"]] = phase
                    if phase == "Stable":
                        self.stable.setdefault(meta["name"], now)
                return
            owner = next(
                (ref["name"] for ref in meta.get("ownerReferences") or [] if ref.get("kind") == MD[1]), None
            )
            if owner is None:
                return
            seen = self.children.setdefault(owner, {})
            seen.setdefault((kind, meta["name"]), now)
            if len(seen) >= len(self.child_kinds):
                self.complete.setdefault(owner, now)


def wait_until(predicate: Callable[[], bool], timeout: float, what: str, check: Callable[[], None]) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        check()
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.02)


# ----------------------------------------------------------------------------------- processes


def bench_env(cp: ControlPlane, credentials: Credentials) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBE")}
    env.update(BENCH_SERVER=cp.url, BENCH_CA_FILE=str(cp.ca_file), BENCH_TOKEN=credentials.token or "")
    if credentials.cert_file and credentials.key_file:
        env.update(BENCH_CERT_FILE=str(credentials.cert_file), BENCH_KEY_FILE=str(credentials.key_file))
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    return env


class Helper:
    """A bench/*.py helper process that prints `ready`, works until its stdin closes, prints a result."""

    def __init__(self, command: list[str], env: dict[str, str], log_file: Path) -> None:
        self.command = command
        self.log: IO[bytes] = log_file.open("wb")
        self.proc = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True, env=env
        )
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != "ready":
            raise RuntimeError(f"{command[1]} did not start; see {log_file}")

    def check(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.command[1]} exited with {self.proc.returncode}")

    def cpu(self) -> float:
        return proc_cpu(self.proc.pid)

    def finish(self, timeout: float = 60) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.close()
        out = self.proc.stdout.read().strip().splitlines()
        self.proc.wait(timeout=timeout)
        self.log.close()
        result: dict[str, Any] = json.loads(out[-1]) if out and out[-1].startswith("{") else {}
        return result

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(OSError):
                assert self.proc.stdin is not None
                self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.log.close()


def proc_memory(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS), KiB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


def proc_cpu(pid: int) -> float:
    """User + system CPU seconds of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            out += [int(p) for p in (task / "children").read_text().split()]
    return out


def shown(operator: OperatorProcess) -> str:
    """The operator's command line as a reader would type it (the ports are free ones, picked per run)."""
    parts = [
        Path(p).name if p.startswith("/") else re.sub(r"-port=\d+$", "-port=PORT", p)
        for p in operator.command()
    ]
    return "KUBECONFIG=<the kubeconfig of the operator's ServiceAccount> " + " ".join(parts)


def operator_pid(operator: OperatorProcess) -> int:
    assert operator.process is not None
    return operator.process.pid


def operator_check(operator: OperatorProcess) -> Callable[[], None]:
    def check() -> None:
        if operator.process is not None and operator.process.poll() is not None:
            raise RuntimeError(f"the operator exited with {operator.process.returncode}:\n{operator.tail()}")

    return check


# ------------------------------------------------------------------------------ the cluster


def install_crds(api: KubeApi) -> None:
    if not THIRD_PARTY_CRDS.is_dir():  # the PodMonitor child needs the Prometheus Operator's CRD
        raise RuntimeError(f"no upstream CRDs in {THIRD_PARTY_CRDS}: set MODELDEPLOY_THIRD_PARTY_CRDS")
    paths = sorted((ROOT / "crds").glob("*.yaml")) + sorted(THIRD_PARTY_CRDS.glob("*.yaml"))
    api.install_crds(
        [doc for path in paths for doc in yaml.safe_load_all(path.read_text()) if isinstance(doc, dict)]
    )


def more_service_ips(api: KubeApi) -> None:
    """The test bed's Service range is a /24 (254 IPs); --n 1000 needs 1,000 Services at once.

    A second ServiceCIDR (networking.k8s.io/v1) adds a /16, as an admin would on a cluster."""
    api.apply(
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "ServiceCIDR",
            "metadata": {"name": "modeldeploy-bench"},
            "spec": {"cidrs": ["10.1.0.0/16"]},
        }
    )

    def ready() -> bool:
        cidr = api.get("networking.k8s.io/v1", "ServiceCIDR", None, "modeldeploy-bench") or {}
        conditions = (cidr.get("status") or {}).get("conditions") or []
        return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)

    api.wait_for(ready, timeout=60, what="the bench's ServiceCIDR")


def find_helm() -> str | None:
    local = ROOT / ".tools" / "bin" / "helm"
    return str(local) if local.exists() else shutil.which("helm")


def chart_rbac(helm: str, chart: Path) -> list[dict[str, Any]]:
    """The chart's ServiceAccount, ClusterRole and ClusterRoleBinding (`helm template`, defaults)."""
    with tempfile.TemporaryDirectory(prefix="bench-helm-") as home:
        env = {**os.environ, **{f"HELM_{k}_HOME": f"{home}/{k.lower()}" for k in ("CONFIG", "CACHE", "DATA")}}
        done = subprocess.run(
            [helm, "template", RELEASE, str(chart), "--namespace", RELEASE_NAMESPACE],
            capture_output=True, text=True, env=env, check=False, timeout=120,
        )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"helm template {chart}: {done.stderr.strip()}")
    out = done.stdout
    docs = [d for d in yaml.safe_load_all(out) if isinstance(d, dict)]
    (binding,) = [d for d in docs if d["kind"] == "ClusterRoleBinding"]
    role = binding["roleRef"]["name"]
    keep = [d for d in docs if d["kind"] == "ClusterRole" and d["metadata"]["name"] == role]
    keep += [binding] + [d for d in docs if d["kind"] == "ServiceAccount"]
    return keep


def ensure_namespace(api: KubeApi, name: str) -> None:
    api.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    # Pods need the namespace's default ServiceAccount, which the controller manager creates.
    api.wait_for(lambda: api.get("v1", "ServiceAccount", name, "default"), timeout=60, what=f"{name}/default")


def log_in(cp: ControlPlane, use_cluster_admin: bool, chart: Path) -> tuple[Credentials, Credentials, str]:
    """The operator's and the floor's credentials, and how they were made (for the report)."""
    api = cp.admin
    helm = None if use_cluster_admin else find_helm()
    if helm is None:
        users = []
        for user in ("modeldeploy-operator", "modeldeploy-floor"):
            api.apply(
                {
                    "apiVersion": "rbac.authorization.k8s.io/v1",
                    "kind": "ClusterRoleBinding",
                    "metadata": {"name": user},
                    "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": "cluster-admin"},
                    "subjects": [{"kind": "User", "name": user, "apiGroup": RBAC}],
                }
            )
            users.append(cp.client_certificate(user))
        why = "--cluster-admin" if use_cluster_admin else "no helm binary (make tools installs it)"
        return users[0], users[1], f"client certificates of users bound to cluster-admin ({why})"
    ensure_namespace(api, RELEASE_NAMESPACE)
    docs = chart_rbac(helm, chart)
    for doc in docs:
        if doc["kind"] == "ServiceAccount":
            doc["metadata"].setdefault("namespace", RELEASE_NAMESPACE)
        api.apply(doc)
    binding = next(d for d in docs if d["kind"] == "ClusterRoleBinding")
    role = binding["roleRef"]["name"]
    subject = binding["subjects"][0]
    api.apply(
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": FLOOR_SA, "namespace": RELEASE_NAMESPACE},
        }
    )
    api.apply(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": FLOOR_SA},
            "roleRef": binding["roleRef"],
            "subjects": [{"kind": "ServiceAccount", "name": FLOOR_SA, "namespace": RELEASE_NAMESPACE}],
        }
    )
    operator = cp.service_account_token(subject["namespace"], subject["name"], seconds=6 * 3600)
    floor = cp.service_account_token(RELEASE_NAMESPACE, FLOOR_SA, seconds=6 * 3600)
    how = (
        f"ServiceAccount tokens (TokenRequest) bound to the chart's ClusterRole `{role}` "
        f"(helm template {os.path.relpath(chart, ROOT)}, default values): the operator's own "
        "ServiceAccount, and one for the floor"
    )
    return operator, floor, how


# ---------------------------------------------------------------------------------- measuring


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), -(-len(ordered) * p // 100)))
    return ordered[int(rank) - 1]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "p50": percentile(values, 50),
        "p99": percentile(values, 99),
        "max": max(values),
        "min": min(values),
        "n": len(values),
    }


@dataclass
class Burst:
    latencies: list[float]
    wall: float  # first apply -> last object complete
    apply_wall: float  # first apply -> last apply answered
    requests: list[dict[str, Any]]  # the client's audit events, burst -> quiet
    cpu: float
    to_stable: list[float] = field(default_factory=list)

    def report(self, n: int) -> dict[str, Any]:
        verbs = verb_counts(self.requests)
        kinds = Counter(request_kind(e) for e in self.requests)
        return {
            "latency_s": summary(self.latencies),
            "wall_s": round(self.wall, 3),
            "apply_wall_s": round(self.apply_wall, 3),
            "to_stable_s": summary(self.to_stable) if self.to_stable else None,
            "requests_per_object": round(len(self.requests) / n, 2),
            "writes_per_object": round(len(writes(self.requests)) / n, 2),
            "per_object_by_verb": {k: round(v / n, 2) for k, v in sorted(verbs.items())},
            "requests_by_kind": dict(kinds.most_common()),
            "forbidden": sum(1 for e in self.requests if (e.get("responseStatus") or {}).get("code") == 403),
            "server_errors": sum(
                1 for e in self.requests if (e.get("responseStatus") or {}).get("code", 0) >= 500
            ),
            "cpu_s": round(self.cpu, 2),
        }


def apply_all(api: KubeApi, names: list[str], namespace: str) -> dict[str, float]:
    """The user's `kubectl apply --server-side`, one after another as fast as they are answered."""
    sent = {}
    for name in names:
        sent[name] = time.perf_counter()
        api.apply(manifest(name, namespace))
    return sent


def warm_up(
    api: KubeApi,
    observer: Observer,
    audit: AuditTail,
    user: str,
    namespace: str,
    stable: bool,
    process_check: Callable[[], None],
) -> None:
    """One object first: connections, discovery and caches warm, and proof that the client may work."""
    mark = audit.read()

    def check() -> None:
        process_check()
        audit.read()
        denied = [e for e in audit.of(user, mark) if (e.get("responseStatus") or {}).get("code") == 403]
        if denied:
            raise RuntimeError(
                f"{user} was forbidden {len(denied)} time(s), e.g. {request_kind(denied[0])}: "
                f"{denied[0]['responseStatus'].get('message', '')[:300]} -- fix the chart's RBAC, "
                "or measure with --cluster-admin"
            )

    apply_all(api, ["warm-up"], namespace)
    what = f"the children of {namespace}/warm-up"
    wait_until(lambda: "warm-up" in observer.complete, 120, what, check)
    if stable:
        wait_until(lambda: observer.phases.get("warm-up") == "Stable", 120, "warm-up to be Stable", check)


def burst(
    api: KubeApi,
    observer: Observer,
    audit: AuditTail,
    user: str,
    names: list[str],
    namespace: str,
    cpu: Callable[[], float],
    check: Callable[[], None],
    timeout: float,
    stable: bool,
) -> Burst:
    mark, cpu0 = audit.read(), cpu()
    sent = apply_all(api, names, namespace)
    applied = time.perf_counter()
    wait_until(lambda: all(n in observer.complete for n in names), timeout, "every object's children", check)
    if stable:
        wait_until(
            lambda: all(observer.phases.get(n) == "Stable" for n in names),
            timeout,
            "every ModelDeployment to be Stable",
            check,
        )
    end = audit.wait_quiet(user, 3.0, timeout, check)
    first = min(sent.values())
    return Burst(
        latencies=[observer.complete[n] - sent[n] for n in names],
        wall=max(observer.complete[n] for n in names) - first,
        apply_wall=applied - first,
        requests=audit.of(user, mark, end),
        cpu=cpu() - cpu0,
        to_stable=[observer.stable[n] - sent[n] for n in names] if stable else [],
    )


def first_difference(a: Any, b: Any, path: str) -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                return first_difference(a.get(key), b.get(key), f"{path}.{key}")
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            if x != y:
                return first_difference(x, y, f"{path}[{i}]")
    return f"{path}: operator {json.dumps(a)[:200]} / floor {json.dumps(b)[:200]}"


Snapshot = dict[tuple[str, str, str], dict[str, Any]]  # (owner, kind, name) -> {"spec": .., "data": ..}


def snapshot(cp: ControlPlane, observer: Observer, names: list[str]) -> Snapshot:
    """The children of `names` as stored, without what others set (to compare the floor's and ours)."""
    api = cp.admin
    kinds = {kind: api_version for api_version, kind in observer.child_kinds}
    # Not ours: the API server allocates Service IPs; the HPA sets replicas (it lifts a Deployment
    # to minReplicas within its 15 s sync, so a younger Deployment may still lag).
    others = {"Service": ("clusterIP", "clusterIPs"), "Deployment": ("replicas",)}
    out: Snapshot = {}
    for owner in names:
        for kind, child in observer.children[owner]:
            obj = api.get(kinds[kind], kind, observer.namespace, child) or {}
            text = json.dumps({k: obj.get(k) for k in ("spec", "data")}).replace(observer.namespace, "NS")
            # Triton's admin key is derived from the owner's uid, which differs between the two.
            text = re.sub(r"modeldeploy-admin-key=[0-9a-f]+", "modeldeploy-admin-key=KEY", text)
            body = json.loads(text)
            for field_name in others.get(kind, ()):
                (body["spec"] or {}).pop(field_name, None)
            out[(owner, kind, child)] = body
    return out


def same_children(operator: Snapshot, floor: Snapshot) -> int:
    """The floor created what the operator created: the same kinds and names, the same spec and data."""
    if set(operator) != set(floor):
        raise RuntimeError(f"other children: operator {sorted(operator)} / floor {sorted(floor)}")
    for key, mine in operator.items():
        if mine != floor[key]:
            where = first_difference(mine, floor[key], "")
            raise RuntimeError(f"{key[1]} {key[2]}: the floor's differs from the operator's at {where}")
    return len(operator)


def delete_namespace(api: KubeApi, name: str, timeout: float) -> float:
    t0 = time.monotonic()
    api.delete("v1", "Namespace", None, name)
    api.wait_for(
        lambda: api.get("v1", "Namespace", None, name) is None, timeout=timeout, what=f"{name} deleted"
    )
    return time.monotonic() - t0


def reconciles(operator: OperatorProcess) -> float:
    """Passes the operator has finished, from its own /metrics."""
    total = 0.0
    for line in operator.metrics().splitlines():
        if line.startswith("modeldeploy_reconcile_total{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def at_rest(
    audit: AuditTail,
    user: str,
    operator: OperatorProcess,
    idle: float,
    resync: float,
    check: Callable[[], None],
    timeout: float,
) -> dict[str, Any]:
    """After a restart: the start-up, then an idle window of `idle` seconds. A resync reads the
    cache, so it leaves nothing in the audit log: the operator's own pass counter says the passes
    ran, and the audit log says what they cost (watch streams kopf reopens are counted apart)."""
    restart = audit.read()
    quiet = audit.wait_quiet(user, min(2.0, resync / 3), timeout, check)
    startup = audit.of(user, restart, quiet)
    passes0, t0 = reconciles(operator), time.monotonic()
    deadline = t0 + idle
    while time.monotonic() < deadline:
        check()
        time.sleep(min(5.0, max(0.1, deadline - time.monotonic())))
    audit.read()
    seconds, passes = time.monotonic() - t0, reconciles(operator) - passes0
    window = audit.of(user, quiet)
    requests = [e for e in window if e.get("verb") != "watch"]
    resyncs = seconds / resync
    window_writes = writes(window)
    return {
        "idle_seconds": round(seconds, 1),
        "resync_seconds": resync,
        "resyncs": round(resyncs, 1),
        "passes": passes,
        "requests_per_resync": round(len(requests) / resyncs, 2),
        "requests_in_window_by_verb": dict(sorted(verb_counts(requests).items())),
        "requests_in_window_examples": [request_kind(e) for e in requests[:10]],
        "watches_opened_in_window": sum(1 for e in window if e.get("verb") == "watch"),
        "writes_in_window": len(window_writes),
        "writes_in_window_by_kind": dict(Counter(request_kind(e) for e in window_writes).most_common()),
        "startup_requests": len(startup),
        "startup_requests_by_verb": dict(sorted(verb_counts(startup).items())),
        "startup_writes_by_kind": dict(Counter(request_kind(e) for e in writes(startup)).most_common()),
        "forbidden": sum(1 for e in window + startup if (e.get("responseStatus") or {}).get("code") == 403),
    }


# ------------------------------------------------------------------------------------ the run


def run(args: argparse.Namespace, assets: Path, workdir: Path) -> dict[str, Any]:
    results: dict[str, Any] = {"n": args.n}
    names = [f"scorer-{i:04d}" for i in range(args.n)]
    child_kinds = expected_children()
    workers = OperatorConfig().workers
    with contextlib.ExitStack() as stack:
        (workdir / "controlplane").mkdir()
        cp = stack.enter_context(ControlPlane(assets=assets, workdir=workdir / "controlplane"))
        api = cp.admin
        version = subprocess.run(
            [str(assets / "kube-apiserver"), "--version"], capture_output=True, text=True, check=False
        ).stdout.strip()
        log(f"control plane up at {cp.url} ({version})")
        more_service_ips(api)
        install_crds(api)
        operator_creds, floor_creds, how = log_in(cp, args.cluster_admin, args.chart)
        results["credentials"] = how
        log(f"logged in with {how}")
        kubelet = Helper([sys.executable, str(KUBELET)], bench_env(cp, Credentials("admin", cp.admin_token)),
                         workdir / "kubelet.log")  # fmt: skip
        stack.callback(kubelet.stop)
        for namespace in (FLOOR_NS, OPERATOR_NS):
            ensure_namespace(api, namespace)
        audit = AuditTail(cp.audit_log, {operator_creds.user, floor_creds.user})

        # --- 1. the floor
        floor_watch = Observer(cp, FLOOR_NS, child_kinds)
        floor_watch.start()
        stack.callback(floor_watch.stop)
        floor = Helper(
            [sys.executable, str(FLOOR_CLIENT), "--namespace", FLOOR_NS, "--concurrency", str(workers)],
            bench_env(cp, floor_creds),
            workdir / "floor.log",
        )
        stack.callback(floor.stop)
        warm_up(api, floor_watch, audit, floor_creds.user, FLOOR_NS, False, floor.check)
        audit.wait_quiet(floor_creds.user, 1.0, 60, floor.check)
        log(f"floor: {args.n} objects")
        floor_burst = burst(
            api, floor_watch, audit, floor_creds.user, names, FLOOR_NS, floor.cpu, floor.check,
            args.timeout, False,
        )  # fmt: skip
        results["floor"] = floor_burst.report(args.n)
        results["floor"]["client"] = floor.finish()
        floor_watch.stop()
        floor_children = snapshot(cp, floor_watch, names[:5])
        # The operator watches every namespace, as the chart installs it: the floor's objects go first.
        log(f"deleting {FLOOR_NS}")
        results["floor_namespace_deleted_s"] = round(delete_namespace(api, FLOOR_NS, args.timeout), 1)
        log(
            f"floor: p50 {percentile(floor_burst.latencies, 50) * 1000:.0f} ms, "
            f"p99 {percentile(floor_burst.latencies, 99) * 1000:.0f} ms"
        )

        # --- 2. the operator: latency and requests per object
        kubeconfig = cp.kubeconfig(operator_creds, workdir / "kubeconfig-operator")
        operator = OperatorProcess(
            kubeconfig=kubeconfig, log=workdir / "operator-1.log", resync_seconds=args.latency_resync
        )
        results["command_latency"] = shown(operator)
        stack.callback(operator.stop)
        operator.start()
        pid, check = operator_pid(operator), operator_check(operator)
        results["operator_children"] = proc_children(pid)
        results["rss_started_kib"] = proc_memory(pid)["VmRSS"]
        watch = Observer(cp, OPERATOR_NS, child_kinds)
        watch.start()
        stack.callback(watch.stop)
        warm_up(api, watch, audit, operator_creds.user, OPERATOR_NS, True, check)
        audit.wait_quiet(operator_creds.user, 2.0, 120, check)
        log(f"operator (pid {pid}): {args.n} objects")
        op_burst = burst(
            api, watch, audit, operator_creds.user, names, OPERATOR_NS, lambda: proc_cpu(pid), check,
            args.timeout, True,
        )  # fmt: skip
        results["operator"] = op_burst.report(args.n)
        results["rss_after_burst_kib"] = proc_memory(pid)
        log(
            f"operator: p50 {percentile(op_burst.latencies, 50) * 1000:.0f} ms, "
            f"p99 {percentile(op_burst.latencies, 99) * 1000:.0f} ms; all Stable"
        )
        results["children_compared"] = same_children(snapshot(cp, watch, names[:5]), floor_children)
        operator.stop()
        watch.stop()

        # --- 3. at rest: restarted with a short resync period, on the same objects
        operator = OperatorProcess(
            kubeconfig=kubeconfig, log=workdir / "operator-2.log", resync_seconds=args.resync_seconds
        )
        results["command_rest"] = shown(operator)
        stack.callback(operator.stop)
        operator.start()
        pid, check = operator_pid(operator), operator_check(operator)
        log(f"operator restarted (pid {pid}), --resync-seconds={args.resync_seconds:g}, {args.n + 1} objects")
        idle = args.idle_seconds or args.passes * args.resync_seconds
        log(f"idle window: {idle:g}s")
        results["rest"] = at_rest(
            audit, operator_creds.user, operator, idle, args.resync_seconds, check, args.timeout
        )
        results["rss_at_rest_kib"] = proc_memory(pid)
        results["operator_children"] += proc_children(pid)
        operator.stop()
        results["load_average_end"] = os.getloadavg()
        results["apiserver_version"] = version
        results["watch_errors"] = floor_watch.errors + watch.errors
    return results


# -------------------------------------------------------------------------------------- report


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.0f} ms"


def mib(kib: int) -> str:
    return f"{kib / 1024:.0f} MiB"


def verbs(by_verb: dict[str, float]) -> str:
    return ", ".join(f"{verb} {count:g}" for verb, count in by_verb.items())


def report(results: dict[str, Any], args: argparse.Namespace, elapsed: float) -> str:
    op, fl, rest = results["operator"], results["floor"], results["rest"]
    peak_burst, peak_rest = results["rss_after_burst_kib"]["VmHWM"], results["rss_at_rest_kib"]["VmHWM"]
    lines = [
        f"#### {results['n']} ModelDeployments (examples/fraud-scorer.yaml, "
        f"{len(expected_children())} children each), applied at once, real kube-apiserver",
        "",
        "| figure | operator | floor (bare client, same applies) | ratio |",
        "| --- | ---: | ---: | ---: |",
    ]
    for key, label in (("p50", "apply -> all children seen by a watch, p50"), ("p99", "... p99")):
        a, b = op["latency_s"][key], fl["latency_s"][key]
        lines.append(f"| {label} | {ms(a)} | {ms(b)} | {a / b:.1f}x |")
    lines += [
        f"| ... max | {ms(op['latency_s']['max'])} | {ms(fl['latency_s']['max'])} | |",
        f"| first apply -> last object complete | {ms(op['wall_s'])} | {ms(fl['wall_s'])} | "
        f"{op['wall_s'] / fl['wall_s']:.1f}x |",
        f"| the user's {results['n']} applies took | {ms(op['apply_wall_s'])} | {ms(fl['apply_wall_s'])} | |",
        f"| requests per object (writes) | {op['requests_per_object']:g} ({op['writes_per_object']:g}) | "
        f"{fl['requests_per_object']:g} ({fl['writes_per_object']:g}) | "
        f"{op['requests_per_object'] / fl['requests_per_object']:.1f}x |",
        f"| ... by verb | {verbs(op['per_object_by_verb'])} | {verbs(fl['per_object_by_verb'])} | |",
        f"| client CPU seconds | {op['cpu_s']:g} | {fl['cpu_s']:g} | |",
        f"| apply -> Stable (pods Ready by the kubelet stand-in), p50 / p99 / max | "
        f"{ms(op['to_stable_s']['p50'])} / {ms(op['to_stable_s']['p99'])} / "
        f"{ms(op['to_stable_s']['max'])} | | |",
        f"| forbidden (403) responses | {op['forbidden']} | {fl['forbidden']} | |",
        f"| server errors (5xx) answered, retried | {op['server_errors']} | {fl['server_errors']} | |",
        "",
        f"Operator requests in the burst, by kind: {json.dumps(op['requests_by_kind'])}",
        "",
        f"#### At rest: {results['n'] + 1} objects, --resync-seconds={rest['resync_seconds']:g}, "
        f"an idle window of {rest['idle_seconds']:g} s "
        f"({rest['resyncs']:g} resyncs, {rest['passes']:g} passes)",
        "",
        "| figure | value |",
        "| --- | ---: |",
        f"| **writes in the idle window** | **{rest['writes_in_window']}** |",
        f"| **requests per resync** | **{rest['requests_per_resync']:g}** "
        f"({verbs(rest['requests_in_window_by_verb']) or 'none'}) |",
        f"| watch streams reopened in the window | {rest['watches_opened_in_window']} |",
        f"| requests of the start-up passes after the restart | {rest['startup_requests']} |",
        f"| forbidden (403) responses | {rest['forbidden']} |",
        f"| operator RSS, started with no object | {mib(results['rss_started_kib'])} |",
        f"| operator peak RSS (VmHWM) after the burst and all Stable | {mib(peak_burst)} |",
        f"| operator peak RSS (VmHWM), restarted, after the idle passes | {mib(peak_rest)} |",
        "",
        f"Writes in the idle window, by kind: {json.dumps(rest['writes_in_window_by_kind']) or '{}'}",
        f"Requests in the idle window: {rest['requests_in_window_examples']}",
        f"Writes of the start-up passes, by kind: {json.dumps(rest['startup_writes_by_kind'])}",
        "",
        f"Credentials: {results['credentials']}.",
        f"Operator commands: `{results['command_latency']}` (burst); `{results['command_rest']}` (at rest).",
        f"Floor: bench/floor_client.py, {fl['client'].get('objects')} objects, "
        f"{fl['client'].get('requests')} applies ({fl['client'].get('retries')} retried), "
        f"errors {fl['client'].get('errors')}; "
        "children compared with the operator's: "
        f"{results['children_compared']} (kinds, names, spec and data equal).",
        f"Machine: {os.cpu_count()} CPUs, {platform.platform()}, Python {platform.python_version()}, "
        f"{results['apiserver_version']}; load average at the end {results['load_average_end'][0]:.1f}. "
        f"`modeldeploy run` child processes: {results['operator_children'] or 'none'}.",
        f"Command: `{' '.join(['.venv/bin/python', 'bench/reconcile_latency.py', *sys.argv[1:]])}` "
        f"({elapsed:.0f} s in all).",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=200, help="ModelDeployments in the burst (default 200)")
    parser.add_argument(
        "--resync-seconds", type=float, default=10.0, help="resync period at rest (default 10)"
    )
    parser.add_argument("--passes", type=int, default=3, help="whole resync periods measured at rest")
    parser.add_argument(
        "--idle-seconds",
        type=float,
        default=0.0,
        help="length of the idle window (default: --passes periods)",
    )
    parser.add_argument(
        "--latency-resync", type=float, default=600.0, help="resync period during the burst (far away)"
    )
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds for any one wait")
    parser.add_argument("--json", type=Path, help="write every figure here")
    parser.add_argument(
        "--cluster-admin", action="store_true", help="log in as cluster-admin users, not the chart's RBAC"
    )
    parser.add_argument("--chart", type=Path, default=CHART, help="the chart whose RBAC the operator gets")
    parser.add_argument("--keep", action="store_true", help="keep the logs and the audit log")
    args = parser.parse_args()
    try:
        assets = find_assets()
    except ControlPlaneMissing as error:
        print(f"bench: the real control plane is missing: {error}", file=sys.stderr)
        return 1

    def terminate(signum: int, _: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, terminate)
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="modeldeploy-bench-"))
    try:
        results = run(args, assets, workdir)
    except BaseException:
        log(f"failed; the logs (operator, floor, kubelet, control plane, audit) are in {workdir}")
        raise
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    text = report(results, args, time.monotonic() - started)
    print(text)
    if args.json:
        args.json.write_text(json.dumps({**results, "report": text}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
