"""The real Prometheus server for the tests and the demo: Debian's `prometheus` binary, on
loopback, in a temp dir.

    with TritonExporter(...) as pod, PrometheusServer([pod_target(pod.address, ...)]) as prom:
        provider = PrometheusProvider(prom.url)

PrometheusServer writes a config that scrapes the given targets every second with `honor_labels`
and static labels that mimic the PodMonitor relabeling (render/podmonitor.py): `namespace`, `pod`,
`modeldeployment`, `track`, `revision`, `deployment`. start() returns once the server is ready and
the first scrape of every target has landed; stop() and restart() (same port, same TSDB) let a
test take Prometheus away mid-analysis; set_targets() swaps the targets with a config reload.

The binary is $MODELDEPLOY_PROMETHEUS, else `prometheus` on PATH or in the checkout's .tools/bin
(`make tools` unpacks it there with scripts/install-prometheus.sh). A missing binary raises
PrometheusMissing; the tests turn that into a skip on a developer machine and a failure under
CI=true (tests/prometheus_fixture.py).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import yaml

START_TIMEOUT = 30.0


def find_prometheus() -> str | None:
    override = os.environ.get("MODELDEPLOY_PROMETHEUS")
    if override:
        return override if Path(override).is_file() else None
    # Else the checkout's .tools/bin, where scripts/install-prometheus.sh unpacks it.
    local = Path(__file__).resolve().parents[1] / ".tools" / "bin" / "prometheus"
    return shutil.which("prometheus") or (str(local) if local.is_file() else None)


class PrometheusMissing(RuntimeError):
    """No prometheus binary: `make tools` unpacks Debian's into .tools/bin (scripts/install-prometheus.sh)."""


def require_binary() -> str:
    binary = find_prometheus()
    if binary is None:
        raise PrometheusMissing(
            "the prometheus binary is missing: run `make tools` (scripts/install-prometheus.sh)"
        )
    return binary


@dataclass(frozen=True)
class ScrapeTarget:
    address: str  # host:port serving /metrics
    labels: Mapping[str, str] = field(default_factory=dict)


