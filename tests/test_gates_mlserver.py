"""The gate run (adapters/inference.py) against a real, independent V2 server: MLServer serving
scikit-learn models trained here on iris (tests/mlserver_fixture.py, testbed.mlserver).

- iris-primary (production) and iris-good: logistic regressions, the canary as good as the primary;
- iris-worse: a depth-1 tree, accuracy 0.67 < 0.92 and a shifted output distribution;
- iris-narrow: trained on 2 features, input shape [-1, 2] instead of [-1, 4]: a contract break.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tritonclient.http.aio as aio
from tritonclient.utils import InferenceServerException

from mlserver_fixture import (
    MODELS,
    MLServer,
    TrainedModels,
    free_port,
    mlserver_venv,
    running,
    serve,
    train,
)
from modeldeploy.adapters.inference import (
    Endpoint,
    Failure,
    InferenceUnavailable,
    fetch_contract,
    map_error,
    run_gate,
)
from modeldeploy.api.spec import Gates
from modeldeploy.api.status import Verdict
from modeldeploy.gates.contract import Contract, Tensor
from modeldeploy.gates.golden import GoldenSet, parse_golden_set
from testbed import mlserver

ALL_THRESHOLDS = {
    "minAccuracy": 0.92,
    "minAgreement": 0.9,
    "maxPSI": 0.25,
    "maxLatencyP95": "2s",
    "minDemographicParity": 0.4,
}


def gates(**fields: Any) -> Gates:
    golden_set = {"configMapKeyRef": {"name": "golden", "key": "iris.jsonl"}, "batchSize": 8}
    golden_set |= fields.pop("goldenSet", {})
    return Gates.model_validate({"goldenSet": golden_set, **ALL_THRESHOLDS} | fields)


@pytest.fixture(scope="module")
def venv() -> Path:
    return mlserver_venv()


@pytest.fixture(scope="module")
def trained(venv: Path, tmp_path_factory: pytest.TempPathFactory) -> TrainedModels:
    return train(venv, tmp_path_factory.mktemp("mlserver"))


@pytest.fixture(scope="module")
def server(
    venv: Path, trained: TrainedModels, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[MLServer]:
    with running(serve(venv, trained, tmp_path_factory.mktemp("mlserver-all"), MODELS)) as srv:
        yield srv


@pytest.fixture(scope="module")
def golden(trained: TrainedModels) -> GoldenSet:
    return parse_golden_set(trained.golden)


def endpoints(server: MLServer, canary: str) -> tuple[Endpoint, Endpoint]:
    return Endpoint(server.address, canary), Endpoint(server.address, "iris-primary", role="primary")


def by_name(outcome: Any) -> dict[str, Any]:
    return {c.name: c for c in outcome.checks}


async def test_contract_from_mlserver_metadata_with_no_config_endpoint(server: MLServer) -> None:
    client = aio.InferenceServerClient(server.address)
    try:
        contract = await fetch_contract(client, Endpoint(server.address, "iris-good"))
    finally:
        await client.close()
    # MLServer answers 404 on /config: max_batch_size is unknown, not an error.
    assert contract == Contract(
        inputs=(Tensor("features", "FP32", (-1, 4)),),
        outputs=(Tensor("predict", "INT64", (-1, 1)),),
        max_batch_size=None,
    )


async def test_a_good_canary_passes_every_check(
    server: MLServer, golden: GoldenSet, trained: TrainedModels
) -> None:
    canary, primary = endpoints(server, "iris-good")
    outcome = await run_gate(gates(), golden, canary, primary)
    checks = by_name(outcome)
    assert outcome.verdict == Verdict.PASS, outcome.message
    assert [c.name for c in outcome.checks] == [
        "contract",
        "accuracy",
        "agreement",
        "psi",
        "latencyP95",
        "demographicParity",
    ]
    assert all(c.verdict == Verdict.PASS for c in outcome.checks)
    assert checks["contract"].message == "same contract as the primary"
    assert checks["accuracy"].value == pytest.approx(trained.accuracy["iris-good"])
    assert checks["agreement"].value == 1.0
    assert checks["psi"].value == pytest.approx(0.0)
    assert 0 < checks["latencyP95"].value < 2.0
    # 45 examples in batches of 8: 6 requests to each model.
    assert outcome.requests == 12


async def test_a_worse_canary_fails_naming_the_checks_and_values(
    server: MLServer, golden: GoldenSet, trained: TrainedModels
) -> None:
    canary, primary = endpoints(server, "iris-worse")
    outcome = await run_gate(gates(), golden, canary, primary)
    checks = by_name(outcome)
    assert outcome.verdict == Verdict.FAIL
    accuracy = checks["accuracy"]
    assert accuracy.verdict == Verdict.FAIL
    assert accuracy.value == pytest.approx(trained.accuracy["iris-worse"])
    assert accuracy.threshold == 0.92
    assert accuracy.message == f"accuracy {accuracy.value:.4g} < min 0.92 (45 labelled)"
    assert checks["psi"].verdict == Verdict.FAIL
    assert checks["psi"].value > 0.25
    assert checks["agreement"].verdict == Verdict.FAIL
    assert checks["contract"].verdict == Verdict.PASS
    assert outcome.message.startswith(f"accuracy: accuracy {accuracy.value:.4g} < min 0.92")


async def test_psi_alone_against_the_labels_without_a_primary(server: MLServer, golden: GoldenSet) -> None:
    spec = gates(minAccuracy=None, minAgreement=None, maxLatencyP95=None, minDemographicParity=None)
    spec = spec.model_copy(update={"contract": spec.contract.model_copy(update={"enabled": False})})
    outcome = await run_gate(spec, golden, Endpoint(server.address, "iris-worse"), None)
    (psi,) = outcome.checks
    assert psi.name == "psi"
    assert psi.verdict == Verdict.FAIL
    assert "vs the labels" in psi.message
    assert outcome.requests == 6


async def test_a_contract_break_is_refused(server: MLServer, golden: GoldenSet) -> None:
    canary, primary = endpoints(server, "iris-narrow")
    outcome = await run_gate(gates(), golden, canary, primary)
    contract = by_name(outcome)["contract"]
    assert outcome.verdict == Verdict.FAIL
    assert contract.verdict == Verdict.FAIL
    assert contract.message == "breaking: input features: shape [-1, 4] -> [-1, 2] (dimension 1: 4 -> 2)"
    # The golden set is not sent to a model that cannot take it.
    assert outcome.requests == 0
    assert all(c.message == "not run: the contract check failed" for c in outcome.checks[1:])


async def test_a_contract_break_allowed_on_purpose(server: MLServer, golden: GoldenSet) -> None:
    canary, primary = endpoints(server, "iris-narrow")
    spec = Gates.model_validate({"contract": {"allowContractChange": True}})
    outcome = await run_gate(spec, golden, canary, primary)
    (contract,) = outcome.checks
    assert contract.verdict == Verdict.PASS
    assert contract.message.startswith("breaking changes accepted by allowContractChange: input features")


async def test_a_model_that_does_not_exist_is_inconclusive(server: MLServer, golden: GoldenSet) -> None:
    canary = Endpoint(server.address, "iris-missing")
    outcome = await run_gate(gates(), golden, canary, None)
    assert outcome.verdict == Verdict.INCONCLUSIVE
    assert all(c.verdict == Verdict.INCONCLUSIVE for c in outcome.checks)
    assert "canary iris-missing" in outcome.checks[0].message


async def test_too_few_examples_answered_is_inconclusive(server: MLServer, golden: GoldenSet) -> None:
    canary, primary = endpoints(server, "iris-good")
    outcome = await run_gate(gates(goldenSet={"minAnswered": 46}), golden, canary, primary)
    assert outcome.verdict == Verdict.INCONCLUSIVE
    assert by_name(outcome)["accuracy"].message == ("only 45 of 45 examples answered by the canary, need 46")


def test_an_address_in_use_is_one_line(venv: Path, trained: TrainedModels) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.3", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = MLServer(venv, trained, {"iris": "iris-good"}, host="127.0.0.3", port=port)
        with pytest.raises(mlserver.MLServerFailed) as err:
            server.start()
    assert str(err.value) == f"cannot serve on 127.0.0.3:{port}: the address is in use"
    assert not server.workdir.exists()  # its temp model repository is not left behind


def test_a_venv_that_cannot_be_had_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELDEPLOY_MLSERVER_VENV", str(tmp_path))
    with pytest.raises(mlserver.MLServerMissing) as err:
        mlserver.find_venv()
    assert str(err.value) == f"MODELDEPLOY_MLSERVER_VENV={tmp_path} has no bin/mlserver"
    monkeypatch.delenv("MODELDEPLOY_MLSERVER_VENV")
    failing = tmp_path / "install-mlserver.sh"
    failing.write_text(
        "echo 'tools: building'\necho 'ERROR: No matching distribution found for mlserver' >&2\nexit 1\n"
    )
    monkeypatch.setattr(mlserver, "INSTALL", failing)
    with pytest.raises(mlserver.MLServerMissing) as err:
        mlserver.find_venv()
    assert str(err.value) == (
        "install-mlserver.sh could not build .tools/mlserver-venv (exit 1): "
        "ERROR: No matching distribution found for mlserver"
    )
    assert "tools: building" in err.value.details


def test_the_stopped_canary_is_unreachable(venv: Path, trained: TrainedModels, tmp_path: Path) -> None:
    lone = serve(venv, trained, tmp_path / "lone", ("iris-good",))
    with running(lone):
        pass  # started, answered readiness, stopped
    canary = Endpoint(lone.address, "iris-good")

    async def gate() -> Any:
        return await run_gate(gates(), parse_golden_set(trained.golden), canary, None)

    outcome = asyncio.run(gate())
    assert outcome.verdict == Verdict.INCONCLUSIVE
    assert [c.verdict for c in outcome.checks] == [Verdict.INCONCLUSIVE] * 6
    assert outcome.checks[0].message.startswith(
        f"canary iris-good at {lone.address}: model metadata: ClientConnectorError"
    )


def test_mlserver_stopped_mid_gate_is_inconclusive(
    venv: Path, trained: TrainedModels, tmp_path: Path
) -> None:
    """A golden set of 4,500 examples sent one per request; MLServer is stopped once it has
    answered some: what the canary answered before it died is not judged."""
    lone = serve(venv, trained, tmp_path / "lone", ("iris-good", "iris-primary"))
    big = parse_golden_set(trained.golden * 100)
    spec = gates(goldenSet={"batchSize": 1}, minAgreement=None, maxPSI=None)
    with running(lone):
        log = lone.log_path

        async def gate_then_stop() -> Any:
            task = asyncio.create_task(run_gate(spec, big, Endpoint(lone.address, "iris-good"), None))
            # Stop it once it has answered a few requests (MLServer logs each one).
            for _ in range(1200):  # at most a minute
                if log.read_text(errors="replace").count("/infer") >= 20:
                    break
                await asyncio.sleep(0.05)
            await asyncio.to_thread(lone.stop)
            return await task

        outcome = asyncio.run(gate_then_stop())
    assert outcome.verdict == Verdict.INCONCLUSIVE, outcome.message
    accuracy = by_name(outcome)["accuracy"]
    assert accuracy.verdict == Verdict.INCONCLUSIVE
    assert accuracy.message.startswith(
        "only 0 of 4500 examples answered by the canary, need 20: canary iris-good"
    )
    assert 20 <= outcome.requests < 4500


async def test_the_whole_run_is_bounded_by_the_timeout(server: MLServer, trained: TrainedModels) -> None:
    big = parse_golden_set(trained.golden * 200)  # 9,000 requests of one example: far over 1s
    canary, primary = endpoints(server, "iris-good")
    started = time.monotonic()
    outcome = await run_gate(gates(goldenSet={"batchSize": 1}, timeout="1s"), big, canary, primary)
    assert time.monotonic() - started < 3
    assert outcome.verdict == Verdict.INCONCLUSIVE
    assert outcome.checks[0].message.startswith("the gate run timed out after 1s (")
    assert 0 < outcome.requests < 9000


async def test_an_unreadable_golden_set_still_checks_the_contract(server: MLServer) -> None:
    canary, primary = endpoints(server, "iris-narrow")
    outcome = await run_gate(gates(), None, canary, primary, golden_error="golden set line 3: not JSON")
    checks = by_name(outcome)
    assert checks["contract"].verdict == Verdict.FAIL
    assert outcome.verdict == Verdict.FAIL
    canary, primary = endpoints(server, "iris-good")
    outcome = await run_gate(gates(), None, canary, primary, golden_error="golden set line 3: not JSON")
    assert outcome.verdict == Verdict.INCONCLUSIVE
    assert by_name(outcome)["accuracy"].message == "golden set unreadable: golden set line 3: not JSON"
    # A set that is itself at fault (too deep, not JSON lines, ...) fails the quality checks, and
    # no model is asked: the verdict does not wait on (nor depend on) a model being reachable.
    unreachable_canary = Endpoint("127.0.0.1:9", "iris")
    outcome = await run_gate(
        gates(),
        None,
        unreachable_canary,
        None,
        golden_error="golden set line 3: not JSON",
        golden_invalid=True,
    )
    assert outcome.verdict == Verdict.FAIL and outcome.requests == 0
    assert by_name(outcome)["contract"].verdict == Verdict.INCONCLUSIVE
    assert by_name(outcome)["accuracy"].verdict == Verdict.FAIL
    assert by_name(outcome)["accuracy"].message == "golden set invalid: golden set line 3: not JSON"


async def test_failures_map_to_one_error_type(server: MLServer) -> None:
    client = aio.InferenceServerClient(server.address)
    try:
        with pytest.raises(InferenceUnavailable) as err:
            await fetch_contract(client, Endpoint(server.address, "nope"))
    finally:
        await client.close()
    assert err.value.kind == Failure.NOT_READY
    gone = aio.InferenceServerClient("127.0.0.1:1")
    try:
        with pytest.raises(InferenceUnavailable) as err:
            await fetch_contract(gone, Endpoint("127.0.0.1:1", "iris-good"))
    finally:
        await gone.close()
    assert err.value.kind == Failure.UNREACHABLE


async def test_a_primary_down_leaves_only_its_checks_open(server: MLServer, golden: GoldenSet) -> None:
    canary = Endpoint(server.address, "iris-good")
    primary = Endpoint(f"127.0.0.1:{free_port()}", "iris-primary", role="primary")  # nothing listens
    outcome = await run_gate(gates(), golden, canary, primary)
    verdicts = {c.name: c.verdict for c in outcome.checks}
    assert verdicts == {
        "contract": Verdict.INCONCLUSIVE,
        "accuracy": Verdict.PASS,
        "agreement": Verdict.INCONCLUSIVE,
        "psi": Verdict.INCONCLUSIVE,
        "latencyP95": Verdict.PASS,
        "demographicParity": Verdict.PASS,
    }
    assert outcome.verdict == Verdict.INCONCLUSIVE
    assert by_name(outcome)["agreement"].message.startswith(
        "only 0 examples answered by both canary and primary, need 20: primary iris-primary at 127.0.0.1:"
    )
    assert outcome.requests == 6  # the canary's only


async def test_a_golden_set_for_other_inputs_is_inconclusive(server: MLServer, golden: GoldenSet) -> None:
    other = parse_golden_set('{"inputs": {"pixels": [1, 2, 3, 4]}, "label": 0}\n' * 30)
    canary, primary = endpoints(server, "iris-good")
    outcome = await run_gate(gates(), other, canary, primary)
    assert outcome.verdict == Verdict.INCONCLUSIVE
    assert by_name(outcome)["accuracy"].message == (
        "only 0 of 30 examples answered by the canary, need 20: golden set inputs ['pixels'] are not "
        "inputs of the canary model iris-good (it takes ['features'])"
    )
    assert outcome.requests == 0


@pytest.mark.parametrize(
    ("error", "kind", "message"),
    [
        pytest.param(
            InferenceServerException("Request for unknown model: 'm' is not found", status="400"),
            Failure.NOT_READY,
            "canary m at h:1: infer: HTTP 400: Request for unknown model: 'm' is not found",
            id="triton-unknown-model",
        ),
        pytest.param(
            InferenceServerException("Not Found", status="404"),
            Failure.NOT_READY,
            "canary m at h:1: infer: HTTP 404: Not Found",
            id="not-found",
        ),
        pytest.param(
            InferenceServerException("loading", status="503"),
            Failure.NOT_READY,
            "canary m at h:1: infer: HTTP 503: loading",
            id="unavailable",
        ),
        pytest.param(
            InferenceServerException("unexpected shape for input 'x'", status="400"),
            Failure.BAD_RESPONSE,
            "canary m at h:1: infer: HTTP 400: unexpected shape for input 'x'",
            id="refused-request",
        ),
        pytest.param(
            InferenceServerException("This API is restricted", status="403"),
            Failure.BAD_RESPONSE,
            "canary m at h:1: infer: HTTP 403: This API is restricted",
            id="restricted",
        ),
        pytest.param(
            ConnectionRefusedError(111, "Connection refused"),
            Failure.UNREACHABLE,
            "canary m at h:1: infer: ConnectionRefusedError: [Errno 111] Connection refused",
            id="refused",
        ),
        pytest.param(
            TimeoutError("timed out"),
            Failure.UNREACHABLE,
            "canary m at h:1: infer: TimeoutError: timed out",
            id="timeout",
        ),
        pytest.param(
            ValueError("bad JSON\n in body"),
            Failure.BAD_RESPONSE,
            "canary m at h:1: infer: ValueError: bad JSON in body",
            id="garbage",
        ),
    ],
)
def test_every_failure_maps_to_one_error_type(error: BaseException, kind: Failure, message: str) -> None:
    mapped = map_error(Endpoint("h:1", "m"), "infer", error)
    assert (mapped.kind, str(mapped)) == (kind, message)
