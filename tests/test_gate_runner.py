"""The gate worker (handlers/gates.py): runs off the caller's thread, reports once, cancels cleanly."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from modeldeploy.adapters.inference import GateOutcome
from modeldeploy.api.status import GateCheck, GateRun, Verdict
from modeldeploy.handlers.gates import GateRunner

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
