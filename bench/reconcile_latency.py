"""Reconcile benchmark: the real operator, as its own process, against the Kubernetes API emulator.

What it measures (docs/benchmark.md explains each figure and what limits it):

1. Latency from creating a ModelDeployment to "all its children exist" (ConfigMap, Deployment,
   Service, HPA, PodMonitor), for a burst of --count objects, and for single objects on an idle
   system. Every time is taken inside the emulator, at the instant a write is committed to its
   store (the moment a watcher could see it): no polling error, one clock for everything.
2. The floor: the same child writes (the same server-side-apply PATCHes with the same bodies)
   sent by a bare HTTP client process, one object at a time and with the operator's 16 workers.
3. Write requests per no-op pass, over several periodic resync passes of the settled objects.
4. The operator process's memory: VmRSS with no objects, VmHWM (peak RSS) at the end.

All traffic stays on 127.0.0.1. Run: ``.venv/bin/python bench/reconcile_latency.py`` (``make bench``).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import functools
import gc
import itertools
import json
import os
import platform
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import IO, Any

import attrs
import kmock
import yaml

from modeldeploy.adapters.kube import kind_of
from modeldeploy.api.base import KIND, PLURAL
from modeldeploy.api.crd import crd
from modeldeploy.api.resource import ObjectRef, parse_spec
from modeldeploy.handlers.config import OperatorConfig
from modeldeploy.render.compare import needs_apply, stamped
from modeldeploy.render.names import NAME_LABEL
from modeldeploy.render.options import RenderOptions
from modeldeploy.rollout.plan import steady_children
from modeldeploy.sim import ApiRequest, ClusterEmulator, EmulatorThread
from modeldeploy.sim.cluster import OPTIONAL_CRDS, crd_stub

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "fraud-scorer.yaml"
FLOOR_CLIENT = Path(__file__).resolve().parent / "floor_client.py"
NAMESPACE = "ml"
WATCHED = frozenset({PLURAL, "deployments", "services", "configmaps", "horizontalpodautoscalers"})
POD_MONITOR_CRD = "podmonitors.monitoring.coreos.com"
LOG_LIMIT = 200_000  # request-log records kept; the whole run needs a few tens of thousands

Key = tuple[str | None, str]  # (namespace, name) of a ModelDeployment


# ------------------------------------------------------------------------------------ the emulator


@attrs.define(kw_only=True)
class TimedEmulator(ClusterEmulator):
    """The project's emulator, timestamping (perf_counter) each request and each committed write.

    ``_commit`` runs under the emulator's lock at the instant a write becomes visible, so the
    times below are when the object existed for any client, not when someone polled and saw it.
    """

    expected_children: int = 5
    created: dict[Key, float] = attrs.field(factory=dict, init=False)  # ModelDeployment committed
    complete: dict[Key, float] = attrs.field(factory=dict, init=False)  # its last child committed
    first_status: dict[Key, float] = attrs.field(factory=dict, init=False)  # first status write
    stable: dict[Key, float] = attrs.field(factory=dict, init=False)  # status.phase became Stable
    phases: dict[Key, str] = attrs.field(factory=dict, init=False)
    uids: dict[Key, str] = attrs.field(factory=dict, init=False)
    children: dict[Key, set[tuple[str, str]]] = attrs.field(factory=dict, init=False)
    child_parent: dict[tuple[str, str | None, str], str] = attrs.field(factory=dict, init=False)
    request_times: dict[int, float] = attrs.field(factory=dict, init=False)
    # What each committed update of a ModelDeployment changed in its status: (name, "field,...").
    status_changes: list[tuple[str, str]] = attrs.field(factory=list, init=False)

    def _record(self, request: kmock.Request) -> ApiRequest:
        record = super()._record(request)
        self.request_times[record.seq] = time.perf_counter()
        return record

    def _commit(
        self, key: tuple[kmock.resource, str | None, str], old: dict[str, Any] | None, new: dict[str, Any]
    ) -> dict[str, Any]:
        result = super()._commit(key, old, new)
        now = time.perf_counter()
        plural, namespace, name = key[0].plural or "", key[1], key[2]
        parent: Key = (namespace, name)
        if plural == PLURAL:
            if old is None:
                self.created.setdefault(parent, now)
                self.uids[parent] = result["metadata"]["uid"]
            phase = (result.get("status") or {}).get("phase")
            if old is not None:  # every committed update; an unchanged write commits nothing
                self.status_changes.append((name, _changed(old.get("status"), result.get("status"))))
            if phase:
                self.first_status.setdefault(parent, now)
                self.phases[parent] = phase
                if phase == "Stable":
                    self.stable.setdefault(parent, now)
        elif old is None:
            refs = result["metadata"].get("ownerReferences") or []
            owner = next((str(ref["name"]) for ref in refs if ref.get("kind") == KIND), None)
            if owner is not None:
                self.child_parent[(plural, namespace, name)] = owner
                kids = self.children.setdefault((namespace, owner), set())
                kids.add((plural, name))
                if len(kids) >= self.expected_children:
                    self.complete.setdefault((namespace, owner), now)
        return result

    def records(self, since: int, until: int | None = None) -> list[ApiRequest]:
        log = self.request_log
        if log and log[0].seq > since:
            raise RuntimeError(f"the request log no longer holds #{since}: raise LOG_LIMIT")
        return [r for r in log if r.seq >= since and (until is None or r.seq < until)]


def _changed(old: dict[str, Any] | None, new: dict[str, Any] | None) -> str:
    """Which status fields a write changed; conditions by type."""
    old, new = old or {}, new or {}
    fields = [k for k in sorted(set(old) | set(new)) if k != "conditions" and old.get(k) != new.get(k)]
    before = {c.get("type"): c for c in old.get("conditions") or []}
    after = {c.get("type"): c for c in new.get("conditions") or []}
    for kind in sorted(set(before) | set(after), key=str):
        b, a = before.get(kind) or {}, after.get(kind) or {}
        diff = [k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
        if diff:
            fields.append(f"conditions[{kind}].{'/'.join(diff)}")
    return ",".join(fields) or "(nothing)"


def new_emulator(optional_crds: tuple[str, ...]) -> TimedEmulator:
    emulator = TimedEmulator(keep_history=False, request_log_limit=LOG_LIMIT)
    emulator.declare_builtin_resources()
    emulator.put_object(crd())
    for name in optional_crds:
        emulator.put_object(crd_stub(name))
    return emulator


@contextlib.contextmanager
def serving(emulator: TimedEmulator) -> Iterator[str]:
    server = EmulatorThread(emulator, host="127.0.0.1")
    url = server.start()
    try:
        yield url
    finally:
        server.stop()


# ---------------------------------------------------------------------------------- processes


def _proc_status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) in KiB, from /proc."""
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


