"""`modeldeploy demo`: the real operator against a local Kubernetes API emulator, then two rollouts.

A local simulation, and it says so: the Kubernetes API is kmock's emulator in this process, pods
"become ready" because the demo says so, and Triton's metrics come from simulated exporters. The
operator, its reconcile passes, the analysis queries and the Prometheus server are all real.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import yaml

from modeldeploy.api.base import API_VERSION, KIND
from modeldeploy.handlers.config import OperatorConfig
from modeldeploy.sim.cluster import LocalCluster
from modeldeploy.sim.prometheus import PrometheusMissing, PrometheusServer, find_prometheus, pod_target
from modeldeploy.sim.triton_exporter import Traffic, TritonExporter

ROLLOUT_EXAMPLE = "gateway-canary.yaml"
DEMO_INTERVAL = 2  # seconds; a real rollout analyses every minute or so


def say(text: str = "") -> None:
    print(text, flush=True)


def banner() -> None:
    line = "=" * 78
    say(line)
    say(" modeldeploy demo -- a LOCAL SIMULATION, not a cluster")
    say(" The real operator (kopf + every modeldeploy handler) talks HTTP to an in-process")
    say(" Kubernetes API emulator (kmock). There are no pods, GPUs or Triton servers: the demo")
    say(" marks Deployments ready, and Triton's metrics come from simulated exporters scraped by")
    say(" a real Prometheus on 127.0.0.1.")
    say(" On a real cluster: helm install modeldeploy charts/modeldeploy  (docs/install.md)")
    say(line)


def load_examples(directory: Path) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted(directory.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and doc.get("apiVersion") == API_VERSION and doc.get("kind") == KIND:
                docs.append(doc)
    return docs


def status_table(cluster: LocalCluster, docs: list[dict[str, Any]]) -> None:
    rows = [("NAME", "PHASE", "MODEL", "VERSION", "READY", "URL")]
    for doc in docs:
        meta = doc["metadata"]
        status = cluster.status(meta["namespace"], meta["name"])
        model = doc["spec"]["model"]
        ready = f"{status.get('readyReplicas', 0)}/{status.get('replicas', 0)}"
        rows.append(
            (
                meta["name"],
                status.get("phase", "-"),
                model["name"],
                model["version"],
                ready,
                status.get("url", ""),
            )
        )
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        say("  " + "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)))


async def wait(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def kubelet(cluster: LocalCluster, names: list[tuple[str, str]]) -> AsyncIterator[None]:
    """Play kubelet and the Deployment controller: every Deployment becomes ready."""

    async def loop() -> None:
        while True:
            for namespace, name in names:
                cluster.make_ready(namespace, name)
            await asyncio.sleep(0.2)

    task = asyncio.create_task(loop())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def part_one(cluster: LocalCluster, docs: list[dict[str, Any]]) -> None:
    say(f"\n[1/3] kubectl apply: {len(docs)} ModelDeployments from examples/")
    for doc in docs:
        cluster.apply(doc)
    for doc in docs:
        meta = doc["metadata"]
        namespace, name = meta["namespace"], meta["name"]

        def created(namespace: str = namespace, name: str = name) -> list[dict[str, Any]]:
            # The status is written after every child was applied: then the list is complete.
            done = bool(cluster.status(namespace, name).get("phase"))
            return cluster.children(namespace, name) if done else []

        children = await wait(created, 30, f"the children of {name}")
        listing = ", ".join(sorted(f"{c['kind']}/{c['metadata']['name']}" for c in children))
        say(f"  {meta['namespace']}/{meta['name']}: {listing}")
    say("\n  Status while the models load (no pod is ready yet):")
    status_table(cluster, docs)


async def part_two(cluster: LocalCluster, docs: list[dict[str, Any]]) -> None:
    say("\n[2/3] The pods become ready (simulated); the operator reports Stable:")
    for doc in docs:
        meta = doc["metadata"]
        namespace, name = meta["namespace"], meta["name"]

        def stable(namespace: str = namespace, name: str = name) -> bool:
            return cluster.status(namespace, name).get("phase") == "Stable"

        await wait(stable, 30, f"{name} to be Stable")
    status_table(cluster, docs)
    first = docs[0]["metadata"]
    conditions = cluster.status(first["namespace"], first["name"]).get("conditions", [])
    say(f"\n  Conditions of {first['name']}:")
    for cond in conditions:
        say(f"    {cond['type']:<11} {cond['status']:<5} {cond['reason']}: {cond['message']}")


def rollout_manifest(doc: dict[str, Any], version: str) -> dict[str, Any]:
    out = copy.deepcopy(doc)
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


async def follow(cluster: LocalCluster, namespace: str, name: str, timeout: float = 90) -> dict[str, Any]:
    """Print each change of phase, step, weight and analysis until the rollout ends."""
    seen: tuple[Any, ...] = ()
    outcomes = len(cluster.status(namespace, name).get("history") or [])
    deadline = time.monotonic() + timeout
    start = time.monotonic()
    while time.monotonic() < deadline:
        status = cluster.status(namespace, name)
        phase = status.get("phase")
        key = (phase, status.get("step"), status.get("canaryWeight"), status.get("lastAnalysisAt"))
        if key != seen:
            seen = key
            elapsed = time.monotonic() - start
            say(f"  +{elapsed:4.1f}s  {phase or '-':<11} {status.get('message', '')}")
            for result in status.get("analysis") or []:
                value = result.get("value")
                shown = f"{value:.4g}" if isinstance(value, int | float) else "no data"
                verdict, reason = result["verdict"], result.get("reason", "")
                say(f"           analysis {result['name']} = {shown}: {verdict} ({reason})")
        if phase in ("Stable", "RolledBack") and len(status.get("history") or []) > outcomes:
            return status
        await asyncio.sleep(0.1)
    raise TimeoutError(f"the rollout of {name} did not end within {timeout:.0f}s")


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


async def part_three(docs: list[dict[str, Any]], examples: Path) -> None:
    say("\n[3/3] Two rollouts of the Gateway API example, gated by Prometheus analysis")
    if find_prometheus() is None:
        say("  skipped: the prometheus binary is missing (`make demo` installs it via `make tools`)")
        return
    doc = next((d for d in load_examples(examples) if d["metadata"]["name"] == "recommender"), None)
    if doc is None:
        say(f"  skipped: examples/{ROLLOUT_EXAMPLE} not found")
        return
    meta = doc["metadata"]
    namespace, name, model = meta["namespace"], meta["name"], doc["spec"]["model"]["name"]
    say(f"  (demo speed: analysis every {DEMO_INTERVAL}s instead of every minute; 2 steps: 10%, 50%)")
    say("  Starting a real Prometheus and simulated Triton metrics for the primary and the canary...")
    with metrics(namespace, name, model) as (canary, prometheus):
        config = OperatorConfig(resync_seconds=1.0, prometheus_url=prometheus.url)
        async with LocalCluster(config=config) as cluster, kubelet(cluster, [(namespace, name)]):
            cluster.apply(rollout_manifest(doc, doc["spec"]["model"]["version"]))
            await wait(lambda: cluster.status(namespace, name).get("phase") == "Stable", 30, "Stable")
            good = str(int(doc["spec"]["model"]["version"]) + 1)
            say(f"\n  Version {good}: a healthy canary (0% errors, latency like the primary's)")
            cluster.apply(rollout_manifest(doc, good))
            final = await follow(cluster, namespace, name)
            entry = final["history"][0]
            say(f"  => {entry['result']}: {entry['reason']}")

            bad = str(int(good) + 1)
            canary.set_traffic(failure_ratio=0.10)
            say(f"\n  Version {bad}: a bad canary (10% of its requests fail)")
            cluster.apply(rollout_manifest(doc, bad))
            final = await follow(cluster, namespace, name)
            entry = final["history"][0]
            say(f"  => {entry['result']}: {entry['reason']}")
            serving = final.get("stableModelVersion")
            say(f"     The spec still says version {bad}; the primary keeps serving version {serving}.")
            say("     Change the spec or run `modeldeploy retry recommender -n ml` to try again.")


async def run(examples: Path) -> int:
    # Only problems are worth a line here; kopf's shutdown notes are not.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("kopf").setLevel(logging.ERROR)
    logging.getLogger("aiohttp.access").setLevel(logging.ERROR)
    banner()
    docs = load_examples(examples)
    if not docs:
        say(f"no ModelDeployment manifests in {examples}/")
        return 1
    names = [(d["metadata"]["namespace"], d["metadata"]["name"]) for d in docs]
    async with LocalCluster(config=OperatorConfig(resync_seconds=5.0)) as cluster:
        say(f"\nEmulated API server: {cluster.url}  (operator running: kopf, standalone)")
        await part_one(cluster, docs)
        async with kubelet(cluster, names):
            await part_two(cluster, docs)
    try:
        await part_three(docs, examples)
    except PrometheusMissing as error:
        say(f"  skipped: {error}")
    say("\nDone: everything above ran locally and has been torn down.")
    return 0


def main(examples: str = "examples") -> int:
    try:
        return asyncio.run(run(Path(examples)))
    except KeyboardInterrupt:
        return 130
    except TimeoutError as error:
        print(f"demo failed: {error}", file=sys.stderr)
        return 1
