"""The work queue between kopf's events and the reconcile passes, as controller-runtime's.

kopf's handlers only add a key and return, so kopf's own workers never wait for a pass and its
indexes (the cache a pass reads) stay current under load. Passes run on a pool of our own.

- De-duplication: a key is queued at most once; a key added while its pass runs gets exactly one
  more pass after it; two threads never reconcile one object at once.
- Delayed add (`add_after`): a timed pass (an analysis interval, a pause, a deadline, a retry).
  One timer per key, and the latest call sets it: the pass that asks has just recomputed every
  timer from status, so its answer replaces the earlier one (client-go keeps the earliest, which
  here would only add passes).
- Rate-limited retry (`add_rate_limited`, `forget`): a failing key is tried again after 1 s, 2 s,
  4 s ... up to 5 minutes, each with jitter, and never holds up the other keys.
- `forget` also drops a key's timer: for an object deleted, nothing is kept.
"""

from __future__ import annotations

import concurrent.futures
import heapq
import itertools
import logging
import random
import threading
import time
from collections.abc import Callable

Key = tuple[str, str]  # namespace, name

log = logging.getLogger("modeldeploy.workqueue")


class RateLimiter:
    """Per-key exponential backoff with equal jitter (half the step fixed, half random), so that
    keys that failed together do not all come back at the same moment."""

    def __init__(
        self,
        base: float = 1.0,
        factor: float = 2.0,
        cap: float = 300.0,
        *,
        jitter: Callable[[], float] | None = None,  # in [0, 1); a fixed one for tests
    ) -> None:
        self._base, self._factor, self._cap = base, factor, cap
        self._jitter = jitter or random.Random().random  # noqa: S311 -- jitter, not a secret
        self._lock = threading.Lock()
        self._failures: dict[Key, int] = {}

    def when(self, key: Key) -> float:
        """One more failure of `key`: the seconds to wait before its next try."""
        with self._lock:
            self._failures[key] = count = self._failures.get(key, 0) + 1
        step = min(self._cap, self._base * self._factor ** min(count - 1, 64))
        return step / 2 + step / 2 * self._jitter()

    def forget(self, key: Key) -> None:
        with self._lock:
            self._failures.pop(key, None)

    def failures(self, key: Key) -> int:
        with self._lock:
            return self._failures.get(key, 0)

    def failing(self) -> int:
        """Keys whose last try failed."""
        with self._lock:
            return len(self._failures)


class WorkQueue:
    def __init__(
        self,
        work: Callable[[Key], None],
        workers: int,
        *,
        limiter: RateLimiter | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._work = work
        self.limiter = limiter or RateLimiter()
        self._clock = clock
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # a pass ended, a timer was set, or closing
        self._queued: set[Key] = set()
        self._running: set[Key] = set()
        self._dirty: set[Key] = set()
        self._due: dict[Key, float] = {}  # key -> when its timed pass is due (clock)
        self._timers: list[tuple[float, int, Key]] = []  # a heap; entries not in _due are stale
        self._order = itertools.count()
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="reconcile"
        )
        self._closed = False
        self._timer_thread = threading.Thread(target=self._run_timers, name="workqueue-timers", daemon=True)
        self._timer_thread.start()

    # ---------------------------------------------------------------------------------- adding

    def add(self, key: Key) -> None:
        with self._lock:
            if self._closed or key in self._queued:
                return
            if key in self._running:
                self._dirty.add(key)  # one more pass once this one ends, from the cache as it is then
                return
            self._queued.add(key)
        self._pool.submit(self._process, key)

    def add_after(self, key: Key, delay: float) -> None:
        """A pass for `key` in `delay` seconds, replacing any timer the key had."""
        if delay <= 0:
            self.add(key)
            return
        with self._lock:
            if self._closed:
                return
            due = self._clock() + delay
            self._due[key] = due
            heapq.heappush(self._timers, (due, next(self._order), key))
            self._changed.notify_all()

    def add_rate_limited(self, key: Key) -> float:
        """`key` failed: a pass again after its own backoff. Returns that delay."""
        delay = self.limiter.when(key)
        self.add_after(key, delay)
        return delay

    def forget(self, key: Key) -> None:
        """Drop what is kept for `key`: its failures, and its timer (its object is gone)."""
        self.limiter.forget(key)
        with self._lock:
            self._due.pop(key, None)

    def cancel_timers(self) -> None:
        """Drop every timed pass (a replica that stops leading: the next leader sets its own)."""
        with self._lock:
            self._due.clear()
            self._timers.clear()

    def fire_due(self) -> int:
        """Add every key whose timer is due; the number added. The timer thread calls it."""
        with self._lock:
            fired = self._pop_due(self._clock())
        for key in fired:
            self.add(key)
        return len(fired)

    # ---------------------------------------------------------------------------------- reading

    def depth(self) -> int:
        """Keys waiting for a pass (queued, or to run again after the one running)."""
        with self._lock:
            return len(self._queued) + len(self._dirty)

    def scheduled(self) -> int:
        """Keys waiting for a timed pass."""
        with self._lock:
            return len(self._due)

    def running(self) -> int:
        with self._lock:
            return len(self._running)

    # ---------------------------------------------------------------------------------- stopping

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no pass runs; False if one still does after `timeout` seconds. Passes that
        start later are not waited for (the caller has stopped them writing before)."""
        with self._changed:
            return self._changed.wait_for(lambda: not self._running, timeout)

    def close(self) -> None:
        """No new pass: keys queued are cancelled, timers dropped, adds ignored."""
        with self._lock:
            self._closed = True
            self._due.clear()
            self._timers.clear()
            self._changed.notify_all()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def shutdown(self, timeout: float) -> bool:
        """close(), then wait for the passes in flight; False if one still runs after `timeout`."""
        self.close()
        return self.wait_idle(timeout)

    # ---------------------------------------------------------------------------------- inside

    def _pop_due(self, now: float) -> list[Key]:
        fired = []
        while self._timers and self._timers[0][0] <= now:
            due, _, key = heapq.heappop(self._timers)
            if self._due.get(key) == due:  # else replaced by a later add_after, or forgotten
                del self._due[key]
                fired.append(key)
        return fired

    def _run_timers(self) -> None:
        while True:
            with self._changed:
                if self._closed:
                    return
                fired = self._pop_due(self._clock())
                if not fired:
                    wait = self._timers[0][0] - self._clock() if self._timers else None
                    self._changed.wait(None if wait is None else max(0.0, min(wait, 60.0)))
                    continue
            for key in fired:
                self.add(key)

    def _process(self, key: Key) -> None:
        with self._lock:
            self._queued.discard(key)
            self._running.add(key)
        while True:
            try:
                self._work(key)
            except Exception:  # the work logs its own failures; a pool thread must not die
                log.exception("reconcile of %s/%s failed", *key)
            with self._lock:
                # Decided under the same lock that add() takes: an add() in between cannot be lost.
                if key in self._dirty and not self._closed:
                    self._dirty.discard(key)
                    continue
                self._running.discard(key)
                self._changed.notify_all()
                return
