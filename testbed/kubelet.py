"""A stand-in for the scheduler and the kubelet, for a control plane that has neither.

It watches Pods, binds each new one to a Node it registered, and writes the Pod's status as a
kubelet would: Running and Ready, or (as `policy` decides per Pod) unschedulable, crash-looping,
or left Pending. The real Deployment controller then counts ready and available replicas from
those Pods, as on a cluster.
"""

from __future__ import annotations

import contextlib
import datetime
import enum
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from testbed.kubeapi import ApiError, KubeApi

log = logging.getLogger("testbed.kubelet")

NODE = "testbed-node"


class PodState(enum.Enum):
    READY = "ready"
    UNSCHEDULABLE = "unschedulable"  # the scheduler found no node (no GPU left, say)
    CRASH_LOOP = "crash-loop"  # scheduled, but the server container keeps exiting
    PENDING = "pending"  # not touched at all


# The scheduler's words when no node has enough of a resource (NodeResourcesFit), for one node.
INSUFFICIENT = "0/1 nodes are available: 1 Insufficient {resource}."


@dataclass(frozen=True)
class PodReport:
    state: PodState = PodState.READY
    pod_ip: str = "127.0.0.1"
    resource: str = "nvidia.com/gpu"  # UNSCHEDULABLE: the resource the scheduler found short


Policy = Callable[[Mapping[str, Any]], PodReport]


def always_ready(_: Mapping[str, Any]) -> PodReport:
    return PodReport()


def fits_node(allocatable: Mapping[str, str], then: Policy = always_ready) -> Policy:
    """A scheduler for the one node: a pod asking for a resource the node does not advertise at all
    (nvidia.com/gpu on a node without the device plugin) is unschedulable, as the scheduler reports
    it; any other goes on to `then`. Amounts are not compared: the node is taken to be big enough."""

    def policy(pod: Mapping[str, Any]) -> PodReport:
        for container in (pod.get("spec") or {}).get("containers") or []:
            resources = container.get("resources") or {}
            for name in {**(resources.get("requests") or {}), **(resources.get("limits") or {})}:
                if name not in allocatable:
                    return PodReport(PodState.UNSCHEDULABLE, resource=name)
        return then(pod)

    return policy


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _condition(type_: str, status: bool, reason: str = "", message: str = "") -> dict[str, Any]:
    cond = {"type": type_, "status": "True" if status else "False", "lastTransitionTime": _now()}
    if reason:
        cond["reason"] = reason
    if message:
        cond["message"] = message
    return cond


def pod_status(pod: Mapping[str, Any], report: PodReport) -> dict[str, Any]:
    """The status a kubelet would report for `pod` in `report.state`."""
    spec = pod.get("spec", {})
    if report.state is PodState.UNSCHEDULABLE:
        return {
            "phase": "Pending",
            "conditions": [
                _condition(
                    "PodScheduled",
                    False,
                    "Unschedulable",
                    INSUFFICIENT.format(resource=report.resource),
                )
            ],
        }
    ready = report.state is PodState.READY
    init = [
        {
            "name": c["name"],
            "image": c.get("image", ""),
            "imageID": "",
            "ready": True,
            "restartCount": 0,
            "state": {"terminated": {"exitCode": 0, "reason": "Completed", "finishedAt": _now()}},
        }
        for c in spec.get("initContainers") or []
    ]
    containers = []
    for c in spec.get("containers") or []:
        state: dict[str, Any]
        if ready:
            state = {"running": {"startedAt": _now()}}
        else:
            state = {
                "waiting": {"reason": "CrashLoopBackOff", "message": "back-off restarting failed container"}
            }
        containers.append(
            {
                "name": c["name"],
                "image": c.get("image", ""),
                "imageID": "",
                "ready": ready,
                "started": ready,
                "restartCount": 0 if ready else 4,
                "state": state,
                "lastState": {} if ready else {"terminated": {"exitCode": 1, "reason": "Error"}},
            }
        )
    return {
        "phase": "Running",
        "hostIP": "127.0.0.1",
        "podIP": report.pod_ip,
        "podIPs": [{"ip": report.pod_ip}],
        "startTime": _now(),
        "conditions": [
            _condition("PodScheduled", True),
            _condition("Initialized", True),
            _condition("ContainersReady", ready, "" if ready else "ContainersNotReady"),
            _condition("Ready", ready, "" if ready else "ContainersNotReady"),
        ],
        "initContainerStatuses": init,
        "containerStatuses": containers,
    }


