"""Serving a ``ClusterEmulator`` over real HTTP on loopback: from asyncio, or from a thread."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Iterator
from types import TracebackType

import kmock

from modeldeploy.sim.emulator import ClusterEmulator


@contextlib.asynccontextmanager
async def serve_emulator(
    emulator: ClusterEmulator, *, host: str = "127.0.0.1", port: int | None = None
) -> AsyncIterator[str]:
    """Serve the emulator on ``host`` (a free port unless given); yields the base URL."""
    async with emulator, kmock.Server(emulator, host=host, port=port) as server:
        emulator.bind_loop(asyncio.get_running_loop())
        try:
            yield str(server.url).rstrip("/")
        finally:
            # Open watches would otherwise hold aiohttp's graceful shutdown for up to a minute.
            emulator.close_watches()
            await asyncio.sleep(0)


class EmulatorThread:
    """
    Serve an emulator from a background thread with its own event loop.

    For synchronous code (the official ``kubernetes`` client, benchmarks, the CLI demo)::

        with EmulatorThread(emulator) as server:
            client = kubernetes.client.ApiClient(kubernetes.client.Configuration(host=server.url))
    """

    def __init__(
        self, emulator: ClusterEmulator, *, host: str = "127.0.0.1", port: int | None = None
    ) -> None:
        self.emulator = emulator
        self.host = host
        self.port = port
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
            async with serve_emulator(self.emulator, host=self.host, port=self.port) as url:
                self.url = url
                self._ready.set()
                await self._stop.wait()
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


@contextlib.contextmanager
def serve_emulator_in_thread(
    emulator: ClusterEmulator, *, host: str = "127.0.0.1", port: int | None = None
) -> Iterator[str]:
    """The synchronous twin of ``serve_emulator``: yields the base URL while a thread serves."""
    with EmulatorThread(emulator, host=host, port=port) as server:
        yield server.url
