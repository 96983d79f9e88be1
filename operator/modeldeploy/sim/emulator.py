"""
``ClusterEmulator``: kmock's ``KubernetesEmulator`` made closer to a real Kubernetes API server.

kmock stores objects as plain dicts and merges every write into them. This subclass keeps kmock's
object store (``emulator.objects`` with history), discovery and request DSL, and replaces the
object semantics: metadata (uid, creationTimestamp, resourceVersion, generation), the status and
scale subresources, the PATCH flavours incl. server-side apply with managed fields, optimistic
concurrency, label/field selectors, pagination, garbage collection by ownerReferences,
watches with resource versions, timeouts, bookmarks and 410 Gone, and a request log with API verbs.

All state changes are synchronous and guarded by one lock, so the synchronous helpers
(``put_object``, ``mark_deployment_ready``...) are safe from other threads while a loop serves HTTP.
See ``tests/README.md`` for what is still simpler than a real API server.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import contextlib
import copy
import dataclasses
import datetime
import json
import re
import secrets
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from typing import Any

import aiohttp.web
import attrs
import kmock
import yaml

# Not in kmock's public API, but needed to mirror RawHandler.__call__ (overridden for the path fix).
from kmock._internal.apps import KMockError
from kmock._internal.rendering import Response, StreamingError

from modeldeploy.sim import patches, ssa
from modeldeploy.sim.errors import ApiError, bad_request, conflict, invalid, not_found
from modeldeploy.sim.paths import ApiPath, derive_verb, parse_api_path
from modeldeploy.sim.resources import (
    BUILTIN_GROUPS,
    BUILTIN_RESOURCES,
    DEFAULT_VERBS,
    EXTRA_FIELD_SELECTORS,
)
from modeldeploy.sim.selectors import FieldSelector, LabelSelector

ObjectKey = tuple[kmock.resource, str | None, str]  # (resource, namespace or None, name)

WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})

MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"

# Metadata that only the server sets: a client's body can never change it.
SYSTEM_METADATA = (
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
)

NAMESPACES = kmock.resource("", "v1", "namespaces")
DEPLOYMENTS = kmock.resource("apps", "v1", "deployments")

_KUBE_ACTIONS = {
    "list": kmock.action.LIST,
    "watch": kmock.action.WATCH,
    "get": kmock.action.FETCH,
    "create": kmock.action.CREATE,
    "update": kmock.action.UPDATE,
    "patch": kmock.action.UPDATE,
    "delete": kmock.action.DELETE,
    "deletecollection": kmock.action.DELETE,
}
_DNS_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS_LABEL_RE = re.compile(rf"^{_DNS_LABEL}$")
_DNS_SUBDOMAIN_RE = re.compile(rf"^{_DNS_LABEL}(\.{_DNS_LABEL})*$")
_QUALIFIED_NAME_RE = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # the API server's generateName alphabet


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


@dataclasses.dataclass
class ApiRequest:
    """One request as the emulator saw it, with the Kubernetes API verb that RBAC would check."""

    seq: int
    method: str
    path: str
    query: dict[str, str]
    content_type: str | None
    verb: str | None  # get list watch create update patch delete deletecollection; None: discovery
    group: str | None
    version: str | None
    resource: str | None  # the plural
    subresource: str | None
    namespace: str | None
    name: str | None
    field_manager: str | None
    user_agent: str | None
    status: int | None = None  # the HTTP status, once answered

    @property
    def is_write(self) -> bool:
        return self.verb in WRITE_VERBS

    @property
    def rbac_resource(self) -> str:
        """``plural`` or ``plural/subresource``, as written in RBAC rules."""
        resource = self.resource or ""
        return f"{resource}/{self.subresource}" if self.subresource else resource


@dataclasses.dataclass(frozen=True)
class _Event:
    rv: int
    resource: kmock.resource
    namespace: str | None
    name: str
    type: str
    object: dict[str, Any]
    old: dict[str, Any] | None  # the previous state, so that selector watches see ADDED/DELETED


class _Watcher:
    """A live watch stream's wake-up signal, callable from any thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.wakeup = asyncio.Event()

    def notify(self) -> None:
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            self.wakeup.set()
        elif not self.loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody to wake
                self.loop.call_soon_threadsafe(self.wakeup.set)


