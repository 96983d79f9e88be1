"""The work queue between kopf's events and the passes (handlers/workqueue.py)."""

from __future__ import annotations

import threading
import time

import pytest

from modeldeploy.handlers.workqueue import Key, RateLimiter, WorkQueue

A, B = ("ns", "a"), ("ns", "b")


def settle(queue: WorkQueue, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while queue.depth() or queue.running():
        assert time.monotonic() < deadline, "the queue never drained"
        time.sleep(0.01)


def test_a_key_added_while_its_pass_runs_gets_exactly_one_more_pass() -> None:
    started, release = threading.Event(), threading.Event()
    passes: list[Key] = []

    def work(key: Key) -> None:
        passes.append(key)
        started.set()
        release.wait(5)

    queue = WorkQueue(work, workers=4)
    queue.add(A)
    assert started.wait(5)
    for _ in range(10):  # a burst of events during the pass
        queue.add(A)
    assert queue.depth() == 1
    release.set()
    settle(queue)
    assert passes == [A, A]
    queue.close()


def test_keys_run_in_parallel_and_never_one_key_twice_at_once() -> None:
    running: dict[Key, int] = {A: 0, B: 0}
    most: dict[Key, int] = {A: 0, B: 0}
    lock = threading.Lock()
    seen_both = threading.Event()

    def work(key: Key) -> None:
        with lock:
            running[key] += 1
            most[key] = max(most[key], running[key])
            if running[A] and running[B]:
                seen_both.set()
        time.sleep(0.05)
        with lock:
            running[key] -= 1

    queue = WorkQueue(work, workers=4)
    for _ in range(20):
        queue.add(A)
        queue.add(B)
    settle(queue)
    assert seen_both.is_set()
    assert most == {A: 1, B: 1}
    queue.close()


def test_a_failing_pass_does_not_kill_the_worker() -> None:
    passes: list[Key] = []

    def work(key: Key) -> None:
        passes.append(key)
        if key == A:
            raise RuntimeError("boom")

    queue = WorkQueue(work, workers=1)
    queue.add(A)
    settle(queue)
    queue.add(B)
    settle(queue)
    assert passes == [A, B]
    queue.close()
    queue.add(A)  # closed: ignored
    assert passes == [A, B]


def test_wait_idle_returns_once_the_pass_in_flight_has_ended() -> None:
    """What a replica that loses the Lease waits on before it releases it: the passes running then,
    closed queue or not (its queued keys are cancelled, and never counted)."""
    started, release = threading.Event(), threading.Event()

    def work(key: Key) -> None:
        started.set()
        release.wait(5)

    queue = WorkQueue(work, workers=1)
    queue.add(A)
    queue.add(B)  # queued behind A, on the one worker
    assert started.wait(5)
    queue.close()
    assert not queue.wait_idle(0.2), "returned while a pass was running"
    threading.Timer(0.2, release.set).start()
    assert queue.wait_idle(5)
    assert queue.running() == 0


# ---------------------------------------------------------------------------------------------------
# The queue's own semantics, as controller-runtime's, with a fake clock where time matters


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Recorder:
    """The work: records each pass; with `hold`, a pass waits until released."""

    def __init__(self, hold: bool = False) -> None:
        self.passes: list[Key] = []
        self.started = threading.Event()
        self.release = threading.Event()
        if not hold:
            self.release.set()

    def __call__(self, key: Key) -> None:
        self.passes.append(key)
        self.started.set()
        assert self.release.wait(10)


def test_dedup_a_burst_of_adds_of_an_idle_key_is_one_pass() -> None:
    work = Recorder(hold=True)
    queue = WorkQueue(work, workers=1)
    queue.add(B)  # holds the one worker, so that A stays queued
    assert work.started.wait(5)
    for _ in range(10):
        queue.add(A)
    assert queue.depth() == 1
    work.release.set()
    settle(queue)
    assert work.passes == [B, A]
    queue.close()


def test_delayed_add_runs_only_once_due_and_the_latest_timer_wins() -> None:
    clock, work = FakeClock(), Recorder()
    queue = WorkQueue(work, workers=2, clock=clock)
    queue.add_after(A, 10.0)
    queue.add_after(A, 30.0)  # the pass that asked last knows best: it replaces the 10 s timer
    queue.add_after(B, 20.0)
    assert queue.scheduled() == 2
    clock.now += 10.0
    assert queue.fire_due() == 0  # A's 10 s timer was replaced
    clock.now += 10.0
    assert queue.fire_due() == 1
    settle(queue)
    assert work.passes == [B]
    clock.now += 10.0
    assert queue.fire_due() == 1
    settle(queue)
    assert work.passes == [B, A]
    assert queue.scheduled() == 0
    queue.close()


def test_delayed_add_fires_by_itself() -> None:
    """The queue's timer thread, not a caller, moves a due key to the queue."""
    work = Recorder()
    queue = WorkQueue(work, workers=1)
    queue.add_after(A, 0.05)
    deadline = time.monotonic() + 10
    while not work.passes:
        assert time.monotonic() < deadline, "the timed pass never ran"
        time.sleep(0.01)
    assert work.passes == [A]
    queue.close()


def test_delayed_add_of_zero_is_an_add() -> None:
    work = Recorder()
    queue = WorkQueue(work, workers=1, clock=FakeClock())
    queue.add_after(A, 0.0)
    settle(queue)
    assert work.passes == [A]
    queue.close()


@pytest.mark.parametrize(
    ("jitter", "expected"),
    [
        pytest.param(0.0, [0.5, 1, 2, 4, 8, 16, 32, 64, 128, 150, 150], id="no-jitter-half-the-step"),
        pytest.param(0.999999, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300], id="most-jitter-whole-step"),
        pytest.param(0.5, [0.75, 1.5, 3, 6, 12, 24, 48, 96, 192, 225, 225], id="half-jitter"),
    ],
)
def test_rate_limited_retry_backoff_sequence(jitter: float, expected: list[float]) -> None:
    """1 s, 2 s, 4 s ... capped at 5 minutes, with equal jitter: half the step fixed, half random."""
    limiter = RateLimiter(1.0, 2.0, 300.0, jitter=lambda: jitter)
    delays = [limiter.when(A) for _ in expected]
    assert delays == pytest.approx(expected, rel=1e-5)
    assert limiter.failures(A) == len(expected)
    assert limiter.when(B) == pytest.approx(expected[0], rel=1e-5), "each key has its own backoff"
    assert limiter.failing() == 2


