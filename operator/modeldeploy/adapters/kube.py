"""The only code that talks to the Kubernetes API.

A thin layer over the official client's ApiClient: objects stay plain dicts (the renderer's
output), writes are server-side applies under one field manager, and every failure surfaces as
KubeError so that the shell above never imports `kubernetes`.
"""

from __future__ import annotations

import datetime
import email.utils
import json
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import kubernetes
import urllib3
import yaml
from kubernetes.client import ApiClient, Configuration
from kubernetes.client.exceptions import ApiException

from modeldeploy.render.kinds import CHILD_KINDS, Kind, child_kind
from modeldeploy.render.kinds import CRD as CRD  # re-exported: the CLI reads and installs it
from modeldeploy.render.kinds import MODEL_DEPLOYMENT as MODEL_DEPLOYMENT

FIELD_MANAGER = "modeldeploy"
log = logging.getLogger("modeldeploy.kube")


# Every kind the operator reads or writes: its children (one table, render/kinds.py), its own
# resource, the CRDs that say which optional kinds are served, and the leader Lease.
KINDS: dict[tuple[str, str], Kind] = {
    (k.api_version, k.kind): k
    for k in (
        *(child.kind for child in CHILD_KINDS),
        MODEL_DEPLOYMENT,
        CRD,
        Kind("coordination.k8s.io/v1", "Lease", "leases"),
        Kind("v1", "ConfigMap", "configmaps"),  # a gate's golden set, read by name; never a child
    )
}
LEASE = KINDS[("coordination.k8s.io/v1", "Lease")]


def kind_of(obj: Mapping[str, Any]) -> Kind:
    try:
        return KINDS[(str(obj["apiVersion"]), str(obj["kind"]))]
    except KeyError:
        raise KubeError(
            0, "UnknownKind", f"no API mapping for {obj.get('apiVersion')}/{obj.get('kind')}"
        ) from None


