"""Options and gating for the opt-in e2e suite (a real cluster; see docs/e2e.md).

    pytest e2e/ --kubeconfig PATH          # or MODELDEPLOY_E2E_KUBECONFIG=PATH pytest e2e/

Without a kubeconfig every test is skipped, before any cluster library is imported. The tests form
one story (install, serve, promote, roll back): once a step fails, the later ones are skipped
rather than fail for the same reason.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

_FAILED_STEP = pytest.StashKey[str]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("modeldeploy-e2e", "modeldeploy end-to-end suite (real cluster)")
    group.addoption(
        "--kubeconfig",
        default=os.environ.get("MODELDEPLOY_E2E_KUBECONFIG"),
        help="kubeconfig of the e2e cluster (e2e/setup-kind.sh writes one); without it the suite is skipped. "
        "Env: MODELDEPLOY_E2E_KUBECONFIG",
    )
    group.addoption(
        "--e2e-namespace",
        default=os.environ.get("MODELDEPLOY_E2E_NAMESPACE", "modeldeploy-e2e"),
        help="namespace for the model store and the ModelDeployment (must exist)",
    )
    group.addoption(
        "--operator-image",
        default=os.environ.get(
            "MODELDEPLOY_E2E_OPERATOR_IMAGE", "ghcr.io/modeldeploy/modeldeploy-operator:e2e"
        ),
        help="operator image already loaded into the cluster",
    )
    group.addoption(
        "--puller-image",
        default=os.environ.get("MODELDEPLOY_E2E_PULLER_IMAGE", "ghcr.io/modeldeploy/model-puller:e2e"),
        help="model-puller image already loaded into the cluster",
    )
    group.addoption(
        "--keep",
        action="store_true",
        default=False,
        help="leave the ModelDeployment and the Helm release installed afterwards, for inspection",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    kubeconfig = config.getoption("--kubeconfig")
    here = Path(__file__).parent
    ours = [item for item in items if here in Path(str(item.path)).parents]
    if not kubeconfig:
        skip = pytest.mark.skip(
            reason="e2e needs a cluster: pass --kubeconfig PATH or set MODELDEPLOY_E2E_KUBECONFIG"
        )
        for item in ours:
            item.add_marker(skip)
    elif not Path(kubeconfig).is_file():
        raise pytest.UsageError(f"--kubeconfig {kubeconfig}: no such file")


def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> None:
    failed = call.excinfo is not None and not call.excinfo.errisinstance(pytest.skip.Exception)
    if failed and call.when in ("setup", "call") and item.get_closest_marker("e2e_step"):
        item.session.stash[_FAILED_STEP] = item.name


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("e2e_step"):
        failed = item.session.stash.get(_FAILED_STEP, None)
        if failed is not None:
            pytest.skip(f"an earlier step failed: {failed}")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "e2e_step: one step of the e2e story; a failed step skips the rest")
