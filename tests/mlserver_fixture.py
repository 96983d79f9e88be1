"""A real, independent V2 inference server for the gate tests: MLServer with its scikit-learn runtime.

MLServer lives in its own virtualenv, .tools/mlserver-venv, built by scripts/install-mlserver.sh
on first use (about 35 s) and whenever its pins change: its pins (fastapi, numpy, protobuf, ...)
are not the operator's, and the operator never imports it. The models are trained in the test
session from iris, which scikit-learn ships (tests/fixtures/mlserver/train_models.py, run by
that venv's Python), and served from free loopback ports. `MODELDEPLOY_MLSERVER_VENV` points at
another venv with the same packages instead.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
INSTALL = ROOT / "scripts" / "install-mlserver.sh"
TRAIN = ROOT / "tests" / "fixtures" / "mlserver" / "train_models.py"
MODELS = ("iris-primary", "iris-good", "iris-worse", "iris-narrow")
START_TIMEOUT = 180.0


def mlserver_venv() -> Path:
    """The venv with mlserver and mlserver-sklearn, built if needed (the script is idempotent)."""
    override = os.environ.get("MODELDEPLOY_MLSERVER_VENV")
    if override:
        return Path(override)
    done = subprocess.run(["bash", str(INSTALL)], capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        pytest.fail(f"{INSTALL.name} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    return ROOT / ".tools" / "mlserver-venv"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ready(port: int, model: str) -> bool:
    url = f"http://127.0.0.1:{port}/v2/models/{model}/ready"
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


@dataclass
class MLServer:
    """One `mlserver start` process serving `models` from `folder` on 127.0.0.1:`port`."""

    venv: Path
    folder: Path
    port: int
    models: tuple[str, ...]
    proc: subprocess.Popen[bytes] | None = None
    started_in: float = 0.0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        log = (self.folder / "mlserver.log").open("wb")
        began = time.monotonic()
        self.proc = subprocess.Popen(
            [str(self.venv / "bin" / "mlserver"), "start", str(self.folder)],
            cwd=self.folder,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        while time.monotonic() - began < START_TIMEOUT:
            if self.proc.poll() is not None:
                pytest.fail(f"mlserver exited with {self.proc.returncode}:\n{self.log_tail()}")
            if all(_ready(self.port, m) for m in self.models):
                self.started_in = time.monotonic() - began
                return
            time.sleep(0.1)
        self.stop()
        pytest.fail(f"mlserver not ready after {START_TIMEOUT}s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return (self.folder / "mlserver.log").read_text(errors="replace")[-3000:]
        return ""


@dataclass(frozen=True)
class TrainedModels:
    folder: Path
    golden: str  # the golden set, JSON lines
    accuracy: dict[str, float]  # as scikit-learn measured each model on it
    trained_in: float


def train(venv: Path, folder: Path, http_port: int) -> TrainedModels:
    began = time.monotonic()
    done = subprocess.run(
        [str(venv / "bin" / "python"), str(TRAIN), str(folder), str(http_port), str(free_port())],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode != 0:
        pytest.fail(f"training the models failed:\n{done.stderr[-3000:]}")
    return TrainedModels(
        folder=folder,
        golden=(folder / "golden.jsonl").read_text(),
        accuracy=json.loads((folder / "models.json").read_text()),
        trained_in=time.monotonic() - began,
    )


def serve_subset(venv: Path, trained: TrainedModels, folder: Path, models: tuple[str, ...]) -> MLServer:
    """Another MLServer on its own port serving some of the trained models (a canary to stop)."""
    folder.mkdir(parents=True)
    port = free_port()
    for model in models:
        shutil.copytree(trained.folder / model, folder / model)
    settings = json.loads((trained.folder / "settings.json").read_text())
    settings |= {"http_port": port, "grpc_port": free_port()}
    (folder / "settings.json").write_text(json.dumps(settings))
    return MLServer(venv=venv, folder=folder, port=port, models=models)


@contextlib.contextmanager
def running(server: MLServer) -> Iterator[MLServer]:
    server.start()
    try:
        yield server
    finally:
        server.stop()
