"""The real-API tier: one real control plane per test session, one namespace per test.

The control plane (etcd, kube-apiserver, kube-controller-manager) is found as tests/assets.py says:
$KUBEBUILDER_ASSETS, else ../shared/k8s/bin, else .tools/k8s/bin (scripts/install-control-plane.py
fetches it there; `make test` runs it first). Without it the tier is skipped, and the run's summary
says why in one line; with CI=true the run fails instead, with that line.
"""

from __future__ import annotations

import contextlib
import os
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from assets import ASSETS, KUBERNETES, MISSING, THIRD_PARTY_CRDS
from operator_bed import OperatorBed
from testbed.controlplane import ControlPlane, find_assets
from testbed.kubeapi import KubeApi
from testbed.kubelet import Kubelet, PodReport, Policy, always_ready
from testbed.operator_process import OperatorProcess

REPO_ROOT = Path(__file__).resolve().parent.parent
__all__ = ["THIRD_PARTY_CRDS"]  # for the tests that read the upstream CRDs
REAL_API = "real_api"
RBAC_GROUP = "rbac.authorization.k8s.io"


def ci() -> bool:
    return os.environ.get("CI", "").lower() in ("true", "1", "yes")


def require_assets() -> Path:
    if ASSETS is not None:
        return find_assets(ASSETS)
    if ci():
        pytest.fail(f"{MISSING} -- CI=true, so this is a failure, not a skip")
    pytest.skip(MISSING)


class Policies:
    """The kubelet stand-in's behaviour, per namespace: a test says how its Pods fare."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_namespace: dict[str, Policy] = {}

    def set(self, namespace: str, policy: Policy) -> None:
        with self._lock:
            self._by_namespace[namespace] = policy

    def __call__(self, pod: Mapping[str, Any]) -> PodReport:
        with self._lock:
            policy = self._by_namespace.get(pod.get("metadata", {}).get("namespace", ""), always_ready)
        return policy(pod)


def install_crds(api: KubeApi, paths: list[Path]) -> None:
    api.install_crds(
        [doc for path in paths for doc in yaml.safe_load_all(path.read_text()) if isinstance(doc, dict)]
    )


@contextlib.contextmanager
def real_control_plane(workdir: Path) -> Iterator[ControlPlane]:
    """etcd + kube-apiserver + kube-controller-manager, with our CRD and the upstream ones installed."""
    assets = require_assets()
    with ControlPlane(assets=assets, workdir=workdir) as cp:
        crds = sorted((REPO_ROOT / "crds").glob("*.yaml"))
        if THIRD_PARTY_CRDS.is_dir():
            crds += sorted(THIRD_PARTY_CRDS.glob("*.yaml"))
        elif ci():
            pytest.fail(f"{THIRD_PARTY_CRDS} is missing (set MODELDEPLOY_THIRD_PARTY_CRDS)")
        install_crds(cp.admin, crds)
        yield cp


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    with real_control_plane(tmp_path_factory.mktemp("controlplane")) as cp:
        yield cp


@pytest.fixture(scope="session")
def kubelet_policies(control_plane: ControlPlane) -> Iterator[Policies]:
    policies = Policies()
    with Kubelet(control_plane.admin, policies):
        yield policies


@pytest.fixture
def namespace(
    control_plane: ControlPlane, kubelet_policies: Policies, request: pytest.FixtureRequest
) -> Iterator[str]:
    """A fresh namespace for one test; deleted (in the background) after it."""
    name = new_namespace(control_plane.admin)
    yield name
    control_plane.admin.delete("v1", "Namespace", None, name)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "control_plane" in getattr(item, "fixturenames", ()):
            item.add_marker(REAL_API)
    if ASSETS is None and ci() and any(item.get_closest_marker(REAL_API) for item in items):
        pytest.exit(f"{MISSING} -- CI=true, so the run fails", returncode=1)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[Any]:
    # pytest names each skip by its test's place, so its summary would repeat the one reason once per
    # test module; naming them all by this file folds them into one line.
    report = yield
    longrepr = report.longrepr
    if report.skipped and isinstance(longrepr, tuple) and longrepr[2].endswith(MISSING):
        report.longrepr = (str(Path(__file__).relative_to(REPO_ROOT)), 1, longrepr[2])
    return report


def pytest_terminal_summary(terminalreporter: Any) -> None:
    ran = [
        report
        for key in ("passed", "failed", "error")
        for report in terminalreporter.stats.get(key, [])
        if getattr(report, "when", "call") == "call" and REAL_API in getattr(report, "keywords", {})
    ]
    terminalreporter.write_line(f"{len(ran)} tests ran on the real API server (kube-apiserver {KUBERNETES})")


def start_operator(
    control_plane: ControlPlane, namespace: str, folder: Path, index: int = 0, **kwargs: Any
) -> OperatorBed:
    """`modeldeploy run --namespace=<namespace>` as a process, logged in by a kubeconfig with a client
    certificate of a user bound to cluster-admin; `user=` names that user (default operator-<ns>)."""
    # A second operator of the same test (a standby replica) may log in as its own user, so that the
    # audit log tells the two apart.
    user = kwargs.pop("user", None) or f"operator-{namespace}"
    creds = control_plane.client_certificate(user)
    control_plane.admin.apply(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": user},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "cluster-admin",
            },
            "subjects": [{"kind": "User", "name": user, "apiGroup": "rbac.authorization.k8s.io"}],
        }
    )
    kubeconfig = control_plane.kubeconfig(creds, folder / f"kubeconfig-{index}")
    server = kwargs.pop("server", None)  # another way to the API server (a proxy), same certificate
    if server is not None:
        config = yaml.safe_load(kubeconfig.read_text())
        config["clusters"][0]["cluster"]["server"] = server
        kubeconfig.write_text(yaml.safe_dump(config))
    process = OperatorProcess(
        kubeconfig=kubeconfig,
        log=folder / f"operator-{index}.log",
        args=[f"--namespace={namespace}", *kwargs.pop("args", ())],
        **kwargs,
    )
    process.start()
    return OperatorBed(control_plane, namespace, process, user)


def new_namespace(api: KubeApi) -> str:
    name = f"t-{uuid.uuid4().hex[:8]}"
    api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    # Pods need the namespace's default ServiceAccount, which the controller manager creates.
    api.wait_for(
        lambda: api.get("v1", "ServiceAccount", name, "default"), what=f"the default ServiceAccount of {name}"
    )
    return name


@pytest.fixture
def operator(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> Iterator[Callable[..., OperatorBed]]:
    """A factory: `operator(resync_seconds=1, prometheus_url=...)` starts `modeldeploy run
    --namespace=<this test's>` as a process, logged in by a kubeconfig with a client certificate of a
    user bound to cluster-admin (least privilege is proven in test_rbac_proof.py). Stopped after."""
    started: list[OperatorBed] = []

    def start(**kwargs: Any) -> OperatorBed:
        bed = start_operator(control_plane, namespace, tmp_path, len(started), **kwargs)
        started.append(bed)
        return bed

    yield start
    for bed in started:
        bed.process.stop()
