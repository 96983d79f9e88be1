"""The kopf wiring: which events wake a reconcile pass, and how the operator runs.

Deliberately no create/update/delete handlers and no timers or daemons: those make kopf keep
bookkeeping on the object (a last-handled-configuration annotation, progress in status, and a
finalizer for timers and daemons), which shows up in GitOps diffs and blocks deletion while the
operator is down. Instead every watch event and a periodic resync run the same level-triggered
pass, and kopf writes nothing to a ModelDeployment at all (README: "GitOps with Argo CD").
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import kopf

from modeldeploy.adapters.kube import KubeClient, TokenBucket, configuration, connection
from modeldeploy.api.base import GROUP, KIND, PLURAL, VERSION
from modeldeploy.handlers import metrics
from modeldeploy.handlers.cache import child_key, encode_child, encode_crd, encode_parent, parent_key
from modeldeploy.handlers.config import OperatorConfig
from modeldeploy.handlers.controller import Controller
from modeldeploy.render.kinds import CHILD_KINDS, OPTIONAL_CRDS, Kind
from modeldeploy.render.names import MANAGED_BY

log = logging.getLogger("modeldeploy.operator")

MANAGED = {"app.kubernetes.io/managed-by": MANAGED_BY}
WATCH_BACKOFFS = (0.5, 1, 1, 2, 2, 3, 3, 5, 5, 5, 5, 10, 10, 10, 10, 10)
# Initial listings in pages, so that neither side holds a whole kind of a large cluster at once.
LIST_CHUNK = 500


def _owner(body: Mapping[str, Any]) -> str | None:
    for ref in body.get("metadata", {}).get("ownerReferences") or []:
        if ref.get("kind") == KIND and ref.get("apiVersion", "").startswith(f"{GROUP}/"):
            return str(ref.get("name"))
    return None


def register(
    config: OperatorConfig, registry: kopf.OperatorRegistry, kube: KubeClient | None = None
) -> Controller:
    """Register every handler into `registry`; the Controller they feed."""
    limiter = TokenBucket(config.kube_qps, config.kube_burst)
    client = kube or KubeClient(
        configuration(config_file=config.kubeconfig, context=config.context),
        limiter=limiter,
        observe=lambda verb, code: metrics.API_REQUESTS.labels(verb=verb, code=str(code)).inc(),
    )
    metrics.count_throttling(lambda: client.throttled_seconds + limiter.throttled_seconds)
    controller = Controller(config, client)

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

    _register_cache(registry)
    _register_lifecycle(config, registry, controller)
    _register_events(registry, controller)
    return controller


def _index_child(kind: Kind) -> Callable[..., Awaitable[dict[tuple[str, str], bytes] | None]]:
    # Indexes and event handlers are coroutines: each is a few microseconds of work, and kopf runs
    # a sync handler in a thread of its executor, a hop that cost more than the work (profiled).
    async def index(body: kopf.Body, **_: Any) -> dict[tuple[str, str], bytes] | None:
        key = child_key(body)
        return {key: encode_child(body, kind)} if key is not None else None

    return index


def _register_cache(registry: kopf.OperatorRegistry) -> None:
    """kopf's indexes, which the Cache reads: every child kind (its changes also wake the owner),
    the ModelDeployments, and the optional CRDs (which versions they serve). kopf watches a CRD's
    kind only while the CRD is installed, and starts when it appears."""
    for child in CHILD_KINDS:
        kind = child.kind
        kopf.index(
            kind.group,
            kind.version,
            kind.plural,
            labels=MANAGED,
            registry=registry,
            id=f"cache_{kind.plural}",
        )(_index_child(kind))

    @kopf.index(GROUP, VERSION, PLURAL, registry=registry, id="cache_parents")
    async def index_parent(body: kopf.Body, **_: Any) -> dict[tuple[str, str], bytes]:
        return {parent_key(body): encode_parent(body)}

    @kopf.index("apiextensions.k8s.io", "v1", "customresourcedefinitions", registry=registry, id="cache_crds")
    async def index_crd(body: kopf.Body, name: str, **_: Any) -> dict[tuple[str, str], bytes] | None:
        return {("", name): encode_crd(body)} if name in OPTIONAL_CRDS else None


def _register_lifecycle(
    config: OperatorConfig, registry: kopf.OperatorRegistry, controller: Controller
) -> None:
    @kopf.on.startup(registry=registry)
    async def startup(settings: kopf.OperatorSettings, **kwargs: Any) -> None:
        # kopf hands its (still empty) indexes to startup handlers: the cache reads them live.
        controller.cache.attach(
            kwargs["cache_parents"],
            {child.kind: kwargs[f"cache_{child.kind.plural}"] for child in CHILD_KINDS},
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
        for child in CHILD_KINDS:
            # Filtered by the API server, not in the operator: watching every Deployment,
            # Service and HPA of a large cluster only to drop most of them would cost
            # memory and bandwidth (the handler's `labels=` filter alone is client-side).
            resource = (child.kind.group, child.kind.version, child.kind.plural)
            settings.watching.label_selectors[resource] = "app.kubernetes.io/managed-by=modeldeploy"
        controller.start()

    @kopf.on.cleanup(registry=registry)
    async def cleanup(**_: Any) -> None:
        await controller.stop()


def _register_events(registry: kopf.OperatorRegistry, controller: Controller) -> None:
    """Every watch event only enqueues (or forgets) a key: the passes run on the queue's threads."""
    echoes = controller.reconciler.echoes

    @kopf.on.event(GROUP, VERSION, PLURAL, registry=registry)
    async def model_deployment_event(body: kopf.Body, type: str | None, **_: Any) -> None:
        echo = type is not None and type != "DELETED" and echoes.is_echo(body)
        controller.parent_event(
            body.metadata.namespace or "", body.metadata.name or "", type == "DELETED", echo
        )

    async def child_event(body: kopf.Body, type: str | None, **_: Any) -> None:
        owner = _owner(body)
        echo = owner is not None and type is not None and echoes.is_echo(body)
        controller.child_event(body.metadata.namespace or "", owner, echo)

    for child in CHILD_KINDS:
        kind = child.kind
        kopf.on.event(
            kind.group,
            kind.version,
            kind.plural,
            labels=MANAGED,
            registry=registry,
            id=f"child-{kind.plural}",
        )(child_event)


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


def run_operator(config: OperatorConfig) -> None:
    """Run the operator until interrupted."""
    limit_malloc_arenas()  # before any thread starts
    if config.metrics_port:
        metrics.serve(config.metrics_port)
    registry = kopf.OperatorRegistry()
    controller = register(config, registry)
    metrics.count_phases(
        lambda: (str((body.get("status") or {}).get("phase") or "") for body in controller.cache.parents())
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
