"""`modeldeploy run` as a process, the way users and the Helm chart run it.

The process finds its cluster as kubectl does: in-cluster configuration, else the kubeconfig in
$KUBECONFIG. The test bed passes only the environment; it never tells the operator a server URL.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

from testbed.controlplane import free_port


def modeldeploy_command() -> list[str]:
    script = Path(sys.executable).parent / "modeldeploy"
    return [str(script)] if script.exists() else [sys.executable, "-m", "modeldeploy.cli"]


class OperatorProcess:
    """`with OperatorProcess(kubeconfig=path, log=path):` -- the operator, healthy, until the block ends."""

    def __init__(
        self,
        *,
        log: Path,
        kubeconfig: Path | None = None,
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        prefix: Sequence[str] = (),
        resync_seconds: float = 60.0,
        prometheus_url: str | None = None,
    ) -> None:
        self.kubeconfig = kubeconfig
        self.log = log
        self.args = list(args)
        self.extra_env = dict(env or {})
        self.prefix = list(prefix)  # e.g. `unshare -m ...` to give it in-cluster files
        self.resync_seconds = resync_seconds
        self.prometheus_url = prometheus_url
        self.health_port = free_port()
        self.metrics_port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> OperatorProcess:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def command(self) -> list[str]:
        command = [
            *self.prefix,
            *modeldeploy_command(),
            "run",
            f"--health-port={self.health_port}",
            f"--metrics-port={self.metrics_port}",
            "--log-format=json",
            f"--resync-seconds={self.resync_seconds}",
            *self.args,
        ]
        if self.prometheus_url:
            command.append(f"--prometheus-url={self.prometheus_url}")
        return command

    def environment(self) -> dict[str, str]:
        # Nothing of the caller's cluster leaks in: only what this test bed hands over.
        env = {k: v for k, v in os.environ.items() if not k.startswith(("KUBE", "MODELDEPLOY_"))}
        env["HOME"] = str(self.log.parent)  # no ~/.kube/config to fall back on
        if self.kubeconfig is not None:
            env["KUBECONFIG"] = str(self.kubeconfig)
        env.update(self.extra_env)
        return env

    def start(self, timeout: float = 30.0) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                self.command(),
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.environment(),
                start_new_session=True,  # stopped by its owner, not by a Ctrl-C at the terminal
            )
        self.wait_healthy(timeout)

    def wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"modeldeploy run exited with {self.process.returncode}:\n{self.tail()}")
            try:
                with urllib.request.urlopen(  # our own 127.0.0.1
                    f"http://127.0.0.1:{self.health_port}/healthz", timeout=1
                ) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"modeldeploy run not healthy after {timeout:.0f}s:\n{self.tail()}")

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=2) as response:
            return str(response.read().decode())

    def tail(self, size: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-size:] if self.log.exists() else ""

    def kill(self) -> None:
        """SIGKILL: no clean-up at all, as when a node dies."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self, timeout: float = 20.0) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode
