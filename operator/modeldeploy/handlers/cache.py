"""The operator's informer cache: every watched object, kept in memory by kopf's indexes.

kopf lists each watched kind once (in chunks), then follows its watch stream, and updates its
indexes before any other handler sees an event; it holds every non-indexing handler back until
the first listing of every indexed kind is in. A pass reads its children and its parent from
here, so a steady pass and a resync over unchanged objects send no request at all, as a
controller-runtime reconciler reading its informers.

Objects are stored as compact JSON (bytes), decoded on use: about a tenth of the memory of the
parsed dict, and a pass decodes only its own handful of children. Fields no pass reads are
dropped first: managedFields (all but the one fact the replicas handover needs) and the status
of every kind but the Deployment and the Gateway API routes (status.parents only: whether the
Gateway accepted the route), the only children whose status a pass observes.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from modeldeploy.adapters.kube import FIELD_MANAGER, KubeClient, KubeError
from modeldeploy.handlers.workqueue import Key
from modeldeploy.render.kinds import CRD, MODEL_DEPLOYMENT, OPTIONAL_CRDS, Kind, served_versions
from modeldeploy.render.names import NAME_LABEL

log = logging.getLogger("modeldeploy.cache")
_ROUTE_KINDS = ("HTTPRoute", "GRPCRoute")


class Lookup(Protocol):
    """The read side of a kopf index (kopf.Index): key -> the values of every object yielding it."""

    def get(self, key: Key, /) -> Iterable[bytes] | None: ...

    def __iter__(self) -> Any: ...

    def __getitem__(self, key: Key, /) -> Iterable[bytes]: ...


def _our_managed_fields(entries: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Only whether our own field manager owns spec.replicas (reconciler.hands_replicas_over)."""
    kept = []
    for entry in entries:
        if entry.get("manager") != FIELD_MANAGER:
            continue
        spec = (entry.get("fieldsV1") or {}).get("f:spec") or {}
        fields: dict[str, Any] = {"f:spec": {"f:replicas": {}}} if "f:replicas" in spec else {}
        kept.append({"manager": FIELD_MANAGER, "operation": entry.get("operation"), "fieldsV1": fields})
    return kept


def encode_child(body: Mapping[str, Any], kind: Kind) -> bytes:
    meta = dict(body.get("metadata") or {})
    meta["managedFields"] = _our_managed_fields(meta.get("managedFields") or [])
    slim = {key: value for key, value in body.items() if key not in ("metadata", "status")}
    slim.update(apiVersion=kind.api_version, kind=kind.kind, metadata=meta)
    if kind.kind == "Deployment" and "status" in body:
        slim["status"] = body["status"]
    elif kind.kind in _ROUTE_KINDS and "status" in body:
        # Whether the Gateway accepted the route (routing/gateway_api.route_hold).
        slim["status"] = {"parents": (body.get("status") or {}).get("parents") or []}
    return json.dumps(slim, separators=(",", ":"), default=dict).encode()


def encode_parent(body: Mapping[str, Any]) -> bytes:
    meta = {key: value for key, value in (body.get("metadata") or {}).items() if key != "managedFields"}
    slim = {**body, "apiVersion": MODEL_DEPLOYMENT.api_version, "kind": MODEL_DEPLOYMENT.kind}
    slim["metadata"] = meta
    return json.dumps(slim, separators=(",", ":"), default=dict).encode()


def encode_crd(body: Mapping[str, Any]) -> bytes:
    """Only the versions a CRD serves: whether an optional child kind can be rendered."""
    return json.dumps(list(served_versions(body))).encode()


def child_key(body: Mapping[str, Any]) -> Key | None:
    meta = body.get("metadata") or {}
    owner = (meta.get("labels") or {}).get(NAME_LABEL)
    return (str(meta.get("namespace")), str(owner)) if owner else None


def parent_key(body: Mapping[str, Any]) -> Key:
    meta = body.get("metadata") or {}
    return (str(meta.get("namespace")), str(meta.get("name")))


