"""The work queue between kopf's events and the reconcile passes, as controller-runtime's.

kopf's handlers only add a key and return, so kopf's own workers never wait for a pass and its
indexes (the cache a pass reads) stay current under load. Passes run on a pool of our own. A key
is queued at most once; a key added while its pass runs gets exactly one more pass after it; and
two threads never reconcile one object at once.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
from collections.abc import Callable

Key = tuple[str, str]  # namespace, name

log = logging.getLogger("modeldeploy.workqueue")


class WorkQueue:
    def __init__(self, work: Callable[[Key], None], workers: int) -> None:
        self._work = work
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)  # notified when a pass ends
        self._queued: set[Key] = set()
        self._running: set[Key] = set()
        self._dirty: set[Key] = set()
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="reconcile"
        )
        self._closed = False

    def add(self, key: Key) -> None:
        with self._lock:
            if self._closed or key in self._queued:
                return
            if key in self._running:
                self._dirty.add(key)  # one more pass once this one ends, from the cache as it is then
                return
            self._queued.add(key)
        self._pool.submit(self._process, key)

    def depth(self) -> int:
        """Keys waiting for a pass (queued, or to run again after the one running)."""
        with self._lock:
            return len(self._queued) + len(self._dirty)

    def running(self) -> int:
        with self._lock:
            return len(self._running)

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no pass runs; False if one still does after `timeout` seconds. Passes that
        start later are not waited for (the caller has stopped them writing before)."""
        with self._idle:
            return self._idle.wait_for(lambda: not self._running, timeout)

    def close(self) -> None:
        with self._lock:
            self._closed = True
        self._pool.shutdown(wait=False, cancel_futures=True)

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
                self._idle.notify_all()
                return