@dataclasses.dataclass(frozen=True)
class _Target:
    """A resolved resource with its discovery information."""

    resource: kmock.resource
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    subresources: frozenset[str]

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        """``plural.group``, as in the API server's messages."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def has_status(self) -> bool:
        return "status" in self.subresources

    @property
    def builtin(self) -> bool:
        return self.group in BUILTIN_GROUPS


@dataclasses.dataclass(frozen=True)
class _WatchQuery:
    target: _Target
    namespace: str | None
    names: frozenset[str] | None
    labels: LabelSelector
    fields: FieldSelector

    def matches(self, obj: Mapping[str, Any]) -> bool:
        return self.labels.matches((obj.get("metadata") or {}).get("labels")) and self.fields.matches(obj)

    def translate(self, event: _Event) -> dict[str, Any] | None:
        if event.resource != self.target.resource:
            return None
        if self.namespace is not None and event.namespace != self.namespace:
            return None
        if self.names is not None and event.name not in self.names:
            return None
        now_matches = self.matches(event.object)
        if event.type != "MODIFIED":
            return {"type": event.type, "object": event.object} if now_matches else None
        # A selector watch sees objects entering and leaving the selection, as a real server does.
        before_matches = event.old is not None and self.matches(event.old)
        kind = (
            "MODIFIED"
            if now_matches and before_matches
            else "ADDED"
            if now_matches
            else "DELETED"
            if before_matches
            else None
        )
        return {"type": kind, "object": event.object} if kind else None


@attrs.define(kw_only=True)
class ClusterEmulator(kmock.KubernetesEmulator):
    """
    A Kubernetes API emulator with the semantics that an operator depends on.

    Serve it with ``serve_emulator()`` (async) or ``EmulatorThread`` (sync code, benchmarks).
    Declare resources with ``declare()`` or ``declare_builtin_resources()`` before use:
    undeclared resources answer 404, as on a real server.

    kmock's DSL still takes precedence: ``emulator['patch', ...] << 500`` injects a fault,
    and such an intercepted request changes no state (unlike in plain kmock).
    """

    watch_history: int = 10_000  # watch events kept for resuming; older resourceVersions get 410 Gone
    bookmark_interval: float | None = None  # seconds between BOOKMARKs on watches that allow them
    gc_delay: float = 0.0  # seconds before the garbage collector acts on a deletion
    keep_history: bool = True  # keep every object version in kmock's ``objects`` (off for benchmarks)
    request_log_limit: int | None = None  # keep only the latest N log records (None: all)
    clock: Callable[[], datetime.datetime] = _utcnow

    _state_lock: threading.RLock = attrs.field(factory=threading.RLock, init=False)
    _rv: int = attrs.field(default=0, init=False)
    _events: collections.deque[_Event] = attrs.field(factory=collections.deque, init=False)
    _compacted_rv: int = attrs.field(default=0, init=False)
    _uids: dict[str, ObjectKey] = attrs.field(factory=dict, init=False)
    _watchers: set[_Watcher] = attrs.field(factory=set, init=False)
    _log: collections.deque[ApiRequest] = attrs.field(init=False)
    _log_seq: int = attrs.field(default=0, init=False)
    _gc_queue: collections.deque[str] = attrs.field(factory=collections.deque, init=False)
    _gc_dangling: collections.deque[ObjectKey] = attrs.field(factory=collections.deque, init=False)
    _gc_scheduled: bool = attrs.field(default=False, init=False)
    _loop: asyncio.AbstractEventLoop | None = attrs.field(default=None, init=False)
    _closing: bool = attrs.field(default=False, init=False)
    _inflight: dict[int, ApiRequest] = attrs.field(factory=dict, init=False)

    @_log.default
    def _default_log(self) -> collections.deque[ApiRequest]:
        return collections.deque(maxlen=self.request_log_limit)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        # Above kmock's own fallbacks (which merge plain dicts), below any user-defined reaction.
        (self.fallback**1)[self._is_resource_request] << self._serve_resource

    # --- Declarations ---------------------------------------------------------------------------

    def declare(
        self,
        group: str,
        version: str,
        plural: str,
        *,
        kind: str,
        namespaced: bool = True,
        verbs: Iterable[str] = DEFAULT_VERBS,
        subresources: Iterable[str] = (),
        short_names: Iterable[str] = (),
        singular: str | None = None,
        categories: Iterable[str] = (),
    ) -> kmock.resource:
        """Declare a resource for discovery. kopf serves only resources whose verbs have list+watch."""
        resource = kmock.resource(group, version, plural)
        self.resources[resource] = kmock.ResourceInfo(
            kind=kind,
            namespaced=namespaced,
            singular=singular or kind.lower(),
            verbs=set(verbs),
            shortnames=set(short_names),
            categories=set(categories),
            subresources=set(subresources),
        )
        return resource

    def declare_builtin_resources(self) -> None:
        """Declare the built-in kinds and CRDs that kopf and the modeldeploy operator touch."""
        for spec in BUILTIN_RESOURCES:
            self.declare(
                spec.group,
                spec.version,
                spec.plural,
                kind=spec.kind,
                namespaced=spec.namespaced,
                subresources=spec.subresources,
                short_names=spec.short_names,
                singular=spec.singular,
            )

    # --- The request log ------------------------------------------------------------------------

    @property
    def request_log(self) -> list[ApiRequest]:
        with self._state_lock:
            return list(self._log)

    def log_position(self) -> int:
        """The sequence number of the next request: pass it as ``since=`` to see only later ones."""
        with self._state_lock:
            return self._log_seq

    def write_requests(self, since: int = 0) -> list[ApiRequest]:
        """Requests that change state (create, update, patch, delete, deletecollection)."""
        return [record for record in self.request_log if record.seq >= since and record.is_write]

    def api_verbs(self, since: int = 0) -> set[tuple[str, str, str]]:
        """``(group, resource[/subresource], verb)`` of every resource request: what RBAC must allow."""
        return {
            (record.group or "", record.rbac_resource, record.verb)
            for record in self.request_log
            if record.seq >= since and record.verb is not None
        }

    def clear_log(self) -> None:
        with self._state_lock:
            self._log.clear()

    # --- Direct access for tests and the demo (no HTTP) -----------------------------------------

    @property
    def resource_version(self) -> int:
        """The latest resourceVersion issued, cluster-wide."""
        return self._rv

    def get_object(
        self, group: str, version: str, plural: str, namespace: str | None, name: str
    ) -> dict[str, Any] | None:
        with self._state_lock:
            obj = self._current((kmock.resource(group, version, plural), namespace, name))
            return copy.deepcopy(obj) if obj is not None else None

    def list_objects(
        self,
        group: str,
        version: str,
        plural: str,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
    ) -> list[dict[str, Any]]:
        selector = LabelSelector.parse(label_selector)
        resource = kmock.resource(group, version, plural)
        with self._state_lock:
            return [
                copy.deepcopy(obj)
                for key, obj in self._live(resource)
                if (namespace is None or key[1] == namespace)
                and selector.matches(obj["metadata"].get("labels"))
            ]

    def put_object(self, body: Mapping[str, Any], *, plural: str | None = None) -> dict[str, Any]:
        """
        Create or replace an object as given, status included (seeding); watchers see the write.

        The resource comes from ``apiVersion`` and ``kind`` (the kind must be declared),
        or from ``plural``. Server-set metadata (uid, resourceVersion...) is filled in.
        """
        group, _, version = str(body["apiVersion"]).rpartition("/")
        plural = plural or self._plural_of(group, version, str(body["kind"]))
        target = self._known_target(group, version, plural)
        with self._state_lock:
            namespace = (body.get("metadata") or {}).get("namespace") if target.namespaced else None
            key: ObjectKey = (target.resource, namespace, str((body.get("metadata") or {}).get("name", "")))
            old = self._current(key)
            if old is None:
                result = self._create(target, namespace, body, manager="modeldeploy-sim", keep_status=True)
            else:
                result = self._finish_update(
                    target, key, old, body, manager="modeldeploy-sim", keep_status=True
                )
        self._collect_garbage_if_offline()
        return copy.deepcopy(result)

    def delete_object(
        self,
        group: str,
        version: str,
        plural: str,
        namespace: str | None,
        name: str,
        *,
        propagation: str = "Background",
    ) -> None:
        """Delete as the API would: finalizers are honoured, dependents are garbage-collected."""
        target = self._known_target(group, version, plural)
        with self._state_lock:
            key: ObjectKey = (target.resource, namespace, name)
            if self._current(key) is None:
                raise KeyError(f"{target.qualified} {namespace}/{name} does not exist")
            self._delete_key(target, key, propagation=propagation)
        self._collect_garbage_if_offline()

    def patch_object(
        self,
        group: str,
        version: str,
        plural: str,
        namespace: str | None,
        name: str,
        patch: Any,
        *,
        content_type: str = MERGE_PATCH,
        manager: str = "kubectl",
    ) -> dict[str, Any]:
        """Patch the main resource as a user would (``kubectl patch``); the status is not touched."""
        target = self._known_target(group, version, plural)
        api = ApiPath(group, version, plural, namespace if target.namespaced else None, name)
        params = {"fieldManager": manager}
        with self._state_lock:
            _, result = self._patch(target, api, content_type, patch, params, manager=manager, dry_run=False)
        self._collect_garbage_if_offline()
        return copy.deepcopy(result)

    def patch_status(
        self,
        group: str,
        version: str,
        plural: str,
        namespace: str | None,
        name: str,
        status: Mapping[str, Any],
        *,
        manager: str = "modeldeploy-sim",
    ) -> dict[str, Any]:
        """Merge-patch ``.status``, as a controller would through the status subresource."""
        target = self._known_target(group, version, plural)
        with self._state_lock:
            key: ObjectKey = (target.resource, namespace, name)
            old = self._current(key)
            if old is None:
                raise KeyError(f"{target.qualified} {namespace}/{name} does not exist")
            candidate = patches.merge_patch(old, {"status": dict(status)})
            result = self._finish_update(target, key, old, candidate, subresource="status", manager=manager)
        self._collect_garbage_if_offline()
        return copy.deepcopy(result)

    def mark_deployment_ready(self, namespace: str, name: str) -> dict[str, Any]:
        """
        Do what kubelet and the deployment controller would: all replicas rolled out and available.

        Like a real controller, it writes nothing when the status is already so.
        """
        with self._state_lock:
            old = self._current((DEPLOYMENTS, namespace, name))
            if old is None:
                raise KeyError(f"deployments.apps {namespace}/{name} does not exist")
            replicas = int((old.get("spec") or {}).get("replicas", 1))
            now = self._now()
            previous = {c.get("type"): c for c in (old.get("status") or {}).get("conditions") or []}

            def condition(kind: str, reason: str, message: str) -> dict[str, Any]:
                before = previous.get(kind) or {}
                same = before.get("status") == "True" and before.get("reason") == reason
                return {
                    "type": kind,
                    "status": "True",
                    "reason": reason,
                    "message": message,
                    "lastUpdateTime": before.get("lastUpdateTime", now) if same else now,
                    "lastTransitionTime": before.get("lastTransitionTime", now) if same else now,
                }

            status = {
                "observedGeneration": old["metadata"].get("generation", 1),
                "replicas": replicas,
                "updatedReplicas": replicas,
                "readyReplicas": replicas,
                "availableReplicas": replicas,
                "conditions": [
                    condition(
                        "Available", "MinimumReplicasAvailable", "Deployment has minimum availability."
                    ),
                    condition(
                        "Progressing",
                        "NewReplicaSetAvailable",
                        f'ReplicaSet "{name}" has successfully progressed.',
                    ),
                ],
            }
            return self.patch_status(
                "apps", "v1", "deployments", namespace, name, status, manager="kube-controller-manager"
            )

    # --- Serving lifecycle ----------------------------------------------------------------------

    def bind_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """Attach to the event loop that serves HTTP (background GC runs there)."""
        with self._state_lock:
            self._loop = loop
            self._closing = False

    def close_watches(self) -> None:
        """End every open watch stream now, so that the HTTP server can stop without waiting."""
        with self._state_lock:
            self._closing = True
            watchers = list(self._watchers)
        for watcher in watchers:
            watcher.notify()

    # --- HTTP entry points ----------------------------------------------------------------------

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        # Mirrors kmock.RawHandler.__call__, but parses the path with parse_api_path(): kmock 0.8's
        # parse_path() raises ValueError (HTTP 500) on /api/v1/namespaces, which blocks kopf.
        await raw_request.read()
        raw_response: aiohttp.web.StreamResponse | None = None
        try:
            if self.limit is not None and len(self._requests) >= self.limit:
                raise KMockError("Too many requests have been served so far.")
            request = await self._parse_request(raw_request)
            # kmock's DSL serves a request only while its root holds it, and finds it by scanning
            # that list: holding every request ever served made each one slower than the last.
            # Hold only the ones in flight; the request log (request_log) keeps the history.
            self._requests.append(request)
            try:
                return await self._handle(request)
            except StreamingError as e:
                raw_response = e.args[0]
                if e.__cause__ is not None:
                    raise e.__cause__ from None
                raise
            finally:
                index = next((i for i, held in enumerate(self._requests) if held is request), None)
                if index is not None:
                    del self._requests[index]
        except Exception as e:
            if not self._errors:  # not entered as a context manager: let aiohttp deal with it
                raise
            self._errors[-1].append(e)
            if raw_response is None or not raw_response.prepared:
                return await self._render_error(e)
            await self._stream_error(e, raw_response)
            await raw_response.write_eof()
            return raw_response

    async def _parse_request(self, raw: aiohttp.web.BaseRequest) -> kmock.Request:
        body = await raw.read()
        try:
            data = json.loads(body) if body else None
        except ValueError:
            data = None
        api = parse_api_path(raw.path)
        query = dict(raw.query)
        verb = derive_verb(raw.method, api, query)
        return kmock.Request(
            id=len(self._requests),
            raw_request=raw,
            url=raw.url,
            method=raw.method,
            params=query,
            headers=dict(raw.headers),
            cookies=dict(raw.cookies),
            body=body,
            text=body.decode("utf-8", errors="replace"),
            data=data,
            action=_KUBE_ACTIONS.get(verb or ""),
            resource=None
            if api is None
            else kmock.resource(group=api.group, version=api.version, plural=api.plural),
            namespace=None if api is None else api.namespace,
            name=None if api is None else api.name,
            subresource=None if api is None else api.subresource,
        )

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        record = self._record(request)
        self._inflight[id(request)] = record
        try:
            # Skip KubernetesEmulator._handle(): its plain-dict writes are replaced by _serve_resource().
            response = await kmock.RawHandler._handle(self, request)
        finally:
            del self._inflight[id(request)]
        record.status = response.status
        return response

    def _record(self, request: kmock.Request) -> ApiRequest:
        api = parse_api_path(request.url.path)
        is_resource = api is not None and api.plural is not None
        with self._state_lock:
            record = ApiRequest(
                seq=self._log_seq,
                method=str(request.method.value),
                path=request.url.path,
                query=dict(request.params),
                content_type=_content_type(request.headers) or None,
                verb=derive_verb(str(request.method.value), api, request.params),
                group=api.group if api is not None else None,
                version=api.version if api is not None else None,
                resource=api.plural if api is not None else None,
                subresource=api.subresource if is_resource and api is not None else None,
                namespace=api.namespace if api is not None else None,
                name=api.name if api is not None else None,
                field_manager=request.params.get("fieldManager"),
                user_agent=_header(request.headers, "User-Agent"),
            )
            self._log_seq += 1
            self._log.append(record)
        return record

    @staticmethod
    def _is_resource_request(request: kmock.Request) -> bool:
        return request.resource is not None and request.resource.plural is not None

    def _serve_resource(self, request: kmock.Request) -> Response:
        try:
            api = parse_api_path(request.url.path)
            if api is None or api.plural is None:  # pragma: no cover  # filtered by the criteria
                raise not_found("the server could not find the requested resource")
            verb = derive_verb(str(request.method.value), api, request.params)
            target = self._resolve(api)
            if verb == "watch":
                response = self._serve_watch_stream(target, api, request.params)
                if record := self._inflight.get(id(request)):
                    record.status = 200  # a watch ends by cancellation more often than by completion
                return response
            with self._state_lock:
                code, payload = self._dispatch(target, api, verb, request)
            return Response(status=code, payload=payload)
        except ApiError as e:
            return Response(status=e.code, payload=e.to_status())

    def _dispatch(
        self, target: _Target, api: ApiPath, verb: str | None, request: kmock.Request
    ) -> tuple[int, Any]:
        params = request.params
        dry_run = params.get("dryRun") == "All"
        manager = params.get("fieldManager") or _manager_from_user_agent(request.headers)
        key: ObjectKey = (target.resource, api.namespace, api.name or "")
        content_type = _content_type(request.headers)
        if verb == "list":
            return 200, self._list(target, api.namespace, params)
        if verb == "get":
            return 200, self._get(target, key, api.subresource)
        if verb == "create":
            if api.name is not None or (target.namespaced and api.namespace is None):
                raise ApiError(
                    405, "MethodNotAllowed", "the server does not allow this method on the requested resource"
                )
            body = _decode(request.body, content_type)
            return 201, self._create(target, api.namespace, body, manager=manager, dry_run=dry_run)
        if verb == "update":
            body = _decode(request.body, content_type)
            return 200, self._replace(target, api, body, manager=manager, dry_run=dry_run)
        if verb == "patch":
            body = _decode(request.body, content_type)
            return self._patch(target, api, content_type, body, params, manager=manager, dry_run=dry_run)
        if verb == "delete":
            body = _decode(request.body, content_type)
            return 200, self._delete(target, key, body, params, dry_run=dry_run)
        if verb == "deletecollection":
            body = _decode(request.body, content_type)
            return 200, self._delete_collection(target, api.namespace, body, params, dry_run=dry_run)
        raise ApiError(
            405, "MethodNotAllowed", "the server does not allow this method on the requested resource"
        )

    # --- Discovery --------------------------------------------------------------------------------

    async def _serve_version(self, request: kmock.Request) -> kmock.Payload:
        # kmock 0.8 reports "/v1" as the core groupVersion and gives subresources the parent's verbs.
        assert request.resource is not None  # the route guarantees it
        group, version = request.resource.group, request.resource.version
        found = [r for r in self._get_resources() if r.group == group and r.version == version and r.plural]
        if not found and group != "":
            raise kmock.KubernetesResourceNotFoundError()
        entries: list[dict[str, Any]] = []
        for resource in sorted(found, key=lambda r: r.plural or ""):
            target = self._target_of(resource)
            entries.append(
                {
                    "name": target.plural,
                    "singularName": self.resources[resource].singular or target.kind.lower(),
                    "namespaced": target.namespaced,
                    "kind": target.kind,
                    "verbs": sorted(self.resources[resource].verbs or DEFAULT_VERBS),
                    "shortNames": sorted(self.resources[resource].shortnames),
                    "categories": sorted(self.resources[resource].categories),
                }
            )
            for sub in sorted(target.subresources):
                entry = {
                    "name": f"{target.plural}/{sub}",
                    "singularName": "",
                    "namespaced": target.namespaced,
                    "kind": target.kind,
                    "verbs": ["get", "patch", "update"],
                }
                if sub == "scale":
                    entry.update({"group": "autoscaling", "version": "v1", "kind": "Scale"})
                entries.append(entry)
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": f"{group}/{version}" if group else str(version),
            "resources": entries,
        }

    def _get_resources(self) -> list[kmock.resource]:
        with self._state_lock:  # kmock iterates the object store; seeding may run in another thread
            return super()._get_resources()

    def _target_of(self, resource: kmock.resource) -> _Target:
        info = self.resources[resource] if resource in self.resources else kmock.ResourceInfo()
        plural = resource.plural or ""
        return _Target(
            resource=resource,
            group=resource.group or "",
            version=resource.version or "",
            plural=plural,
            kind=info.kind or _guess_kind(plural),
            namespaced=info.namespaced if info.namespaced is not None else True,
            subresources=frozenset(info.subresources),
        )

    def _resolve(self, api: ApiPath) -> _Target:
        resource = kmock.resource(api.group, api.version, api.plural)
        if resource not in self.resources and resource not in self._get_resources():
            raise not_found("the server could not find the requested resource")
        target = self._target_of(resource)
        if api.subresource is not None and api.subresource not in target.subresources:
            raise not_found("the server could not find the requested resource")
        if api.subresource not in (None, "status", "scale"):
            raise ApiError(
                405, "MethodNotAllowed", f"the emulator does not serve the {api.subresource} subresource"
            )
        if not target.namespaced and api.namespace is not None:
            raise not_found("the server could not find the requested resource")
        if target.namespaced and api.name is not None and api.namespace is None:
            raise not_found("the server could not find the requested resource")
        return target

    def _known_target(self, group: str, version: str, plural: str) -> _Target:
        return self._target_of(kmock.resource(group, version, plural))

    def _plural_of(self, group: str, version: str, kind: str) -> str:
        for resource in self.resources:
            if (
                resource.group == group
                and resource.version == version
                and self.resources[resource].kind == kind
            ):
                return resource.plural or ""
        raise KeyError(f"kind {kind} of {group}/{version} is not declared; declare it or pass plural=")

    # --- Reading ----------------------------------------------------------------------------------

    def _current(self, key: ObjectKey) -> dict[str, Any] | None:
        # The stored dicts are never mutated in place: each write stores a fresh one.
        if key not in self._objects:
            return None
        entry = self._objects[key]
        return None if entry.deleted else entry.raw

    def _live(self, resource: kmock.resource | None = None) -> Iterator[tuple[ObjectKey, dict[str, Any]]]:
        for key, entry in list(self._objects.items()):
            if (resource is None or key[0] == resource) and not entry.deleted:
                yield key, entry.raw

    def _get(self, target: _Target, key: ObjectKey, subresource: str | None) -> dict[str, Any]:
        obj = self._require(target, key)
        return _scale_of(obj) if subresource == "scale" else obj

    def _require(self, target: _Target, key: ObjectKey) -> dict[str, Any]:
        obj = self._current(key)
        if obj is None:
            raise ApiError(
                404,
                "NotFound",
                f'{target.qualified} "{key[2]}" not found',
                {"name": key[2], "group": target.group, "kind": target.plural},
            )
        return obj

    def _list(self, target: _Target, namespace: str | None, params: Mapping[str, str]) -> dict[str, Any]:
        labels = LabelSelector.parse(params.get("labelSelector"))
        fields = FieldSelector.parse(params.get("fieldSelector"), self._field_selectors(target))
        items = sorted(
            (
                (key, obj)
                for key, obj in self._live(target.resource)
                if (namespace is None or key[1] == namespace)
                and labels.matches(obj["metadata"].get("labels"))
                and fields.matches(obj)
            ),
            key=lambda pair: (pair[0][1] or "", pair[0][2]),
        )
        metadata: dict[str, Any] = {"resourceVersion": str(self._rv)}
        if token := params.get("continue"):
            start = _decode_continue(token)
            items = [(key, obj) for key, obj in items if (key[1] or "", key[2]) > start]
        limit_text = params.get("limit") or "0"
        if not limit_text.isdigit():
            raise bad_request(f"invalid limit: {limit_text!r}")
        limit = int(limit_text)
        if limit and len(items) > limit:
            last = items[limit - 1][0]
            metadata["continue"] = _encode_continue((last[1] or "", last[2]))
            metadata["remainingItemCount"] = len(items) - limit
            items = items[:limit]
        return {
            "apiVersion": target.api_version,
            "kind": f"{target.kind}List",
            "metadata": metadata,
            "items": [obj for _, obj in items],
        }

    def _field_selectors(self, target: _Target) -> frozenset[str]:
        extra = EXTRA_FIELD_SELECTORS.get((target.group, target.plural), frozenset())
        return frozenset({"metadata.name", "metadata.namespace"}) | extra

    # --- Writing ----------------------------------------------------------------------------------

    def _now(self) -> str:
        return self.clock().astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    def _create(
        self,
        target: _Target,
        namespace: str | None,
        body: Any,
        *,
        manager: str,
        dry_run: bool = False,
        entries: list[ssa.ManagedEntry] | None = None,
        keep_status: bool = False,
    ) -> dict[str, Any]:
        if not isinstance(body, Mapping):
            raise bad_request("the body of the request must be a JSON object")
        obj = copy.deepcopy(dict(body))
        _check_type(target, obj)
        meta = obj.get("metadata")
        if meta is None:
            meta = obj["metadata"] = {}
        if not isinstance(meta, dict):
            raise bad_request("metadata must be an object")
        if target.namespaced:
            if namespace is not None and meta.get("namespace") not in (None, "", namespace):
                raise bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
            namespace = namespace or meta.get("namespace")
            if not namespace:
                raise bad_request("a namespace is required for namespaced resources")
        else:
            namespace = None
        name = str(meta.get("name") or "")
        if not name:
            prefix = meta.get("generateName")
            if not prefix:
                raise invalid("metadata.name: Required value: name or generateName is required")
            name = self._generate_name(target, namespace, str(prefix))
        _validate_name(target, name)
        key: ObjectKey = (target.resource, namespace, name)
        if self._current(key) is not None:
            raise ApiError(
                409,
                "AlreadyExists",
                f'{target.qualified} "{name}" already exists',
                {"name": name, "group": target.group, "kind": target.plural},
            )
        for field in SYSTEM_METADATA:
            meta.pop(field, None)
        obj["apiVersion"], obj["kind"] = target.api_version, target.kind
        meta.update(name=name, uid=str(uuid.uuid4()), creationTimestamp=self._now(), generation=1)
        if namespace is not None:
            meta["namespace"] = namespace
        if target.has_status and not keep_status:
            obj.pop("status", None)  # the status subresource owns it
        _validate(target, None, obj)
        if entries is None:
            entries = ssa.track_update([], {}, obj, manager=manager, api_version=target.api_version)
        if target.resource == NAMESPACES:  # server-side defaulting: owned by nobody
            obj.setdefault("status", {})["phase"] = "Active"
        if rendered := ssa.render_managed_fields(ssa.stamp_times([], entries, self._now())):
            meta["managedFields"] = rendered
        if dry_run:
            return obj
        return self._commit(key, None, obj)

    def _generate_name(self, target: _Target, namespace: str | None, prefix: str) -> str:
        while True:
            name = prefix + "".join(secrets.choice(_NAME_ALPHABET) for _ in range(5))
            if self._current((target.resource, namespace, name)) is None:
                return name

    def _replace(
        self, target: _Target, api: ApiPath, body: Any, *, manager: str, dry_run: bool
    ) -> dict[str, Any]:
        key: ObjectKey = (target.resource, api.namespace, api.name or "")
        old = self._require(target, key)
        if not isinstance(body, Mapping):
            raise bad_request("the body of the request must be a JSON object")
        meta = body.get("metadata") or {}
        if meta.get("name") not in (None, api.name):
            raise bad_request(
                f"the name of the object ({meta.get('name')}) does not match the name on the URL ({api.name})"
            )
        _check_resource_version(target, old, meta.get("resourceVersion"))
        if api.subresource == "scale":
            result = self._finish_update(
                target, key, old, _unscale(old, body), subresource="scale", manager=manager, dry_run=dry_run
            )
            return _scale_of(result)
        return self._finish_update(
            target, key, old, body, subresource=api.subresource, manager=manager, dry_run=dry_run
        )

    def _patch(
        self,
        target: _Target,
        api: ApiPath,
        content_type: str,
        body: Any,
        params: Mapping[str, str],
        *,
        manager: str,
        dry_run: bool,
    ) -> tuple[int, dict[str, Any]]:
        if content_type == APPLY_PATCH:
            return self._apply(target, api, body, params, dry_run=dry_run)
        key: ObjectKey = (target.resource, api.namespace, api.name or "")
        old = self._require(target, key)
        base = _scale_of(old) if api.subresource == "scale" else old
        if content_type == MERGE_PATCH:
            if not isinstance(body, Mapping):
                raise bad_request("a merge patch must be a JSON object")
            patched = patches.merge_patch(base, body)
        elif content_type == STRATEGIC_MERGE_PATCH:
            if not target.builtin:
                raise ApiError(
                    415,
                    "UnsupportedMediaType",
                    f"the body of the request was in an unknown format - accepted media types include: "
                    f"{JSON_PATCH}, {MERGE_PATCH}, {APPLY_PATCH}",
                )
            if not isinstance(body, Mapping):
                raise bad_request("a strategic merge patch must be a JSON object")
            patched = patches.strategic_merge_patch(base, body)
        elif content_type == JSON_PATCH:
            patched = patches.json_patch(base, body)
        else:
            raise ApiError(
                415, "UnsupportedMediaType", f"the media type {content_type!r} is not a patch type"
            )
        _check_resource_version(target, old, (patched.get("metadata") or {}).get("resourceVersion"))
        if api.subresource == "scale":
            result = self._finish_update(
                target,
                key,
                old,
                _unscale(old, patched),
                subresource="scale",
                manager=manager,
                dry_run=dry_run,
            )
            return 200, _scale_of(result)
        result = self._finish_update(
            target, key, old, patched, subresource=api.subresource, manager=manager, dry_run=dry_run
        )
        return 200, result

    def _apply(
        self, target: _Target, api: ApiPath, body: Any, params: Mapping[str, str], *, dry_run: bool
    ) -> tuple[int, dict[str, Any]]:
        manager = params.get("fieldManager")
        if not manager:
            raise bad_request(
                "PATCH, application/apply-patch+yaml: fieldManager is required for apply requests"
            )
        if not isinstance(body, Mapping):
            raise bad_request("the body of an apply request must be an object")
        if not body.get("apiVersion") or not body.get("kind"):
            raise bad_request("invalid object type: apiVersion and kind must be set in an apply request")
        _check_type(target, body)
        meta = body.get("metadata") or {}
        if meta.get("name") not in (None, api.name):
            raise bad_request(
                f"the name of the object ({meta.get('name')}) does not match the name on the URL ({api.name})"
            )
        if api.subresource not in (None, "status"):
            raise ApiError(
                405, "MethodNotAllowed", f"apply is not supported on the {api.subresource} subresource"
            )
        force = (params.get("force") or "").lower() in ("true", "1")
        subresource = api.subresource or ""
        config = _scope_for_apply(target, body, subresource)
        key: ObjectKey = (target.resource, api.namespace, api.name or "")
        old = self._current(key)
        if old is None:
            if subresource:
                self._require(target, key)
            config.setdefault("metadata", {})["name"] = api.name
            merged, entries = ssa.server_side_apply(
                {}, config, [], manager=manager, api_version=target.api_version, force=force
            )
            return 201, self._create(
                target, api.namespace, merged, manager=manager, dry_run=dry_run, entries=entries
            )
        _check_resource_version(target, old, meta.get("resourceVersion"))
        merged, entries = ssa.server_side_apply(
            old,
            config,
            ssa.parse_managed_fields(old),
            manager=manager,
            api_version=target.api_version,
            subresource=subresource,
            force=force,
        )
        result = self._finish_update(
            target,
            key,
            old,
            merged,
            subresource=api.subresource,
            manager=manager,
            dry_run=dry_run,
            entries=entries,
        )
        return 200, result

    def _finish_update(
        self,
        target: _Target,
        key: ObjectKey,
        old: dict[str, Any],
        candidate: Mapping[str, Any],
        *,
        manager: str,
        subresource: str | None = None,
        dry_run: bool = False,
        entries: list[ssa.ManagedEntry] | None = None,
        keep_status: bool = False,
    ) -> dict[str, Any]:
        """The common tail of every update: system metadata, status rules, generation, ownership, no-op."""
        new = copy.deepcopy(dict(candidate))
        if not isinstance(new.get("metadata") or {}, dict):
            raise bad_request("metadata must be an object")
        if subresource != "scale":
            _check_type(target, new)
        new["apiVersion"], new["kind"] = target.api_version, target.kind
        meta = new["metadata"] = new.get("metadata") or {}
        old_meta = old["metadata"]
        for field in SYSTEM_METADATA:
            if field in old_meta:
                meta[field] = old_meta[field]
            else:
                meta.pop(field, None)
        if target.has_status and not keep_status:
            if subresource == "status":  # only .status changes through /status
                status = new.get("status")
                new = copy.deepcopy(old)
                if status is None:
                    new.pop("status", None)
                else:
                    new["status"] = status
                meta = new["metadata"]
            elif "status" in old:  # the main resource ignores .status
                new["status"] = copy.deepcopy(old["status"])
            else:
                new.pop("status", None)
        _validate(target, old, new)
        if _spec_of(target, old) != _spec_of(target, new):
            meta["generation"] = int(old_meta.get("generation") or 1) + 1
        old_entries = ssa.parse_managed_fields(old)
        if entries is None:
            entries = ssa.track_update(
                old_entries,
                old,
                new,
                manager=manager,
                api_version=target.api_version,
                subresource=subresource or "",
            )
        rendered = ssa.render_managed_fields(ssa.stamp_times(old_entries, entries, self._now()))
        if rendered:
            meta["managedFields"] = rendered
        else:
            meta.pop("managedFields", None)
        if new == old or dry_run:
            return old if new == old else new  # a no-op write stores nothing and notifies nobody
        new = self._commit(key, old, new)
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            return self._remove(key, new)
        return new

    def _commit(self, key: ObjectKey, old: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, Any]:
        self._rv += 1
        new["metadata"]["resourceVersion"] = str(self._rv)
        new = _canonical(new)
        if key in self._objects and (self.keep_history or self._objects[key].deleted):
            self._objects[key].history.append(new)
        elif key in self._objects:
            self._objects[key].history[-1] = new
        else:
            self._objects[key] = new
        self._uids[new["metadata"]["uid"]] = key
        self._emit("ADDED" if old is None else "MODIFIED", key, new, old)
        if any(ref.get("uid") not in self._uids for ref in new["metadata"].get("ownerReferences") or []):
            self._gc_dangling.append(key)  # e.g. re-created by a controller after its owner went
            self._schedule_gc()
        return new

    def _emit(self, kind: str, key: ObjectKey, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
        if self.watch_history and len(self._events) >= self.watch_history:
            self._compacted_rv = self._events.popleft().rv
        self._events.append(_Event(self._rv, key[0], key[1], key[2], kind, obj, old))
        for watcher in list(self._watchers):
            watcher.notify()

    # --- Deleting and garbage collection ---------------------------------------------------------

    def _delete(
        self, target: _Target, key: ObjectKey, body: Any, params: Mapping[str, str], *, dry_run: bool
    ) -> dict[str, Any]:
        options = body if isinstance(body, Mapping) else {}
        obj = self._require(target, key)
        preconditions = options.get("preconditions") or {}
        if preconditions.get("uid") and preconditions["uid"] != obj["metadata"].get("uid"):
            raise conflict(
                f"Precondition failed: UID in precondition: {preconditions['uid']}, "
                f"UID in object meta: {obj['metadata'].get('uid')}"
            )
        if preconditions.get("resourceVersion") not in (None, obj["metadata"].get("resourceVersion")):
            raise conflict(
                f"Precondition failed: ResourceVersion in precondition: {preconditions['resourceVersion']}, "
                f"ResourceVersion in object meta: {obj['metadata'].get('resourceVersion')}"
            )
        if dry_run:
            return obj
        propagation = params.get("propagationPolicy") or options.get("propagationPolicy") or "Background"
        result, gone = self._delete_key(target, key, propagation=propagation)
        if not gone:
            return result  # still there (finalizers): the API answers with the object
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Success",
            "details": {
                "name": key[2],
                "group": target.group,
                "kind": target.plural,
                "uid": obj["metadata"]["uid"],
            },
        }

    def _delete_collection(
        self, target: _Target, namespace: str | None, body: Any, params: Mapping[str, str], *, dry_run: bool
    ) -> dict[str, Any]:
        listing = self._list(
            target, namespace, {k: v for k, v in params.items() if k in ("labelSelector", "fieldSelector")}
        )
        options = body if isinstance(body, Mapping) else {}
        propagation = params.get("propagationPolicy") or options.get("propagationPolicy") or "Background"
        items = listing["items"]
        if not dry_run:
            items = []
            for obj in listing["items"]:
                key: ObjectKey = (target.resource, obj["metadata"].get("namespace"), obj["metadata"]["name"])
                items.append(self._delete_key(target, key, propagation=propagation)[0])
        return {**listing, "metadata": {"resourceVersion": str(self._rv)}, "items": items}

    def _delete_key(
        self, target: _Target, key: ObjectKey, *, propagation: str
    ) -> tuple[dict[str, Any], bool]:
        """Delete now, or mark for deletion if finalizers (or a namespace's contents) hold it back."""
        obj = self._require(target, key)
        meta = obj["metadata"]
        if propagation == "Orphan":
            self._orphan_dependents(meta["uid"])
        if meta.get("deletionTimestamp"):
            return obj, False
        if meta.get("finalizers") or key[0] == NAMESPACES:
            new = copy.deepcopy(obj)
            new["metadata"].update(
                deletionTimestamp=self._now(),
                deletionGracePeriodSeconds=0,
                generation=int(meta.get("generation") or 1) + 1,
            )
            if key[0] == NAMESPACES:
                new.setdefault("status", {})["phase"] = "Terminating"
                self._schedule_gc()  # the namespace controller empties it, then removes it
            return self._commit(key, obj, new), False
        return self._remove(key, obj), True

    def _remove(self, key: ObjectKey, obj: dict[str, Any]) -> dict[str, Any]:
        self._rv += 1
        final = {**obj, "metadata": {**obj["metadata"], "resourceVersion": str(self._rv)}}
        if self.keep_history:
            self._objects[key].delete()
        else:
            del self._objects[key]
        self._uids.pop(obj["metadata"].get("uid", ""), None)
        self._emit("DELETED", key, final, obj)
        self._gc_queue.append(obj["metadata"].get("uid", ""))
        self._schedule_gc()
        return final

    def _orphan_dependents(self, uid: str) -> None:
        for key, obj in self._live():
            refs = obj["metadata"].get("ownerReferences") or []
            if any(ref.get("uid") == uid for ref in refs):
                candidate = copy.deepcopy(obj)
                candidate["metadata"]["ownerReferences"] = [
                    ref for ref in refs if ref.get("uid") != uid
                ] or None
                if candidate["metadata"]["ownerReferences"] is None:
                    del candidate["metadata"]["ownerReferences"]
                self._finish_update(
                    self._target_of(key[0]), key, obj, candidate, manager="kube-controller-manager"
                )

    def _schedule_gc(self) -> None:
        # The garbage collector acts after the owner's deletion, in the background (as the real one).
        if self._gc_scheduled:
            return
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        loop = running or self._loop
        if loop is None or loop.is_closed():
            return  # offline: the synchronous helpers collect before returning
        self._gc_scheduled = True

        def start() -> None:
            loop.call_later(self.gc_delay, self._collect_garbage)

        if loop is running:
            start()
        else:
            try:
                loop.call_soon_threadsafe(start)
            except RuntimeError:  # the serving loop closed meanwhile: collect on the next sync call
                self._gc_scheduled = False

    def _collect_garbage_if_offline(self) -> None:
        if self._loop is None or self._loop.is_closed():
            self._collect_garbage()

    def _collect_garbage(self) -> None:
        with self._state_lock:
            self._gc_scheduled = False
            progressed = True
            while progressed:
                progressed = False
                while self._gc_queue:
                    uid = self._gc_queue.popleft()
                    for key, obj in self._live():
                        refs = obj["metadata"].get("ownerReferences") or []
                        if not any(ref.get("uid") == uid for ref in refs):
                            continue
                        progressed = True
                        remaining = [ref for ref in refs if ref.get("uid") != uid]
                        target = self._target_of(key[0])
                        if any(ref.get("uid") in self._uids for ref in remaining):
                            candidate = copy.deepcopy(obj)
                            candidate["metadata"]["ownerReferences"] = remaining
                            self._finish_update(
                                target, key, obj, candidate, manager="kube-controller-manager"
                            )
                        elif not obj["metadata"].get("deletionTimestamp"):
                            self._delete_key(target, key, propagation="Background")
                while self._gc_dangling:
                    progressed = self._collect_dangling(self._gc_dangling.popleft()) or progressed
                for ns_key, namespace in self._live(NAMESPACES):
                    if not namespace["metadata"].get("deletionTimestamp"):
                        continue
                    contents = [(key, obj) for key, obj in self._live() if key[1] == ns_key[2]]
                    for key, obj in contents:
                        if not obj["metadata"].get("deletionTimestamp"):
                            self._delete_key(self._target_of(key[0]), key, propagation="Background")
                            progressed = True
                    emptied = not any(self._current(key) is not None for key, _ in contents)
                    if emptied and not namespace["metadata"].get("finalizers"):
                        self._remove(ns_key, namespace)
                        progressed = True

    def _collect_dangling(self, key: ObjectKey) -> bool:
        """Like the real GC: all owners gone -> delete; some gone -> drop those references."""
        obj = self._current(key)
        if obj is None or obj["metadata"].get("deletionTimestamp"):
            return False
        refs = obj["metadata"].get("ownerReferences") or []
        solid = [ref for ref in refs if ref.get("uid") in self._uids]
        if len(solid) == len(refs):
            return False
        target = self._target_of(key[0])
        if solid:
            candidate = copy.deepcopy(obj)
            candidate["metadata"]["ownerReferences"] = solid
            self._finish_update(target, key, obj, candidate, manager="kube-controller-manager")
        else:
            self._delete_key(target, key, propagation="Background")
        return True

    # --- Watching ---------------------------------------------------------------------------------

    def _serve_watch_stream(self, target: _Target, api: ApiPath, params: Mapping[str, str]) -> Response:
        fields = FieldSelector.parse(params.get("fieldSelector"), self._field_selectors(target))
        names = ({api.name} if api.name else set()) | fields.names
        query = _WatchQuery(
            target=target,
            namespace=api.namespace,
            names=frozenset(names) if names else None,
            labels=LabelSelector.parse(params.get("labelSelector")),
            fields=fields,
        )
        since = params.get("resourceVersion") or ""
        if since and not since.isdigit():
            raise bad_request(f"invalid resource version: {since!r}")
        try:
            timeout = float(params["timeoutSeconds"]) if params.get("timeoutSeconds") else None
        except ValueError:
            raise bad_request(f"invalid timeoutSeconds: {params['timeoutSeconds']!r}") from None
        stream = self._watch_events(
            query,
            since=since,
            seconds=timeout,
            initial_events=(params.get("sendInitialEvents") or "").lower() == "true",
            bookmarks=(params.get("allowWatchBookmarks") or "").lower() == "true",
        )
        return Response(status=200, headers={"Content-Type": "application/json"}, payload=stream)

    async def _watch_events(
        self, query: _WatchQuery, *, since: str, seconds: float | None, initial_events: bool, bookmarks: bool
    ) -> AsyncIterator[Any]:
        loop = asyncio.get_running_loop()
        watcher = _Watcher(loop)
        deadline = loop.time() + seconds if seconds else None
        with self._state_lock:
            self._watchers.add(watcher)
            initial: list[dict[str, Any]] = []
            if initial_events or since in ("", "0"):  # "most recent": synthetic ADDED for what exists
                existing = sorted(
                    self._live(query.target.resource), key=lambda pair: (pair[0][1] or "", pair[0][2])
                )
                initial = [
                    {"type": "ADDED", "object": obj}
                    for key, obj in existing
                    if (query.namespace is None or key[1] == query.namespace)
                    and (query.names is None or key[2] in query.names)
                    and query.matches(obj)
                ]
                cursor = self._rv
            else:
                cursor = int(since)
        try:
            yield b""  # send the headers now: a quiet watch must still connect
            for added in initial:
                yield added
            if initial_events:
                yield _bookmark(query.target, cursor, initial_events_end=True)
            next_bookmark = (
                loop.time() + self.bookmark_interval if bookmarks and self.bookmark_interval else None
            )
            while not self._closing:
                watcher.wakeup.clear()
                with self._state_lock:
                    if cursor < self._compacted_rv:
                        expired = ApiError(
                            410, "Expired", f"too old resource version: {cursor} ({self._compacted_rv})"
                        )
                        events = None
                    else:
                        events = list(_events_after(self._events, cursor))
                if events is None:
                    yield {"type": "ERROR", "object": expired.to_status()}
                    return
                for event in events:
                    cursor = event.rv
                    if (translated := query.translate(event)) is not None:
                        yield translated
                now = loop.time()
                if deadline is not None and now >= deadline:
                    return  # timeoutSeconds: end the stream cleanly; the client re-lists or resumes
                if next_bookmark is not None and now >= next_bookmark:
                    yield _bookmark(query.target, cursor)
                    next_bookmark = now + (self.bookmark_interval or 0)
                    continue
                waits = [moment - now for moment in (deadline, next_bookmark) if moment is not None]
                try:
                    async with asyncio.timeout(min(waits) if waits else None):
                        await watcher.wakeup.wait()
                except TimeoutError:
                    pass
        finally:
            with self._state_lock:
                self._watchers.discard(watcher)


# --- Helpers --------------------------------------------------------------------------------------


_TOP_ORDER = ("apiVersion", "kind", "metadata")
_METADATA_ORDER = (
    "name",
    "generateName",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "managedFields",
)


def _canonical(obj: dict[str, Any]) -> dict[str, Any]:
    """The key order of a real API server's JSON, so that dumps read naturally."""
    meta = obj["metadata"]
    ordered_meta = {k: meta[k] for k in _METADATA_ORDER if k in meta} | meta
    ordered = {k: obj[k] for k in _TOP_ORDER if k in obj} | obj
    ordered["metadata"] = ordered_meta
    return ordered


def _events_after(events: collections.deque[_Event], cursor: int) -> Iterator[_Event]:
    newer: list[_Event] = []
    for event in reversed(events):  # only the tail is new: O(new events), not O(history)
        if event.rv <= cursor:
            break
        newer.append(event)
    return reversed(newer)


def _bookmark(target: _Target, rv: int, *, initial_events_end: bool = False) -> dict[str, Any]:
    metadata: dict[str, Any] = {"resourceVersion": str(rv)}
    if initial_events_end:
        metadata["annotations"] = {"k8s.io/initial-events-end": "true"}
    return {
        "type": "BOOKMARK",
        "object": {"kind": target.kind, "apiVersion": target.api_version, "metadata": metadata},
    }


def _header(headers: Mapping[str, str], name: str) -> str | None:
    lowered = name.lower()
    return next((value for key, value in headers.items() if key.lower() == lowered), None)


def _content_type(headers: Mapping[str, str]) -> str:
    return (_header(headers, "Content-Type") or "").split(";", 1)[0].strip().lower()


def _manager_from_user_agent(headers: Mapping[str, str]) -> str:
    # The API server's default field manager: the User-Agent up to the first "/".
    return (_header(headers, "User-Agent") or "").split("/", 1)[0].strip() or "unknown"


def _decode(body: bytes, content_type: str) -> Any:
    if not body.strip():
        return None
    try:
        if "yaml" in content_type:
            # Clients send apply patches as JSON (valid YAML) nearly always: try the fast parser.
            try:
                return json.loads(body)
            except ValueError:
                return yaml.load(body, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # noqa: S506
        return json.loads(body)
    except (ValueError, yaml.YAMLError) as e:
        raise bad_request(
            f"the body of the request could not be decoded as {content_type or 'JSON'}: {e}"
        ) from e


def _encode_continue(position: tuple[str, str]) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(position)).encode()).decode()


