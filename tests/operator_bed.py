"""The operator as a process against the real control plane, and what tests ask of the result.

    def test_x(control_plane, namespace, operator):    # `operator` from tests/conftest.py
        bed = operator(resync_seconds=1)              # `modeldeploy run --namespace=<ns>`, admin kubeconfig
        bed.apply(manifest)                           # kubectl apply --server-side (strict)
        bed.wait_phase("scorer", "Stable")

Everything is read back through the admin's own REST client (testbed.kubeapi), never the operator's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from modeldeploy.render.kinds import CHILD_KINDS as KINDS  # the one table of the kinds a ModelDeployment owns
from testbed.controlplane import ControlPlane
from testbed.kubeapi import KubeApi
from testbed.operator_process import OperatorProcess

MD = ("modeldeploy.io/v1alpha1", "ModelDeployment")
CHILD_KINDS = tuple((child.kind.api_version, child.kind.kind) for child in KINDS)


@dataclass
class OperatorBed:
    control_plane: ControlPlane
    namespace: str
    process: OperatorProcess
    user: str  # the operator's user, as the audit log names it

    @property
    def api(self) -> KubeApi:
        return self.control_plane.admin

    def apply(self, manifest: Mapping[str, Any]) -> dict[str, Any]:
        """`kubectl apply --server-side`: the object lands in this test's namespace."""
        body = {k: v for k, v in manifest.items() if k != "status"}
        body["metadata"] = {**dict(manifest.get("metadata") or {}), "namespace": self.namespace}
        return self.api.apply(body)

    def get(self, name: str) -> dict[str, Any] | None:
        return self.api.get(*MD, self.namespace, name)

    def status(self, name: str) -> dict[str, Any]:
        status: dict[str, Any] = (self.get(name) or {}).get("status") or {}
        return status

    def child(self, api_version: str, kind: str, name: str) -> dict[str, Any] | None:
        return self.api.get(api_version, kind, self.namespace, name)

    def children(self, name: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        for api_version, kind in CHILD_KINDS:
            found += self.api.list(api_version, kind, self.namespace, f"modeldeploy.io/name={name}")
        return found

    def wait(self, predicate: Callable[[], Any], timeout: float = 60.0, what: str = "a condition") -> Any:
        try:
            return self.api.wait_for(predicate, timeout=timeout, what=what)
        except TimeoutError as error:
            raise AssertionError(f"{error}; operator log (tail):\n{self.process.tail()}") from None

    def wait_phase(self, name: str, phase: str, timeout: float = 60.0) -> dict[str, Any]:
        result: dict[str, Any] = self.wait(
            lambda: self.status(name).get("phase") == phase and self.status(name),
            timeout=timeout,
            what=f"{name} to reach phase {phase}",
        )
        return result

    def audit(self, since: int) -> list[dict[str, Any]]:
        """The operator's requests after `since` (a `control_plane.audit_position()`)."""
        return self.control_plane.audit_events(since, user=self.user)