def _proc_cpu(pid: int) -> float:
    """User + system CPU seconds of a process, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"  # loopback only, never via a proxy
    env.pop("KUBECONFIG", None)
    return env


def shown(command: list[str]) -> str:
    """A command as a reader would type it from the repository root."""
    return shlex.join(
        os.path.relpath(part, ROOT) if part.startswith(str(ROOT) + os.sep) else part for part in command
    )


def operator_command(url: str, resync: float) -> list[str]:
    script = Path(sys.executable).parent / "modeldeploy"
    base = [str(script)] if script.exists() else [sys.executable, "-m", "modeldeploy.cli"]
    flags = ["--health-port", "0", "--metrics-port", "0", "--resync-seconds", f"{resync:g}"]
    return [*base, "run", "--server", url, *flags]


class OperatorProcess:
    """`modeldeploy run` against the emulator, as its own process; its log goes to a temp file."""

    def __init__(self, url: str, resync: float) -> None:
        self.command = operator_command(url, resync)
        self.log: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115  # closed by stop()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            self.command,
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=_child_env(),
        )

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def check(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"the operator exited with {self.proc.returncode}:\n{self.tail()}")

    def tail(self, lines: int = 30) -> str:
        self.log.seek(0)
        return "\n".join(self.log.read().decode(errors="replace").splitlines()[-lines:])

    def memory(self) -> dict[str, int]:
        return _proc_status(self.pid)

    def cpu(self) -> float:
        return _proc_cpu(self.pid)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.log.close()


class FloorProcess:
    """bench/floor_client.py: the operator's child writes from a bare HTTP client process."""

    def __init__(self, url: str, concurrency: int) -> None:
        self.command = [sys.executable, str(FLOOR_CLIENT), "--server", url, "--concurrency", str(concurrency)]
        self.proc: subprocess.Popen[str] | None = None
        self.result: dict[str, Any] = {}

    def start(self, names: list[str], spec: dict[str, Any]) -> None:
        self.proc = subprocess.Popen(
            self.command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=_child_env(),
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"namespace": NAMESPACE, "names": names, "spec": spec}) + "\n")
        self.proc.stdin.flush()
        if self.proc.stdout.readline().strip() != "ready":
            raise RuntimeError("the floor client did not start")

    def send(self, name: str, uid: str) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"name": name, "uid": uid}) + "\n")
        self.proc.stdin.flush()

    def check(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"the floor client exited with {self.proc.returncode}")

    def finish(self) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.close()
        lines = self.proc.stdout.read().strip().splitlines()
        self.proc.wait(timeout=30)
        self.result = json.loads(lines[-1]) if lines else {}
        if self.result.get("errors"):
            raise RuntimeError(f"the floor client saw errors: {self.result['errors']}")
        return self.result

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=5)


