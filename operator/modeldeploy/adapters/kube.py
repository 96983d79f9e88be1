"""The only code that talks to the Kubernetes API.

A thin layer over the official client's ApiClient: objects stay plain dicts (the renderer's
output), writes are server-side applies under one field manager, and every failure surfaces as
KubeError so that the shell above never imports `kubernetes`.
"""

from __future__ import annotations

import datetime
import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import kubernetes
from kubernetes.client import ApiClient, Configuration
from kubernetes.client.exceptions import ApiException

from modeldeploy.api.base import GROUP, PLURAL, VERSION

FIELD_MANAGER = "modeldeploy"


@dataclass(frozen=True)
class Kind:
    api_version: str
    kind: str
    plural: str
    namespaced: bool = True

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    def collection(self, namespace: str | None) -> str:
        base = f"/api/{self.api_version}" if "/" not in self.api_version else f"/apis/{self.api_version}"
        if self.namespaced and namespace:
            return f"{base}/namespaces/{namespace}/{self.plural}"
        return f"{base}/{self.plural}"


KINDS: dict[tuple[str, str], Kind] = {
    (k.api_version, k.kind): k
    for k in (
        Kind("v1", "ConfigMap", "configmaps"),
        Kind("v1", "Service", "services"),
        Kind("apps/v1", "Deployment", "deployments"),
        Kind("autoscaling/v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers"),
        Kind("monitoring.coreos.com/v1", "PodMonitor", "podmonitors"),
        Kind("gateway.networking.k8s.io/v1", "HTTPRoute", "httproutes"),
        Kind("gateway.networking.k8s.io/v1", "GRPCRoute", "grpcroutes"),
        Kind("networking.istio.io/v1", "VirtualService", "virtualservices"),
        Kind(f"{GROUP}/{VERSION}", "ModelDeployment", PLURAL),
        Kind("apiextensions.k8s.io/v1", "CustomResourceDefinition", "customresourcedefinitions", False),
    )
}
MODEL_DEPLOYMENT = KINDS[(f"{GROUP}/{VERSION}", "ModelDeployment")]
CRD = KINDS[("apiextensions.k8s.io/v1", "CustomResourceDefinition")]


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


def _error(exc: ApiException) -> KubeError:
    status = int(exc.status or 0)
    try:
        payload = json.loads(exc.body or "{}")
        return KubeError(status, str(payload.get("reason") or exc.reason), str(payload.get("message") or ""))
    except (ValueError, AttributeError):
        return KubeError(status, str(exc.reason), "")


def configuration(server: str | None = None, token: str | None = None) -> Configuration:
    """An explicit server (the demo's local emulator), else in-cluster, else the user's kubeconfig.

    In a pod, the client re-reads the service-account token file as the kubelet rotates it."""
    if server:
        config = Configuration(host=server)
        if token:
            config.api_key = {"BearerToken": token}
            config.api_key_prefix = {"BearerToken": "Bearer"}
        return config
    config = Configuration()
    try:
        kubernetes.config.load_incluster_config(client_configuration=config)
    except kubernetes.config.ConfigException:
        try:
            kubernetes.config.load_kube_config(client_configuration=config)
        except (kubernetes.config.ConfigException, OSError, ValueError) as error:
            raise KubeError(
                0, "NoConfiguration", f"no in-cluster configuration and no usable kubeconfig: {error}"
            ) from None
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


def default_namespace() -> str:
    """The namespace of the current kubeconfig context, as kubectl uses it; in a pod, the pod's own."""
    try:
        with open("/var/run/secrets/kubernetes.io/serviceaccount/namespace") as handle:
            return handle.read().strip() or "default"
    except OSError:
        pass
    try:
        _, current = kubernetes.config.list_kube_config_contexts()
    except (kubernetes.config.ConfigException, OSError):
        return "default"
    return str((current or {}).get("context", {}).get("namespace") or "default")


class KubeClient:
    """Synchronous and thread-safe: kopf runs our sync handlers in its thread pool."""

    def __init__(self, config: Configuration, field_manager: str = FIELD_MANAGER) -> None:
        config.connection_pool_maxsize = max(config.connection_pool_maxsize or 0, 32)
        self.configuration = config
        self._api = ApiClient(config)
        self._field_manager = field_manager
        self._lock = threading.Lock()
        self.writes = 0  # write requests sent, for the operator's own metrics and the benchmark

    def close(self) -> None:
        self._api.close()

    def _call(
        self,
        method: str,
        path: str,
        *,
        query: list[tuple[str, str]] | None = None,
        body: Any = None,
        content_type: str | None = None,
    ) -> Any:
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
        if method != "GET":
            with self._lock:
                self.writes += 1
        try:
            response = self._api.call_api(*params)
            response.read()
        except ApiException as exc:
            raise _error(exc) from None
        if not 200 <= response.status <= 299:
            raise _error(ApiException(http_resp=response))
        return json.loads(response.data or b"null")

    def get(self, kind: Kind, namespace: str | None, name: str) -> dict[str, Any] | None:
        try:
            result: dict[str, Any] = self._call("GET", f"{kind.collection(namespace)}/{name}")
        except KubeError as error:
            if error.not_found:
                return None
            raise
        return result

    def list(self, kind: Kind, namespace: str | None, label_selector: str = "") -> list[dict[str, Any]]:
        query = [("labelSelector", label_selector)] if label_selector else []
        result = self._call("GET", kind.collection(namespace), query=query)
        items: list[dict[str, Any]] = result.get("items") or []
        return items

    def apply(self, obj: Mapping[str, Any], field_manager: str | None = None) -> dict[str, Any]:
        """Server-side apply under our field manager; force, because the operator owns its children."""
        kind = kind_of(obj)
        meta = obj["metadata"]
        path = f"{kind.collection(meta.get('namespace'))}/{meta['name']}"
        query = [("fieldManager", field_manager or self._field_manager), ("force", "true")]
        result: dict[str, Any] = self._call(
            "PATCH", path, query=query, body=dict(obj), content_type="application/apply-patch+yaml"
        )
        return result

    def delete(self, kind: Kind, namespace: str | None, name: str) -> None:
        try:
            self._call(
                "DELETE", f"{kind.collection(namespace)}/{name}", body={"propagationPolicy": "Background"}
            )
        except KubeError as error:
            if not error.not_found:
                raise

    def patch_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> dict[str, Any]:
        """A merge patch of /status: the only write the operator makes to a ModelDeployment."""
        path = f"{MODEL_DEPLOYMENT.collection(namespace)}/{name}/status"
        result: dict[str, Any] = self._call(
            "PATCH", path, body={"status": dict(status)}, content_type="application/merge-patch+json"
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
        self._call("POST", f"/api/v1/namespaces/{namespace}/events", body=event)

    def crd_installed(self, name: str) -> bool:
        return self.get(CRD, None, name) is not None
