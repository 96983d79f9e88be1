"""The floor for bench/reconcile_latency.py: a bare client that creates the children, and nothing else.

It does what the operator must do for a new ModelDeployment, minus everything else an operator does:
it watches ModelDeployments in one namespace and, for each one ADDED, sends the server-side applies
the operator sends -- the same children (``modeldeploy.rollout.plan.steady_children`` of the object's
own spec and uid, stamped with ``render.compare.stamped``), the same paths, query
(``fieldManager=modeldeploy&force=true``), content type and order -- on as many threads as the
operator has workers. No reads of children, no status write, no Event.

It runs as a process of its own, against the real API server, logged in with a ServiceAccount token
bound to the same ClusterRole as the operator (so the audit log tells its requests apart).

    environment  BENCH_SERVER, BENCH_CA_FILE, and BENCH_TOKEN or BENCH_CERT_FILE + BENCH_KEY_FILE
    stdout       ready                                      once the watch is open
    stdin        EOF                                        finish the queue and exit
    stdout       {"objects": N, "requests": N, "retries": N, "errors": [...], "cpu_seconds": S}

Run by the benchmark, not by hand: ``python bench/floor_client.py --namespace NS --concurrency 16``.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import urllib3

from modeldeploy.adapters.kube import FIELD_MANAGER, kind_of
from modeldeploy.api.resource import ObjectRef, parse_spec
from modeldeploy.render.compare import stamped
from modeldeploy.render.options import RenderOptions
from modeldeploy.rollout.plan import steady_children

MODEL_DEPLOYMENTS = "/apis/modeldeploy.io/v1alpha1/namespaces/{namespace}/modeldeployments"
APPLY = "application/apply-patch+yaml"  # the body is JSON, as the kubernetes client sends it
QUERY = f"fieldManager={FIELD_MANAGER}&force=true"
ATTEMPTS = 8


def children(body: dict[str, Any]) -> list[dict[str, Any]]:
    """What the operator applies for a new object: its steady children, stamped."""
    meta = body["metadata"]
    parent = ObjectRef(
        name=meta["name"], namespace=meta["namespace"], uid=meta["uid"], generation=meta.get("generation", 1)
    )
    return [stamped(child) for child in steady_children(parent, parse_spec(body["spec"]), RenderOptions())]


def _lines(response: urllib3.BaseHTTPResponse) -> Iterator[bytes]:
    buffer = b""
    for chunk in response.stream(4096):
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            if line.strip():
                yield line
    response.release_conn()


class ServerError(OSError):
    """The server could not answer now (5xx, 429)."""


class Client:
    """urllib3 (the library under the official client), one kept-alive connection per thread."""

    def __init__(self, server: str, ca_file: str, connections: int) -> None:
        self.server = server.rstrip("/")
        self.headers = {"Accept": "application/json"}
        if os.environ.get("BENCH_TOKEN"):
            self.headers["Authorization"] = f"Bearer {os.environ['BENCH_TOKEN']}"
        self.pool = urllib3.PoolManager(
            maxsize=connections,
            block=True,
            ca_certs=ca_file,
            cert_reqs="CERT_REQUIRED",
            cert_file=os.environ.get("BENCH_CERT_FILE"),  # a client certificate (--cluster-admin)
            key_file=os.environ.get("BENCH_KEY_FILE"),
            retries=False,
        )

    def request(
        self, method: str, path: str, body: Any = None, query: str = "", stream: bool = False
    ) -> urllib3.BaseHTTPResponse:
        headers = dict(self.headers)
        if body is not None:
            headers["Content-Type"] = APPLY
        response = self.pool.request(
            method,
            f"{self.server}{path}{'?' + query if query else ''}",
            body=json.dumps(body).encode() if body is not None else None,
            headers=headers,
            preload_content=not stream,
            timeout=urllib3.Timeout(connect=5.0, read=None if stream else 30.0),
        )
        if response.status >= 500 or response.status == 429:
            raise ServerError(f"{method} {path}: {response.status} {response.read()[:300]!r}")
        if response.status >= 400:
            raise OSError(f"{method} {path}: {response.status} {response.read()[:300]!r}")
        return response


class Floor:
    def __init__(self, api: Client, namespace: str, concurrency: int) -> None:
        self.api = api
        self.namespace = namespace
        self.concurrency = concurrency
        self.jobs: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.lock = threading.Lock()
        self.seen: set[str] = set()
        self.requests = 0
        self.retries = 0
        self.objects = 0
        self.errors: list[str] = []
        self.stop = threading.Event()

    def apply(self, child: dict[str, Any]) -> None:
        meta = child["metadata"]
        path = f"{kind_of(child).collection(meta.get('namespace'))}/{meta['name']}"
        for attempt in range(ATTEMPTS):
            with self.lock:
                self.requests += 1
            try:
                self.api.request("PATCH", path, child, QUERY)
                return
            except ServerError as error:  # a 5xx or 429: retried, as any controller would
                print(f"retry {attempt + 1}: {error}", file=sys.stderr, flush=True)
                with self.lock:
                    self.retries += 1
                time.sleep(0.1 * 2**attempt)
            except (urllib3.exceptions.HTTPError, OSError) as error:
                with self.lock:
                    self.errors.append(f"{path}: {error}")
                return
        with self.lock:
            self.errors.append(f"{path}: still failing after {ATTEMPTS} attempts")

    def worker(self) -> None:
        while (body := self.jobs.get()) is not None:
            for child in children(body):
                self.apply(child)
            with self.lock:
                self.objects += 1

    def watch(self, version: str) -> None:
        """Each ModelDeployment once, as it is ADDED; reconnects as a client-go reflector would."""
        path = MODEL_DEPLOYMENTS.format(namespace=self.namespace)
        while not self.stop.is_set():
            try:
                query = f"watch=true&allowWatchBookmarks=true&timeoutSeconds=30&resourceVersion={version}"
                response = self.api.request("GET", path, query=query, stream=True)
                for line in _lines(response):
                    event = json.loads(line)
                    obj = event.get("object", {})
                    if event.get("type") == "ERROR":
                        version = self.list()  # 410 Gone: list again, from now
                        break
                    version = obj.get("metadata", {}).get("resourceVersion", version)
                    if event.get("type") == "ADDED":
                        self.enqueue(obj)
            except (urllib3.exceptions.HTTPError, OSError, ValueError) as error:
                if not self.stop.is_set():
                    with self.lock:
                        self.errors.append(f"watch: {error}")
                    time.sleep(0.2)

    def list(self) -> str:
        listing = json.loads(self.api.request("GET", MODEL_DEPLOYMENTS.format(namespace=self.namespace)).data)
        for item in listing.get("items", []):
            self.enqueue(item)
        return str(listing["metadata"]["resourceVersion"])

    def enqueue(self, body: dict[str, Any]) -> None:
        uid = body["metadata"]["uid"]
        if uid not in self.seen:
            self.seen.add(uid)
            self.jobs.put(body)

    def run(self) -> dict[str, Any]:
        threads = [threading.Thread(target=self.worker, daemon=True) for _ in range(self.concurrency)]
        for thread in threads:
            thread.start()
        version = self.list()
        threading.Thread(target=self.watch, args=(version,), daemon=True).start()
        print("ready", flush=True)
        sys.stdin.read()  # until the benchmark closes our stdin
        self.stop.set()
        for _ in threads:
            self.jobs.put(None)
        for thread in threads:
            thread.join()
        return {
            "objects": self.objects,
            "requests": self.requests,
            "retries": self.retries,
            "errors": self.errors[:10],
            "cpu_seconds": round(time.process_time(), 3),
        }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--namespace", required=True, help="the namespace to watch")
    parser.add_argument("--concurrency", type=int, default=16, help="apply threads (the operator has 16)")
    args = parser.parse_args()
    api = Client(
        os.environ["BENCH_SERVER"],
        os.environ["BENCH_CA_FILE"],
        args.concurrency + 1,  # and the watch
    )
    result = Floor(api, args.namespace, args.concurrency).run()
    print(json.dumps(result), flush=True)
    return 1 if result["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