def _snapshot(items: Any) -> list[Any]:
    """A copy of a kopf index or store, read from a worker thread while the event loop updates it:
    a dict that changes size between making its iterator and reading it raises, so read again."""
    for _ in range(100):
        try:
            return list(items)
        except RuntimeError:
            continue
    return list(items)


class Cache:
    """What a pass reads instead of the API, once kopf has filled the indexes.

    `attach` is given kopf's index objects (from the startup handler's kwargs); until `ready`
    (set by the first handler kopf lets run, which it does only once every index is filled), the
    resync loop keeps its hands off, so that no pass takes a half-listed cache for missing
    children (it would create a Deployment again at minReplicas over the HPA's size)."""

    def __init__(self) -> None:
        self._parents: Lookup | None = None
        self._children: dict[Kind, Lookup] = {}
        self._crds: Lookup | None = None
        self._ready = threading.Event()

    def attach(self, parents: Lookup, children: Mapping[Kind, Lookup], crds: Lookup) -> None:
        self._parents = parents
        self._children = dict(children)
        self._crds = crds

    def mark_ready(self) -> None:
        self._ready.set()

    @property
    def ready(self) -> bool:
        return self._ready.is_set() and self._parents is not None

    def caches(self, kind: Kind) -> bool:
        return self.ready and kind in self._children

    def children(self, kind: Kind, namespace: str, name: str) -> list[dict[str, Any]]:
        store = self._children[kind].get((namespace, name))
        return [json.loads(raw) for raw in _snapshot(store or ())]

    def parent(self, namespace: str, name: str) -> dict[str, Any] | None:
        if self._parents is None:
            return None
        for raw in _snapshot(self._parents.get((namespace, name)) or ()):
            body: dict[str, Any] = json.loads(raw)
            return body
        return None

    def served_versions(self, names: Iterable[str]) -> dict[str, tuple[str, ...] | None] | None:
        """The versions each named CRD serves (None: not installed); None until the cache is ready."""
        if not self.ready or self._crds is None:
            return None
        found: dict[str, tuple[str, ...] | None] = {}
        for name in names:
            for raw in _snapshot(self._crds.get(("", name)) or ()):
                found[name] = tuple(json.loads(raw))
            found.setdefault(name, None)
        return found

    def parent_keys(self) -> list[Key]:
        """(namespace, name) of every cached ModelDeployment."""
        return list(_snapshot(self._parents)) if self._parents is not None else []

    def parents(self) -> list[dict[str, Any]]:
        if self._parents is None:
            return []
        parents = self._parents
        return [json.loads(raw) for key in _snapshot(parents) for raw in _snapshot(parents.get(key) or ())]


class CrdVersions:
    """The one answer to which versions each optional CRD (render/kinds.OPTIONAL_CRDS) serves: from
    the CRD watch once the cache is filled, which costs no request; before that (or with no cache),
    read through the API at most once every `ttl` seconds. A CRD that cannot be read keeps its
    last answer."""

    def __init__(
        self,
        kube: KubeClient,
        cache: Cache | None,
        *,
        ttl: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._kube, self._cache, self._ttl, self._clock = kube, cache, ttl, clock
        self._lock = threading.Lock()
        self._read: dict[str, tuple[str, ...] | None] = {}
        self._read_at: float | None = None

    def __call__(self) -> dict[str, tuple[str, ...] | None]:
        watched = self._cache.served_versions(OPTIONAL_CRDS) if self._cache is not None else None
        if watched is not None:
            return watched
        with self._lock:
            if self._read_at is None or self._clock() - self._read_at >= self._ttl:
                for name in OPTIONAL_CRDS:
                    try:
                        crd = self._kube.get(CRD, None, name)
                    except KubeError as error:
                        log.warning("cannot tell whether %s is installed: %s", name, error)
                        continue
                    self._read[name] = served_versions(crd) if crd is not None else None
                self._read_at = self._clock()
            return dict(self._read)
