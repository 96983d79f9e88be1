"""The kopf wiring: which events wake a reconcile pass, and how the operator runs.

Deliberately no create/update/delete handlers and no timers or daemons: those make kopf keep
bookkeeping on the object (a last-handled-configuration annotation, progress in status, and a
finalizer for timers and daemons), which shows up in GitOps diffs and blocks deletion while the
operator is down. Instead every watch event and a periodic resync run the same level-triggered
pass, and kopf writes nothing to a ModelDeployment at all (README: "GitOps with Argo CD").
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import logging
import os
import random
import socket
import threading
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import kopf

from modeldeploy.adapters.kube import (
    KINDS,
    Backoff,
    Kind,
    KubeClient,
    KubeError,
    TokenBucket,
    configuration,
    connection,
    pod_namespace,
)
from modeldeploy.api.base import GROUP, KIND, PLURAL, VERSION
from modeldeploy.handlers import metrics
from modeldeploy.handlers.cache import Cache, child_key, encode_child, encode_crd, encode_parent, parent_key
from modeldeploy.handlers.config import OperatorConfig
from modeldeploy.handlers.gates import GateRunner
from modeldeploy.handlers.leader import Elector, Timings
from modeldeploy.handlers.reconciler import OPTIONAL_CRDS, NotLeader, Reconciler, fetch_parent
from modeldeploy.handlers.workqueue import Key, WorkQueue
from modeldeploy.render.names import MANAGED_BY
from modeldeploy.render.options import RenderOptions
from modeldeploy.rollout.events import Event

log = logging.getLogger("modeldeploy.operator")

# Every child kind is watched: its changes (a Deployment becoming ready, a hand edit, a deletion)
# wake the owner, and the watch keeps the cache a pass reads its children from. kopf watches a
# CRD's kind only while the CRD is installed, and starts when it appears.
CHILD_KINDS = [
    KINDS[("apps/v1", "Deployment")],
    KINDS[("v1", "Service")],
    KINDS[("v1", "ConfigMap")],
    KINDS[("autoscaling/v2", "HorizontalPodAutoscaler")],
    KINDS[("networking.k8s.io/v1", "NetworkPolicy")],
    KINDS[("monitoring.coreos.com/v1", "PodMonitor")],
    KINDS[("monitoring.coreos.com/v1", "PrometheusRule")],
    KINDS[("gateway.networking.k8s.io/v1", "HTTPRoute")],
    KINDS[("gateway.networking.k8s.io/v1", "GRPCRoute")],
    KINDS[("networking.istio.io/v1", "VirtualService")],
]
CHILD_RESOURCES = [(k.group, k.api_version.rpartition("/")[2], k.plural) for k in CHILD_KINDS]
MANAGED = {"app.kubernetes.io/managed-by": MANAGED_BY}
# After a failed pass: 1 s, 2 s, 4 s ... up to 5 minutes, each with jitter (equal jitter).
RETRY_BACKOFF = Backoff(base=1.0, factor=2.0, cap=300.0)
WATCH_BACKOFFS = (0.5, 1, 1, 2, 2, 3, 3, 5, 5, 5, 5, 10, 10, 10, 10, 10)
# Initial listings in pages, so that neither side holds a whole kind of a large cluster at once.
LIST_CHUNK = 500
# How long a replica that stops leading waits for its passes in flight (they write nothing more,
# but may be waiting on a read) before it goes on; a stopping one then leaves the Lease to expire.
PASS_GRACE_SECONDS = 30.0


def _owner(body: Mapping[str, Any]) -> str | None:
    for ref in body.get("metadata", {}).get("ownerReferences") or []:
        if ref.get("kind") == KIND and ref.get("apiVersion", "").startswith(f"{GROUP}/"):
            return str(ref.get("name"))
    return None


@dataclass
class Registration:
    """What register() set up: the client the handlers use, and a way to stop the background
    tasks before stopping kopf (kopf waits several seconds for tasks it did not start)."""

    client: KubeClient
    stop: Callable[[], None]
    cache: Cache


def register(
    config: OperatorConfig, registry: kopf.OperatorRegistry, kube: KubeClient | None = None
) -> Registration:
    """Register every handler into `registry`."""
    limiter = TokenBucket(config.kube_qps, config.kube_burst)
    client = kube or KubeClient(
        configuration(config_file=config.kubeconfig, context=config.context),
        limiter=limiter,
        observe=lambda verb, code: metrics.API_REQUESTS.labels(verb=verb, code=str(code)).inc(),
    )
    metrics.count_throttling(lambda: client.throttled_seconds + limiter.throttled_seconds)

    def post_event(body: Mapping[str, Any], event: Event) -> None:
        # Posted with our own client rather than kopf.event(): passes also run from timers and the
        # resync loop, outside kopf's handler context, and an Event must not be lost there.
        try:
            client.post_event(body, event.type, event.reason, event.message)
        except KubeError as error:
            log.warning("could not post event %s: %s", event.reason, error)

    cache = Cache()
    elector: dict[str, Elector] = {}

    def leading() -> bool:
        return not config.leader_elect or ("elector" in elector and elector["elector"].leading)

    # The term in which the pass on this thread started: a pass that outlived its term (the Lease
    # lost, then won again) writes nothing more, whatever the new term decides.
    pass_term = threading.local()

    def write_window() -> float | None:
        """The client's write guard: before every attempt of every write, retries included."""
        candidate = elector.get("elector")
        window = candidate.write_window(getattr(pass_term, "term", None)) if candidate else None
        if window is None:
            raise NotLeader()
        return window

    if config.leader_elect:
        client.guard_writes(write_window)

    def may_write() -> bool:
        # Checked before each write of a pass (the client checks each attempt again).
        if not config.leader_elect:
            return True
        candidate = elector.get("elector")
        return candidate is not None and candidate.still_leading(getattr(pass_term, "term", None))

    # Gate runs report back by waking their object: its next pass takes the result into status.
    gates = GateRunner(lambda namespace, name: enqueue(namespace, name))
    reconciler = Reconciler(
        client,
        RenderOptions(
            puller_image=config.puller_image,
            pod_monitor_labels=config.pod_monitor_labels,
            operator_namespace=config.operator_namespace or pod_namespace(),
        ),
        post_event,
        config.prometheus_url,
        cache=cache,
        may_write=may_write,
        gates=gates,
        prometheus_allow=config.prometheus_allow,
    )
    resync: dict[str, asyncio.Task[None]] = {}
    timers: dict[Key, asyncio.TimerHandle] = {}
    loop_ref: dict[str, asyncio.AbstractEventLoop] = {}

    def wake_later(key: Key, delay: float) -> None:
        """A timed pass (an analysis interval, a pause, a deadline): kept in memory only, because
        every timer is recomputed from the timestamps in status on the next pass after a restart."""
        loop = loop_ref.get("loop")
        if loop is None:
            return

        def arm() -> None:
            previous = timers.pop(key, None)
            if previous is not None:
                previous.cancel()
            timers[key] = loop.call_later(max(0.05, delay), fire)

        def fire() -> None:
            timers.pop(key, None)
            enqueue(*key)

        # RuntimeError: the operator is stopping and its loop is closed; nothing is to be woken.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(arm)

    failures: dict[Key, int] = {}
    failures_lock = threading.Lock()
    spread = random.Random()  # noqa: S311 -- jitter, not a secret

    def work(key: Key) -> None:
        candidate = elector.get("elector")
        pass_term.term = candidate.term if candidate is not None else None
        try:
            run_pass(key)
        finally:
            pass_term.term = None

    def forget(key: Key) -> None:
        """Drop what is kept per object: for one deleted, or gone when its pass looked."""
        with failures_lock:
            failures.pop(key, None)
            metrics.FAILING.set(len(failures))
        loop = loop_ref.get("loop")
        if loop is not None:

            def disarm() -> None:
                handle = timers.pop(key, None)
                if handle is not None:
                    handle.cancel()

            with contextlib.suppress(RuntimeError):  # a closed loop: nothing is armed any more
                loop.call_soon_threadsafe(disarm)

    def run_pass(key: Key) -> None:
        if not leading():
            return
        body = load(*key)
        if body is None:
            forget(key)  # deleted meanwhile
            return
        try:
            result, requeue = reconciler.reconcile_result(body)
        except NotLeader:
            log.info("%s/%s: the Lease was lost during the pass; it wrote nothing more", *key)
            return
        except KubeError as error:
            log.warning("reconcile of %s/%s failed: %s", *key, error)
            result, requeue = "error", None
        except Exception:
            log.exception("reconcile of %s/%s failed", *key)
            result, requeue = "error", None
        with failures_lock:
            if result in ("error", "apply-error"):
                # Per object, as controller-runtime's work queue: a failing object is tried again
                # sooner than the resync, then less and less often, and never holds up the others.
                failures[key] = count = failures.get(key, 0) + 1
                retry = RETRY_BACKOFF.delay(count, None, spread.random())
                requeue = retry if requeue is None else min(requeue, retry)
                metrics.RETRIES.inc()
            else:
                failures.pop(key, None)
            metrics.FAILING.set(len(failures))
        if result == "gone":
            forget(key)
            return
        if requeue is not None:
            wake_later(key, requeue)

    def load(namespace: str, name: str) -> Mapping[str, Any] | None:
        # From the cache once it is filled: a stale copy is caught before it acts (the pass checks
        # its body is current before its first write, and its status patch carries the version).
        if cache.ready:
            return cache.parent(namespace, name)
        return fetch_parent(client, namespace, name)

    queue = WorkQueue(work, config.workers)

    def enqueue(namespace: str, name: str) -> None:
        """A pass for the object, on the queue's own threads; it reads the object from the cache
        when it starts, so it acts on the newest version whatever woke it."""
        if leading():  # a standby: its watches keep the cache warm, and it writes nothing
            queue.add((namespace, name))

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        # kopf logs in with the very credentials our client uses: one source, so the two never
        # disagree. kopf calls this again on a 401, and the client's hook re-reads a rotated
        # service-account token, so a refreshed token reaches both.
        conn = connection(client.configuration)
        return kopf.ConnectionInfo(
            server=conn.server,
            ca_path=conn.ca_path,
            insecure=conn.insecure,
            token=conn.token,
            certificate_path=conn.certificate_path,
            private_key_path=conn.private_key_path,
        )

    # Indexes and event handlers are coroutines: each is a few microseconds of work, and kopf runs
    # a sync handler in a thread of its executor, a hop that cost more than the work (profiled).
    def index_child(kind: Kind) -> Callable[..., Awaitable[dict[tuple[str, str], bytes] | None]]:
        async def index(body: kopf.Body, **_: Any) -> dict[tuple[str, str], bytes] | None:
            key = child_key(body)
            return {key: encode_child(body, kind)} if key is not None else None

        return index

    for kind, (group, version, plural) in zip(CHILD_KINDS, CHILD_RESOURCES, strict=True):
        kopf.index(group, version, plural, labels=MANAGED, registry=registry, id=f"cache_{plural}")(
            index_child(kind)
        )

    @kopf.index(GROUP, VERSION, PLURAL, registry=registry, id="cache_parents")
    async def index_parent(body: kopf.Body, **_: Any) -> dict[tuple[str, str], bytes]:
        return {parent_key(body): encode_parent(body)}

    @kopf.index("apiextensions.k8s.io", "v1", "customresourcedefinitions", registry=registry, id="cache_crds")
    async def index_crd(body: kopf.Body, name: str, **_: Any) -> dict[tuple[str, str], bytes] | None:
        return {("", name): encode_crd(body)} if name in OPTIONAL_CRDS else None

    @kopf.on.startup(registry=registry)
    async def startup(settings: kopf.OperatorSettings, **kwargs: Any) -> None:
        # kopf hands its (still empty) indexes to startup handlers: the cache reads them live.
        cache.attach(
            kwargs["cache_parents"],
            {kind: kwargs[f"cache_{kind.plural}"] for kind in CHILD_KINDS},
            kwargs["cache_crds"],
        )
        settings.watching.chunk_size = LIST_CHUNK
        # A restarted API server answers 403 (RBAC caches filling) and 429 (storage initialising)
        # for a few seconds; with kopf's default backoffs (1, 1, 2 ... 21 s) a watch could stay
        # 21 s behind after that. Retried as long, but never more than 10 s apart.
        settings.networking.error_backoffs = WATCH_BACKOFFS
        settings.persistence.finalizer = f"{GROUP}/finalizer"  # never added: no handler needs one
        settings.posting.level = logging.WARNING  # our Events are explicit, on transitions only
        settings.execution.max_workers = config.workers
        settings.watching.inactivity_timeout = max(70.0, config.resync_seconds * 2)
        for group, version, plural in CHILD_RESOURCES:
            # Filtered by the API server, not in the operator: watching every Deployment,
            # Service and ConfigMap of a large cluster only to drop most of them would cost
            # memory and bandwidth (the handler's `labels=` filter alone is client-side).
            settings.watching.label_selectors[group, version, plural] = (
                "app.kubernetes.io/managed-by=modeldeploy"
            )
        metrics.QUEUE_DEPTH.set_function(queue.depth)
        metrics.QUEUE_SCHEDULED.set_function(lambda: len(timers))
        loop = loop_ref["loop"] = asyncio.get_running_loop()
        resync["task"] = asyncio.create_task(_resync_loop())
        if config.leader_elect:
            elector["elector"] = campaign(loop)
        else:
            metrics.LEADER.set(1)

    def campaign(loop: asyncio.AbstractEventLoop) -> Elector:
        def started() -> None:
            metrics.LEADER.set(1)
            # Take over at once: a pass over every cached object picks each rollout up where
            # the status left it (timers are recomputed from its timestamps).
            _resync_once()

        def stopped() -> bool:
            # Every write of the term is refused from now (the Elector no longer leads); the passes
            # in flight are waited for before the Lease can be released or won again.
            metrics.LEADER.set(0)
            gates.forget_all()  # the new leader runs them again
            for handle in list(timers.values()):
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(handle.cancel)
            if queue.wait_idle(PASS_GRACE_SECONDS):
                return True
            log.warning("passes still running %.0fs after the Lease was lost", PASS_GRACE_SECONDS)
            return False

        timings = Timings(config.lease_duration, config.renew_deadline, config.retry_period)
        namespace = config.leader_election_namespace or pod_namespace() or "default"
        identity = f"{socket.gethostname()}_{uuid.uuid4().hex[:8]}"
        candidate = Elector(client, namespace, config.leader_election_id, identity, timings, started, stopped)
        metrics.LEADER.set(0)
        candidate.start()
        return candidate

    @kopf.on.cleanup(registry=registry)
    async def cleanup(**_: Any) -> None:
        queue.close()  # no new pass
        candidate = elector.get("elector")
        if candidate is not None:
            # Stops writing, waits for the passes in flight, and only then releases the Lease: the
            # standby takes over at once, and no write of ours can land after its first.
            await asyncio.to_thread(candidate.stop)
        else:
            await asyncio.to_thread(queue.wait_idle, PASS_GRACE_SECONDS)
        for handle in timers.values():
            handle.cancel()
        task = resync.pop("task", None)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        gates.close()
        reconciler.close()
        client.close()

    async def _resync_loop() -> None:
        # The periodic pass that heals drift nothing told us about and retries failed passes.
        spread = random.Random()  # noqa: S311 -- jitter, not a secret
        while True:
            # Jittered (+-10%), so that periodic work from many objects or replicas spreads out
            # rather than arriving in step; a steady resync sends no request anyway.
            await asyncio.sleep(config.resync_seconds * spread.uniform(0.9, 1.1))
            try:
                await asyncio.to_thread(_resync_once)
            except Exception:
                log.exception("resync failed")

    def _resync_once() -> None:
        if not leading():
            return
        if not cache.ready:
            return  # kopf is still filling the indexes; its handlers wait for them, and so do we
        for namespace, name in cache.parent_keys():
            enqueue(namespace, name)  # the queue's workers run them, as the event-driven passes

    @kopf.on.event(GROUP, VERSION, PLURAL, registry=registry)
    async def model_deployment_event(body: kopf.Body, type: str | None, **_: Any) -> None:
        cache.mark_ready()  # kopf runs no handler before every index is filled
        if type == "DELETED":
            reconciler.forget_gate(body.metadata.namespace or "", body.metadata.name or "")
            forget((body.metadata.namespace or "", body.metadata.name or ""))
            return
        if type is not None and reconciler.echoes.is_echo(body):
            return  # only the echo of our own status write
        enqueue(body.metadata.namespace or "", body.metadata.name or "")

    async def child_event(body: kopf.Body, type: str | None, **_: Any) -> None:
        cache.mark_ready()
        owner = _owner(body)
        if owner is None or (type is not None and reconciler.echoes.is_echo(body)):
            return  # not ours, or exactly what our own apply just wrote
        enqueue(body.metadata.namespace or "", owner)

    for group, version, plural in CHILD_RESOURCES:
        kopf.on.event(group, version, plural, labels=MANAGED, registry=registry, id=f"child-{plural}")(
            child_event
        )

    def stop() -> None:
        task = resync.get("task")
        if task is not None:
            task.get_loop().call_soon_threadsafe(task.cancel)
        loop = loop_ref.get("loop")
        if loop is not None:
            for handle in list(timers.values()):
                loop.call_soon_threadsafe(handle.cancel)

    return Registration(client, stop, cache)


