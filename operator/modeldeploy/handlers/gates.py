"""The gate worker: model-quality gate runs on an event loop of their own, off the pass threads.

A run takes seconds to minutes (a golden set sent in batches to the canary and the primary), and a
pass must not wait for it, nor hold up other objects' passes. So a pass only asks for the run that
status.gate names (`wants` / `submit`); the worker runs it on its own thread's asyncio loop
(`run_gate` awaits tritonclient's aio client; `gates.timeout` bounds it and cancels the request in
flight), at most `parallel` at once, and wakes the object when the result is in. The next pass
takes the result (`result`) into status, once.

The golden set is read (the ConfigMap GET or the https download) and parsed inside the run, never
on a pass thread: a set the user made too large, too deep or malformed costs the run its verdict
(Fail, with a reason naming the set and the problem), never a pass. Parsing goes on one thread of
its own (`_READER`), so the gate worker's loop keeps serving the other runs' requests meanwhile,
and at most one set is being parsed at a time: the transient memory of parsing is one set's, only
the parsed sets of the runs in flight are held together (docs/gates.md, Bounds).

Results live in memory only. An operator restarted mid-run (or a new leader) finds status.gate
unfinished and runs it again from the start, under the same `startedAt`: a half-finished run's
answers would judge a model on whatever part of the golden set it reached, and a run is cheap
next to a rollout (docs/gates.md, Costs).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from modeldeploy.adapters.inference import (
    Endpoint,
    FetchFailed,
    GateOutcome,
    GoldenInput,
    fetch_text,
    redacted,
    run_gate,
)
from modeldeploy.adapters.kube import KINDS, KubeClient, KubeError
from modeldeploy.api.base import parse_duration
from modeldeploy.api.resource import ObjectRef
from modeldeploy.api.spec import Gates, ModelDeploymentSpec
from modeldeploy.api.status import GateRun, Verdict
from modeldeploy.gates.golden import GoldenSetError, parse_golden_set
from modeldeploy.gates.judge import explain, thresholds_of, unreachable
from modeldeploy.handlers import metrics
from modeldeploy.handlers.workqueue import Key
from modeldeploy.render.deployment import ADMIN_HEADER, HTTP_PORT, admin_key
from modeldeploy.render.kinds import PODS
from modeldeploy.render.names import NAME_LABEL, REVISION_LABEL, TRACK_LABEL, Track
from modeldeploy.rollout.observe import GateResult

log = logging.getLogger("modeldeploy.gates")

Identity = tuple[str, str]  # revision, startedAt: one run
DEFAULT_PARALLEL = 4
_CONFIG_MAP = KINDS[("v1", "ConfigMap")]
# One thread reads and parses golden sets for every run (see the module's docstring).
_READER = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="golden-set")


def identity(run: GateRun) -> Identity:
    return (run.revision, run.started_at)


@dataclass
class _Job:
    identity: Identity
    future: concurrent.futures.Future[GateOutcome] | None = None
    result: GateResult | None = None


class GateRunner:
    def __init__(self, wake: Callable[[str, str], None], parallel: int = DEFAULT_PARALLEL) -> None:
        self._wake = wake
        self._parallel = parallel
        self._lock = threading.Lock()
        self._jobs: dict[Key, _Job] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._slots: asyncio.Semaphore | None = None
        self._thread: threading.Thread | None = None
        metrics.GATES_RUNNING.set_function(self.running)

    def running(self) -> int:
        with self._lock:
            return sum(1 for job in self._jobs.values() if job.result is None)

    def result(self, key: Key) -> GateResult | None:
        with self._lock:
            job = self._jobs.get(key)
            return job.result if job is not None else None

    def reported(self, key: Key, run: GateRun) -> bool:
        """Whether the result of `run` is in, not yet taken into status."""
        result = self.result(key)
        return result is not None and (result.revision, result.started_at) == identity(run)

    def wants(self, key: Key, run: GateRun) -> bool:
        """Whether `run` must be started: neither running nor finished here (a restart, a new
        leader, a run cancelled by a pause, or simply its first pass)."""
        with self._lock:
            job = self._jobs.get(key)
            return job is None or job.identity != identity(run)

    def submit(self, key: Key, run: GateRun, work: Callable[[], Coroutine[Any, Any, GateOutcome]]) -> None:
        """Start `work()` for `run`, replacing (cancelling) any other run of the object."""
        loop = self._ensure_loop()
        with self._lock:
            previous = self._jobs.pop(key, None)
            if previous is not None and previous.future is not None:
                previous.future.cancel()
            job = self._jobs[key] = _Job(identity(run))
            job.future = asyncio.run_coroutine_threadsafe(self._bounded(work), loop)
        log.info("%s/%s: gate run of revision %s started (%s)", *key, run.revision, run.started_at)
        job.future.add_done_callback(lambda future: self._done(key, job, future))

    def forget(self, key: Key) -> None:
        """No run wanted for the object (its result taken into status, the rollout ended or paused,
        the object deleted): cancel what still runs and drop what is kept."""
        with self._lock:
            job = self._jobs.pop(key, None)
        if job is not None and job.future is not None and job.result is None:
            job.future.cancel()

    def forget_all(self) -> None:
        with self._lock:
            keys = list(self._jobs)
        for key in keys:
            self.forget(key)

    def close(self) -> None:
        """Cancel every run and wait for them to unwind (each closes its HTTP clients), then stop
        and close the worker's loop."""
        self.forget_all()
        loop, self._loop = self._loop, None
        if loop is None:
            return

        async def drain() -> None:
            # Runs after every submission already handed to the loop: those are tasks by now.
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        with contextlib.suppress(concurrent.futures.TimeoutError, RuntimeError):
            asyncio.run_coroutine_threadsafe(drain(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=5)
            if not self._thread.is_alive():
                loop.close()

    # ---------------------------------------------------------------------------- internals

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                self._thread = threading.Thread(target=loop.run_forever, name="gate-worker", daemon=True)
                self._thread.start()
                self._loop = loop
            return self._loop

    async def _bounded(self, work: Callable[[], Coroutine[Any, Any, GateOutcome]]) -> GateOutcome:
        if self._slots is None:  # created on the worker's loop, which it belongs to
            self._slots = asyncio.Semaphore(self._parallel)
        async with self._slots:
            # Made only once it has a slot: a run cancelled while queued leaves no coroutine unawaited.
            return await work()

    def _done(self, key: Key, job: _Job, future: concurrent.futures.Future[GateOutcome]) -> None:
        if future.cancelled():
            return
        error = future.exception()
        if error is not None:
            # run_gate turns every model or network problem into Inconclusive checks; anything
            # else is a bug here, and still must not leave the rollout waiting for ever.
            log.error("%s/%s: gate run failed", *key, exc_info=error)
            message = f"the gate run failed in the operator: {type(error).__name__}: {error}"
            result = GateResult(job.identity[0], job.identity[1], Verdict.INCONCLUSIVE, message)
        else:
            outcome = future.result()
            result = GateResult(
                job.identity[0], job.identity[1], outcome.verdict, outcome.message, tuple(outcome.checks)
            )
            metrics.GATE_SECONDS.observe(outcome.seconds)
            metrics.GATE_REQUESTS.inc(outcome.requests)
            log.info(
                "%s/%s: gate run of revision %s: %s (%d inference requests, %.2fs): %s",
                *key,
                job.identity[0],
                outcome.verdict,
                outcome.requests,
                outcome.seconds,
                outcome.message,
            )
        metrics.GATE_RUNS.labels(verdict=str(result.verdict)).inc()
        with self._lock:
            if self._jobs.get(key) is not job:
                return  # replaced or forgotten meanwhile
            job.result = result
        self._wake(*key)


# ------------------------------------------------------------------------------- a run's inputs


def _parsed(text: str, where: str) -> GoldenInput:
    try:
        return GoldenInput(parse_golden_set(text))
    except GoldenSetError as error:
        return GoldenInput(None, f"{where}: {error}", invalid=True)


def read_golden_set(kube: KubeClient, namespace: str, gates: Gates) -> GoldenInput:
    """The golden set of a ConfigMap, or why it cannot be used: unreadable (the quality checks are
    Inconclusive: it may appear or be fixed without an edit of the ModelDeployment) or invalid
    (they Fail). Blocking: runs on the reader thread."""
    source = gates.golden_set
    if source is None:
        return GoldenInput(None)
    ref = source.config_map_key_ref
    assert ref is not None, "a storageUri is fetched by the run itself (fetch_golden_set)"
    where = f"goldenSet.configMapKeyRef: ConfigMap {namespace}/{ref.name}"
    try:
        found = kube.get(_CONFIG_MAP, namespace, ref.name)
    except KubeError as error:
        return GoldenInput(None, f"{where}: cannot be read: {error.reason}")
    if found is None:
        return GoldenInput(None, f"{where} not found")
    text = (found.get("data") or {}).get(ref.key)
    if text is None:
        return GoldenInput(None, f"{where} has no key {ref.key!r} in its data")
    del found  # the object's other keys need not stay while the set is parsed
    return _parsed(text, f"{where} key {ref.key}")


async def fetch_golden_set(uri: str, timeout: float) -> GoldenInput:
    """The golden set at an https `storageUri`, downloaded on the worker's loop and parsed on the
    reader thread, or why it cannot be used."""
    try:
        text = await fetch_text(uri, timeout)
    except FetchFailed as error:
        return GoldenInput(None, f"goldenSet.storageUri {error}", invalid=error.invalid)
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_READER, _parsed, text, f"goldenSet.storageUri {redacted(uri)}")


