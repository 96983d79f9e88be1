"""The floor for bench/reconcile_latency.py: a bare client that creates the children, and nothing else.

It does what the operator must do for a new ModelDeployment, minus everything else an operator does:
it watches ModelDeployments in one namespace and, for each one ADDED, sends the server-side applies
the operator sends -- the same children (``modeldeploy.rollout.plan.steady_children`` of the object's
own spec and uid, stamped with ``render.compare.stamped``), the same paths, query
(``fieldManager=modeldeploy&force=true``), content type and order -- on as many threads as the
operator has workers, through the test bed's REST client (testbed/kubeapi.py). No reads of children,
no status write, no Event.

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
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # testbed/, beside bench/: not installed

from modeldeploy.adapters.kube import FIELD_MANAGER
from modeldeploy.api.resource import ObjectRef, parse_spec
from modeldeploy.render.compare import stamped
from modeldeploy.render.options import RenderOptions
from modeldeploy.rollout.plan import steady_children
from testbed.kubeapi import ApiError, KubeApi

MODEL_DEPLOYMENT = ("modeldeploy.io/v1alpha1", "ModelDeployment")
ATTEMPTS = 8


def children(body: dict[str, Any]) -> list[dict[str, Any]]:
    """What the operator applies for a new object: its steady children, stamped."""
    meta = body["metadata"]
    parent = ObjectRef(
        name=meta["name"], namespace=meta["namespace"], uid=meta["uid"], generation=meta.get("generation", 1)
    )
    return [stamped(child) for child in steady_children(parent, parse_spec(body["spec"]), RenderOptions())]


class Floor:
    def __init__(self, api: KubeApi, namespace: str, concurrency: int) -> None:
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
        what = f"{child['kind']} {meta.get('namespace')}/{meta['name']}"
        for attempt in range(ATTEMPTS):
            with self.lock:
                self.requests += 1
            try:
                # The operator's query: fieldManager=modeldeploy&force=true, no fieldValidation.
                self.api.apply(child, manager=FIELD_MANAGER, force=True, strict=False)
                return
            except ApiError as error:
                if error.status < 500 and error.status != 429:
                    with self.lock:
                        self.errors.append(f"{what}: {error}")
                    return
                # A 5xx or 429: retried, as any controller would.
                print(f"retry {attempt + 1}: {what}: {error}", file=sys.stderr, flush=True)
                with self.lock:
                    self.retries += 1
                time.sleep(0.1 * 2**attempt)
            except OSError as error:
                with self.lock:
                    self.errors.append(f"{what}: {error}")
                return
        with self.lock:
            self.errors.append(f"{what}: still failing after {ATTEMPTS} attempts")

    def worker(self) -> None:
        while (body := self.jobs.get()) is not None:
            for child in children(body):
                self.apply(child)
            with self.lock:
                self.objects += 1

    def watch(self, version: str) -> None:
        """Each ModelDeployment once, as it is ADDED; reconnects as a client-go reflector would."""
        while not self.stop.is_set():
            try:
                for event in self.api.watch(*MODEL_DEPLOYMENT, self.namespace, version, timeout_seconds=30):
                    obj = event.get("object", {})
                    if event.get("type") == "ERROR":
                        version = self.list()  # 410 Gone: list again, from now
                        break
                    version = obj.get("metadata", {}).get("resourceVersion", version)
                    if event.get("type") == "ADDED":
                        self.enqueue(obj)
            except (ApiError, OSError, ValueError) as error:
                if not self.stop.is_set():
                    with self.lock:
                        self.errors.append(f"watch: {error}")
                    time.sleep(0.2)

    def list(self) -> str:
        items, version = self.api.listing(*MODEL_DEPLOYMENT, self.namespace)
        for item in items:
            self.enqueue(item)
        return version

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
    cert, key = os.environ.get("BENCH_CERT_FILE"), os.environ.get("BENCH_KEY_FILE")
    api = KubeApi(  # the test bed's client (testbed/kubeapi.py), not the operator's
        os.environ["BENCH_SERVER"],
        ca_file=Path(os.environ["BENCH_CA_FILE"]),
        token=os.environ.get("BENCH_TOKEN") or None,
        cert_file=Path(cert) if cert else None,  # a client certificate (--cluster-admin)
        key_file=Path(key) if key else None,
    )
    result = Floor(api, args.namespace, args.concurrency).run()
    print(json.dumps(result), flush=True)
    return 1 if result["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
