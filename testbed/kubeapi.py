"""The test bed's client of the API server, on lightkube: what a test, the kubelet stand-in, the demo
or the benchmark asks of it. Independent of the operator's client (the official `kubernetes`
package), so that a test never checks the operator with the operator's own code.

Objects are plain dicts, sent as given: every kind, built-in ones included, is a lightkube generic
resource found by discovery (as kubectl finds it), so a test's typo reaches the server and is
refused there rather than dropped by a typed model on the way.

Calls go through lightkube's generic request layer (`GenericSyncClient`), not its `Client`: the
`Client` has no `fieldValidation`, which `kubectl apply` sends as Strict and the tests rely on, and
its watch re-opens the stream forever, so a loop that must stop, or a test that reads a bounded
history, would never get control back. Here a watch ends when the server closes the stream.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx2
from lightkube.config.client_adapter import ConnectionParams
from lightkube.config.kubeconfig import KubeConfig
from lightkube.core.exceptions import ApiError as LightkubeError
from lightkube.core.generic_client import ALL_NS, GenericSyncClient
from lightkube.core.resource import ApiInfo, ResourceDef
from lightkube.generic_resource import GenericGlobalResource, GenericNamespacedResource, create_api_info

APPLY = "application/apply-patch+yaml"
MERGE = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"

Resource = type[GenericNamespacedResource] | type[GenericGlobalResource]


class ApiError(Exception):
    """The API server refused a request: its HTTP status and the Status object it answered."""

    def __init__(self, status: int, body: Mapping[str, Any]) -> None:
        self.status = status
        self.body = dict(body)
        self.reason = str(body.get("reason", ""))
        self.message = str(body.get("message", ""))
        super().__init__(f"{status} {self.reason}: {self.message}")


def _refusal(response: httpx2.Response) -> ApiError:
    try:
        payload = json.loads(response.read() or b"{}")
    except ValueError:
        payload = {"message": response.text[:500]}
    return ApiError(response.status_code, payload if isinstance(payload, dict) else {})


class KubeApi:
    def __init__(
        self,
        url: str,
        *,
        ca_file: Path | None = None,
        token: str | None = None,
        cert_file: Path | None = None,
        key_file: Path | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.url = url.rstrip("/")
        user: dict[str, str] = {}
        if token:
            user["token"] = token
        if cert_file and key_file:  # a client certificate: the audit log names its CN
            user["client-certificate"] = str(cert_file)
            user["client-key"] = str(key_file)
        cluster: dict[str, Any] = {"server": self.url}
        if ca_file:
            cluster["certificate-authority"] = str(ca_file)
        else:
            cluster["insecure-skip-tls-verify"] = True
        config = KubeConfig.from_dict(
            {
                "clusters": [{"name": "c", "cluster": cluster}],
                "users": [{"name": "u", "user": user}],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "c",
            }
        ).get()
        # One client for every thread: httpx's pool is thread-safe and keeps 20 connections alive.
        self._lk = GenericSyncClient(
            ConnectionParams(timeout=httpx2.Timeout(timeout, connect=5.0), trust_env=False), config
        )
        self._http: httpx2.Client = self._lk._client  # lightkube's, with the TLS and credentials above
        self._kinds: dict[tuple[str, str], Resource] = {}  # (apiVersion, kind) -> generic resource
        self._lock = threading.Lock()

    # --------------------------------------------------------------------------- transport

    def _send(
        self,
        method: str,
        res: Resource,
        *,
        name: str | None = None,
        namespace: str | None = None,
        obj: Any = None,
        params: Mapping[str, str | None] | None = None,
        content_type: str | None = None,
        body: Any = None,
    ) -> Any:
        headers = {"Content-Type": content_type} if content_type else None
        namespace = _everywhere(res, namespace) if method == "list" else namespace
        request = self._lk.prepare_request(
            method, res, obj=obj, name=name, namespace=namespace, params=dict(params or {}), headers=headers
        )
        if body is not None:  # a DELETE's options, which lightkube sends only as a query
            request.data = body
        try:
            response = self._lk.send(self._lk.build_adapter_request(request))
        except httpx2.HTTPError as error:
            raise OSError(f"{request.method} {request.url}: {error}") from error
        if response.status_code >= 400:
            raise _refusal(response)
        try:
            return self._lk.handle_response(method, response, request)
        except (LightkubeError, httpx2.HTTPError) as error:  # pragma: no cover -- status checked above
            raise OSError(str(error)) from error

    def get_path(self, path: str, params: Mapping[str, str] | None = None) -> bytes:
        """GET a path that is not a resource (`/readyz`, `/version`)."""
        try:
            response = self._http.get(path, params=dict(params or {}))
        except httpx2.HTTPError as error:
            raise OSError(f"GET {path}: {error}") from error
        if response.status_code >= 400:
            raise _refusal(response)
        return response.content

    # --------------------------------------------------------------------------- discovery

    def resource(self, api_version: str, kind: str) -> Resource:
        """The lightkube generic resource of a kind the server serves (discovered on first use)."""
        if (api_version, kind) not in self._kinds:
            self._discover(api_version)  # again: a CRD created since the last look adds a kind
        try:
            return self._kinds[api_version, kind]
        except KeyError:
            raise ApiError(
                404, {"reason": "NotFound", "message": f"{api_version} {kind} is not served"}
            ) from None

    def _discover(self, api_version: str) -> None:
        group, _, version = api_version.rpartition("/")
        listing = json.loads(self.get_path(f"/apis/{api_version}" if group else f"/api/{api_version}"))
        with self._lock:
            for entry in listing.get("resources", []):
                if "/" not in entry["name"] and (api_version, entry["kind"]) not in self._kinds:
                    self._kinds[api_version, entry["kind"]] = _generic(
                        group, version, entry["kind"], entry["name"], namespaced=entry["namespaced"]
                    )

    def _of(self, obj: Mapping[str, Any]) -> tuple[Resource, Any]:
        res = self.resource(str(obj["apiVersion"]), str(obj["kind"]))
        return res, res(**obj)

    # ----------------------------------------------------------------------------- verbs

    def apply(
        self,
        obj: Mapping[str, Any],
        *,
        manager: str = "kubectl",
        force: bool = True,
        strict: bool = True,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        """`kubectl apply --server-side`: strict field validation, as kubectl asks for."""
        res, body = self._of(obj)
        meta = obj.get("metadata") or {}
        params = {
            "fieldManager": manager,
            "force": str(force).lower(),
            "fieldValidation": "Strict" if strict else None,
            "dryRun": "All" if dry_run else None,
        }
        answer = self._send(
            "patch", res, name=meta.get("name"), namespace=meta.get("namespace"), obj=body,
            params=params, content_type=APPLY,
        )  # fmt: skip
        return dict(answer)

    def create(
        self,
        obj: Mapping[str, Any],
        *,
        namespace: str | None = None,
        manager: str | None = None,
        strict: bool = True,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        """POST; `namespace` for an object whose metadata names none."""
        res, body = self._of(obj)
        params = {
            "fieldManager": manager,
            "fieldValidation": "Strict" if strict else None,
            "dryRun": "All" if dry_run else None,
        }
        return dict(self._send("post", res, namespace=namespace, obj=body, params=params))

    def create_raw(self, api_version: str, kind: str, namespace: str | None, body: bytes) -> bytes:
        """POST a body exactly as given (JSON that `json` itself could not write); the answer, undecoded
        (`json` may not read it either)."""
        request = self._lk.prepare_request("list", self.resource(api_version, kind), namespace=namespace)
        try:
            response = self._http.post(
                request.url, content=body, headers={"Content-Type": "application/json"}
            )
        except httpx2.HTTPError as error:
            raise OSError(f"POST {request.url}: {error}") from error
        if response.status_code >= 400:
            raise _refusal(response)
        return response.content

    def create_subresource(
        self, api_version: str, kind: str, namespace: str | None, name: str, subresource: str,
        body: Mapping[str, Any],
    ) -> dict[str, Any]:  # fmt: skip
        """POST to an object's subresource: a Pod's `binding`, a ServiceAccount's `token`."""
        parent = self.resource(api_version, kind)
        sub = _subresource(parent, subresource, ["post"], str(body["apiVersion"]), str(body["kind"]))
        obj = sub({"metadata": {}, **body})  # lightkube reads the namespace from the metadata
        return dict(self._send("post", sub, name=name, namespace=namespace, obj=obj))

    def get(self, api_version: str, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        try:
            return dict(self._send("get", self.resource(api_version, kind), name=name, namespace=namespace))
        except ApiError as error:
            if error.status == 404:
                return None
            raise

    def listing(
        self, api_version: str, kind: str, namespace: str | None = None, selector: str = ""
    ) -> tuple[list[dict[str, Any]], str]:
        """The objects and the list's resourceVersion: a watch from it misses nothing after the list."""
        _, version, items = self._send(
            "list", self.resource(api_version, kind), namespace=namespace,
            params={"labelSelector": selector or None},
        )  # fmt: skip
        found = [dict(item) for item in items]
        for item in found:
            item.setdefault("apiVersion", api_version)
            item.setdefault("kind", kind)
        return found, str(version)

    def list(
        self, api_version: str, kind: str, namespace: str | None = None, selector: str = ""
    ) -> list[dict[str, Any]]:
        return self.listing(api_version, kind, namespace, selector)[0]

    def resource_version(self, api_version: str, kind: str, namespace: str | None = None) -> str:
        """The collection's resourceVersion now: a watch from it replays every later change."""
        return self.listing(api_version, kind, namespace)[1]

    def patch(
        self, api_version: str, kind: str, namespace: str | None, name: str, body: Any, *,
        content_type: str = MERGE, subresource: str = "", manager: str | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        res = self.resource(api_version, kind)
        if subresource:
            res = _subresource(res, subresource, ["patch"], api_version, kind)
        answer = self._send(
            "patch", res, name=name, namespace=namespace, obj=body, content_type=content_type,
            params={"fieldManager": manager},
        )  # fmt: skip
        return dict(answer)

    def delete(
        self,
        api_version: str,
        kind: str,
        namespace: str | None,
        name: str,
        *,
        propagation: str = "Background",
        grace_period: int | None = None,
        uid: str | None = None,
    ) -> bool:
        """Delete; False if there was nothing to delete. `uid`: only that object, not a namesake."""
        options: dict[str, Any] = {"propagationPolicy": propagation}
        if grace_period is not None:
            options["gracePeriodSeconds"] = grace_period
        if uid is not None:
            options["preconditions"] = {"uid": uid}
        try:
            self._send(
                "delete", self.resource(api_version, kind), name=name, namespace=namespace, body=options
            )
        except ApiError as error:
            if error.status == 404:
                return False
            raise
        return True

    def watch(
        self,
        api_version: str,
        kind: str,
        namespace: str | None,
        resource_version: str,
        *,
        selector: str = "",
        timeout_seconds: int = 30,
    ) -> Iterator[dict[str, Any]]:
        """Watch events (`{"type", "object"}`) from `resource_version`; ends when the server closes
        the stream, after `timeout_seconds` at the latest. An expired version is an ERROR event."""
        params = {
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(timeout_seconds),
            "labelSelector": selector or None,
        }
        res = self.resource(api_version, kind)
        request = self._lk.prepare_request(
            "list", res, namespace=_everywhere(res, namespace), watch=True, params=params
        )
        request.timeout = httpx2.Timeout(5.0, read=timeout_seconds + 10)
        try:
            response = self._lk.send(self._lk.build_adapter_request(request), stream=True)
        except httpx2.HTTPError as error:
            raise OSError(f"watch {request.url}: {error}") from error
        try:
            if response.status_code >= 400:
                raise _refusal(response)
            for line in response.iter_lines():
                if line.strip():
                    yield json.loads(line)
        except httpx2.HTTPError as error:
            raise OSError(f"watch {request.url}: {error}") from error
        finally:
            response.close()

    # --------------------------------------------------------------------------- helpers

    def wait_for(
        self,
        predicate: Callable[[], Any],
        timeout: float = 30.0,
        what: str = "a condition",
        interval: float = 0.1,
    ) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
            time.sleep(interval)

    def install_crds(self, docs: Iterable[Mapping[str, Any]], timeout: float = 60.0) -> None:
        """Apply every CustomResourceDefinition in `docs`, then wait until each one serves."""
        crds = [doc for doc in docs if doc.get("kind") == "CustomResourceDefinition"]
        for doc in crds:
            self.apply(doc)

        def established() -> bool:
            for doc in crds:
                crd = self.get(
                    "apiextensions.k8s.io/v1", "CustomResourceDefinition", None, doc["metadata"]["name"]
                )
                # A CRD's status may briefly read `conditions: null`.
                conditions = {
                    c["type"]: c["status"] for c in ((crd or {}).get("status") or {}).get("conditions") or []
                }
                if conditions.get("Established") != "True":
                    return False
            return True

        def servable() -> bool:
            # Established is not the end: a new resource's storage answers 429 "storage is
            # (re)initializing" for a moment after it, which would greet the first list. Discovery
            # may lag it too (the kind is not served yet: 404).
            for doc in crds:
                spec = doc["spec"]
                version = next(v["name"] for v in spec["versions"] if v.get("served"))
                try:
                    self.get_path(
                        f"/apis/{spec['group']}/{version}/{spec['names']['plural']}", {"limit": "1"}
                    )
                except ApiError as error:
                    if error.status == 429:
                        return False
                    raise
            return True

        self.wait_for(established, timeout=timeout, what="the CRDs to be established")
        self.wait_for(servable, timeout=timeout, what="the CRDs' storage to be ready")

    def close(self) -> None:
        self._http.close()


def _everywhere(res: Resource, namespace: str | None) -> str | None:
    """A namespaced kind without a namespace: every namespace (lightkube would take "default")."""
    return ALL_NS if namespace is None and issubclass(res, GenericNamespacedResource) else namespace


def _generic(group: str, version: str, kind: str, plural: str, *, namespaced: bool) -> Resource:
    """A lightkube generic resource, as `create_namespaced_resource` makes one but kept out of
    lightkube's process-wide registry: that registry cannot hold a core-group kind twice, and a kind
    may be discovered again (by another client, or after a CRD changed)."""
    base = GenericNamespacedResource if namespaced else GenericGlobalResource
    made: Resource = type(kind, (base,), {"_api_info": create_api_info(group, version, kind, plural)})
    return made


def _subresource(parent: Resource, action: str, verbs: list[str], api_version: str, kind: str) -> Any:
    """A subresource of `parent` (`status`, `binding`, `token`) whose body is `api_version` `kind`."""
    info = parent._api_info
    group, _, version = api_version.rpartition("/")
    return type(
        f"{info.resource.kind}{action.capitalize()}",
        (parent.__mro__[1],),  # the generic base: namespaced or not, as the parent
        {
            "_api_info": ApiInfo(
                resource=ResourceDef(group, version, kind),
                parent=info.resource,
                plural=info.plural,
                verbs=verbs,
                action=action,
            )
        },
    )
