"""MLServer for the gate tests: testbed/mlserver.py (shared with the demo), with
its failures turned into test failures that show the installer's output or the server's log.

MLServer lives in its own virtualenv, .tools/mlserver-venv, built by scripts/install-mlserver.sh
on first use (about 45 s) and whenever its pins change. The models are trained in the test
session from iris, which scikit-learn ships (scripts/train-iris-models.py, run by that venv's
Python), and served from free loopback ports. `MODELDEPLOY_MLSERVER_VENV` points at another venv
with the same packages instead.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from testbed import mlserver
from testbed.mlserver import MODELS, MLServer, TrainedModels, free_port

__all__ = ["MODELS", "MLServer", "TrainedModels", "free_port", "mlserver_venv", "running", "serve", "train"]


def mlserver_venv() -> Path:
    """The venv with mlserver and mlserver-sklearn, built if needed (the script is idempotent)."""
    try:
        return mlserver.find_venv()
    except mlserver.MLServerMissing as error:
        pytest.fail(f"{error}\n{error.details}")


def train(venv: Path, folder: Path) -> TrainedModels:
    try:
        return mlserver.train(venv, folder)
    except mlserver.MLServerFailed as error:
        pytest.fail(f"{error}\n{error.details}")


def serve(venv: Path, trained: TrainedModels, folder: Path, models: tuple[str, ...]) -> MLServer:
    """An MLServer on a free loopback port serving `models` under their own names."""
    return MLServer(venv, trained, {m: m for m in models}, workdir=folder)


@contextlib.contextmanager
def running(server: MLServer) -> Iterator[MLServer]:
    try:
        server.start()
    except mlserver.MLServerFailed as error:
        pytest.fail(f"{error}\n{error.details}")
    try:
        yield server
    finally:
        server.stop()