class KubeError(Exception):
    """An API failure, with the server's reason and message (never the request body)."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def conflict(self) -> bool:
        return self.status == 409


def _error(exc: ApiException) -> KubeError:
    status = int(exc.status or 0)
    try:
        payload = json.loads(exc.body or "{}")
        return KubeError(status, str(payload.get("reason") or exc.reason), str(payload.get("message") or ""))
    except (ValueError, AttributeError):
        return KubeError(status, str(exc.reason), "")


# What reading a kubeconfig raises on bad input; RecursionError too, from the client's YAML loader.
CONFIG_ERRORS = (kubernetes.config.ConfigException, OSError, ValueError, yaml.YAMLError, RecursionError)


def configuration(*, config_file: str | None = None, context: str | None = None) -> Configuration:
    """In-cluster credentials, else the user's kubeconfig
    (`config_file`, else $KUBECONFIG, else ~/.kube/config; `context`, else its current one). A
    kubeconfig or context asked for by name wins over in-cluster configuration, as with kubectl.

    In a pod, the client re-reads the service-account token file as the kubelet rotates it."""
    config = Configuration()
    try:
        if config_file or context:
            raise kubernetes.config.ConfigException("a kubeconfig was named")
        kubernetes.config.load_incluster_config(client_configuration=config)
    except kubernetes.config.ConfigException:
        # $KUBECONFIG read now: the client reads it only once, when it is first imported.
        path = config_file or os.environ.get("KUBECONFIG") or None
        try:
            kubernetes.config.load_kube_config(config_file=path, context=context, client_configuration=config)
        except CONFIG_ERRORS as error:
            named = path or "~/.kube/config"
            text = "nested too deeply to read" if isinstance(error, RecursionError) else str(error)
            detail = " ".join(text.split("; use sys.")[0].split())  # one line: YAML errors span several
            message = f"no in-cluster configuration and no usable kubeconfig ({named}): {detail}"
            raise KubeError(0, "NoConfiguration", message) from None
    return config


@dataclass(frozen=True)
class Connection:
    """The credentials of a Configuration, for a second client (kopf) to log in exactly as ours does."""

    server: str
    ca_path: str | None
    insecure: bool
    token: str | None
    certificate_path: str | None
    private_key_path: str | None


def connection(config: Configuration) -> Connection:
    # The header comes through the client's own hook, which refreshes a rotated token first.
    header = config.get_api_key_with_prefix("BearerToken") or config.get_api_key_with_prefix("authorization")
    token = header.split(" ", 1)[-1] if header else None
    return Connection(
        server=str(config.host),
        ca_path=config.ssl_ca_cert or None,
        insecure=not config.verify_ssl,
        token=token or None,
        certificate_path=config.cert_file or None,
        private_key_path=config.key_file or None,
    )


# Worth another try: throttled (429), or the server or a proxy in front of it failing for a moment.
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class Backoff:
    """When to try a request again: exponential, with jitter, never sooner than Retry-After."""

    tries: int = 6  # in all, the first included
    base: float = 0.2
    factor: float = 2.0
    cap: float = 5.0
    retry_after_cap: float = 30.0  # a server asking for longer is not waited on within one pass
    budget: float = 30.0  # waited in all for one request, so that a throttled pass still ends

    def delay(self, retry: int, retry_after: float | None, jitter: float) -> float:
        """Seconds to wait before retry number `retry` (1 = the first); `jitter` is in [0, 1).

        Equal jitter: half the step is fixed, half random, so that the passes a throttled server
        turned away together do not all come back at the same moment."""
        step = min(self.cap, self.base * self.factor ** (retry - 1))
        wait = step / 2 + step / 2 * jitter
        if retry_after is not None:
            wait = max(wait, min(retry_after, self.retry_after_cap))
        return wait


class TokenBucket:
    """The client's own rate limit, as client-go's: `qps` requests a second on average, up to
    `burst` at once. A caller over the limit reserves its token and sleeps until it is due, so
    waiting callers go in order and never spin; qps <= 0 turns the limit off."""

    def __init__(
        self,
        qps: float,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.qps = qps
        self.burst = max(1, burst)
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._tokens = float(self.burst)
        self._last = clock()
        self.throttled_seconds = 0.0  # waited in all, for the operator's metrics

    def reserve(self) -> float:
        """Take a token; the seconds to wait before using it."""
        if self.qps <= 0:
            return 0.0
        with self._lock:
            now = self._clock()
            self._tokens = min(float(self.burst), self._tokens + (now - self._last) * self.qps)
            self._last = now
            self._tokens -= 1.0
            wait = 0.0 if self._tokens >= 0 else -self._tokens / self.qps
            self.throttled_seconds += wait
            return wait

    def acquire(self) -> None:
        wait = self.reserve()
        if wait > 0:
            self._sleep(wait)


def retry_after(value: str | None, now: float | None = None) -> float | None:
    """Retry-After in seconds: a number of seconds, or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


SERVICE_ACCOUNT_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


def pod_namespace() -> str | None:
    """The namespace of the pod this runs in; None outside a pod."""
    try:
        with open(SERVICE_ACCOUNT_NAMESPACE) as handle:
            return handle.read().strip() or None
    except OSError:
        return None


def default_namespace(config_file: str | None = None, context: str | None = None) -> str:
    """The namespace of the kubeconfig context (`context`, else the current one), as kubectl uses
    it; in a pod with no kubeconfig named, the pod's own."""
    if not (config_file or context) and (namespace := pod_namespace()):
        return namespace
    try:
        path = config_file or os.environ.get("KUBECONFIG") or None
        contexts, current = kubernetes.config.list_kube_config_contexts(config_file=path)
    except CONFIG_ERRORS:
        return "default"  # configuration() names the problem when the client is made
    if context:
        current = next((c for c in contexts or [] if c.get("name") == context), None)
    return str((current or {}).get("context", {}).get("namespace") or "default")


def unreachable(server: str, exc: Exception) -> KubeError:
    """A failure with no answer from the server, named with the server and the innermost cause
    (`connection refused`), not urllib3's wrapper chain."""
    cause: BaseException = exc
    for _ in range(8):  # MaxRetryError -> NewConnectionError -> ConnectionRefusedError, or so
        inner = getattr(cause, "reason", None) or cause.__cause__ or cause.__context__
        if not isinstance(inner, BaseException) or inner is cause:
            break
        cause = inner
    detail = (cause.strerror if isinstance(cause, OSError) else None) or str(cause).split(": ")[-1]
    return KubeError(0, type(exc).__name__, f"cannot reach the API server {server}: {detail}")


