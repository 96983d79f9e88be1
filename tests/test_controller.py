"""The Controller (handlers/controller.py) between kopf's events and the passes: what an event does
to the queue, per-object retry and forgetting, and the leader gate. Without an API server: the
client points at a closed port, so every request fails at once. The same behaviours on the real
API server: test_real_api_defects.py (per-object backoff), test_leader_fence.py (fencing)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes.client import Configuration

from modeldeploy.adapters.kube import Backoff, KubeClient
from modeldeploy.handlers.cache import encode_parent
from modeldeploy.handlers.config import OperatorConfig
from modeldeploy.handlers.controller import Controller
from modeldeploy.handlers.reconciler import NotLeader

KEY = ("ml", "fraud-scorer")
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "fraud-scorer.yaml"


class FakeIndex(dict[tuple[str, str], list[bytes]]):
    """kopf's index, read side."""


def parent() -> dict[str, Any]:
    body: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    body["metadata"].update(namespace=KEY[0], name=KEY[1], uid="u-1", resourceVersion="1", generation=1)
    return body


@pytest.fixture
def controller() -> Any:
    # Nothing listens on port 9: every request fails at once, and is not tried again.
    client = KubeClient(Configuration(host="http://127.0.0.1:9"), backoff=Backoff(tries=1))
    made = Controller(OperatorConfig(workers=2), client)
    made.cache.attach(FakeIndex({KEY: [encode_parent(parent())]}), {}, FakeIndex())
    yield made
    made.queue.shutdown(10)
    made.gates.close()
    client.close()


def wait_for(predicate: Any, what: str) -> None:
    deadline = time.monotonic() + 30
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def test_a_failing_object_is_retried_with_its_own_backoff_and_forgotten_when_deleted(
    controller: Controller,
) -> None:
    controller.parent_event(*KEY, deleted=False, echo=False)
    wait_for(lambda: controller.queue.limiter.failures(KEY) == 1, "the failed pass")
    wait_for(lambda: controller.queue.scheduled() == 1, "its retry to be scheduled")
    controller.parent_event(*KEY, deleted=True, echo=False)
    assert controller.queue.limiter.failures(KEY) == 0
    assert controller.queue.scheduled() == 0, "a deleted object keeps no timer"


def test_an_echo_of_our_own_write_queues_nothing(controller: Controller) -> None:
    controller.parent_event(*KEY, deleted=False, echo=True)
    controller.child_event(KEY[0], KEY[1], echo=True)
    controller.child_event(KEY[0], None, echo=False)  # a child of no ModelDeployment
    assert controller.queue.depth() == controller.queue.running() == 0
    assert controller.queue.limiter.failures(KEY) == 0


def test_a_standby_queues_nothing_and_its_client_refuses_every_write() -> None:
    client = KubeClient(Configuration(host="http://127.0.0.1:9"), backoff=Backoff(tries=1))
    standby = Controller(OperatorConfig(leader_elect=True), client)
    standby.parent_event(*KEY, deleted=False, echo=False)
    standby.resync_once()
    assert standby.queue.depth() == standby.queue.running() == 0
    with pytest.raises(NotLeader):  # refused before anything is sent
        client.patch_status(*KEY, {"phase": "Stable"})
    standby.queue.shutdown(10)
    standby.gates.close()
    client.close()