def pod_target(
    address: str, *, namespace: str, name: str, track: str, revision: str = "5f9c2e1", index: int = 0
) -> ScrapeTarget:
    """A target labelled as the PodMonitor relabels a ModelDeployment pod of `track`."""
    deployment = f"{name}-{track}"
    return ScrapeTarget(
        address,
        {
            "namespace": namespace,
            "pod": f"{deployment}-{revision[:7]}-{index:05d}",
            "modeldeployment": name,
            "track": track,
            "revision": revision,
            "deployment": deployment,
        },
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrometheusServer:
    def __init__(
        self,
        targets: Sequence[ScrapeTarget] = (),
        *,
        scrape_interval: str = "1s",
        binary: str | None = None,
        workdir: Path | None = None,
    ) -> None:
        self.binary = binary or require_binary()
        self.targets = list(targets)
        self.scrape_interval = scrape_interval
        self._own_workdir = workdir is None
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="modeldeploy-prometheus-"))
        self.config_path = self.workdir / "prometheus.yml"
        self.log_path = self.workdir / "prometheus.log"
        self.port: int | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        # Seconds from spawning the process: to /-/ready, and to every target's first scrape.
        self.timings: dict[str, float] = {}

    # -------------------------------------------------------------------------------- lifecycle

    @property
    def url(self) -> str:
        assert self.port is not None, "start() first"
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = START_TIMEOUT) -> PrometheusServer:
        """Start, then wait until ready and scraped. A restart keeps the port and the TSDB."""
        assert not self.running, "already running"
        self._write_config()
        attempts = 3 if self.port is None else 1
        for attempt in range(attempts):
            if attempt or self.port is None:
                self.port = free_port()
            began = time.monotonic()
            self._spawn()
            try:
                self._wait_ready(timeout)
            except RuntimeError:
                self.stop()
                # Another process may have taken the free port between probe and bind: retry.
                if attempt + 1 < attempts and "address already in use" in self.log_tail():
                    continue
                raise
            self.timings["ready_seconds"] = time.monotonic() - began
            self.wait_scraped(timeout)
            self.timings["first_scrape_seconds"] = time.monotonic() - began
            return self
        raise AssertionError("unreachable")

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM and wait (SIGKILL after `timeout`); the port then refuses connections."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def restart(self, timeout: float = START_TIMEOUT) -> None:
        self.stop()
        self.start(timeout)

    def close(self) -> None:
        self.stop()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> PrometheusServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def set_targets(self, targets: Sequence[ScrapeTarget], timeout: float = START_TIMEOUT) -> None:
        """Replace the scrape targets (config reload on SIGHUP) and wait for their first scrape."""
        self.targets = list(targets)
        self._write_config()
        assert self._process is not None, "start() first"
        self._process.send_signal(signal.SIGHUP)
        self.wait_scraped(timeout)

    # ---------------------------------------------------------------------------------- queries

    def api(self, path: str, **params: str) -> Any:
        """GET /api/v1/<path>; the `data` of a success, else RuntimeError with the API's error."""
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310  # our own http://127.0.0.1
                payload = json.load(response)
        except urllib.error.HTTPError as err:
            with err:
                raise RuntimeError(f"{path}: HTTP {err.code}: {err.read()[:300]!r}") from None
        return payload["data"]

    def query(self, promql: str) -> list[dict[str, Any]]:
        data = self.api("query", query=promql)
        result: list[dict[str, Any]] = data["result"]
        return result

    def value(self, promql: str) -> float | None:
        result = self.query(promql)
        return float(result[0]["value"][1]) if result else None

    def wait_for(
        self, promql: str, predicate: Callable[[float], bool] = lambda _: True, timeout: float = 30.0
    ) -> float:
        """Poll until the query yields one value that satisfies `predicate`; return it."""
        deadline = time.monotonic() + timeout
        last: float | None = None
        while True:
            last = self.value(promql)
            if last is not None and predicate(last):
                return last
            if time.monotonic() > deadline:
                raise TimeoutError(f"after {timeout}s, {promql} = {last}")
            time.sleep(0.1)

    def wait_scraped(self, timeout: float = START_TIMEOUT) -> None:
        """Until every configured target has been scraped successfully at least once."""
        want = {t.address for t in self.targets}
        deadline = time.monotonic() + timeout
        while want:
            active = self.api("targets", state="active")["activeTargets"]
            healthy = {t["labels"].get("instance") for t in active if t.get("health") == "up"}
            # Scraped targets have an `up` sample; the targets API can say "up" a moment before.
            up = {r["metric"].get("instance") for r in self.query("up == 1")}
            if want <= healthy & up:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"targets not scraped within {timeout}s: {sorted(want - (healthy & up))}")
            time.sleep(0.05)

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    # --------------------------------------------------------------------------------- internals

    def _write_config(self) -> None:
        config = {
            "global": {"scrape_interval": self.scrape_interval, "evaluation_interval": self.scrape_interval},
            "scrape_configs": [
                {
                    "job_name": "triton",
                    # The PodMonitor's relabelings produce target labels; here they are static.
                    "honor_labels": True,
                    "scrape_interval": self.scrape_interval,
                    "scrape_timeout": self.scrape_interval,
                    "metrics_path": "/metrics",
                    "static_configs": [
                        {"targets": [t.address], "labels": dict(t.labels)} for t in self.targets
                    ],
                }
            ],
        }
        partial = self.config_path.with_suffix(".partial")
        partial.write_text(yaml.safe_dump(config, sort_keys=False))
        partial.replace(self.config_path)  # a reload never reads half a file

    def _spawn(self) -> None:
        self.log_path.unlink(missing_ok=True)
        self._log = self.log_path.open("wb")
        self._process = subprocess.Popen(
            [
                self.binary,
                f"--config.file={self.config_path}",
                f"--storage.tsdb.path={self.workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--storage.tsdb.retention.time=1h",
                f"--web.console.templates={self.workdir}",
                f"--web.console.libraries={self.workdir}",
                "--log.level=warn",
            ],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
        )

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            assert self._process is not None
            if self._process.poll() is not None:
                raise RuntimeError(f"prometheus exited with {self._process.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as response:  # noqa: S310
                    if response.status == 200:
                        return
            except urllib.error.HTTPError as err:
                err.close()  # 503 while the TSDB opens
            except OSError:
                pass  # not listening yet
            if time.monotonic() > deadline:
                raise RuntimeError(f"prometheus not ready within {timeout}s:\n{self.log_tail()}")
            time.sleep(0.05)


@contextmanager
def prometheus_server(targets: Sequence[ScrapeTarget], **kwargs: Any) -> Iterator[PrometheusServer]:
    server = PrometheusServer(targets, **kwargs)
    try:
        yield server.start()
    finally:
        server.close()
