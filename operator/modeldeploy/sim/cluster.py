"""A local cluster for the demo, the integration tests and the benchmark.

The emulated Kubernetes API (served over real HTTP on loopback) plus the real operator: kopf
with every handler modeldeploy registers, talking HTTP to the emulator exactly as it would to a
real API server. Nothing here is a mock of the operator; only the cluster is simulated.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from types import TracebackType
from typing import Any

import kopf

from modeldeploy.api.base import GROUP, KIND, PLURAL, VERSION
from modeldeploy.api.crd import crd
from modeldeploy.handlers.config import OperatorConfig
from modeldeploy.handlers.operator import Registration, register
from modeldeploy.sim.emulator import APPLY_PATCH, ClusterEmulator
from modeldeploy.sim.serving import EmulatorThread

log = logging.getLogger("modeldeploy.sim")

# CRDs of other projects that the operator looks for before rendering their objects.
OPTIONAL_CRDS = (
    "podmonitors.monitoring.coreos.com",
    "httproutes.gateway.networking.k8s.io",
    "grpcroutes.gateway.networking.k8s.io",
    "virtualservices.networking.istio.io",
)


def crd_stub(name: str) -> dict[str, Any]:
    """Enough of a CRD for existence checks; the emulator's discovery declares the resource itself."""
    plural, _, group = name.partition(".")
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": name},
        "spec": {
            "group": group,
            "names": {"plural": plural},
            "scope": "Namespaced",
            # The operator uses a CRD only where it serves the version rendered (v1 for all of them).
            "versions": [{"name": "v1", "served": True, "storage": True}],
        },
    }


class OperatorThread:
    """The real operator (kopf with every modeldeploy handler) running in a background thread."""

    def __init__(self, config: OperatorConfig) -> None:
        self.config = config
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._registration: Registration | None = None
        self.error: BaseException | None = None

    def start(self, timeout: float = 30.0) -> None:
        self._thread = threading.Thread(target=self._main, name="modeldeploy-operator", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError("the operator did not start in time")
        if self.error is not None:
            raise self.error

    def _main(self) -> None:
        try:
            asyncio.run(self._run())
        except BaseException as error:  # reported to start() or kept for the caller
            self.error = error
            self._ready.set()

    async def _run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        ready = asyncio.Event()
        registry = kopf.OperatorRegistry()
        self._registration = register(self.config, registry)
        waiter = asyncio.create_task(ready.wait())
        operator = asyncio.create_task(
            kopf.operator(
                registry=registry,
                standalone=True,
                clusterwide=not self.config.namespaces,
                namespaces=list(self.config.namespaces),
                stop_flag=self._stop,
                ready_flag=ready,
            )
        )
        await asyncio.wait({waiter, operator}, return_when=asyncio.FIRST_COMPLETED)
        self._ready.set()
        await operator

    def stop(self, timeout: float = 30.0) -> None:
        if self._registration is not None:
            self._registration.stop()
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop may be closing already
                self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None


@dataclass
class LocalCluster:
    """`async with LocalCluster() as cluster:` -- the emulator serving, the operator running."""

    config: OperatorConfig = field(default_factory=OperatorConfig)
    crds: tuple[str, ...] = OPTIONAL_CRDS
    emulator: ClusterEmulator = field(default_factory=ClusterEmulator)
    url: str = ""
    _server: EmulatorThread | None = None
    _operator: OperatorThread | None = None

    async def __aenter__(self) -> LocalCluster:
        self.emulator.declare_builtin_resources()
        self.emulator.put_object(crd())
        for name in self.crds:
            self.emulator.put_object(crd_stub(name))
        # The API server gets its own thread and event loop, as a real one is another process: the
        # operator's loop then holds only the operator's tasks (kopf waits for all of them on exit).
        self._server = EmulatorThread(self.emulator)
        self.url = await asyncio.to_thread(self._server.start)
        await self.start_operator()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop_operator()
        if self._server is not None:
            await asyncio.to_thread(self._server.stop)

    # ------------------------------------------------------------------------------ operator

    async def start_operator(self) -> None:
        """Start (or restart) the real operator against the emulator, in a thread of its own.

        Its own thread and event loop, as if it were its own process: kopf treats every task in its
        loop as its own and waits for them on exit, so it must not share a loop with the caller.
        """
        config = replace(self.config, server=self.url, health_port=None, metrics_port=None)
        self._operator = OperatorThread(config)
        await asyncio.to_thread(self._operator.start)

    async def stop_operator(self) -> None:
        if self._operator is not None:
            await asyncio.to_thread(self._operator.stop)
            self._operator = None

    # ------------------------------------------------------------------------------- objects

    def apply(self, manifest: Mapping[str, Any]) -> dict[str, Any]:
        """`kubectl apply --server-side`: create, or apply over the existing object; its status,
        which belongs to the operator, is left alone."""
        meta = manifest.get("metadata") or {}
        if manifest.get("kind") != KIND:
            return self.emulator.put_object(manifest)
        # Server-side apply creates a missing object too; status is never the applier's to set.
        return self.emulator.patch_object(
            GROUP,
            VERSION,
            PLURAL,
            str(meta.get("namespace")),
            str(meta.get("name")),
            {k: v for k, v in manifest.items() if k != "status"},
            content_type=APPLY_PATCH,
            manager="kubectl",
        )

    def annotate(self, namespace: str, name: str, annotations: Mapping[str, str | None]) -> dict[str, Any]:
        """What `modeldeploy promote|abort|retry|pause|resume` does: a merge patch of annotations."""
        return self.emulator.patch_object(
            GROUP, VERSION, PLURAL, namespace, name, {"metadata": {"annotations": dict(annotations)}}
        )

    def model_deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.emulator.get_object(GROUP, VERSION, PLURAL, namespace, name)

    def children(self, namespace: str, name: str) -> list[dict[str, Any]]:
        selector = f"modeldeploy.io/name={name}"
        found: list[dict[str, Any]] = []
        for group, version, plural in (
            ("", "v1", "configmaps"),
            ("apps", "v1", "deployments"),
            ("", "v1", "services"),
            ("autoscaling", "v2", "horizontalpodautoscalers"),
            ("networking.k8s.io", "v1", "networkpolicies"),
            ("monitoring.coreos.com", "v1", "podmonitors"),
            ("gateway.networking.k8s.io", "v1", "httproutes"),
            ("gateway.networking.k8s.io", "v1", "grpcroutes"),
            ("networking.istio.io", "v1", "virtualservices"),
        ):
            found += self.emulator.list_objects(group, version, plural, namespace, label_selector=selector)
        return found

    def make_ready(self, namespace: str, name: str) -> int:
        """Play kubelet: every Deployment of the ModelDeployment becomes ready. Returns how many."""
        count = 0
        for obj in self.emulator.list_objects(
            "apps", "v1", "deployments", namespace, label_selector=f"modeldeploy.io/name={name}"
        ):
            self.emulator.mark_deployment_ready(namespace, obj["metadata"]["name"])
            count += 1
        return count

    async def wait_for(
        self,
        predicate: Callable[[], Any] | Callable[[], Awaitable[Any]],
        timeout: float = 10.0,
        interval: float = 0.05,
        what: str = "condition",
    ) -> Any:
        """Poll until `predicate` returns something truthy; its value is returned."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if asyncio.iscoroutine(value):
                value = await value
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
            await asyncio.sleep(interval)

    def status(self, namespace: str, name: str) -> dict[str, Any]:
        obj = self.model_deployment(namespace, name) or {}
        status: dict[str, Any] = obj.get("status") or {}
        return status
