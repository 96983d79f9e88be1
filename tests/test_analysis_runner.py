"""The analysis worker (handlers/analysis.py): a round runs once per name, a failed one runs again,
and a round replaced or forgotten meanwhile never reports."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest

from modeldeploy.api.status import MetricResult, Verdict
from modeldeploy.handlers.analysis import AnalysisRunner

KEY = ("ns", "md")
RESULT = [MetricResult(name="errorRate", verdict=Verdict.PASS, at="2026-12-07T00:00:00Z")]


class Woken:
    def __init__(self) -> None:
        self.event = threading.Event()
        self.keys: list[tuple[str, str]] = []

    def __call__(self, namespace: str, name: str) -> None:
        self.keys.append((namespace, name))
        self.event.set()

    def wait(self) -> None:
        assert self.event.wait(5), "the worker woke nothing"
        self.event.clear()


@pytest.fixture
def woken() -> Woken:
    return Woken()


@pytest.fixture
def runner(woken: Woken) -> Iterator[AnalysisRunner]:
    made = AnalysisRunner(woken, parallel=2)
    yield made
    made.close()


def counting(work: Callable[[], list[MetricResult]]) -> tuple[list[int], Callable[[], list[MetricResult]]]:
    calls = [0]

    def run() -> list[MetricResult]:
        calls[0] += 1
        return work()

    return calls, run


def test_a_round_runs_once_per_name_and_wakes_its_object(runner: AnalysisRunner, woken: Woken) -> None:
    calls, work = counting(lambda: RESULT)
    runner.want(KEY, "r1", work)
    woken.wait()
    runner.want(KEY, "r1", work)  # the next pass asks for the same round: no second run
    done = runner.result(KEY)
    assert done is not None and (done.round, done.results) == ("r1", RESULT)
    assert calls == [1] and woken.keys == [KEY]


def test_a_round_that_raised_runs_again_when_asked_again(runner: AnalysisRunner, woken: Woken) -> None:
    failures = [1]

    def flaky() -> list[MetricResult]:
        if failures[0]:
            failures[0] -= 1
            raise RuntimeError("a bug in a query")
        return RESULT

    calls, work = counting(flaky)
    runner.want(KEY, "r1", work)
    deadline = time.monotonic() + 5
    # The machine asks for the same round again after its deadline; once the failure is in, that
    # starts it again (before, the failed run is still the round's job, and nothing starts).
    while calls[0] < 2 and time.monotonic() < deadline:
        runner.want(KEY, "r1", work)
        time.sleep(0.01)
    woken.wait()
    done = runner.result(KEY)
    assert done is not None and done.results == RESULT and calls == [2]


def test_a_replaced_or_forgotten_round_never_reports(runner: AnalysisRunner, woken: Woken) -> None:
    release = threading.Event()

    def slow() -> list[MetricResult]:
        release.wait(5)
        return RESULT

    runner.want(KEY, "r1", slow)
    runner.want(KEY, "r2", lambda: [])  # the step moved on: r1's results must not be judged
    woken.wait()
    release.set()
    done = runner.result(KEY)
    assert done is not None and done.round == "r2"
    runner.forget(KEY)
    assert runner.result(KEY) is None
    assert woken.keys == [KEY]