# ------------------------------------------------------------------------------------- helpers


@functools.cache
def _example() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    return doc


def manifest(name: str) -> dict[str, Any]:
    """The example with another name (parsed once: PyYAML would cost ~10 ms an object)."""
    doc = copy.deepcopy(_example())
    doc["metadata"]["name"] = name
    doc["metadata"]["namespace"] = NAMESPACE
    return doc


def wait_until(
    predicate: Callable[[], bool],
    timeout: float,
    what: str,
    check: Callable[[], None] | None = None,
    interval: float = 0.01,
) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if check is not None:
            check()
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


def wait_quiet(emulator: TimedEmulator, quiet: float, timeout: float, check: Callable[[], None]) -> None:
    """Until no request has reached the emulator for `quiet` seconds."""
    deadline = time.monotonic() + timeout
    last, since = emulator.log_position(), time.monotonic()
    while time.monotonic() - since < quiet:
        check()
        if time.monotonic() > deadline:
            raise TimeoutError(f"the operator did not go quiet within {timeout:g}s")
        time.sleep(0.05)
        position = emulator.log_position()
        if position != last:
            last, since = position, time.monotonic()


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-p * len(ordered) // 100))))
    return ordered[rank - 1]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "p50": percentile(values, 50),
        "p99": percentile(values, 99),
        "max": max(values),
        "min": min(values),
        "n": len(values),
    }


def request_kind(record: ApiRequest) -> str:
    resource = record.rbac_resource or "(discovery)"
    return f"{record.verb or record.method} {resource}"


def subject_of(record: ApiRequest, child_parent: dict[tuple[str, str | None, str], str]) -> str | None:
    """Which ModelDeployment a request is about, if any."""
    selector = record.query.get("labelSelector") or ""
    if selector.startswith(f"{NAME_LABEL}="):
        return selector.partition("=")[2].split(",")[0]
    if record.resource == PLURAL and record.name:
        return record.name
    if record.name:
        return child_parent.get((record.resource or "", record.namespace, record.name))
    return None


@dataclass
class Run:
    """One burst: latencies and what it cost."""

    latencies: list[float] = field(default_factory=list)
    pickups: list[float] = field(default_factory=list)  # create -> first request about the object
    to_status: list[float] = field(default_factory=list)  # create -> first status write
    wall: float = 0.0
    requests: Counter[str] = field(default_factory=Counter)
    writes: int = 0
    cpu_client: float = 0.0
    cpu_emulator: float = 0.0
    settle_wall: float = 0.0  # until the last request of the burst
    status_changes: Counter[str] = field(default_factory=Counter)

    def report(self, count: int) -> dict[str, Any]:
        status_patches = self.requests.get(f"patch {PLURAL}/status", 0)
        return {
            "latency_s": summary(self.latencies),
            "pickup_s": summary(self.pickups) if self.pickups else None,
            "to_first_status_s": summary(self.to_status) if self.to_status else None,
            "wall_s": self.wall,
            "settle_wall_s": self.settle_wall,
            "requests_per_object": round(sum(self.requests.values()) / count, 2),
            "writes_per_object": round(self.writes / count, 2),
            # Every reconcile pass lists the Deployments once: passes = those LISTs.
            "passes_per_object": round(self.requests.get("list deployments", 0) / count, 2),
            "status_patches_per_object": round(status_patches / count, 2),
            "applies_per_object": round(
                sum(v for k, v in self.requests.items() if k.startswith("patch ") and PLURAL not in k)
                / count,
                2,
            ),
            "status_patches_changing_nothing": status_patches - sum(self.status_changes.values()),
            "status_commits_changed": dict(self.status_changes.most_common()),
            "requests_by_kind": dict(self.requests.most_common()),
            "cpu_client_s": round(self.cpu_client, 2),
            "cpu_emulator_s": round(self.cpu_emulator, 2),
            "busy_client": round(self.cpu_client / self.settle_wall, 2) if self.settle_wall else None,
            "busy_emulator": round(self.cpu_emulator / self.settle_wall, 2) if self.settle_wall else None,
        }


