"""What the operator keeps per object goes with the object (issue 16, item 7): the per-object
failure counter of a ModelDeployment whose passes fail is dropped when it is deleted."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from operator_bed import OperatorBed
from testbed.controlplane import ControlPlane

pytestmark = pytest.mark.integration


def failing(bed: OperatorBed) -> float | None:
    for line in bed.process.metrics().splitlines():
        if line.startswith("modeldeploy_workqueue_failing "):
            return float(line.rsplit(" ", 1)[1])
    return None


def model(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "modeldeploy.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name},
        "spec": {"model": {"name": name, "version": "1", "storageUri": f"s3://models/{name}/1"}},
    }


def test_a_deleted_object_leaves_no_failure_counter(
    control_plane: ControlPlane, namespace: str, operator: Callable[..., OperatorBed]
) -> None:
    # A quota of no Services: every pass of these objects fails to apply one, and is retried.
    control_plane.admin.apply(
        {
            "apiVersion": "v1",
            "kind": "ResourceQuota",
            "metadata": {"name": "no-services", "namespace": namespace},
            "spec": {"hard": {"services": "0"}},
        }
    )
    bed = operator(resync_seconds=1)
    for name in ("broken-a", "broken-b"):
        bed.apply(model(name))
    bed.wait(lambda: failing(bed) == 2.0, timeout=90, what="two objects failing")
    bed.api.delete("modeldeploy.io/v1alpha1", "ModelDeployment", namespace, "broken-a")
    bed.wait(lambda: failing(bed) == 1.0, timeout=60, what="the deleted object's counter dropped")
    bed.api.delete("modeldeploy.io/v1alpha1", "ModelDeployment", namespace, "broken-b")
    bed.wait(lambda: failing(bed) == 0.0, timeout=60, what="every counter dropped")