# Called right before each attempt of a write (retries included, after any wait): raises to refuse
# the write (this replica may no longer lead), else returns the seconds the attempt may take at
# most (the time left before another replica may lead), or None for no bound.
WriteGuard = Callable[[], float | None]


def bounded(timeout: tuple[float, float], seconds: float | None) -> tuple[float, float] | float:
    """The request timeout for one attempt that must be over within `seconds`: a total (urllib3's
    `Timeout(total=)`: connecting and every read share it) when that is shorter than the usual
    (connect, read) pair allows, else the pair."""
    if seconds is None or seconds >= sum(timeout):
        return timeout
    return max(0.001, seconds)


class KubeClient:
    """Synchronous and thread-safe: kopf runs our sync handlers in its thread pool."""

    def __init__(
        self,
        config: Configuration,
        field_manager: str = FIELD_MANAGER,
        *,
        backoff: Backoff = Backoff(),
        timeout: tuple[float, float] = (5.0, 30.0),
        sleep: Callable[[float], None] = time.sleep,
        limiter: TokenBucket | None = None,
        observe: Callable[[str, int], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        config.connection_pool_maxsize = max(config.connection_pool_maxsize or 0, 32)
        if config.retries is None:
            config.retries = False  # one retry policy, ours, rather than urllib3's on top of it
        self.configuration = config
        self._api = ApiClient(config)
        self._field_manager = field_manager
        self._lock = threading.Lock()
        self._backoff = backoff
        self._timeout = timeout  # (connect, read) seconds: a hung server must not hang a pass
        self._sleep = sleep
        self._clock = clock
        self._guard: WriteGuard | None = None
        self._limiter = limiter
        self._observe = observe  # called with (verb, HTTP status; 0 when no answer) per request
        self._random = random.Random()  # noqa: S311 -- jitter, not a secret
        self.throttled_seconds = 0.0  # waited because the server said 429 (its Retry-After, or our backoff)

    def close(self) -> None:
        self._api.close()

    def guard_writes(self, guard: WriteGuard | None) -> None:
        """Check `guard` before every attempt of every write but the Lease's own (leader election)."""
        self._guard = guard

    def _call(
        self,
        method: str,
        path: str,
        *,
        verb: str = "",
        query: list[tuple[str, str]] | None = None,
        body: Any = None,
        content_type: str | None = None,
        guarded: bool = True,
        deadline: float | None = None,
    ) -> Any:
        """One request, tried again on a transient failure. A write (`guarded`) asks the write
        guard before every attempt; no attempt starts after `deadline` (monotonic), and none may
        run past it."""
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        params = self._api.param_serialize(
            method=method,
            resource_path=path,
            query_params=query or [],
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        waited = 0.0
        verb = verb or method.lower()
        error: KubeError | None = None
        for attempt in range(1, self._backoff.tries + 1):
            if self._limiter is not None:
                self._limiter.acquire()
            # Judged now, at the moment of sending, for this attempt: a retry (after a Retry-After,
            # a backoff, the rate limiter) may come long after the pass's first check.
            timeout = self._attempt_timeout(method, guarded, deadline, error)
            try:
                response = self._api.call_api(*params, _request_timeout=timeout)
                response.read()
                self._observed(verb, response.status)
            except ApiException as exc:
                self._observed(verb, int(exc.status or 0))
                error, wait_hint = _error(exc), retry_after((exc.headers or {}).get("Retry-After"))
                transient = error.status in RETRYABLE_STATUSES
                if not exc.status:  # the client's wrapping of a TLS failure ("SSLError\n<detail>")
                    detail = str(exc.reason).splitlines()[-1]
                    error = KubeError(
                        0, "SSLError", f"cannot reach the API server {self._api.configuration.host}: {detail}"
                    )
            except urllib3.exceptions.HTTPError as exc:
                self._observed(verb, 0)
                # A timeout or a dropped connection: no answer came back, so the request is tried
                # again (our writes are applies and patches; a repeated Event is harmless).
                error, wait_hint, transient = unreachable(self._api.configuration.host, exc), None, True
            else:
                if 200 <= response.status <= 299:
                    return json.loads(response.data or b"null")
                error = _error(ApiException(http_resp=response))
                wait_hint = retry_after(response.headers.get("Retry-After"))
                transient = error.status in RETRYABLE_STATUSES
            if not transient or attempt == self._backoff.tries:
                raise error
            with self._lock:
                jitter = self._random.random()
            wait = self._backoff.delay(attempt, wait_hint, jitter)
            if waited + wait > self._backoff.budget or (
                deadline is not None and self._clock() + wait >= deadline
            ):
                raise error
            waited += wait
            with self._lock:
                self.throttled_seconds += wait if error.status == 429 else 0.0
            log.info("%s %s: %s; retry %d in %.2fs", method, path, error, attempt, wait)
            self._sleep(wait)
        raise AssertionError("unreachable: the last try returns or raises")

    def _attempt_timeout(
        self, method: str, guarded: bool, deadline: float | None, error: KubeError | None
    ) -> tuple[float, float] | float:
        seconds = None
        if deadline is not None:
            seconds = deadline - self._clock()
            if seconds <= 0:
                raise error or KubeError(0, "Timeout", "no time left for the request")
        if method != "GET" and guarded and self._guard is not None:
            window = self._guard()  # raises when this replica may not write
            if window is not None:
                seconds = window if seconds is None else min(seconds, window)
        return bounded(self._timeout, seconds)

    def _observed(self, verb: str, status: int) -> None:
        if self._observe is not None:
            self._observe(verb, status)

    def get(self, kind: Kind, namespace: str | None, name: str) -> dict[str, Any] | None:
        try:
            result: dict[str, Any] = self._call("GET", f"{kind.collection(namespace)}/{name}", verb="get")
        except KubeError as error:
            if error.not_found:
                return None
            raise
        return result

    def list(
        self, kind: Kind, namespace: str | None, label_selector: str = "", *, page: int = 500
    ) -> list[dict[str, Any]]:
        """Every object of `kind`, in pages of `page`: a large collection is never one response.

        A continue token the server no longer honours (410 Gone: etcd compacted past it) starts
        the listing again from the first page, once."""
        base = [("labelSelector", label_selector)] if label_selector else []
        base.append(("limit", str(page)))
        items: list[dict[str, Any]] = []
        token, restarted = "", False
        while True:
            query = [*base, ("continue", token)] if token else base
            try:
                result = self._call("GET", kind.collection(namespace), query=query, verb="list")
            except KubeError as error:
                if error.status != 410 or not token or restarted:
                    raise
                items, token, restarted = [], "", True
                continue
            items.extend(result.get("items") or [])
            token = str((result.get("metadata") or {}).get("continue") or "")
            if not token:
                return items

    def apply(
        self, obj: Mapping[str, Any], field_manager: str | None = None, *, uid: str | None = None
    ) -> dict[str, Any]:
        """Server-side apply under our field manager, onto an object known to be ours.

        Forced, because the operator owns its children's fields. `uid` is the uid of the object the
        caller read and found ours: sent as metadata.uid, it is a precondition the API server
        checks, so an apply never lands on another object that took the name since (answered 422,
        metadata.uid is immutable) nor makes one that was deleted meanwhile (409 uid mismatch).
        Without it, an apply would create a missing object and silently take over an existing one:
        new objects go through create() instead."""
        kind = kind_of(obj)
        meta = obj["metadata"]
        path = f"{kind.collection(meta.get('namespace'))}/{meta['name']}"
        query = [("fieldManager", field_manager or self._field_manager), ("force", "true")]
        body = dict(obj)
        if uid is not None:
            body["metadata"] = {**meta, "uid": uid}
        try:
            result: dict[str, Any] = self._call(
                "PATCH",
                path,
                query=query,
                body=body,
                content_type="application/apply-patch+yaml",
                verb="apply",
            )
        except KubeError as error:
            replaced = (error.status == 422 and "metadata.uid" in error.message) or error.conflict
            if uid is not None and replaced:
                raise KubeError(
                    409, "Replaced", f"{kind.kind} {meta['name']} is no longer the object this pass read"
                ) from None
            raise
        return result

    def create(self, obj: Mapping[str, Any]) -> dict[str, Any] | None:
        """Create `obj`, or None when an object of that name exists already: then nothing is written.

        Server-side apply has no create-only form (its uid precondition needs an existing object),
        and a read first would leave a window for another writer to create the object between
        the check and our apply, which would then take it over. A create is atomic: the server
        answers 409 AlreadyExists and leaves the object as it was. A create records our field
        manager with operation Update, which would keep owning every field after our applies stop
        setting it; so the entry is then turned into our Apply entry (_own_as_applier)."""
        kind = kind_of(obj)
        meta = obj["metadata"]
        try:
            made: dict[str, Any] = self._call(
                "POST",
                kind.collection(meta.get("namespace")),
                query=[("fieldManager", self._field_manager)],
                body=dict(obj),
                verb="create",
            )
        except KubeError as error:
            if error.conflict and error.reason == "AlreadyExists":
                return None
            raise
        return self._own_as_applier(kind, made)

    def _own_as_applier(self, kind: Kind, obj: dict[str, Any], tries: int = 3) -> dict[str, Any]:
        """`obj` with our create's Update entry in managedFields turned into our Apply entry.

        A JSON patch on that one entry, which tests first that the object is the one we created
        (its uid) and that the entry at that index is still ours and still Update: a controller
        may write the new object at once (the Deployment controller annotates its revision),
        adding its own entry, and that must not be lost or make us give up. On a failed test the
        object is read again and the index found anew."""
        meta = obj.get("metadata") or {}
        path = f"{kind.collection(meta.get('namespace'))}/{meta['name']}"
        current: dict[str, Any] | None = obj
        for _ in range(tries):
            if current is None:
                break
            entries = (current.get("metadata") or {}).get("managedFields") or []
            index = next(
                (
                    i
                    for i, entry in enumerate(entries)
                    if entry.get("manager") == self._field_manager and entry.get("operation") == "Update"
                ),
                None,
            )
            if index is None:
                return current
            at = f"/metadata/managedFields/{index}"
            patch = [
                {"op": "test", "path": "/metadata/uid", "value": meta.get("uid")},
                {"op": "test", "path": f"{at}/manager", "value": self._field_manager},
                {"op": "test", "path": f"{at}/operation", "value": "Update"},
                {"op": "replace", "path": f"{at}/operation", "value": "Apply"},
            ]
            try:
                converted: dict[str, Any] = self._call(
                    "PATCH",
                    path,
                    query=[("fieldManager", self._field_manager)],
                    body=patch,
                    content_type="application/json-patch+json",
                    verb="patch",
                )
                return converted
            except KubeError as error:
                if error.status not in (409, 422):
                    raise
                current = self.find(kind, meta.get("namespace"), str(meta["name"]))
        # Ours all the same; only a field we later stop rendering would be left in place.
        log.warning("%s %s: created; its fields stay owned by an Update", kind.kind, meta["name"])
        return current or obj

    def find(self, kind: Kind, namespace: str | None, name: str) -> dict[str, Any] | None:
        """One object by name, through `list` (a field selector): the operator's role grants list on
        every child kind, and get on none of them (only on ConfigMaps, which are no child)."""
        base = kind.collection(namespace)
        query = [("fieldSelector", f"metadata.name={name}")]
        result = self._call("GET", base, query=query, verb="list")
        for item in result.get("items") or []:
            item.setdefault("apiVersion", kind.api_version)
            item.setdefault("kind", kind.kind)
            found: dict[str, Any] = item
            return found
        return None

    def delete(self, kind: Kind, namespace: str | None, name: str, *, uid: str | None = None) -> None:
        """Delete, in the background; with `uid`, only that object: another that took the name since
        is refused by the server (409, precondition failed) and left alone."""
        child = child_kind(kind.api_version, kind.kind)
        body: dict[str, Any] = {"propagationPolicy": child.prune.value if child else "Background"}
        if uid is not None:
            body["preconditions"] = {"uid": uid}
        try:
            self._call("DELETE", f"{kind.collection(namespace)}/{name}", body=body, verb="delete")
        except KubeError as error:
            if not error.not_found:
                raise

    def patch_status(
        self, namespace: str, name: str, status: Mapping[str, Any], resource_version: str | None = None
    ) -> dict[str, Any]:
        """A merge patch of /status: the only write the operator makes to a ModelDeployment.

        With `resource_version`, the server refuses it (409 Conflict) if the object changed since."""
        path = f"{MODEL_DEPLOYMENT.collection(namespace)}/{name}/status"
        body: dict[str, Any] = {"status": dict(status)}
        if resource_version:
            body["metadata"] = {"resourceVersion": resource_version}
        result: dict[str, Any] = self._call(
            "PATCH", path, body=body, content_type="application/merge-patch+json", verb="patch"
        )
        return result

    def annotate(self, namespace: str, name: str, annotations: Mapping[str, str | None]) -> dict[str, Any]:
        """Merge-patch a ModelDeployment's annotations: the CLI's manual control, never the operator."""
        path = f"{MODEL_DEPLOYMENT.collection(namespace)}/{name}"
        body = {"metadata": {"annotations": dict(annotations)}}
        result: dict[str, Any] = self._call(
            "PATCH", path, body=body, content_type="application/merge-patch+json"
        )
        return result

    def post_event(self, involved: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        """A core/v1 Event about `involved` (a ModelDeployment body), as `kubectl describe` shows them."""
        meta = involved.get("metadata", {})
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        namespace = str(meta.get("namespace") or "default")
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta.get('name', 'modeldeployment')}.", "namespace": namespace},
            "involvedObject": {
                "apiVersion": involved.get("apiVersion", MODEL_DEPLOYMENT.api_version),
                "kind": involved.get("kind", MODEL_DEPLOYMENT.kind),
                "name": meta.get("name"),
                "namespace": namespace,
                "uid": meta.get("uid"),
                "resourceVersion": meta.get("resourceVersion"),
            },
            "type": type_,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": self._field_manager},
            "reportingComponent": self._field_manager,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        self._call("POST", f"/api/v1/namespaces/{namespace}/events", body=event, verb="create")

    # The Lease's own requests are the election: never behind the write guard, and over by
    # `deadline` (monotonic), so that a leader that cannot renew learns it before its renew deadline.

    def get_lease(self, namespace: str, name: str, deadline: float | None = None) -> dict[str, Any] | None:
        try:
            result: dict[str, Any] = self._call(
                "GET", f"{LEASE.collection(namespace)}/{name}", verb="get", deadline=deadline
            )
        except KubeError as error:
            if error.not_found:
                return None
            raise
        return result

    def create_lease(
        self, namespace: str, name: str, spec: Mapping[str, Any], deadline: float | None = None
    ) -> dict[str, Any] | None:
        """A new Lease; None when one of that name exists already (another replica was first)."""
        body = {"apiVersion": LEASE.api_version, "kind": LEASE.kind, "metadata": {"name": name}, "spec": spec}
        return self._lease_write("POST", LEASE.collection(namespace), body, "create", deadline)

    def replace_lease(
        self,
        namespace: str,
        name: str,
        spec: Mapping[str, Any],
        resource_version: str,
        deadline: float | None = None,
    ) -> dict[str, Any] | None:
        """The Lease replaced if it is still at `resource_version`; None if it changed since."""
        meta = {"name": name, "namespace": namespace, "resourceVersion": resource_version}
        body = {"apiVersion": LEASE.api_version, "kind": LEASE.kind, "metadata": meta, "spec": spec}
        return self._lease_write("PUT", f"{LEASE.collection(namespace)}/{name}", body, "update", deadline)

    def _lease_write(
        self, method: str, path: str, body: dict[str, Any], verb: str, deadline: float | None
    ) -> dict[str, Any] | None:
        """A Lease write, which the write guard does not gate (it is how leadership is won); None
        on a conflict: another replica wrote first."""
        try:
            result: dict[str, Any] = self._call(
                method, path, body=body, verb=verb, guarded=False, deadline=deadline
            )
        except KubeError as error:
            if error.conflict:
                return None
            raise
        return result