def measure_burst(
    emulator: TimedEmulator,
    names: list[str],
    create: Callable[[str], None],
    client_cpu: Callable[[], float],
    check: Callable[[], None],
    timeout: float,
) -> Run:
    """Create every object as fast as possible; wait until each has all its children, then quiet."""
    run = Run()
    start_seq = emulator.log_position()
    cpu0, emu0 = client_cpu(), time.process_time()
    changes0 = len(emulator.status_changes)
    for name in names:
        create(name)
    keys = [(NAMESPACE, name) for name in names]
    wait_until(lambda: all(k in emulator.complete for k in keys), timeout, "all children", check)
    wait_quiet(emulator, 0.5, timeout, check)
    end_seq = emulator.log_position()
    run.cpu_client, run.cpu_emulator = client_cpu() - cpu0, time.process_time() - emu0
    records = emulator.records(start_seq, end_seq)
    run.status_changes = Counter(what for _, what in emulator.status_changes[changes0:])
    run.requests = Counter(request_kind(r) for r in records)
    run.writes = sum(1 for r in records if r.is_write)
    first: dict[str, float] = {}
    for record in records:
        subject = subject_of(record, emulator.child_parent)
        if subject is not None and subject not in first:
            first[subject] = emulator.request_times[record.seq]
    created = [emulator.created[k] for k in keys]
    run.latencies = [emulator.complete[k] - emulator.created[k] for k in keys]
    run.pickups = [first[k[1]] - emulator.created[k] for k in keys if k[1] in first]
    run.to_status = [
        emulator.first_status[k] - emulator.created[k] for k in keys if k in emulator.first_status
    ]
    run.wall = max(emulator.complete[k] for k in keys) - min(created)
    run.settle_wall = emulator.request_times[end_seq - 1] - min(created) if records else run.wall
    return run


def one_at_a_time(
    emulator: TimedEmulator,
    names: list[str],
    create: Callable[[str], None],
    check: Callable[[], None],
    quiet: float,
) -> list[float]:
    """Each object alone on an idle system: create, wait for its children, wait until quiet."""
    latencies = []
    for name in names:
        create(name)
        key: Key = (NAMESPACE, name)
        wait_until(lambda: key in emulator.complete, 30, f"the children of {name}", check)  # noqa: B023
        latencies.append(emulator.complete[key] - emulator.created[key])
        wait_quiet(emulator, quiet, 30, check)
    return latencies


def trace(emulator: TimedEmulator, name: str, since: int) -> dict[str, Any]:
    """What the operator sent for one object created on an idle system, request by request."""
    created = emulator.created[(NAMESPACE, name)]
    records = [r for r in emulator.records(since) if subject_of(r, emulator.child_parent) == name]
    records += [r for r in emulator.records(since) if r.resource == "events" and r.verb == "create"][:1]
    records.sort(key=lambda r: r.seq)
    kinds = Counter(request_kind(r) for r in records)
    commits = [what for who, what in emulator.status_changes if who == name]
    return {
        "passes": kinds.get("list deployments", 0),
        "status_patches": kinds.get(f"patch {PLURAL}/status", 0),
        "status_commits": commits,
        "requests": [
            f"{(emulator.request_times[r.seq] - created) * 1000:7.1f} ms  {r.method:5} {r.rbac_resource} "
            f"{r.name or r.query.get('labelSelector', '')}"
            for r in records
        ],
    }


