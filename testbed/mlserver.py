"""A real, independent V2 inference server for the gate tests and the demo: MLServer with its
scikit-learn runtime, serving iris models trained here.

    venv = find_venv()                        # .tools/mlserver-venv, built on first use
    trained = train(venv, workdir / "models")  # iris-primary, iris-good, iris-worse, iris-narrow
    with MLServer(venv, trained, {"iris": "iris-worse"}, host="127.0.0.3", port=8000) as canary:
        ...                                    # the V2 protocol at canary.address, model "iris"

MLServer lives in its own virtualenv, built by scripts/install-mlserver.sh (about 45 s once, then
a stamp check): its pins (fastapi, numpy, protobuf, ...) are not the operator's, which never
imports it. `MODELDEPLOY_MLSERVER_VENV` names another venv with the same packages instead. The
models are trained by scripts/train-iris-models.py, run by that venv's Python. Each MLServer is
one `mlserver start` process serving some trained variants, each under the name a test or the
demo chooses (the demo serves two variants as one model, `iris`, on two pod IPs), on a chosen
host and port, with its gRPC port free and no metrics server. A venv that cannot be had raises
MLServerMissing, a server that does not come up MLServerFailed: both one-line messages.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

ROOT = Path(__file__).resolve().parents[1]  # the checkout: testbed/mlserver.py
INSTALL = ROOT / "scripts" / "install-mlserver.sh"
TRAIN = ROOT / "scripts" / "train-iris-models.py"
VENV = ROOT / ".tools" / "mlserver-venv"
MODELS = ("iris-primary", "iris-good", "iris-worse", "iris-narrow")
START_TIMEOUT = 180.0
INSTALL_TIMEOUT = 1800.0
# urllib would go through $http_proxy: the servers are on loopback.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class MLServerMissing(RuntimeError):
    """No MLServer venv: it could not be built, or MODELDEPLOY_MLSERVER_VENV names no such venv.
    The message is one line; `details` holds the installer's output, if it ran."""

    def __init__(self, message: str, details: str = "") -> None:
        super().__init__(message)
        self.details = details