def test_rate_limited_add_waits_its_backoff_and_forget_resets_it() -> None:
    clock, work = FakeClock(), Recorder()
    limiter = RateLimiter(1.0, 2.0, 300.0, jitter=lambda: 0.0)
    queue = WorkQueue(work, workers=1, limiter=limiter, clock=clock)
    assert queue.add_rate_limited(A) == 0.5
    assert queue.add_rate_limited(A) == 1.0  # replaces the first timer, one step longer
    clock.now += 0.5
    assert queue.fire_due() == 0
    clock.now += 0.5
    assert queue.fire_due() == 1
    settle(queue)
    assert work.passes == [A]
    queue.limiter.forget(A)  # a pass that succeeded
    assert queue.add_rate_limited(A) == 0.5
    queue.close()


def test_forget_on_delete_drops_the_failures_and_the_timer() -> None:
    clock, work = FakeClock(), Recorder()
    queue = WorkQueue(work, workers=1, clock=clock)
    queue.add_rate_limited(A)
    queue.add_rate_limited(A)
    queue.add_after(B, 5.0)
    queue.forget(A)
    assert queue.limiter.failures(A) == 0
    assert queue.limiter.failing() == 0
    assert queue.scheduled() == 1
    clock.now += 1000.0
    assert queue.fire_due() == 1
    settle(queue)
    assert work.passes == [B], "no pass for the forgotten key"
    queue.close()


def test_shutdown_waits_for_the_pass_in_flight_and_runs_nothing_more() -> None:
    work = Recorder(hold=True)
    queue = WorkQueue(work, workers=1, clock=FakeClock())
    queue.add(A)
    queue.add(B)  # queued behind A: cancelled by the shutdown
    queue.add_after(B, 1.0)  # a timer: dropped by the shutdown
    assert work.started.wait(5)
    assert not queue.shutdown(0.2), "returned while a pass was running"
    queue.add(A)  # closed: ignored
    threading.Timer(0.2, work.release.set).start()
    assert queue.wait_idle(10)
    assert work.passes == [A]
    assert queue.scheduled() == 0
    assert queue.fire_due() == 0