async def load_golden_set(kube: KubeClient, namespace: str, gates: Gates) -> GoldenInput:
    """The run's golden set, from wherever `gates.goldenSet` says; never raises: anything that goes
    wrong in reading or parsing is a reason on the verdict."""
    source = gates.golden_set
    try:
        if source is not None and source.storage_uri:
            return await fetch_golden_set(source.storage_uri, parse_duration(gates.timeout))
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(_READER, read_golden_set, kube, namespace, gates)
    except Exception as error:  # a bug here must cost the verdict, not the run (nor a pass)
        log.exception("%s: the golden set could not be loaded", namespace)
        return GoldenInput(None, f"golden set could not be loaded: {type(error).__name__}: {error}")


def _ready(pod: dict[str, Any]) -> bool:
    status = pod.get("status") or {}
    return (
        not pod.get("metadata", {}).get("deletionTimestamp")
        and bool(status.get("podIP"))
        and any(
            c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or []
        )
    )


def endpoint(
    pods: list[dict[str, Any]],
    spec: ModelDeploymentSpec,
    parent: ObjectRef,
    track: Track,
    revision: str | None,
) -> Endpoint | None:
    """The V2 HTTP endpoint of one Ready pod of `track` running `revision` (the first by name):
    the pod's own address, so the run judges that revision only, whatever the Services select
    (the replica-ratio split has no canary Service, and the main Service may select both tracks)."""
    ready = sorted(
        (
            p
            for p in pods
            if (p.get("metadata", {}).get("labels") or {}).get(TRACK_LABEL) == track.value
            and p["metadata"]["labels"].get(REVISION_LABEL) == revision
            and _ready(p)
        ),
        key=lambda p: str(p["metadata"]["name"]),
    )
    if revision is None or not ready:
        return None
    ip = str(ready[0]["status"]["podIP"])
    host = f"[{ip}]" if ":" in ip else ip
    return Endpoint(
        address=f"{host}:{HTTP_PORT}",
        model=spec.model.name,
        config_headers={ADMIN_HEADER: admin_key(parent)},
    )