def _decode_continue(token: str) -> tuple[str, str]:
    try:
        namespace, name = json.loads(base64.urlsafe_b64decode(token.encode()))
    except (ValueError, TypeError, binascii.Error) as e:
        raise bad_request(f"continue key is not valid: {e}") from e
    return str(namespace), str(name)


def _guess_kind(plural: str) -> str:
    singular = plural[:-2] if plural.endswith("ses") else plural[:-1] if plural.endswith("s") else plural
    return singular[:1].upper() + singular[1:]


def _check_type(target: _Target, obj: Mapping[str, Any]) -> None:
    api_version, kind = obj.get("apiVersion"), obj.get("kind")
    if api_version not in (None, "", target.api_version):
        raise bad_request(
            f"the API version in the data ({api_version}) does not match "
            f"the expected API version ({target.api_version})"
        )
    if kind not in (None, "", target.kind):
        raise bad_request(f"the kind in the data ({kind}) does not match the expected kind ({target.kind})")


def _check_resource_version(target: _Target, old: Mapping[str, Any], rv: Any) -> None:
    if rv not in (None, "") and str(rv) != old["metadata"].get("resourceVersion"):
        raise conflict(
            f'Operation cannot be fulfilled on {target.qualified} "{old["metadata"]["name"]}": '
            "the object has been modified; please apply your changes to the latest version and try again",
            {"name": old["metadata"]["name"], "group": target.group, "kind": target.plural},
        )