def verify_floor_bodies(emulator: TimedEmulator, names: list[str], spec: dict[str, Any]) -> int:
    """The floor sends what the operator sends: the operator's children must match its render."""
    checked = 0
    for name in names:
        uid = emulator.uids[(NAMESPACE, name)]
        parent = ObjectRef(name=name, namespace=NAMESPACE, uid=uid, generation=1)
        for desired in steady_children(parent, parse_spec(spec), RenderOptions()):
            want = stamped(desired)
            kind = kind_of(want)
            group, _, version = kind.api_version.rpartition("/")
            live = emulator.get_object(group, version, kind.plural, NAMESPACE, want["metadata"]["name"])
            if needs_apply(want, live):
                raise RuntimeError(f"the floor would send another body than the operator for {want['kind']}")
            checked += 1
    return checked


# --------------------------------------------------------------------------------------- phases


def operator_phases(args: argparse.Namespace, optional_crds: tuple[str, ...]) -> dict[str, Any]:
    spec = manifest("x")["spec"]
    emulator = new_emulator(optional_crds)
    results: dict[str, Any] = {}
    burst_names = [f"scorer-{i:04d}" for i in range(args.count)]

    def create(name: str) -> None:
        emulator.put_object(manifest(name))

    with serving(emulator) as url:
        # --- phase A: latency (resync far away, so that no periodic pass runs during the burst)
        operator = OperatorProcess(url, args.latency_resync)
        results["command_latency"] = shown(operator_command("http://127.0.0.1:PORT", args.latency_resync))
        try:
            operator.start()
            wait_until(
                lambda: {r.resource for r in emulator.request_log if r.verb == "watch"} >= WATCHED,
                60,
                "the operator to watch ModelDeployments and their children",
                operator.check,
            )
            wait_quiet(emulator, 1.0, 30, operator.check)
            results["rss_idle_kib"] = operator.memory()["VmRSS"]
            results["cpu_startup_s"] = round(operator.cpu(), 2)
            log(f"operator up (pid {operator.pid}), RSS {results['rss_idle_kib'] / 1024:.1f} MiB")

            one_at_a_time(emulator, ["warmup-0", "warmup-1"], create, operator.check, 0.3)
            idle_start = emulator.log_position()
            idle = one_at_a_time(
                emulator, [f"idle-{i}" for i in range(args.idle)], create, operator.check, 0.3
            )
            results["idle_latency_s"] = summary(idle)
            results["idle_trace"] = trace(emulator, "idle-0", idle_start)
            log(f"idle: one object at a time, median {percentile(idle, 50) * 1000:.0f} ms")

            burst = measure_burst(emulator, burst_names, create, operator.cpu, operator.check, args.timeout)
            results["burst"] = burst.report(args.count)
            results["burst"]["resync_lists_during_burst"] = burst.requests.get(f"list {PLURAL}", 0)
            results["rss_after_burst_kib"] = operator.memory()
            log(
                f"burst of {args.count}: p50 {percentile(burst.latencies, 50) * 1000:.0f} ms, "
                f"p99 {percentile(burst.latencies, 99) * 1000:.0f} ms, wall {burst.wall:.2f} s"
            )
            results["floor_bodies_checked"] = verify_floor_bodies(emulator, burst_names[:3], spec)

            # Play kubelet: every Deployment becomes ready; the operator writes each status once.
            start_seq, t0 = emulator.log_position(), time.perf_counter()
            for name in burst_names:
                emulator.mark_deployment_ready(NAMESPACE, f"{name}-primary")
            keys = [(NAMESPACE, n) for n in burst_names]
            wait_until(
                lambda: all(emulator.phases.get(k) == "Stable" for k in keys),
                args.timeout,
                "every ModelDeployment to be Stable",
                operator.check,
            )
            wait_quiet(emulator, 1.0, args.timeout, operator.check)
            ready = emulator.records(start_seq, emulator.log_position())
            results["ready"] = {
                "wall_to_all_stable_s": max(emulator.stable[k] for k in keys) - t0,
                "requests_per_object": round(len(ready) / args.count, 2),
                "writes": dict(Counter(request_kind(r) for r in ready if r.is_write)),
            }
            results["rss_end_of_latency_run_kib"] = operator.memory()
        finally:
            operator.stop()

        # --- phase B: no-op passes (the same cluster, the operator restarted with a short resync)
        operator = OperatorProcess(url, args.resync)
        results["command_noop"] = shown(operator_command("http://127.0.0.1:PORT", args.resync))
        restart_seq = emulator.log_position()
        try:
            operator.start()
            wait_until(
                lambda: {r.resource for r in emulator.records(restart_seq) if r.verb == "watch"} >= WATCHED,
                60,
                "the restarted operator to watch",
                operator.check,
            )
            # At start-up every object gets a pass (kopf lists them); the first resync passes may
            # overlap those. A gap with no request at all comes only between two resync passes.
            wait_quiet(emulator, min(1.0, args.resync / 2), args.timeout, operator.check)
            quiet_seq = emulator.log_position()

            def resync_lists() -> list[ApiRequest]:
                return [
                    r
                    for r in emulator.records(quiet_seq)
                    if r.verb == "list" and r.resource == PLURAL and r.namespace is None
                ]

            wanted = args.passes + 1
            cpu0, emu0, t0 = operator.cpu(), time.process_time(), time.perf_counter()
            wait_until(
                lambda: len(resync_lists()) >= wanted,
                args.timeout,
                f"{args.passes} resync passes",
                operator.check,
                0.1,
            )
            elapsed = time.perf_counter() - t0
            busy = {
                "operator": round((operator.cpu() - cpu0) / elapsed, 2),
                "emulator": round((time.process_time() - emu0) / elapsed, 2),
            }
            lists = resync_lists()[:wanted]
            first, last = lists[0], lists[-1]
            window = emulator.records(first.seq, last.seq)
            durations = []
            for start, stop in itertools.pairwise(lists):
                inside = [r for r in window if start.seq <= r.seq < stop.seq]
                durations.append(emulator.request_times[inside[-1].seq] - emulator.request_times[start.seq])
            writes = [r for r in window if r.is_write]
            since_restart = [r for r in emulator.records(restart_seq, last.seq) if r.is_write]
            results["noop"] = {
                "passes": args.passes,
                "resync_seconds": args.resync,
                "objects": len(emulator.created),
                "requests_per_pass": round(len(window) / args.passes, 1),
                "requests_by_kind_per_pass": {
                    k: round(v / args.passes, 1) for k, v in Counter(request_kind(r) for r in window).items()
                },
                "writes_per_pass": len(writes) / args.passes,
                "writes": [f"{r.method} {r.path}" for r in writes][:20],
                "writes_since_restart": len(since_restart),
                "writes_since_restart_list": [f"{r.method} {r.path}" for r in since_restart][:20],
                "pass_duration_s": summary(durations),
                "busy_while_passing": busy,
            }
            results["rss_end_kib"] = operator.memory()
            log(
                f"no-op: {len(writes)} writes in {args.passes} resync passes of {len(emulator.created)} "
                f"objects, {len(window) / args.passes:.0f} requests per pass"
            )
        finally:
            operator.stop()
    return results


