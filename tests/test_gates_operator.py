"""Model-quality gates end to end: `modeldeploy run` against the real API server, asking real
MLServers over the V2 protocol at the pods' own addresses.

The kubelet stand-in gives primary pods the IP 127.0.0.12 and canary pods 127.0.0.13; an MLServer
listens on each, at Triton's HTTP port 8000, serving a model trained here from iris under the
name the ModelDeployment gives (`iris`): the primary serves `iris-primary`, the canary whichever
variant the test rolls out (`iris-good`, `iris-worse`, `iris-narrow`). So the operator reaches the
models exactly as it does in a cluster: through the Ready pods' `status.podIP`.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from mlserver_fixture import MLServer, TrainedModels, mlserver_venv, running, train
from modeldeploy.api.base import RESUME_ANNOTATION
from operator_bed import MD, OperatorBed
from test_model_puller import HttpsServer, https_server, tls_files
from testbed.controlplane import ADMIN_USER, Credentials
from testbed.kubelet import PodReport

__all__ = ["https_server", "tls_files"]  # fixtures, shared with the puller's tests

# Not the demo's 127.0.0.2 and .3: a demo running on the same machine keeps its servers.
PRIMARY_IP, CANARY_IP, PORT = "127.0.0.12", "127.0.0.13", 8000
NAME = "iris"
# 100 copies of the 45-line golden set: with batchSize 1 a run sends 9,000 requests, several
# seconds, long enough to stop a model server or the operator while it runs.
LONG_COPIES = 100


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, TrainedModels]:
    venv = mlserver_venv()
    return venv, train(venv, tmp_path_factory.mktemp("iris"))


@pytest.fixture(scope="module")
def primary_server(
    trained: tuple[Path, TrainedModels], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[MLServer]:
    venv, models = trained
    server = MLServer(
        venv, models, {NAME: "iris-primary"}, host=PRIMARY_IP, port=PORT, workdir=tmp_path_factory.mktemp("p")
    )
    with running(server):
        yield server


def canary_server(trained: tuple[Path, TrainedModels], variant: str, folder: Path) -> MLServer:
    venv, models = trained
    return MLServer(venv, models, {NAME: variant}, host=CANARY_IP, port=PORT, workdir=folder)


def by_track(pod: Mapping[str, Any]) -> PodReport:
    track = (pod.get("metadata", {}).get("labels") or {}).get("modeldeploy.io/track")
    return PodReport(pod_ip=CANARY_IP if track == "canary" else PRIMARY_IP)


def manifest(version: str, golden: str = "golden", batch: int = 8, **gates: Any) -> dict[str, Any]:
    return {
        "apiVersion": MD[0],
        "kind": MD[1],
        "metadata": {"name": NAME},
        "spec": {
            "model": {"name": NAME, "version": version, "storageUri": f"s3://models/iris/{version}"},
            "runtime": {"gpus": 0},
            "scaling": {"minReplicas": 1, "maxReplicas": 1},
            "rollout": {
                "steps": [{"weight": 50}],
                "interval": "1s",
                "progressDeadline": "60s",
                "analysis": {"metrics": [], "inconclusive": {"limit": 1, "action": "Hold"}},
                "gates": {
                    "contract": {"enabled": True},
                    "goldenSet": {
                        "configMapKeyRef": {"name": golden, "key": "golden.jsonl"},
                        "batchSize": batch,
                    },
                    "minAccuracy": 0.92,
                    "minAgreement": 0.9,
                    "maxLatencyP95": "2s",
                    "timeout": "2m",
                    **gates,
                },
            },
        },
    }


def golden_config_map(bed: OperatorBed, name: str, text: str) -> None:
    bed.apply(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"golden.jsonl": text}}
    )


@pytest.fixture
def bed(
    operator: Any,
    kubelet_policies: Any,
    namespace: str,
    trained: tuple[Path, TrainedModels],
    primary_server: MLServer,
) -> OperatorBed:
    kubelet_policies.set(namespace, by_track)
    started: OperatorBed = operator(resync_seconds=5)
    golden_config_map(started, "golden", trained[1].golden)
    started.apply(manifest("1"))
    started.wait_phase(NAME, "Stable")
    return started


class Watch:
    """Every status seen while polling, so that a test can say what never happened."""

    def __init__(self, bed: OperatorBed) -> None:
        self.bed = bed
        self.seen: list[dict[str, Any]] = []

    def until(self, what: str, predicate: Any, timeout: float = 90.0) -> dict[str, Any]:
        def look() -> Any:
            status = self.bed.status(NAME)
            self.seen.append(status)
            return predicate(status) and status

        result: dict[str, Any] = self.bed.wait(look, timeout=timeout, what=what)
        return result

    def max_weight(self) -> int:
        return max((int(s.get("canaryWeight") or 0) for s in self.seen), default=0)


def primary_generation(bed: OperatorBed) -> int:
    primary = bed.child("apps/v1", "Deployment", f"{NAME}-primary")
    assert primary is not None
    return int(primary["metadata"]["generation"])


def checks(status: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in (status.get("gate") or {}).get("checks") or []}


def events(bed: OperatorBed) -> list[tuple[str, str]]:
    found = [
        e
        for e in bed.api.list("v1", "Event", bed.namespace)
        if (e.get("involvedObject") or {}).get("name") == NAME
    ]
    found.sort(key=lambda e: int(e["metadata"]["resourceVersion"]))
    return [(str(e["reason"]), str(e.get("message", ""))) for e in found]


def kubectl_get(bed: OperatorBed, folder: Path) -> dict[str, str]:
    """`kubectl get mdep NAME`, as a user runs it: the API server fills in the printer columns."""
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl is missing: `make tools-helm` puts it in .tools/bin"
    cp = bed.control_plane
    config = cp.kubeconfig(Credentials(user=ADMIN_USER, token=cp.admin_token), folder / "kubeconfig-admin")
    shown = subprocess.run(
        [kubectl, "--kubeconfig", str(config), "get", "mdep", NAME, "-n", bed.namespace],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout.splitlines()
    return dict(zip(shown[0].split(), shown[1].split(), strict=False))


def test_a_good_canary_passes_every_gate_and_is_promoted(
    bed: OperatorBed, trained: tuple[Path, TrainedModels], tmp_path: Path
) -> None:
    with running(canary_server(trained, "iris-good", tmp_path)):
        bed.apply(manifest("2"))
        watch = Watch(bed)
        done = watch.until(
            "version 2 promoted",
            lambda s: s.get("phase") == "Stable" and s.get("stableModelVersion") == "2",
        )
    entry = done["history"][0]
    assert entry["result"] == "Promoted"
    gate = {c["name"]: c for c in entry["gate"]}
    assert set(gate) == {"contract", "accuracy", "agreement", "latencyP95"}
    assert all(c["verdict"] == "Pass" for c in gate.values()), gate
    assert gate["accuracy"]["value"] >= 0.92
    assert "gate" not in done  # a finished rollout keeps its gate in the history only
    # Traffic moved only after the gate passed: the first status with weight > 0 has a passed gate.
    shifted = next(s for s in watch.seen if int(s.get("canaryWeight") or 0) > 0)
    assert shifted["gate"]["state"] == "Passed", shifted["gate"]
    reasons = [reason for reason, _ in events(bed)]
    assert reasons.index("GateStarted") < reasons.index("GatePassed") < reasons.index("Promoted")


def test_a_worse_canary_fails_the_gate_before_any_traffic_and_the_primary_is_untouched(
    bed: OperatorBed, trained: tuple[Path, TrainedModels], tmp_path: Path
) -> None:
    generation = primary_generation(bed)
    with running(canary_server(trained, "iris-worse", tmp_path)):
        bed.apply(manifest("2"))
        watch = Watch(bed)
        done = watch.until("version 2 rolled back", lambda s: s.get("phase") == "RolledBack")
    degraded = next(c for c in done["conditions"] if c["type"] == "Degraded")
    assert degraded["reason"] == "GateFailed"
    found = checks(done)
    accuracy = found["accuracy"]
    assert accuracy["verdict"] == "Fail" and accuracy["value"] < 0.92, accuracy
    assert accuracy["value"] == pytest.approx(trained[1].accuracy["iris-worse"], abs=1e-6)
    # The reason names the check and its value against its threshold.
    assert f"accuracy {accuracy['value']:.4g} < min 0.92" in degraded["message"]
    assert done["history"][0]["result"] == "RolledBack"
    assert done["history"][0]["gate"] == done["gate"]["checks"]
    assert watch.max_weight() == 0, "traffic moved to a canary whose gate had not passed"
    assert primary_generation(bed) == generation, "the primary was changed"
    service = bed.child("v1", "Service", NAME)
    assert service is not None and service["spec"]["selector"].get("modeldeploy.io/track") == "primary"
    failed = [message for reason, message in events(bed) if reason == "GateFailed"]
    assert failed and "accuracy Fail" in failed[0], events(bed)


def test_a_contract_break_is_refused(
    bed: OperatorBed, trained: tuple[Path, TrainedModels], tmp_path: Path
) -> None:
    with running(canary_server(trained, "iris-narrow", tmp_path)):
        bed.apply(manifest("2"))
        done = Watch(bed).until("version 2 rolled back", lambda s: s.get("phase") == "RolledBack")
    contract = checks(done)["contract"]
    assert contract["verdict"] == "Fail"
    assert "input features: shape [-1, 4] -> [-1, 2]" in contract["message"], contract
    # The golden set is not sent to a model that could not take it.
    assert checks(done)["accuracy"]["verdict"] == "Inconclusive"
    assert next(c for c in done["conditions"] if c["type"] == "Degraded")["reason"] == "GateFailed"


def test_a_golden_set_nested_too_deep_fails_the_gate_not_the_operator(
    bed: OperatorBed, trained: tuple[Path, TrainedModels], tmp_path: Path
) -> None:
    """Nested far past any recursion limit: once it raised RecursionError in every pass of the
    object, which said GateRunning for ever. Now the run reads it, off the pass threads, and the
    set fails the gate with its reason; the operator logs no traceback."""
    line = trained[1].golden.splitlines()[0]
    deep = '{"inputs": {"features": ' + "[" * 200_000 + "1" + "]" * 200_000 + "}}"
    golden_config_map(bed, "golden-deep", f"{line}\n{deep}\n")
    with running(canary_server(trained, "iris-good", tmp_path)):
        applied = time.monotonic()
        bed.apply(manifest("2", golden="golden-deep"))
        watch = Watch(bed)
        done = watch.until("version 2 rolled back", lambda s: s.get("phase") == "RolledBack")
        print(f"golden set nested too deep: rolled back {time.monotonic() - applied:.1f}s after the apply")
    degraded = next(c for c in done["conditions"] if c["type"] == "Degraded")
    assert degraded["reason"] == "GateFailed"
    reason = (
        f"golden set invalid: goldenSet.configMapKeyRef: ConfigMap {bed.namespace}/golden-deep key "
        "golden.jsonl: golden set line 2: nested deeper than 32 levels"
    )
    found = checks(done)
    assert found["accuracy"] == {**found["accuracy"], "verdict": "Fail", "message": reason}
    assert found["contract"] == {
        **found["contract"],
        "verdict": "Inconclusive",
        "message": f"not run: {reason}",
    }
    assert reason in degraded["message"]
    assert watch.max_weight() == 0
    log = bed.process.tail(200_000)
    assert "RecursionError" not in log and "Traceback" not in log


def long_golden(bed: OperatorBed, trained: tuple[Path, TrainedModels]) -> None:
    golden_config_map(bed, "golden-long", trained[1].golden * LONG_COPIES)


def test_a_model_server_stopped_mid_gate_holds_the_rollout_until_resumed(
    bed: OperatorBed, trained: tuple[Path, TrainedModels], tmp_path: Path
) -> None:
    long_golden(bed, trained)
    canary = canary_server(trained, "iris-good", tmp_path)
    with running(canary):
        bed.apply(manifest("2", golden="golden-long", batch=1))
        watch = Watch(bed)
        watch.until("the gate running", lambda s: (s.get("gate") or {}).get("state") == "Running")
        time.sleep(1.0)  # requests are going out
    # The canary's server is gone mid-run: Inconclusive, held at the limit (1), never promoted.
    held = watch.until("the rollout held", lambda s: s.get("phase") == "Paused")
    assert held["gate"]["state"] == "Inconclusive"
    progressing = next(c for c in held["conditions"] if c["type"] == "Progressing")
    assert progressing["reason"] == "InconclusiveLimit"
    assert "unreachable" in held["gate"]["message"] or "answered" in held["gate"]["message"], held["gate"]
    assert watch.max_weight() == 0
    time.sleep(3)
    assert bed.status(NAME)["phase"] == "Paused"  # it holds: no retry promotes it behind the user's back
    with running(canary_server(trained, "iris-good", tmp_path / "again")):
        body = {"metadata": {"annotations": {RESUME_ANNOTATION: "r1"}}}
        bed.api.patch(*MD, bed.namespace, NAME, body)
        done = watch.until(
            "version 2 promoted after resume",
            lambda s: s.get("phase") == "Stable" and s.get("stableModelVersion") == "2",
            timeout=120,
        )
    assert all(c["verdict"] == "Pass" for c in done["history"][0]["gate"])


def test_an_operator_killed_mid_gate_runs_it_again_and_promotes(
    bed: OperatorBed, operator: Any, trained: tuple[Path, TrainedModels], tmp_path: Path
) -> None:
    long_golden(bed, trained)
    with running(canary_server(trained, "iris-good", tmp_path)):
        bed.apply(manifest("2", golden="golden-long", batch=1))
        watch = Watch(bed)
        running_gate = watch.until(
            "the gate running", lambda s: (s.get("gate") or {}).get("state") == "Running"
        )
        assert kubectl_get(bed, tmp_path)["GATE"] == "Running"  # what `kubectl get mdep` shows
        # The run is off the pass threads: another object is reconciled to Stable meanwhile.
        other = manifest("1")
        other["metadata"] = {"name": "other"}
        del other["spec"]["rollout"]["gates"]
        bed.apply(other)
        bed.wait_phase("other", "Stable", timeout=30)
        assert bed.status(NAME)["gate"]["state"] == "Running", "the gate run ended before the check"
        bed.process.kill()
        started_at = running_gate["gate"]["startedAt"]
        assert bed.status(NAME)["gate"]["state"] == "Running"  # nothing finished it
        second: OperatorBed = operator(resync_seconds=5)
        done = watch.until(
            "version 2 promoted by the new operator",
            lambda s: s.get("phase") == "Stable" and s.get("stableModelVersion") == "2",
            timeout=120,
        )
    # Run again from the start under the same name: the run status named, not a new one.
    finished = [s["gate"] for s in watch.seen if (s.get("gate") or {}).get("finishedAt")]
    assert finished and all(g["startedAt"] == started_at for g in finished), finished
    assert "gate run of revision" in second.process.tail(20_000)
    assert all(c["verdict"] == "Pass" for c in done["history"][0]["gate"])


def test_a_golden_set_over_https_gates_the_rollout(
    operator: Any,
    kubelet_policies: Any,
    namespace: str,
    trained: tuple[Path, TrainedModels],
    primary_server: MLServer,
    https_server: HttpsServer,
    tmp_path: Path,
) -> None:
    """A presigned-style URL: fetched by the gate worker (trusting the server's CA through the
    system store, as SSL_CERT_FILE sets it), judged, and its signature shown nowhere."""
    kubelet_policies.set(namespace, by_track)
    bed: OperatorBed = operator(resync_seconds=5, env={"SSL_CERT_FILE": str(https_server.ca_file)})
    url = https_server.serve("/golden.jsonl", trained[1].golden.encode()) + "?X-Amz-Signature=s3cr3t"

    def over_https(version: str) -> dict[str, Any]:
        doc = manifest(version)
        doc["spec"]["rollout"]["gates"]["goldenSet"] = {"storageUri": url, "batchSize": 8}
        return doc

    bed.apply(over_https("1"))
    bed.wait_phase(NAME, "Stable")
    with running(canary_server(trained, "iris-worse", tmp_path)):
        bed.apply(over_https("2"))
        done = Watch(bed).until("version 2 rolled back", lambda s: s.get("phase") == "RolledBack")
    assert checks(done)["accuracy"]["verdict"] == "Fail", done["gate"]
    assert any(path.startswith("/golden.jsonl") for path, _ in https_server.requests)
    shown = json.dumps(done) + json.dumps(events(bed)) + bed.process.tail(200_000)
    assert "s3cr3t" not in shown