def gate_work(
    kube: KubeClient,
    parent: ObjectRef,
    spec: ModelDeploymentSpec,
    run: GateRun,
    stable_revision: str | None,
) -> Callable[[], Coroutine[Any, Any, GateOutcome]]:
    """What one run does, with the pods read now (one LIST of both tracks, once per run): the
    golden set is read and parsed by the run itself, off the pass thread, and the requests go on
    the worker's loop."""
    gates = spec.rollout.gates
    assert gates is not None
    pods = kube.list(PODS, parent.namespace, f"{NAME_LABEL}={parent.name}")  # both tracks at once
    canary = endpoint(pods, spec, parent, Track.CANARY, run.revision)
    primary = endpoint(pods, spec, parent, Track.PRIMARY, stable_revision)
    if canary is None:
        reason = f"no Ready canary pod of revision {run.revision} with an address to ask"

        async def nothing_to_ask() -> GateOutcome:
            checks = unreachable(thresholds_of(gates), reason, contract=gates.contract.enabled)
            return GateOutcome(checks=checks, verdict=Verdict.INCONCLUSIVE, message=explain(checks))

        return nothing_to_ask

    async def work() -> GateOutcome:
        golden = await load_golden_set(kube, parent.namespace, gates)
        return await run_gate(
            gates, golden.golden, canary, primary, golden_error=golden.problem, golden_invalid=golden.invalid
        )

    return work