def _validate_name(target: _Target, name: str) -> None:
    if target.plural in ("namespaces", "services"):
        if len(name) > 63 or not _DNS_LABEL_RE.match(name):
            raise invalid(
                f'metadata.name: Invalid value: "{name}": a lowercase RFC 1123 label must consist of '
                "lower case alphanumeric characters or '-', and must start and end with an alphanumeric"
            )
    elif len(name) > 253 or not _DNS_SUBDOMAIN_RE.match(name):
        raise invalid(
            f'metadata.name: Invalid value: "{name}": a lowercase RFC 1123 subdomain must consist of '
            "lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric"
        )


def _valid_qualified_name(key: str) -> bool:
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not _DNS_SUBDOMAIN_RE.match(prefix)):
        return False
    return 0 < len(name) <= 63 and bool(_QUALIFIED_NAME_RE.match(name))


def _validate(target: _Target, old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> None:
    """The admission checks that catch real operator bugs early."""
    meta = new["metadata"]
    for key, value in (meta.get("labels") or {}).items():
        if not _valid_qualified_name(str(key)):
            raise invalid(f'metadata.labels: Invalid value: "{key}": name part must be a qualified name')
        if not isinstance(value, str) or len(value) > 63 or (value and not _QUALIFIED_NAME_RE.match(value)):
            raise invalid(
                f'metadata.labels: Invalid value: "{value}": a valid label must be an empty string or '
                "consist of at most 63 alphanumeric characters, '-', '_' or '.'"
            )
    for key, value in (meta.get("annotations") or {}).items():
        if not _valid_qualified_name(str(key)) or not isinstance(value, str):
            raise invalid(
                f'metadata.annotations: Invalid value: "{key}": annotations must be string to string'
            )
    for ref in meta.get("ownerReferences") or []:
        missing = [field for field in ("apiVersion", "kind", "name", "uid") if not ref.get(field)]
        if missing:
            raise invalid(f"metadata.ownerReferences: Required value: {', '.join(missing)} must be set")
    if old is None:
        return
    if old["metadata"].get("deletionTimestamp"):
        added = set(meta.get("finalizers") or []) - set(old["metadata"].get("finalizers") or [])
        if added:
            raise invalid(
                "metadata.finalizers: Forbidden: no new finalizers can be added if the object is being "
                f"deleted, found new finalizers {sorted(added)!r}"
            )
    old_selector = (old.get("spec") or {}).get("selector")
    if target.resource == DEPLOYMENTS and old_selector != (new.get("spec") or {}).get("selector"):
        raise invalid("spec.selector: Invalid value: field is immutable")


def _spec_of(target: _Target, obj: Mapping[str, Any]) -> dict[str, Any]:
    # generation moves on changes outside metadata (and outside status, if it is a subresource).
    ignored = {"metadata", "status"} if target.has_status else {"metadata"}
    return {key: value for key, value in obj.items() if key not in ignored}


def _scope_for_apply(target: _Target, body: Mapping[str, Any], subresource: str) -> dict[str, Any]:
    config = copy.deepcopy(dict(body))
    if subresource == "status":
        meta = config.get("metadata") or {}
        identity = {k: meta[k] for k in ("name", "namespace") if k in meta}
        return {
            "apiVersion": config["apiVersion"],
            "kind": config["kind"],
            "metadata": identity,
            "status": config.get("status"),
        }
    if target.has_status:
        config.pop("status", None)
    return config


def _scale_of(obj: Mapping[str, Any]) -> dict[str, Any]:
    meta = obj["metadata"]
    selector = (obj.get("spec") or {}).get("selector")
    return {
        "apiVersion": "autoscaling/v1",
        "kind": "Scale",
        "metadata": {
            k: meta[k]
            for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
            if k in meta
        },
        "spec": {"replicas": (obj.get("spec") or {}).get("replicas", 1)},
        "status": {
            "replicas": (obj.get("status") or {}).get("replicas", 0),
            "selector": str(LabelSelector.from_dict(selector)) if isinstance(selector, Mapping) else "",
        },
    }


def _unscale(obj: Mapping[str, Any], scale: Mapping[str, Any]) -> dict[str, Any]:
    replicas = (scale.get("spec") or {}).get("replicas")
    if not isinstance(replicas, int) or replicas < 0:
        raise invalid(f"spec.replicas: Invalid value: {replicas!r}: must be a non-negative integer")
    candidate = copy.deepcopy(dict(obj))
    candidate.setdefault("spec", {})["replicas"] = replicas
    return candidate