class Kubelet:
    """`with Kubelet(api):` -- every Pod on the cluster is scheduled and reported by `policy`."""

    def __init__(
        self, api: KubeApi, policy: Policy = always_ready, allocatable: Mapping[str, str] | None = None
    ) -> None:
        self.api = api
        self.policy = policy
        self.allocatable = dict(allocatable or {})  # reported in the Node's status, if given
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._done: dict[str, PodState] = {}  # pod uid -> the state reported

    def __enter__(self) -> Kubelet:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
        self._register_node()
        self._thread = threading.Thread(target=self._run, name="kubelet", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=40)

    def _register_node(self) -> None:
        # The pod garbage collector deletes Pods bound to a Node that does not exist.
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": NODE, "labels": {"kubernetes.io/hostname": NODE}},
        }
        with contextlib.suppress(ApiError):
            self.api.create(node)
        if self.allocatable:
            status = {"capacity": self.allocatable, "allocatable": self.allocatable}
            self.api.patch("v1", "Node", None, NODE, {"status": status}, subresource="status")

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                version = self.resync()
                while not self._stop.is_set():
                    for event in self.api.watch("v1", "Pod", None, version, timeout_seconds=5):
                        obj = event.get("object", {})
                        if event.get("type") == "ERROR":
                            raise ApiError(int(obj.get("code") or 410), obj)
                        version = obj.get("metadata", {}).get("resourceVersion", version)
                        if event.get("type") in ("ADDED", "MODIFIED"):
                            self.handle(obj)
                        if self._stop.is_set():
                            return
            except (ApiError, OSError, ValueError) as error:
                if not self._stop.is_set():
                    log.debug("kubelet watch restarts: %s", error)
                    self._stop.wait(0.2)

    def resync(self) -> str:
        """Handle every Pod there is; returns the list's resourceVersion to watch from."""
        pods, version = self.api.listing("v1", "Pod")
        for pod in pods:
            self.handle(pod)
        return version

    def handle(self, pod: Mapping[str, Any]) -> None:
        meta = pod.get("metadata", {})
        uid = str(meta.get("uid"))
        if meta.get("deletionTimestamp"):
            self._finish_deletion(pod)
            return
        report = self.policy(pod)
        if self._done.get(uid) is report.state or report.state is PodState.PENDING:
            return
        namespace, name = meta["namespace"], meta["name"]
        try:
            if report.state is not PodState.UNSCHEDULABLE and not pod.get("spec", {}).get("nodeName"):
                binding = {
                    "apiVersion": "v1",
                    "kind": "Binding",
                    "metadata": {"name": name},
                    "target": {"apiVersion": "v1", "kind": "Node", "name": NODE},
                }
                self.api.create_subresource("v1", "Pod", namespace, name, "binding", binding)
            self.api.patch(
                "v1", "Pod", namespace, name, {"status": pod_status(pod, report)}, subresource="status"
            )
            self._done[uid] = report.state
        except ApiError as error:
            if error.status not in (404, 409):
                log.warning("kubelet: pod %s/%s: %s", namespace, name, error)

    def _finish_deletion(self, pod: Mapping[str, Any]) -> None:
        # A kubelet confirms that the containers stopped by deleting with grace period 0.
        meta = pod["metadata"]
        with contextlib.suppress(ApiError):
            self.api.delete("v1", "Pod", meta["namespace"], meta["name"], grace_period=0, uid=meta["uid"])
        self._done.pop(str(meta.get("uid")), None)