class MLServerFailed(RuntimeError):
    """An MLServer did not start or training failed; the message is one line, `details` the log tail."""

    def __init__(self, message: str, details: str = "") -> None:
        super().__init__(message)
        self.details = details


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def find_venv() -> Path:
    """The venv with mlserver and mlserver-sklearn: $MODELDEPLOY_MLSERVER_VENV, else the checkout's
    .tools/mlserver-venv, built if needed (the script is idempotent and quick once built)."""
    override = os.environ.get("MODELDEPLOY_MLSERVER_VENV")
    if override:
        venv = Path(override)
        if not (venv / "bin" / "mlserver").is_file():
            raise MLServerMissing(f"MODELDEPLOY_MLSERVER_VENV={override} has no bin/mlserver")
        return venv
    if not INSTALL.is_file():
        raise MLServerMissing(
            f"no {INSTALL.relative_to(ROOT)} beside the package: set MODELDEPLOY_MLSERVER_VENV to a "
            "venv with mlserver and mlserver-sklearn 1.7.1"
        )
    try:
        done = subprocess.run(
            ["bash", str(INSTALL)], capture_output=True, text=True, timeout=INSTALL_TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise MLServerMissing(f"{INSTALL.name} did not run: {error}") from None
    if done.returncode != 0:
        raise MLServerMissing(
            f"{INSTALL.name} could not build .tools/mlserver-venv (exit {done.returncode}): "
            f"{_last_line(done.stderr or done.stdout)}",
            details=f"{done.stdout[-2000:]}\n{done.stderr[-3000:]}",
        )
    return VENV


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        # As the server binds (uvicorn sets SO_REUSEADDR): connections of a server stopped a moment
        # ago, still in TIME_WAIT, do not make the port busy; a live listener does.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


@dataclass(frozen=True)
class TrainedModels:
    folder: Path  # one sub-folder per variant in MODELS, and golden.jsonl
    golden: str  # the golden set, JSON lines
    accuracy: dict[str, float]  # as scikit-learn measured each model on it
    trained_in: float


def train(venv: Path, folder: Path) -> TrainedModels:
    """Train every variant into `folder` (1-3 s; fixed seeds: the same models on every machine)."""
    folder.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    try:
        done = subprocess.run(
            [str(venv / "bin" / "python"), str(TRAIN), str(folder)],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise MLServerFailed(f"training the iris models did not run: {error}") from None
    if done.returncode != 0:
        raise MLServerFailed(
            f"training the iris models failed: {_last_line(done.stderr)}", details=done.stderr[-3000:]
        )
    return TrainedModels(
        folder=folder,
        golden=(folder / "golden.jsonl").read_text(),
        accuracy=json.loads((folder / "models.json").read_text()),
        trained_in=time.monotonic() - began,
    )


class MLServer:
    """One `mlserver start` process serving `models` (served name -> trained variant) on
    host:port (a free port on 127.0.0.1 by default), from a model repository of its own in
    `workdir` (a temp dir, removed by stop(), by default)."""

    def __init__(
        self,
        venv: Path,
        trained: TrainedModels,
        models: Mapping[str, str],
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        workdir: Path | None = None,
    ) -> None:
        if not models:
            raise ValueError("no model to serve")
        if unknown := sorted(set(models.values()) - set(MODELS)):
            raise ValueError(f"no trained variant {', '.join(unknown)}: there are {', '.join(MODELS)}")
        self.venv = venv
        self.trained = trained
        self.models = dict(models)
        self.host = host
        self.port = port if port is not None else free_port(host)
        self._own_workdir = workdir is None
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="modeldeploy-mlserver-"))
        self.log_path = self.workdir / "mlserver.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_in = 0.0

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def __enter__(self) -> MLServer:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _lay_out(self) -> None:
        """The model repository: each variant's folder under its served name, with that name in
        its model-settings.json (MLServer serves the name written there)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        for name, variant in self.models.items():
            target = self.workdir / name
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(self.trained.folder / variant, target)
            settings = json.loads((target / "model-settings.json").read_text())
            (target / "model-settings.json").write_text(json.dumps(settings | {"name": name}, indent=2))
        server = {
            "host": self.host,
            "http_port": self.port,
            "grpc_port": free_port(self.host),
            "parallel_workers": 0,  # one process: stop() ends it all
            "metrics_endpoint": None,  # no metrics server: two MLServers would share its port
            "load_models_at_startup": True,
        }
        (self.workdir / "settings.json").write_text(json.dumps(server, indent=2))

    def start(self, timeout: float = START_TIMEOUT) -> MLServer:
        """Start and wait until every served model answers ready; MLServerFailed otherwise."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        if not _port_free(self.host, self.port):
            self.stop()  # nothing runs: only removes a temp workdir of its own
            raise MLServerFailed(f"cannot serve on {self.address}: the address is in use")
        self._lay_out()
        began = time.monotonic()
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [str(self.venv / "bin" / "mlserver"), "start", str(self.workdir)],
                cwd=self.workdir,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        while time.monotonic() - began < timeout:
            code = self.proc.poll()
            if code is not None:
                tail = self.log_tail()
                self.stop()
                raise MLServerFailed(
                    f"mlserver on {self.address} exited with {code} before it was ready: {_last_line(tail)}",
                    details=tail,
                )
            if all(self.ready(name) for name in self.models):
                self.started_in = time.monotonic() - began
                return self
            time.sleep(0.1)
        tail = self.log_tail()
        self.stop()
        raise MLServerFailed(f"mlserver on {self.address} not ready after {timeout:.0f}s", details=tail)

    def ready(self, name: str) -> bool:
        url = f"http://{self.address}/v2/models/{name}/ready"
        try:
            with _OPENER.open(url, timeout=2) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def stop(self) -> None:
        """SIGTERM and wait (SIGKILL after 20 s): then the port refuses connections."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def log_tail(self, chars: int = 3000) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-chars:]
        return ""
