"""A small REST client for test beds: what a test, the kubelet stand-in or the demo asks of an API
server, independent of the operator's own client (so that a test never checks the operator with
the operator's code).

Paths come from discovery, as kubectl finds them: `apply(obj)` works for any kind the server serves,
custom resources included.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import urllib3

APPLY = "application/apply-patch+yaml"
MERGE = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"


class ApiError(Exception):
    def __init__(self, status: int, body: Mapping[str, Any]) -> None:
        self.status = status
        self.body = dict(body)
        self.reason = str(body.get("reason", ""))
        self.message = str(body.get("message", ""))
        super().__init__(f"{status} {self.reason}: {self.message}")


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
        connections: int = 8,
    ) -> None:
        self.url = url.rstrip("/")
        self._headers = {"Accept": "application/json"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        self._pool = urllib3.PoolManager(
            maxsize=connections,  # kept alive; more threads than this open and drop extra ones
            ca_certs=str(ca_file) if ca_file else None,
            cert_reqs="CERT_REQUIRED" if ca_file else "CERT_NONE",
            cert_file=str(cert_file) if cert_file else None,
            key_file=str(key_file) if key_file else None,
            timeout=urllib3.Timeout(connect=5.0, read=timeout),
            retries=False,
        )
        self._kinds: dict[
            tuple[str, str], tuple[str, bool]
        ] = {}  # (apiVersion, kind) -> (plural, namespaced)
        self._lock = threading.Lock()

    # --------------------------------------------------------------------------- transport

    def raw(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        query: Mapping[str, str] | None = None,
        content_type: str = "application/json",
        preload: bool = True,
        timeout: float | None = None,
    ) -> bytes:
        response = self._send(method, path, body, query, content_type, preload, timeout)
        return bytes(response.data)

    def _send(
        self,
        method: str,
        path: str,
        body: Any,
        query: Mapping[str, str] | None,
        content_type: str,
        preload: bool,
        timeout: float | None,
    ) -> urllib3.BaseHTTPResponse:
        headers = dict(self._headers)
        data = None
        if body is not None:
            headers["Content-Type"] = content_type
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
        url = self.url + path
        if query:
            url += "?" + urllib.parse.urlencode(dict(query))
        try:
            response = self._pool.request(
                method,
                url,
                body=data,
                headers=headers,
                preload_content=preload,
                timeout=urllib3.Timeout(connect=5.0, read=timeout) if timeout else None,
            )
        except urllib3.exceptions.HTTPError as error:
            raise OSError(f"{method} {path}: {error}") from error
        if response.status >= 400:
            if not preload:
                response.read()
            try:
                payload = json.loads(response.data or b"{}")
            except ValueError:
                payload = {"message": response.data.decode(errors="replace")[:500]}
            raise ApiError(response.status, payload if isinstance(payload, dict) else {})
        return response

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        query: Mapping[str, str] | None = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        data = self.raw(method, path, body, query=query, content_type=content_type)
        result: dict[str, Any] = json.loads(data or b"{}")
        return result

    # --------------------------------------------------------------------------- discovery

    def _discover(self, api_version: str) -> None:
        base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
        listing = self.request("GET", base)
        with self._lock:
            for resource in listing.get("resources", []):
                if "/" not in resource["name"]:
                    self._kinds[api_version, resource["kind"]] = (resource["name"], resource["namespaced"])

    def path(self, api_version: str, kind: str, namespace: str | None = None, name: str | None = None) -> str:
        """The REST path of a kind (a collection, or one object with `name`)."""
        if (api_version, kind) not in self._kinds:
            self._discover(api_version)  # again: a CRD created since the last look adds a kind
        try:
            plural, namespaced = self._kinds[api_version, kind]
        except KeyError:
            raise ApiError(
                404, {"reason": "NotFound", "message": f"{api_version} {kind} is not served"}
            ) from None
        base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
        if namespaced and namespace:
            base += f"/namespaces/{namespace}"
        base += f"/{plural}"
        return f"{base}/{name}" if name else base

    def path_of(self, obj: Mapping[str, Any]) -> str:
        meta = obj.get("metadata") or {}
        return self.path(str(obj["apiVersion"]), str(obj["kind"]), meta.get("namespace"), meta.get("name"))

    # ----------------------------------------------------------------------------- verbs

    def apply(
        self, obj: Mapping[str, Any], *, manager: str = "kubectl", force: bool = True, strict: bool = True
    ) -> dict[str, Any]:
        """`kubectl apply --server-side`: strict field validation, as kubectl asks for."""
        query = {"fieldManager": manager, "force": str(force).lower()}
        if strict:
            query["fieldValidation"] = "Strict"
        return self.request("PATCH", self.path_of(obj), dict(obj), query=query, content_type=APPLY)

    def create(self, path: str, body: Mapping[str, Any], *, strict: bool = True) -> dict[str, Any]:
        query = {"fieldValidation": "Strict"} if strict else None
        return self.request("POST", path, dict(body), query=query)

    def get(self, api_version: str, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        try:
            return self.request("GET", self.path(api_version, kind, namespace, name))
        except ApiError as error:
            if error.status == 404:
                return None
            raise

    def list(
        self, api_version: str, kind: str, namespace: str | None = None, selector: str = ""
    ) -> list[dict[str, Any]]:
        query = {"labelSelector": selector} if selector else None
        items: list[dict[str, Any]] = self.request(
            "GET", self.path(api_version, kind, namespace), query=query
        ).get("items", [])
        for item in items:
            item.setdefault("apiVersion", api_version)
            item.setdefault("kind", kind)
        return items

    def patch(
        self, api_version: str, kind: str, namespace: str | None, name: str, body: Any, *,
        content_type: str = MERGE, subresource: str = "",
    ) -> dict[str, Any]:  # fmt: skip
        path = self.path(api_version, kind, namespace, name) + (f"/{subresource}" if subresource else "")
        return self.request("PATCH", path, body, content_type=content_type)

    def delete(
        self,
        api_version: str,
        kind: str,
        namespace: str | None,
        name: str,
        *,
        propagation: str = "Background",
    ) -> bool:
        try:
            self.request(
                "DELETE",
                self.path(api_version, kind, namespace, name),
                {"propagationPolicy": propagation},
            )
        except ApiError as error:
            if error.status == 404:
                return False
            raise
        return True

    def watch(
        self, path: str, resource_version: str, *, selector: str = "", timeout_seconds: int = 30
    ) -> Iterator[dict[str, Any]]:
        """Watch events from `resource_version`; ends when the server closes the stream."""
        query = {
            "watch": "true",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(timeout_seconds),
        }
        if selector:
            query["labelSelector"] = selector
        response = self._send("GET", path, None, query, "", False, timeout_seconds + 10)
        try:
            for line in _lines(response):
                yield json.loads(line)
        finally:
            response.release_conn()

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
            # (re)initializing" for a moment after it, which would greet the first list.
            for doc in crds:
                spec = doc["spec"]
                version = next(v["name"] for v in spec["versions"] if v.get("served"))
                try:
                    self.request(
                        "GET",
                        f"/apis/{spec['group']}/{version}/{spec['names']['plural']}",
                        query={"limit": "1"},
                    )
                except ApiError as error:
                    if error.status == 429:
                        return False
                    raise
            return True

        self.wait_for(established, timeout=timeout, what="the CRDs to be established")
        self.wait_for(servable, timeout=timeout, what="the CRDs' storage to be ready")

    def close(self) -> None:
        self._pool.clear()


def _lines(response: urllib3.BaseHTTPResponse) -> Iterator[bytes]:
    buffer = b""
    for chunk in response.stream(4096):
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            if line.strip():
                yield line
