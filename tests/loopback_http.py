"""One loopback HTTP server for the tests that play a peer (a Prometheus, an API server answering
429, a plain-http host a redirect points at): a handler class in, the base URL out."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def serving(
    handler: type[http.server.BaseHTTPRequestHandler],
    server_class: type[http.server.HTTPServer] = http.server.ThreadingHTTPServer,
) -> Iterator[str]:
    """`handler` served on 127.0.0.1 on a free port, from a thread, until the block ends."""
    server = server_class(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
