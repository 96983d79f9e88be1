"""`modeldeploy run` as a process, logging in the three ways users run it, on the real API server.

No `--server`: the operator finds its cluster as kubectl does (in-cluster files, else $KUBECONFIG),
and kopf and the operator's own client log in with the same credentials.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import pytest

from prometheus_fixture import require_prometheus
from testbed.controlplane import ControlPlane, Credentials
from testbed.operator_process import OperatorProcess

METRICS_DOC = Path(__file__).resolve().parent.parent / "docs" / "metrics.md"

pytestmark = pytest.mark.integration


def manifest(namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "modeldeploy.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "scorer", "namespace": namespace},
        "spec": {"model": {"name": "scorer", "version": "1", "storageUri": "s3://models/scorer/1"}},
    }


def grant_cluster_admin(cp: ControlPlane, subject: dict[str, str], name: str) -> None:
    cp.admin.apply(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": name},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "cluster-admin",
            },
            "subjects": [subject],
        }
    )


def reconciles_to_stable(cp: ControlPlane, namespace: str, operator: OperatorProcess) -> None:
    api = cp.admin
    api.apply(manifest(namespace))

    def phase() -> Any:
        obj = api.get("modeldeploy.io/v1alpha1", "ModelDeployment", namespace, "scorer") or {}
        return (obj.get("status") or {}).get("phase") == "Stable"

    try:
        api.wait_for(phase, timeout=60, what="phase Stable")
    except TimeoutError:
        raise AssertionError(f"not Stable; operator log:\n{operator.tail()}") from None
    deployment = api.get("apps/v1", "Deployment", namespace, "scorer-primary")
    assert deployment is not None
    assert deployment["status"]["readyReplicas"] == 1  # computed by the real Deployment controller


def served_by(cp: ControlPlane, since: int, user: str) -> set[str]:
    return {event["verb"] for event in cp.audit_events(since, user=user)}


def test_kubeconfig_with_ca_and_bearer_token(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    cp = control_plane
    cp.admin.create(
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "operator"}}, namespace=namespace
    )
    grant_cluster_admin(
        cp, {"kind": "ServiceAccount", "name": "operator", "namespace": namespace}, f"token-{namespace}"
    )
    creds = cp.service_account_token(namespace, "operator")
    kubeconfig = cp.kubeconfig(creds, tmp_path / "kubeconfig")
    since = cp.audit_position()
    log = tmp_path / "operator.log"
    with OperatorProcess(kubeconfig=kubeconfig, log=log, args=[f"--namespace={namespace}"]) as operator:
        reconciles_to_stable(cp, namespace, operator)
        text = operator.metrics()
    # kopf's watches and the operator's own writes both came as this user.
    verbs = served_by(cp, since, creds.user)
    assert {"watch", "patch"} <= verbs, verbs
    for family in (
        "modeldeploy_reconcile_total",
        'modeldeploy_reconcile_duration_seconds_bucket{le="0.001",result="ok"}',
        'modeldeploy_api_writes_total{verb="create"}',
        'modeldeploy_api_writes_total{verb="status"}',
        'modeldeploy_api_requests_total{code="201",verb="create"}',
        'modeldeploy_model_deployments{phase="Stable"} 1.0',
        "modeldeploy_workqueue_depth ",
        "modeldeploy_workqueue_scheduled ",
        "modeldeploy_leader 1.0",
    ):
        assert family in text, family
    documented = set(re.findall(r"^  \| `(modeldeploy_\w+)`", METRICS_DOC.read_text(), flags=re.M))
    served = set(re.findall(r"^# TYPE (modeldeploy_\w+?)(?:_total)? ", text, flags=re.M))
    assert {name.removesuffix("_total") for name in documented} == served
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    assert lines, "the operator logged nothing"
    for line in lines:
        entry = json.loads(line)  # every line is one JSON object with the fields log shippers want
        assert {"time", "level", "logger", "message"} <= set(entry)
    assert creds.token not in log.read_text()


def test_kubeconfig_with_client_certificate(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    cp = control_plane
    creds = cp.client_certificate(f"operator-{namespace}")
    grant_cluster_admin(
        cp, {"kind": "User", "name": creds.user, "apiGroup": "rbac.authorization.k8s.io"}, creds.user
    )
    kubeconfig = cp.kubeconfig(creds, tmp_path / "kubeconfig")
    since = cp.audit_position()
    with OperatorProcess(
        kubeconfig=kubeconfig, log=tmp_path / "operator.log", args=[f"--namespace={namespace}"]
    ) as operator:
        reconciles_to_stable(cp, namespace, operator)
    assert {"watch", "patch"} <= served_by(cp, since, creds.user)


def test_in_cluster_service_account(control_plane: ControlPlane, namespace: str, tmp_path: Path) -> None:
    """The pod's view: a token file, a CA file and KUBERNETES_SERVICE_HOST/PORT, no kubeconfig.

    The files go where the kubelet mounts them, in a mount namespace of the operator's own."""
    if shutil.which("unshare") is None:
        pytest.skip("unshare (util-linux) is missing: it gives the operator in-cluster files")
    cp = control_plane
    cp.admin.create(
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "operator"}}, namespace=namespace
    )
    grant_cluster_admin(
        cp, {"kind": "ServiceAccount", "name": "operator", "namespace": namespace}, f"incluster-{namespace}"
    )
    creds: Credentials = cp.service_account_token(namespace, "operator")
    mounted = tmp_path / "serviceaccount"
    mounted.mkdir()
    (mounted / "token").write_text(creds.token or "")
    (mounted / "namespace").write_text(namespace)
    shutil.copy(cp.ca_file, mounted / "ca.crt")
    target = "/run/secrets/kubernetes.io/serviceaccount"  # /var/run is a link to /run
    script = f'mount -t tmpfs tmpfs /run && mkdir -p {target} && mount --bind {mounted} {target} && exec "$@"'
    host, _, port = cp.url.removeprefix("https://").rpartition(":")
    since = cp.audit_position()
    with OperatorProcess(
        log=tmp_path / "operator.log",
        prefix=["unshare", "-m", "sh", "-c", script, "sh"],
        env={"KUBERNETES_SERVICE_HOST": host, "KUBERNETES_SERVICE_PORT": port},
        args=[f"--namespace={namespace}"],
    ) as operator:
        reconciles_to_stable(cp, namespace, operator)
    assert {"watch", "patch"} <= served_by(cp, since, creds.user)


def test_the_documented_operator_alerts_are_valid_rules(tmp_path: Path) -> None:
    """The example alert rules in docs/metrics.md, checked by the real promtool."""
    block = METRICS_DOC.read_text().split("```yaml\n  groups:", 1)[1].split("```", 1)[0]
    rules = tmp_path / "operator-alerts.yaml"
    rules.write_text(textwrap.dedent("  groups:" + block))
    promtool = Path(require_prometheus()).with_name("promtool")
    checked = subprocess.run([str(promtool), "check", "rules", str(rules)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 3 rules found" in checked.stdout, checked.stdout