def floor_phase(
    args: argparse.Namespace, concurrency: int, optional_crds: tuple[str, ...], idle_samples: int
) -> dict[str, Any]:
    spec = manifest("x")["spec"]
    emulator = new_emulator(optional_crds)
    burst_names = [f"scorer-{i:04d}" for i in range(args.count)]
    warm = ["warmup-0", "warmup-1"]
    idle_names = [f"idle-{i}" for i in range(idle_samples)]
    results: dict[str, Any] = {"concurrency": concurrency}
    with serving(emulator) as url:
        client = FloorProcess(url, concurrency)
        try:
            client.start(warm + idle_names + burst_names, spec)

            def create(name: str) -> None:
                obj = emulator.put_object(manifest(name))
                client.send(name, obj["metadata"]["uid"])

            assert client.proc is not None
            pid = client.proc.pid
            one_at_a_time(emulator, warm, create, client.check, 0.1)
            if idle_names:
                results["idle_latency_s"] = summary(
                    one_at_a_time(emulator, idle_names, create, client.check, 0.1)
                )
            burst = measure_burst(
                emulator, burst_names, create, lambda: _proc_cpu(pid), client.check, args.timeout
            )
            results["burst"] = burst.report(args.count)
            client.finish()
        finally:
            client.stop()
    log(
        f"floor x{concurrency}: p50 {percentile(burst.latencies, 50) * 1000:.0f} ms, "
        f"p99 {percentile(burst.latencies, 99) * 1000:.0f} ms, wall {burst.wall:.2f} s"
    )
    return results


# ---------------------------------------------------------------------------------------- report


