"""The work queue between kopf's events and the passes (handlers/workqueue.py)."""

from __future__ import annotations

import threading
import time

from modeldeploy.handlers.workqueue import Key, WorkQueue

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
