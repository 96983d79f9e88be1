"""The analysis worker: Prometheus rounds run on threads of their own, off the pass threads.

A round is a handful of queries bounded by ROUND_DEADLINE_SECONDS, and a slow or hostile
Prometheus may use all of it. A pass must not wait for it, nor hold up other objects' passes
meanwhile; so, as with gate runs, a pass only asks for the round its decision names (`want`), and
the worker runs it, at most `parallel` at once, and wakes the object when the results are in. The
next pass observes them (`result`) and judges them, once.

Results live in memory only: an operator restarted mid-round (or a new leader) finds the round
still due from the timestamps in status and asks for it again.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from modeldeploy.api.status import MetricResult
from modeldeploy.handlers.workqueue import Key
from modeldeploy.rollout.observe import AnalysisRound

log = logging.getLogger("modeldeploy.analysis")

DEFAULT_PARALLEL = 4


@dataclass
class _Job:
    round: str
    future: concurrent.futures.Future[list[MetricResult]]
    result: AnalysisRound | None = None


class AnalysisRunner:
    def __init__(self, wake: Callable[[str, str], None], parallel: int = DEFAULT_PARALLEL) -> None:
        self._wake = wake
        self._pool = concurrent.futures.ThreadPoolExecutor(parallel, thread_name_prefix="analysis")
        self._lock = threading.Lock()
        self._jobs: dict[Key, _Job] = {}

    def result(self, key: Key) -> AnalysisRound | None:
        """The object's last finished round (the machine takes it only for the round it wants)."""
        with self._lock:
            job = self._jobs.get(key)
            return job.result if job is not None else None

    def want(self, key: Key, round_: str, work: Callable[[], list[MetricResult]]) -> None:
        """Have `round_` running or finished; a round of the object for another name is dropped."""
        with self._lock:
            job = self._jobs.get(key)
            if job is not None and job.round == round_:
                return
            if job is not None:
                job.future.cancel()  # not started yet: never sent; started: its result is dropped
            future = self._pool.submit(work)
            job = self._jobs[key] = _Job(round_, future)
        future.add_done_callback(lambda done: self._done(key, job, done))

    def forget(self, key: Key) -> None:
        """No round wanted any more (the object deleted, or this replica no longer leads)."""
        with self._lock:
            job = self._jobs.pop(key, None)
        if job is not None:
            job.future.cancel()

    def forget_all(self) -> None:
        with self._lock:
            jobs, self._jobs = list(self._jobs.values()), {}
        for job in jobs:
            job.future.cancel()

    def close(self) -> None:
        self.forget_all()
        # A round under way ends by its deadline; nothing waits for it.
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _done(self, key: Key, job: _Job, future: concurrent.futures.Future[list[MetricResult]]) -> None:
        if future.cancelled():
            return
        error = future.exception()
        with self._lock:
            if self._jobs.get(key) is not job:
                return  # forgotten, or replaced by another round meanwhile
            if error is not None:
                # query_round turns every provider problem into an Inconclusive result; anything
                # else is a bug here, and must still not leave the rollout waiting: the job goes, so
                # the pass the machine asks for after the round's deadline starts the round again.
                del self._jobs[key]
            else:
                job.result = AnalysisRound(job.round, future.result())
        if error is not None:
            log.error("%s/%s: analysis round %s failed", *key, job.round, exc_info=error)
            return
        self._wake(*key)
