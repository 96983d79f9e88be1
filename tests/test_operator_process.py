"""`modeldeploy run` as a process, as the chart runs it: /healthz, /metrics, JSON logs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from modeldeploy.api.crd import crd
from modeldeploy.sim import ClusterEmulator, EmulatorThread
from prometheus_fixture import free_port

pytestmark = pytest.mark.integration

MODELDEPLOY = Path(sys.executable).parent / "modeldeploy"
MANIFEST = {
    "apiVersion": "modeldeploy.io/v1alpha1",
    "kind": "ModelDeployment",
    "metadata": {"name": "scorer", "namespace": "ml"},
    "spec": {"model": {"name": "scorer", "version": "1", "storageUri": "s3://models/scorer/1"}},
}


def get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=2) as response:  # our own 127.0.0.1
        return int(response.status), response.read().decode()


def wait_for(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise TimeoutError("timed out")


@pytest.fixture
def operator_process(tmp_path: Path) -> Iterator[tuple[ClusterEmulator, int, int, Path]]:
    emulator = ClusterEmulator()
    emulator.declare_builtin_resources()
    emulator.put_object(crd())
    health, metrics = free_port(), free_port()
    log = tmp_path / "operator.log"
    with EmulatorThread(emulator) as server, log.open("wb") as out:
        command = [
            str(MODELDEPLOY),
            "run",
            f"--server={server.url}",
            f"--health-port={health}",
            f"--metrics-port={metrics}",
            "--log-format=json",
            "--resync-seconds=1",
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith("KUBE")}
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
        try:
            yield emulator, health, metrics, log
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def test_health_metrics_and_json_logs(operator_process: tuple[ClusterEmulator, int, int, Path]) -> None:
    emulator, health, metrics, log = operator_process
    wait_for(lambda: get(f"http://127.0.0.1:{health}/healthz")[0] == 200)
    emulator.put_object(MANIFEST)

    def reconciled() -> bool:
        _, text = get(f"http://127.0.0.1:{metrics}/metrics")
        return 'modeldeploy_reconcile_total{result="ok"}' in text

    wait_for(reconciled)
    _, text = get(f"http://127.0.0.1:{metrics}/metrics")
    for family in (
        "modeldeploy_reconcile_total",
        "modeldeploy_reconcile_duration_seconds_bucket",
        "modeldeploy_reconcile_errors_total",
        'modeldeploy_api_writes_total{verb="apply"}',
        'modeldeploy_api_writes_total{verb="status"}',
    ):
        assert family in text, family
    assert emulator.get_object("apps", "v1", "deployments", "ml", "scorer-primary") is not None
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    assert lines, "the operator logged nothing"
    for line in lines:
        entry = json.loads(line)  # every line is one JSON object with the fields log shippers want
        assert {"time", "level", "logger", "message"} <= set(entry)
