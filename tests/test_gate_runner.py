"""The gate worker (handlers/gates.py): runs off the caller's thread, reports once, cancels cleanly."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from modeldeploy.adapters.inference import GateOutcome
from modeldeploy.adapters.kube import KubeClient, configuration
from modeldeploy.api.resource import ObjectRef, parse_spec
from modeldeploy.api.status import GateCheck, GateRun, Verdict
from modeldeploy.handlers.gates import GateRunner, gate_work
from modeldeploy.render.names import NAME_LABEL, REVISION_LABEL, TRACK_LABEL, Track
from test_real_api_defects import admin_kubeconfig
from testbed.controlplane import ControlPlane

KEY = ("ml", "iris")
RUN = GateRun(revision="r2", started_at="t1")
PASS = GateOutcome(
    checks=[GateCheck(name="accuracy", value=1.0, threshold=0.9, verdict=Verdict.PASS)],
    verdict=Verdict.PASS,
    message="all 1 gate checks passed",
    requests=3,
    seconds=0.01,
)


class Woken:
    def __init__(self) -> None:
        self.keys: list[tuple[str, str]] = []
        self.event = threading.Event()

    def __call__(self, namespace: str, name: str) -> None:
        self.keys.append((namespace, name))
        self.event.set()


@pytest.fixture
def woken() -> Woken:
    return Woken()


@pytest.fixture
def runner(woken: Woken) -> Any:
    made = GateRunner(woken)
    yield made
    made.close()


def returning(outcome: GateOutcome, delay: float = 0.0) -> Callable[[], Coroutine[Any, Any, GateOutcome]]:
    async def work() -> GateOutcome:
        await asyncio.sleep(delay)
        return outcome

    return work


def test_a_run_reports_its_result_once_and_wakes_the_object(runner: GateRunner, woken: Woken) -> None:
    assert runner.wants(KEY, RUN)
    runner.submit(KEY, RUN, returning(PASS))
    assert not runner.wants(KEY, RUN)  # running: not started twice
    assert woken.event.wait(5)
    result = runner.result(KEY)
    assert result is not None and (result.revision, result.started_at) == ("r2", "t1")
    assert result.verdict == Verdict.PASS and result.checks == tuple(PASS.checks)
    assert woken.keys == [KEY]
    assert runner.reported(KEY, RUN)
    assert not runner.reported(KEY, GateRun(revision="r2", started_at="t0"))  # an older run's name
    assert not runner.wants(KEY, RUN)  # finished: kept until forgotten
    runner.forget(KEY)
    assert runner.result(KEY) is None and runner.wants(KEY, RUN)


def test_another_run_of_the_object_replaces_the_one_running(runner: GateRunner, woken: Woken) -> None:
    runner.submit(KEY, RUN, returning(PASS, delay=30))
    newer = GateRun(revision="r2", started_at="t2")
    assert runner.wants(KEY, newer)
    runner.submit(KEY, newer, returning(PASS))
    assert woken.event.wait(5)
    result = runner.result(KEY)
    assert result is not None and result.started_at == "t2"
    assert runner.running() == 0


def test_a_forgotten_run_is_cancelled_and_never_reports(runner: GateRunner, woken: Woken) -> None:
    started = threading.Event()

    async def slow() -> GateOutcome:
        started.set()
        await asyncio.sleep(30)
        return PASS

    runner.submit(KEY, RUN, slow)
    assert started.wait(5)
    runner.forget(KEY)
    assert not woken.event.wait(0.3)
    assert runner.result(KEY) is None and runner.running() == 0


def test_runs_queued_past_the_slots_wait_and_a_cancelled_one_leaves_no_coroutine(woken: Woken) -> None:
    runner = GateRunner(woken, parallel=1)
    try:
        runner.submit(("ml", "a"), RUN, returning(PASS, delay=30))
        made: list[str] = []

        def never() -> Coroutine[Any, Any, GateOutcome]:
            made.append("made")  # only made once it has a slot
            return returning(PASS)()

        runner.submit(("ml", "b"), RUN, never)
        assert runner.running() == 2
        runner.forget(("ml", "b"))  # cancelled while queued: with filterwarnings=error an unawaited
        assert made == []  # coroutine would fail the test when collected
    finally:
        runner.close()


def test_a_run_that_raises_is_inconclusive_not_lost(runner: GateRunner, woken: Woken) -> None:
    async def broken() -> GateOutcome:
        raise KeyError("outputs")

    runner.submit(KEY, RUN, broken)
    assert woken.event.wait(5)
    result = runner.result(KEY)
    assert result is not None and result.verdict == Verdict.INCONCLUSIVE
    assert "KeyError" in result.message


# ------------------------------------------------------------------- the golden set, off the pass


def test_the_golden_set_is_read_by_the_run_not_by_the_pass(
    control_plane: ControlPlane,
    kubelet_policies: Any,
    namespace: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """gate_work() is what a pass calls: it may list the pods, never read the golden set. The
    ConfigMap is read when the run itself runs (on the worker), and a set nested far past any
    recursion limit is a Fail with its reason, not an exception."""
    api = control_plane.admin
    deep = '{"inputs": {"x": ' + "[" * 300_000 + "1" + "]" * 300_000 + "}}"
    api.apply(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "golden", "namespace": namespace},
            "data": {"golden.jsonl": deep},
        }
    )
    labels = {NAME_LABEL: "iris", TRACK_LABEL: Track.CANARY.value, REVISION_LABEL: "r2"}
    api.apply(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "iris-canary-0", "namespace": namespace, "labels": labels},
            "spec": {"containers": [{"name": "triton", "image": "triton"}]},
        }
    )
    api.wait_for(
        lambda: (api.get("v1", "Pod", namespace, "iris-canary-0") or {}).get("status", {}).get("podIP")
    )
    spec = parse_spec(
        {
            "model": {"name": "iris", "version": "2", "storageUri": "s3://models/iris/2"},
            "rollout": {
                "gates": {
                    "goldenSet": {"configMapKeyRef": {"name": "golden", "key": "golden.jsonl"}},
                    "minAccuracy": 0.9,
                }
            },
        }
    )
    monkeypatch.setenv("KUBECONFIG", str(admin_kubeconfig(control_plane, tmp_path / "kubeconfig")))
    kube = KubeClient(configuration())
    parent = ObjectRef(name="iris", namespace=namespace, uid="u1")
    since = control_plane.audit_position()

    def configmap_reads() -> list[str]:
        return [
            e["requestURI"]
            for e in control_plane.audit_events(since)
            if e["verb"] == "get" and "/configmaps/golden" in e["requestURI"]
        ]

    work = gate_work(kube, parent, spec, RUN, None)  # what the pass does
    assert configmap_reads() == [], "the pass read the golden set"
    outcome = asyncio.run(work())  # what the worker does
    assert len(configmap_reads()) == 1
    assert outcome.verdict == Verdict.FAIL and outcome.requests == 0
    accuracy = next(c for c in outcome.checks if c.name == "accuracy")
    assert accuracy.verdict == Verdict.FAIL
    assert accuracy.message == (
        f"golden set invalid: goldenSet.configMapKeyRef: ConfigMap {namespace}/golden key golden.jsonl: "
        "golden set line 1: nested deeper than 32 levels"
    )
