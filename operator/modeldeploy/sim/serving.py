"""Serving a ``ClusterEmulator`` over real HTTP on loopback, from a thread with its own event loop."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from types import TracebackType

import kmock

from modeldeploy.sim.emulator import ClusterEmulator


class EmulatorThread:
    """
    ``with EmulatorThread(emulator) as server:`` -- the emulator answers at ``server.url``.

    Its own thread and loop, as a real API server is another process: the demo's code stays
    synchronous, and the operator (a process) talks to it over HTTP.
    """

    def __init__(self, emulator: ClusterEmulator, *, host: str = "127.0.0.1") -> None:
        self.emulator = emulator
        self.host = host
        self.url = ""
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def start(self, timeout: float = 10.0) -> str:
        self._thread = threading.Thread(
            target=asyncio.run, args=(self._serve(),), name="cluster-emulator", daemon=True
        )
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError("the emulator did not start in time")
        if self._error is not None:
            raise self._error
        return self.url

    def stop(self, timeout: float = 10.0) -> None:
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop may be finishing already
                self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            async with self.emulator, kmock.Server(self.emulator, host=self.host) as server:
                self.url = str(server.url).rstrip("/")
                self._ready.set()
                try:
                    await self._stop.wait()
                finally:
                    # Open watches would otherwise hold aiohttp's graceful shutdown for up to a minute.
                    self.emulator.close_watches()
                    await asyncio.sleep(0)
        except BaseException as e:
            self._error = e
            raise
        finally:
            self._ready.set()

    def __enter__(self) -> EmulatorThread:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
