"""The real Prometheus for tests (testbed.prometheus), skipped only off CI.

A missing binary skips the tests on a developer machine and fails them under CI=true, so that CI
can never pass by not running them.
"""

from __future__ import annotations

import os

import pytest

from testbed.prometheus import (
    START_TIMEOUT,
    PrometheusMissing,
    PrometheusServer,
    ScrapeTarget,
    find_prometheus,
    free_port,
    pod_target,
    prometheus_server,
)

__all__ = [
    "START_TIMEOUT",
    "PrometheusServer",
    "ScrapeTarget",
    "find_prometheus",
    "free_port",
    "pod_target",
    "prometheus_required",
    "prometheus_server",
    "require_prometheus",
]


def prometheus_required() -> bool:
    """Whether a missing binary must fail the tests rather than skip them (CI sets CI=true)."""
    return os.environ.get("CI", "").lower() in ("true", "1", "yes")


def require_prometheus() -> str:
    binary = find_prometheus()
    if binary is None:
        message = str(PrometheusMissing("the prometheus binary is missing: run `make tools`"))
        if prometheus_required():
            pytest.fail(message + " -- CI=true, so this is a failure, not a skip")
        pytest.skip(message)
    return binary
