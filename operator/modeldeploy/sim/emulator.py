"""
``ClusterEmulator``: kmock's ``KubernetesEmulator`` with what ``modeldeploy demo`` needs of an API
server when the real control plane's binaries are missing -- the demo's fallback, nothing else.
The test suite, the benchmark and the RBAC proof run on the real kube-apiserver.

kmock stores objects as plain dicts and merges every write into them. This subclass keeps kmock's
object store, discovery and serving, and replaces the object semantics with what the operator
(kopf and its own client) and the demo use: metadata (uid, resourceVersion, generation), the
status subresource, merge patch, JSON patch and server-side apply with managed fields, optimistic
concurrency, label selectors, deletion (finalizers, but no garbage collector), and watches with
resource versions, timeouts and 410 Gone. Nothing is validated: the real API server does that.

All state changes are synchronous and guarded by one lock, so the synchronous helpers
(``put_object``, ``mark_deployment_ready``) are safe from other threads while a loop serves HTTP.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import copy
import dataclasses
import datetime
import json
import secrets
import threading
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
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
from modeldeploy.sim.resources import BUILTIN_RESOURCES, DEFAULT_VERBS
from modeldeploy.sim.selectors import LabelSelector

ObjectKey = tuple[kmock.resource, str | None, str]  # (resource, namespace or None, name)

MERGE_PATCH = "application/merge-patch+json"
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
_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # the API server's generateName alphabet


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


@dataclasses.dataclass(frozen=True)
class _WatchQuery:
    target: _Target
    namespace: str | None
    names: frozenset[str] | None
    labels: LabelSelector

    def matches(self, obj: Mapping[str, Any]) -> bool:
        return self.labels.matches((obj.get("metadata") or {}).get("labels"))

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
    The API server of the demo's fallback. Serve it with ``EmulatorThread``; declare resources
    with ``declare()`` or ``declare_builtin_resources()`` first: undeclared ones answer 404.
    """

    watch_history: int = 10_000  # watch events kept for resuming; older resourceVersions get 410 Gone

    _state_lock: threading.RLock = attrs.field(factory=threading.RLock, init=False)
    _rv: int = attrs.field(default=0, init=False)
    _events: collections.deque[_Event] = attrs.field(factory=collections.deque, init=False)
    _compacted_rv: int = attrs.field(default=0, init=False)
    _watchers: set[_Watcher] = attrs.field(factory=set, init=False)
    _closing: bool = attrs.field(default=False, init=False)

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

    # --- Direct access for tests and the demo (no HTTP) -----------------------------------------

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
            # Hold only the ones in flight.
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
        # Skip KubernetesEmulator._handle(): its plain-dict writes are replaced by _serve_resource().
        return await kmock.RawHandler._handle(self, request)

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
                return self._serve_watch_stream(target, api, request.params)
            with self._state_lock:
                code, payload = self._dispatch(target, api, verb, request)
            return Response(status=code, payload=payload)
        except ApiError as e:
            return Response(status=e.code, payload=e.to_status())

    def _dispatch(
        self, target: _Target, api: ApiPath, verb: str | None, request: kmock.Request
    ) -> tuple[int, Any]:
        params = request.params
        manager = params.get("fieldManager") or _manager_from_user_agent(request.headers)
        key: ObjectKey = (target.resource, api.namespace, api.name or "")
        content_type = _content_type(request.headers)
        if verb == "list":
            return 200, self._list(target, api.namespace, params)
        if verb == "get":
            return 200, self._require(target, key)
        if verb == "create":
            if api.name is not None or (target.namespaced and api.namespace is None):
                raise ApiError(
                    405, "MethodNotAllowed", "the server does not allow this method on the requested resource"
                )
            body = _decode(request.body, content_type)
            return 201, self._create(target, api.namespace, body, manager=manager)
        if verb == "patch":
            body = _decode(request.body, content_type)
            return self._patch(target, api, content_type, body, params, manager=manager)
        if verb == "delete":
            return 200, self._delete(target, key)
        raise ApiError(405, "MethodNotAllowed", f"the demo's emulator does not serve {verb}")

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
        if api.subresource not in (None, "status"):
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
        # No pagination: a server may answer a `limit` with the whole list, and kopf asks none.
        labels = LabelSelector.parse(params.get("labelSelector"))
        # metadata.name only: the operator reads one child by name so (KubeClient.find).
        fields = str(params.get("fieldSelector") or "")
        named = fields.removeprefix("metadata.name=") if fields.startswith("metadata.name=") else None
        if fields and (named is None or "," in named):
            _no_field_selector(params)
        items = sorted(
            (
                (key, obj)
                for key, obj in self._live(target.resource)
                if (namespace is None or key[1] == namespace)
                and (named is None or key[2] == named)
                and labels.matches(obj["metadata"].get("labels"))
            ),
            key=lambda pair: (pair[0][1] or "", pair[0][2]),
        )
        return {
            "apiVersion": target.api_version,
            "kind": f"{target.kind}List",
            "metadata": {"resourceVersion": str(self._rv)},
            "items": [obj for _, obj in items],
        }

    # --- Writing ----------------------------------------------------------------------------------

    def _now(self) -> str:
        return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    def _create(
        self,
        target: _Target,
        namespace: str | None,
        body: Any,
        *,
        manager: str,
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
        if entries is None:
            entries = ssa.track_update([], {}, obj, manager=manager, api_version=target.api_version)
        if target.resource == NAMESPACES:  # server-side defaulting: owned by nobody
            obj.setdefault("status", {})["phase"] = "Active"
        if rendered := ssa.render_managed_fields(ssa.stamp_times([], entries, self._now())):
            meta["managedFields"] = rendered
        return self._commit(key, None, obj)

    def _generate_name(self, target: _Target, namespace: str | None, prefix: str) -> str:
        while True:
            name = prefix + "".join(secrets.choice(_NAME_ALPHABET) for _ in range(5))
            if self._current((target.resource, namespace, name)) is None:
                return name

    def _patch(
        self,
        target: _Target,
        api: ApiPath,
        content_type: str,
        body: Any,
        params: Mapping[str, str],
        *,
        manager: str,
    ) -> tuple[int, dict[str, Any]]:
        if content_type == APPLY_PATCH:
            return self._apply(target, api, body, params)
        key: ObjectKey = (target.resource, api.namespace, api.name or "")
        old = self._require(target, key)
        if content_type == MERGE_PATCH:
            if not isinstance(body, Mapping):
                raise bad_request("a merge patch must be a JSON object")
            patched = patches.merge_patch(old, body)
        elif content_type == JSON_PATCH:  # kopf's, for finalizers (the operator adds none)
            patched = patches.json_patch(old, body)
        else:
            raise ApiError(
                415,
                "UnsupportedMediaType",
                f"the demo's emulator accepts {MERGE_PATCH}, {JSON_PATCH} and {APPLY_PATCH}",
            )
        _check_resource_version(target, old, (patched.get("metadata") or {}).get("resourceVersion"))
        result = self._finish_update(target, key, old, patched, subresource=api.subresource, manager=manager)
        return 200, result

    def _apply(
        self, target: _Target, api: ApiPath, body: Any, params: Mapping[str, str]
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
            return 201, self._create(target, api.namespace, merged, manager=manager, entries=entries)
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
        entries: list[ssa.ManagedEntry] | None = None,
        keep_status: bool = False,
    ) -> dict[str, Any]:
        """The common tail of every update: system metadata, status rules, generation, ownership, no-op."""
        new = copy.deepcopy(dict(candidate))
        if not isinstance(new.get("metadata") or {}, dict):
            raise bad_request("metadata must be an object")
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
        if new == old:
            return old  # a no-op write stores nothing and notifies nobody
        new = self._commit(key, old, new)
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            return self._remove(key, new)
        return new

    def _commit(self, key: ObjectKey, old: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, Any]:
        self._rv += 1
        new["metadata"]["resourceVersion"] = str(self._rv)
        new = _canonical(new)
        if key in self._objects:
            self._objects[key].history[-1] = new  # only the latest version: no history kept
        else:
            self._objects[key] = new
        self._emit("ADDED" if old is None else "MODIFIED", key, new, old)
        return new

    def _emit(self, kind: str, key: ObjectKey, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
        if self.watch_history and len(self._events) >= self.watch_history:
            self._compacted_rv = self._events.popleft().rv
        self._events.append(_Event(self._rv, key[0], key[1], key[2], kind, obj, old))
        for watcher in list(self._watchers):
            watcher.notify()

    # --- Deleting ---------------------------------------------------------------------------------

    def _delete(self, target: _Target, key: ObjectKey) -> dict[str, Any]:
        """Delete now, or mark for deletion while finalizers hold it. No garbage collector: the demo
        deletes nothing that owns anything."""
        obj = self._require(target, key)
        meta = obj["metadata"]
        if meta.get("deletionTimestamp"):
            return obj
        if meta.get("finalizers"):
            new = copy.deepcopy(obj)
            new["metadata"].update(deletionTimestamp=self._now(), deletionGracePeriodSeconds=0)
            return self._commit(key, obj, new)  # still there: the API answers with the object
        self._remove(key, obj)
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Success",
            "details": {"name": key[2], "group": target.group, "kind": target.plural, "uid": meta["uid"]},
        }

    def _remove(self, key: ObjectKey, obj: dict[str, Any]) -> dict[str, Any]:
        self._rv += 1
        final = {**obj, "metadata": {**obj["metadata"], "resourceVersion": str(self._rv)}}
        del self._objects[key]
        self._emit("DELETED", key, final, obj)
        return final

    # --- Watching ---------------------------------------------------------------------------------

    def _serve_watch_stream(self, target: _Target, api: ApiPath, params: Mapping[str, str]) -> Response:
        _no_field_selector(params)
        query = _WatchQuery(
            target=target,
            namespace=api.namespace,
            names=frozenset({api.name}) if api.name else None,
            labels=LabelSelector.parse(params.get("labelSelector")),
        )
        since = params.get("resourceVersion") or ""
        if since and not since.isdigit():
            raise bad_request(f"invalid resource version: {since!r}")
        try:
            timeout = float(params["timeoutSeconds"]) if params.get("timeoutSeconds") else None
        except ValueError:
            raise bad_request(f"invalid timeoutSeconds: {params['timeoutSeconds']!r}") from None
        # No BOOKMARK events (allowed: a client asks for them, a server may send them) and no
        # sendInitialEvents: kopf lists first, then watches from the list's resourceVersion.
        stream = self._watch_events(query, since=since, seconds=timeout)
        return Response(status=200, headers={"Content-Type": "application/json"}, payload=stream)

    async def _watch_events(
        self, query: _WatchQuery, *, since: str, seconds: float | None
    ) -> AsyncIterator[Any]:
        loop = asyncio.get_running_loop()
        watcher = _Watcher(loop)
        deadline = loop.time() + seconds if seconds else None
        with self._state_lock:
            self._watchers.add(watcher)
            initial: list[dict[str, Any]] = []
            if since in ("", "0"):  # "most recent": synthetic ADDED for what exists
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
                try:
                    async with asyncio.timeout(deadline - now if deadline is not None else None):
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


def _no_field_selector(params: Mapping[str, str]) -> None:
    if params.get("fieldSelector"):
        raise bad_request("the demo's emulator does not filter by fieldSelector")


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
