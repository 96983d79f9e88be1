"""The floor for bench/reconcile_latency.py: the operator's child writes, and nothing else.

A bare HTTP client (urllib3, the library under the official kubernetes client) that sends exactly
the server-side-apply PATCHes the operator sends for a new ModelDeployment: the same stamped bodies
from ``modeldeploy.rollout.plan.steady_children``, the same path, query, content type and field
manager, in the same order. No watch, no reads, no status write, no Event.

It runs as its own process, as the operator does, so that it does not share a GIL with the
emulator. Protocol (one JSON document a line):

    stdin  1st line   {"namespace": NS, "names": [...], "spec": {...}}   render everything up front
    stdout            ready
    stdin  each line  {"name": NAME, "uid": UID}                        apply its children now
    stdin  EOF        finish the queue, then exit
    stdout last line  {"jobs": N, "requests": N, "errors": [...], "cpu_seconds": S}

Run by the benchmark, not by hand: ``python bench/floor_client.py --server URL --concurrency 16``.
"""

from __future__ import annotations

import argparse
import json
import queue
import sys
import threading
import time
import urllib.parse
from typing import Any

import urllib3

from modeldeploy.adapters.kube import FIELD_MANAGER, kind_of
from modeldeploy.api.resource import ObjectRef, parse_spec
from modeldeploy.render.compare import stamped
from modeldeploy.render.options import RenderOptions
from modeldeploy.rollout.plan import steady_children

PLACEHOLDER_UID = "00000000-0000-0000-0000-000000000000"
APPLY_CONTENT_TYPE = "application/apply-patch+yaml"  # the body is JSON, as the kubernetes client sends it
QUERY = urllib.parse.urlencode([("fieldManager", FIELD_MANAGER), ("force", "true")])


def render(namespace: str, name: str, spec: dict[str, Any]) -> list[dict[str, Any]]:
    """The children the operator applies for a new object, with a placeholder owner uid (unstamped)."""
    parent = ObjectRef(name=name, namespace=namespace, uid=PLACEHOLDER_UID, generation=1)
    return steady_children(parent, parse_spec(spec), RenderOptions())


def with_owner(child: dict[str, Any], uid: str) -> dict[str, Any]:
    """The child with its owner's real uid, stamped as the operator stamps what it applies."""
    meta = dict(child["metadata"])
    meta["ownerReferences"] = [{**ref, "uid": uid} for ref in meta.get("ownerReferences") or []]
    return stamped({**child, "metadata": meta})


def path_of(child: dict[str, Any]) -> str:
    meta = child["metadata"]
    return f"{kind_of(child).collection(meta.get('namespace'))}/{meta['name']}?{QUERY}"


class Floor:
    def __init__(self, server: str, concurrency: int) -> None:
        url = urllib.parse.urlsplit(server)
        if url.hostname not in ("127.0.0.1", "localhost", "::1"):
            raise SystemExit(f"the floor client talks to loopback only, not {url.hostname}")
        self.pool = urllib3.HTTPConnectionPool(
            url.hostname, url.port, maxsize=concurrency, block=True, retries=False, timeout=30.0
        )
        self.concurrency = concurrency
        self.rendered: dict[str, list[dict[str, Any]]] = {}
        self.jobs: queue.Queue[tuple[str, str] | None] = queue.Queue()
        self.lock = threading.Lock()
        self.requests = 0
        self.done = 0
        self.errors: list[str] = []

    def apply(self, child: dict[str, Any]) -> None:
        response = self.pool.request(
            "PATCH",
            path_of(child),
            body=json.dumps(child).encode(),
            headers={"Content-Type": APPLY_CONTENT_TYPE, "Accept": "application/json"},
        )
        with self.lock:
            self.requests += 1
            if not 200 <= response.status <= 299:
                self.errors.append(f"{response.status} {path_of(child)}: {response.data[:200]!r}")

    def worker(self) -> None:
        while (job := self.jobs.get()) is not None:
            name, uid = job
            for child in self.rendered[name]:
                self.apply(with_owner(child, uid))
            with self.lock:
                self.done += 1

    def run(self) -> dict[str, Any]:
        setup = json.loads(sys.stdin.readline())
        for name in setup["names"]:
            self.rendered[name] = render(setup["namespace"], name, setup["spec"])
        threads = [threading.Thread(target=self.worker, daemon=True) for _ in range(self.concurrency)]
        for thread in threads:
            thread.start()
        print("ready", flush=True)
        for line in sys.stdin:
            if line.strip():
                job = json.loads(line)
                self.jobs.put((job["name"], job["uid"]))
        for _ in threads:
            self.jobs.put(None)
        for thread in threads:
            thread.join()
        self.pool.close()
        return {
            "jobs": self.done,
            "requests": self.requests,
            "errors": self.errors[:10],
            "cpu_seconds": round(time.process_time(), 3),
        }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--server", required=True, help="the emulator's URL (loopback)")
    parser.add_argument("--concurrency", type=int, default=1, help="objects in flight (threads)")
    args = parser.parse_args()
    result = Floor(args.server, args.concurrency).run()
    print(json.dumps(result), flush=True)
    return 1 if result["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
