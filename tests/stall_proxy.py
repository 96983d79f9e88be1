"""A TCP relay on loopback in front of the API server that a test can stall, as a congested or
half-dead connection stalls a replica's requests.

TLS passes through untouched, so a client certificate still logs the replica in as itself and the
audit log names it. While stalled, the relay forwards nothing either way: what it reads is held.
When the stall ends, what is held is delivered -- a request the client still waits for lands on
the server late, as it would after a congestion clears. A connection the client gives up on (it
closes it) while its bytes are held is dropped with them, as an HTTP proxy drops a request whose
client went away before it was forwarded.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
from dataclasses import dataclass, field
from urllib.parse import urlsplit


@dataclass
class StallProxy:
    upstream: str  # https://host:port
    dropped: int = 0  # connections given up by their client while bytes were held
    delivered_late: int = 0  # connections whose held bytes went out when the stall ended
    _stalled: threading.Event = field(default_factory=threading.Event)
    _closed: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        parts = urlsplit(self.upstream)
        self._target = (parts.hostname or "127.0.0.1", parts.port or 443)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"https://127.0.0.1:{self._listener.getsockname()[1]}"
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def stall(self) -> None:
        self._stalled.set()

    def resume(self) -> None:
        self._stalled.clear()

    def close(self) -> None:
        self._closed.set()
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                sock.close()
            self._sockets.clear()

    def __enter__(self) -> StallProxy:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
                server = socket.create_connection(self._target)
            except OSError:
                if self._closed.is_set():
                    return
                continue
            with self._lock:
                self._sockets += [client, server]
            ends = threading.Event()
            for src, dst in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(src, dst, ends), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, ends: threading.Event) -> None:
        held = bytearray()
        was_held = False
        try:
            while not ends.is_set() and not self._closed.is_set():
                if held and not self._stalled.is_set():
                    dst.sendall(held)
                    held.clear()
                    if was_held:
                        with self._lock:
                            self.delivered_late += 1
                        was_held = False
                readable, _, _ = select.select([src], [], [], 0.05)
                if not readable:
                    continue
                try:
                    data = src.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    if held:  # the stall is on: what this end sent never reaches the other
                        with self._lock:
                            self.dropped += 1
                    return
                held += data
                was_held = was_held or self._stalled.is_set()
        except (OSError, ValueError):  # the other direction closed the sockets under us
            return
        finally:
            ends.set()  # one end gone: the connection is over both ways
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
