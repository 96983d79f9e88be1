"""The operator's peak memory with golden sets at their bounds, as many runs at once as the worker allows.

`modeldeploy run` as a process on the real control plane (etcd + kube-apiserver +
kube-controller-manager from $KUBEBUILDER_ASSETS), a kubelet stand-in that makes every Pod Ready
(canary pods at CANARY_IP, primary pods at an address where nothing listens), a real MLServer
serving the iris model `iris-good` at CANARY_IP:8000 as the canary, and a TLS server on loopback
serving the golden sets at https `storageUri`s (the operator trusts its CA through SSL_CERT_FILE).

For each scenario, a fresh operator process and namespace: --runs ModelDeployments are applied
and become Stable at version 1, then all move to version 2 at once, so that their gate runs start
together; the worker runs at most 4 at once (handlers/gates.py, DEFAULT_PARALLEL). The figure is
the operator's VmHWM (/proc/<pid>/status: the peak resident set over its life; `modeldeploy run`
starts no child process) once every run has finished, next to its VmHWM before the runs.

The scenarios, each golden set at the bounds of gates/golden.py (MAX_BYTES, MAX_EXAMPLES):
- valid: MAX_EXAMPLES iris examples (4 features), as many bytes as the bound allows; judged;
- wide: one example whose tensor is MAX_BYTES of `[0.5],` (the costliest valid tree per byte),
  parsed, held and sent (MLServer refuses the shape: Inconclusive);
- objects: MAX_BYTES of `{},` in one tensor: the costliest tree json.loads builds before the
  shape check refuses it (Fail);
- deep: MAX_BYTES of `[`...`]`, refused by the depth pre-scan, no tree built (Fail);
- too-large: MAX_BYTES + 1 bytes, refused while downloading (Fail).
`--stalled` sends the canary's requests to a listener that accepts and never answers instead, so
every run holds its parsed set until the model request times out (10 s): all runs' sets held at
once, the worst case for what stays in memory.

Run: ``.venv/bin/python bench/gate_memory.py`` (2-3 minutes); docs/gates.md (Bounds) has the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # testbed/, beside bench/: not installed

from modeldeploy.gates.golden import MAX_BYTES, MAX_EXAMPLES
from testbed.controlplane import ADMIN_USER, ControlPlane, Credentials, find_assets
from testbed.kubeapi import KubeApi
from testbed.kubelet import Kubelet, PodReport
from testbed.mlserver import MLServer, find_venv, train
from testbed.operator_process import OperatorProcess

ROOT = Path(__file__).resolve().parent.parent
MD = ("modeldeploy.io/v1alpha1", "ModelDeployment")
# Loopback addresses of their own: not the tests' (.12, .13) nor the demo's (.2, .3).
CANARY_IP, STALLED_IP, PRIMARY_IP, PORT = "127.0.0.31", "127.0.0.32", "127.0.0.33", 8000
SCENARIOS = ("valid", "wide", "objects", "deep", "too-large")
STARTED = time.monotonic()


def log(message: str) -> None:
    print(f"[{time.monotonic() - STARTED:6.1f}s] {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------- golden sets


def iris_line(i: int) -> bytes:
    return b'{"inputs":{"features":[5.1,3.5,1.4,0.2]},"label":%d}\n' % (i % 3)


def golden_set(kind: str) -> bytes:
    """The scenario's golden set, as large as the bounds allow."""
    if kind == "valid":  # the byte bound binds before the example bound
        count = min(MAX_EXAMPLES, MAX_BYTES // len(iris_line(0)))
        return b"".join(iris_line(i) for i in range(count))
    head, tail = b'{"inputs":{"features":[', b"]}}\n"
    room = MAX_BYTES - len(head) - len(tail)
    if kind == "wide":
        n = (room + 1) // len(b"[0.5],")
        return head + b",".join([b"[0.5]"] * n) + tail
    if kind == "objects":
        n = (room + 1) // len(b"{},")
        return head + b",".join([b"{}"] * n) + tail
    if kind == "deep":
        n = room // 2
        return head + b"[" * n + b"]" * n + tail
    if kind == "too-large":
        return iris_line(0) * (MAX_BYTES // len(iris_line(0)) + 1)
    raise ValueError(kind)


# ------------------------------------------------------------------------------ https server


def tls_files(folder: Path) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        sys.exit("openssl is needed to make the golden-set server's certificate (Debian package openssl)")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


@contextlib.contextmanager
def https_server(cert: Path, key: Path, files: Mapping[str, bytes]) -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = files.get(self.path)
            self.send_response(200 if body is not None else 404)
            body = body if body is not None else b"not found"
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            with contextlib.suppress(OSError):  # the operator stops reading a body over the bound
                self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def stalled_listener(host: str, port: int) -> Iterator[None]:
    """Accepts connections (the kernel's backlog does) and never answers."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(64)
    try:
        yield
    finally:
        sock.close()


# ------------------------------------------------------------------------------------ cluster


def manifest(name: str, version: str, url: str) -> dict[str, Any]:
    return {
        "apiVersion": MD[0],
        "kind": MD[1],
        "metadata": {"name": name},
        "spec": {
            "model": {"name": "iris", "version": version, "storageUri": f"s3://models/iris/{version}"},
            "runtime": {"gpus": 0},
            "scaling": {"minReplicas": 1, "maxReplicas": 1},
            "rollout": {
                "steps": [{"weight": 50}],
                "interval": "1s",
                "progressDeadline": "120s",
                "analysis": {"metrics": [], "inconclusive": {"limit": 1, "action": "Hold"}},
                "gates": {
                    "goldenSet": {"storageUri": url, "batchSize": 1024},
                    "minAccuracy": 0.5,
                    "timeout": "5m",
                },
            },
        },
    }


def new_namespace(api: KubeApi) -> str:
    name = f"gates-{uuid.uuid4().hex[:6]}"
    api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    api.wait_for(lambda: api.get("v1", "ServiceAccount", name, "default"), what=f"{name}'s ServiceAccount")
    return name


def apply(api: KubeApi, namespace: str, doc: dict[str, Any]) -> None:
    api.apply({**doc, "metadata": {**doc["metadata"], "namespace": namespace}})


def vm_hwm_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/<pid>/status")


def finished(status: Mapping[str, Any]) -> bool:
    if status.get("phase") in ("RolledBack", "Paused"):
        return True
    return status.get("phase") == "Stable" and status.get("stableModelVersion") == "2"


def gate_summary(status: Mapping[str, Any]) -> str:
    """The phase and the accuracy check: in status.gate while it holds, in the history once done."""
    checks = (status.get("gate") or {}).get("checks") or (status.get("history") or [{}])[0].get("gate") or []
    accuracy = next((c for c in checks if c.get("name") == "accuracy"), {})
    return f"{status.get('phase')}: accuracy {accuracy.get('verdict')}: {str(accuracy.get('message'))[:100]}"


def scenario(
    cp: ControlPlane, folder: Path, kind: str, runs: int, base_url: str, ca_file: Path
) -> dict[str, Any]:
    api = cp.admin
    namespace = new_namespace(api)
    kubeconfig = cp.kubeconfig(Credentials(user=ADMIN_USER, token=cp.admin_token), folder / f"kc-{kind}")
    process = OperatorProcess(
        kubeconfig=kubeconfig,
        log=folder / f"operator-{kind}.log",
        args=[f"--namespace={namespace}"],
        env={"SSL_CERT_FILE": str(ca_file)},
        resync_seconds=10,
    )
    names = [f"md-{i}" for i in range(runs)]
    url = f"{base_url}/{kind}.jsonl"
    with process:
        assert process.process is not None
        pid = process.process.pid
        for name in names:
            apply(api, namespace, manifest(name, "1", url))

        def phases(want: Any) -> Any:
            found = [(api.get(*MD, namespace, n) or {}).get("status") or {} for n in names]
            return all(want(s) for s in found) and found

        api.wait_for(
            lambda: phases(lambda s: s.get("phase") == "Stable"), timeout=180, what="version 1 Stable"
        )
        before = vm_hwm_mib(pid)
        began = time.monotonic()
        for name in names:
            apply(api, namespace, manifest(name, "2", url))
        done = api.wait_for(lambda: phases(finished), timeout=600, what="every gate run finished")
        seconds = time.monotonic() - began
        peak = vm_hwm_mib(pid)
        tail = process.tail(400_000)
    if "Traceback" in tail:
        log(f"{kind}: the operator logged a traceback:\n{tail[-3000:]}")
    api.delete("v1", "Namespace", None, namespace)
    return {
        "scenario": kind,
        "runs": runs,
        "before_mib": round(before, 1),
        "peak_mib": round(peak, 1),
        "seconds": round(seconds, 1),
        "outcome": sorted({gate_summary(s) for s in done}),
        "traceback": "Traceback" in tail,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=4, help="gated ModelDeployments rolled out at once")
    parser.add_argument(
        "--scenarios", default=",".join(SCENARIOS), help="comma-separated, of " + ", ".join(SCENARIOS)
    )
    parser.add_argument("--stalled", action="store_true", help="a canary that accepts and never answers")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    kinds = [k for k in args.scenarios.split(",") if k]
    unknown = set(kinds) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenario {sorted(unknown)[0]!r}")
    work = Path(tempfile.mkdtemp(prefix="gate-memory-"))
    results: list[dict[str, Any]] = []
    files = {f"/{kind}.jsonl": golden_set(kind) for kind in kinds}
    for kind in kinds:
        log(f"golden set {kind}: {len(files[f'/{kind}.jsonl'])} bytes")
    cert, key = tls_files(work)

    def by_track(pod: Mapping[str, Any]) -> PodReport:
        track = (pod.get("metadata", {}).get("labels") or {}).get("modeldeploy.io/track")
        canary = STALLED_IP if args.stalled else CANARY_IP
        return PodReport(pod_ip=canary if track == "canary" else PRIMARY_IP)

    with contextlib.ExitStack() as stack:
        (work / "cp").mkdir()
        cp = stack.enter_context(ControlPlane(assets=find_assets(), workdir=work / "cp"))
        crds = [
            doc
            for path in sorted((ROOT / "crds").glob("*.yaml"))
            for doc in yaml.safe_load_all(path.read_text())
        ]
        cp.admin.install_crds([doc for doc in crds if isinstance(doc, dict)])
        stack.enter_context(Kubelet(cp.admin, by_track))
        if args.stalled:
            stack.enter_context(stalled_listener(STALLED_IP, PORT))
        else:
            venv = find_venv()
            models = train(venv, work / "models")
            server = MLServer(
                venv, models, {"iris": "iris-good"}, host=CANARY_IP, port=PORT, workdir=work / "ml"
            )
            server.start()
            stack.callback(server.stop)
        base_url = stack.enter_context(https_server(cert, key, files))
        for kind in kinds:
            log(f"{kind}: {args.runs} runs at once")
            result = scenario(cp, work, kind, args.runs, base_url, cert)
            result["bytes"] = len(files[f"/{kind}.jsonl"])
            log(f"{kind}: VmHWM {result['before_mib']} -> {result['peak_mib']} MiB; {result['outcome']}")
            results.append(result)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        canary = "stalled (never answers)" if args.stalled else "MLServer iris-good"
        print(f"{os.cpu_count()} CPUs, canary {canary}, {args.runs} runs at once; MAX_BYTES {MAX_BYTES}")
        head = f"{'scenario':<10} {'bytes':>9} {'VmHWM before':>13} {'VmHWM peak':>11} {'runs took':>10}"
        print(f"{head}  outcome")
        for r in results:
            print(
                f"{r['scenario']:<10} {r['bytes']:>9} {r['before_mib']:>10.1f} MiB {r['peak_mib']:>7.1f} MiB "
                f"{r['seconds']:>8.1f} s  {'; '.join(r['outcome'])}"
            )
    shutil.rmtree(work, ignore_errors=True)
    return 1 if any(r["traceback"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