def machine() -> dict[str, Any]:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "?",
    )
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu": model,
        "python": platform.python_version(),
        "kernel": platform.release(),
        "kopf": metadata.version("kopf"),
        "kmock": metadata.version("kmock"),
        "kubernetes": metadata.version("kubernetes"),
    }


def ms(value: float) -> str:
    return f"{value * 1000:,.0f} ms" if value < 10 else f"{value:,.1f} s"


def ratio(a: float, b: float) -> str:
    return f"{a / b:.1f}x" if b else "n/a"


def row(*cells: str) -> str:
    return "| " + " | ".join(cells) + " |"


def markdown(results: dict[str, Any]) -> str:
    op, seq, par = results["operator"], results["floor_1"], results["floor_n"]
    n, workers = results["count"], results["workers"]
    ob, sb, pb = op["burst"], seq["burst"], par["burst"]
    noop, ready, facts = op["noop"], op["ready"], results["machine"]
    runs = (ob, sb, pb)

    def each(fn: Callable[[dict[str, Any]], str]) -> list[str]:
        return [fn(b) for b in runs]

    def latency(key: str) -> list[str]:
        cells = each(lambda b: ms(b["latency_s"][key]))
        return [*cells, ratio(ob["latency_s"][key], pb["latency_s"][key])]

    idle_op, idle_floor = op["idle_latency_s"], seq["idle_latency_s"]
    lines = [
        f"#### {n} ModelDeployments created at once (examples/fraud-scorer.yaml, 5 children each)",
        "",
        row(
            "create → all 5 children exist",
            "operator",
            "floor, 1 connection",
            f"floor, {workers} connections",
            f"operator / floor ({workers})",
        ),
        "| --- | ---: | ---: | ---: | ---: |",
        row("p50", *latency("p50")),
        row("p99", *latency("p99")),
        row("max", *latency("max")),
        row(
            "wall time, 1st create → last object complete",
            *each(lambda b: ms(b["wall_s"])),
            ratio(ob["wall_s"], pb["wall_s"]),
        ),
        row(
            "wall time until the emulator goes quiet",
            *each(lambda b: ms(b["settle_wall_s"])),
            ratio(ob["settle_wall_s"], pb["settle_wall_s"]),
        ),
        row(
            f"one object alone on an idle system (median of {idle_op['n']})",
            ms(idle_op["p50"]),
            ms(idle_floor["p50"]),
            "",
            f"{ratio(idle_op['p50'], idle_floor['p50'])} (vs 1 connection)",
        ),
        row("create → first request about the object, p50", *each(lambda b: ms(b["pickup_s"]["p50"])), ""),
        row(
            "requests per object (of which writes)",
            *each(lambda b: f"{b['requests_per_object']:g} ({b['writes_per_object']:g})"),
            ratio(ob["requests_per_object"], pb["requests_per_object"]),
        ),
        row(
            "emulator CPU seconds (share of one core)",
            *each(lambda b: f"{b['cpu_emulator_s']:g} ({b['busy_emulator']:.0%})"),
            "",
        ),
        row(
            "client CPU seconds (share of one core)",
            *each(lambda b: f"{b['cpu_client_s']:g} ({b['busy_client']:.0%})"),
            "",
        ),
        "",
        "#### Where the operator's requests for a new object go",
        "",
        row("per new ModelDeployment, during the burst", "count"),
        "| --- | ---: |",
        row("reconcile passes (one LIST of Deployments each)", f"{ob['passes_per_object']:g}"),
        row(
            f"LISTs per pass (4 built-in kinds + {len(results['optional_crds'])} optional CRDs installed)",
            f"{len(results['optional_crds']) + 4}",
        ),
        row(
            "GETs of the ModelDeployment (a pass re-run on a fresh read)",
            f"{round(ob['requests_by_kind'].get(f'get {PLURAL}', 0) / n, 2):g}",
        ),
        row(
            "server-side applies of children",
            f"{ob['applies_per_object']:g}",
        ),
        row("status PATCHes", f"{ob['status_patches_per_object']:g}"),
        row(
            "… of which changed nothing on the server (all objects)",
            f"{ob['status_patches_changing_nothing']}",
        ),
        row(
            "one object alone on an idle system: passes / status PATCHes / status changes stored",
            f"{op['idle_trace']['passes']} / {op['idle_trace']['status_patches']} "
            f"/ {len([c for c in op['idle_trace']['status_commits'] if c != '(nothing)'])}",
        ),
        row("Events posted", f"{ob['requests_by_kind'].get('create events', 0) / n:g}"),
        "",
        "#### The operator at rest",
        "",
        row("figure", "value"),
        "| --- | ---: |",
        row(
            f"**write requests per no-op resync pass** ({noop['objects']} objects, {noop['passes']} passes)",
            f"**{noop['writes_per_pass']:g}**",
        ),
        row(
            "write requests after a restart (a pass for every object, then those passes)",
            f"{noop['writes_since_restart']}",
        ),
        row("requests per resync pass", f"{noop['requests_per_pass']:g}"),
        row(
            "duration of one resync pass (p50; the objects' passes run on the worker pool)",
            ms(noop["pass_duration_s"]["p50"]),
        ),
        row(
            "share of one core busy during those passes: emulator / operator",
            f"{noop['busy_while_passing']['emulator']:.0%} / {noop['busy_while_passing']['operator']:.0%}",
        ),
        row(
            f"after all {n} Deployments became ready: status writes + Events per object",
            f"{sum(ready['writes'].values()) / n:g}",
        ),
        row("… and all Stable after", ms(ready["wall_to_all_stable_s"])),
        row("operator RSS, started, no objects", f"{op['rss_idle_kib'] / 1024:.0f} MiB"),
        row(
            f"operator peak RSS (VmHWM) after the burst of {n} and the ready phase",
            f"{op['rss_end_of_latency_run_kib']['VmHWM'] / 1024:.0f} MiB",
        ),
        row(
            f"operator peak RSS (VmHWM), restarted with {noop['objects']} objects, after the passes",
            f"{op['rss_end_kib']['VmHWM'] / 1024:.0f} MiB",
        ),
        "",
        f"Machine: {facts['nproc']} CPUs ({facts['cpu']}), Linux {facts['kernel']}, "
        f"Python {facts['python']}, kopf {facts['kopf']}, kmock {facts['kmock']}, "
        f"kubernetes client {facts['kubernetes']}. "
        f"Optional CRDs installed: {', '.join(results['optional_crds'])}.",
        "",
        f"Command: `{results['command']}` ({results['total_s']:.0f} s in all). "
        f"The operator ran as `{op['command_latency']}` for the latencies, "
        f"and as `{op['command_noop']}` for the passes at rest.",
    ]
    return "\n".join(lines)


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=200, help="ModelDeployments in the burst (default 200)")
    parser.add_argument("--json", metavar="FILE", help="also write every figure as JSON")
    parser.add_argument("--idle", type=int, default=5, help="single-object samples on an idle system")
    parser.add_argument("--resync", type=float, default=2.0, help="--resync-seconds for the no-op passes")
    parser.add_argument("--passes", type=int, default=3, help="resync passes to count writes over")
    parser.add_argument(
        "--latency-resync",
        type=float,
        default=600.0,
        help="--resync-seconds while latencies are measured: no periodic pass during the burst",
    )
    parser.add_argument(
        "--only-pod-monitor-crd",
        action="store_true",
        help="install only the PodMonitor CRD (default: every optional CRD, as LocalCluster does)",
    )
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds allowed for each wait")
    args = parser.parse_args(argv)
    # A SIGTERM unwinds like Ctrl-C, so that every `finally` stops the processes started here.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.count < 1 or args.passes < 1:
        parser.error("--count and --passes must be at least 1")

    optional_crds = (POD_MONITOR_CRD,) if args.only_pod_monitor_crd else OPTIONAL_CRDS
    workers = OperatorConfig().workers
    started = time.perf_counter()
    results: dict[str, Any] = {
        "count": args.count,
        "workers": workers,
        "machine": machine(),
        "optional_crds": list(optional_crds),
        "command": shlex.join([".venv/bin/python", "bench/reconcile_latency.py", *(argv or sys.argv[1:])]),
    }
    log(f"operator: {args.count} ModelDeployments, then {args.passes} no-op resync passes")
    results["operator"] = operator_phases(args, optional_crds)
    gc.collect()
    log("floor: the same child writes from a bare HTTP client")
    results["floor_1"] = floor_phase(args, 1, optional_crds, args.idle)
    gc.collect()
    results["floor_n"] = floor_phase(args, workers, optional_crds, 0)
    results["total_s"] = time.perf_counter() - started
    table = markdown(results)
    print(table)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