def limit_malloc_arenas(arenas: int = 2) -> bool:
    """Fewer glibc malloc arenas. glibc gives each busy thread an arena of its own (up to 8 per
    core), and freed memory stays in the arena it came from: with a pass pool and kopf's threads
    that held tens of MiB no object used. Two arenas keep the operator's footprint near what it
    holds (docs/benchmark.md has the figures). MALLOC_ARENA_MAX, if set, wins. Not glibc: no-op."""
    if os.environ.get("MALLOC_ARENA_MAX"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(_M_ARENA_MAX, arenas))
    except (OSError, AttributeError):
        return False


_M_ARENA_MAX = -8  # glibc's malloc.h


def run(config: OperatorConfig) -> None:
    """Run the operator until interrupted."""
    limit_malloc_arenas()  # before any thread starts
    if config.metrics_port:
        metrics.serve(config.metrics_port)
    registry = kopf.OperatorRegistry()
    registration = register(config, registry)
    metrics.count_phases(
        lambda: (str((body.get("status") or {}).get("phase") or "") for body in registration.cache.parents())
    )
    namespaces = list(config.namespaces)
    liveness = f"http://0.0.0.0:{config.health_port}/healthz" if config.health_port else None
    kopf.run(
        registry=registry,
        standalone=True,  # no peering objects: a single replica with a Recreate strategy (docs/install.md)
        clusterwide=not namespaces,
        namespaces=namespaces,
        liveness_endpoint=liveness,
    )
