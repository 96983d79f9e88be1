"""Triton's admin key, from the operator's two sides (issue 18, item 6; decision in docs/security.md,
"Management protocols restricted").

The renderer writes the key into the Triton container's `--http-restricted-api` flag; the gate worker
sends it with the one request that needs it, the model-config read of the contract check. A loopback
server plays Triton's restriction exactly as the rendered flag configures it (the protocols, the
header and the value parsed from the Deployment the operator renders), so the two sides are tested
against each other rather than against a copy of the key: metadata is open, the config answers only
with the header, and nothing else the gate sends carries the key. Another object's key is refused,
and the refusal's message, which reaches the gate's status, does not carry the key.
"""

from __future__ import annotations

import http.server
import json
from collections.abc import Iterator
from typing import Any

import pytest
from tritonclient.http import aio

from loopback_http import serving
from modeldeploy.adapters.inference import Endpoint, Failure, InferenceUnavailable, fetch_contract
from modeldeploy.api.resource import ObjectRef, parse_spec
from modeldeploy.handlers.gates import endpoint
from modeldeploy.render.deployment import ADMIN_HEADER, admin_key, deployment
from modeldeploy.render.names import REVISION_LABEL, TRACK_LABEL, Track
from modeldeploy.render.options import RenderOptions
from modeldeploy.render.revision import revision

MODEL = "scorer"
PARENT = ObjectRef(name="scorer", namespace="ml", uid="4f1c2a9e-0000-4000-8000-000000000001")
OTHER = ObjectRef(name="scorer", namespace="ml", uid="4f1c2a9e-0000-4000-8000-000000000002")
SPEC = parse_spec(
    {
        "model": {"name": MODEL, "version": "1", "storageUri": "s3://models/scorer/1"},
        "runtime": {"gpus": 0},
        "rollout": {"gates": {"contract": {"enabled": True}}},
    }
)
METADATA = {
    "name": MODEL,
    "versions": ["1"],
    "platform": "onnxruntime_onnx",
    "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}],
    "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 1]}],
}
CONFIG = {"name": MODEL, "max_batch_size": 8, "input": [], "output": []}


def rendered_restriction() -> tuple[set[str], str, str]:
    """(protocols, header, value) of the rendered canary's `--http-restricted-api`, as Triton reads it."""
    obj = deployment(PARENT, SPEC, revision(SPEC), Track.CANARY, RenderOptions(), 1)
    (triton,) = [c for c in obj["spec"]["template"]["spec"]["containers"] if c["name"] == "triton"]
    (flag,) = [a for a in triton["args"] if a.startswith("--http-restricted-api=")]
    protocols, _, pair = flag.split("=", 1)[1].partition(":")
    header, _, value = pair.partition("=")
    return set(protocols.split(",")), header, value


class Seen:
    requests: list[tuple[str, dict[str, str]]] = []


class RestrictedTriton(http.server.BaseHTTPRequestHandler):
    """Triton's HTTP endpoint with the rendered restriction: model-config needs the header."""

    protocols, header, value = rendered_restriction()

    def do_GET(self) -> None:
        Seen.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
        if self.path == f"/v2/models/{MODEL}":
            self.answer(200, METADATA)
        elif self.path == f"/v2/models/{MODEL}/config":
            if "model-config" in self.protocols and self.headers.get(self.header) != self.value:
                # Triton's own refusal names the header, never a value.
                self.answer(403, {"error": f"This API is restricted, expecting header '{self.header}'"})
            else:
                self.answer(200, CONFIG)
        else:
            self.answer(404, {"error": "not found"})

    def answer(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def triton() -> Iterator[str]:
    Seen.requests = []
    with serving(RestrictedTriton) as url:
        yield url.removeprefix("http://")


def canary_pod() -> dict[str, Any]:
    labels = {TRACK_LABEL: Track.CANARY.value, REVISION_LABEL: revision(SPEC)}
    return {
        "metadata": {"name": "scorer-canary-0", "labels": labels},
        "status": {"podIP": "10.0.0.7", "conditions": [{"type": "Ready", "status": "True"}]},
    }


def gate_endpoint(parent: ObjectRef, address: str) -> Endpoint:
    """The endpoint the gate worker builds for the canary pod, pointed at the loopback server."""
    found = endpoint([canary_pod()], SPEC, parent, Track.CANARY, revision(SPEC))
    assert found is not None
    assert found.address == "10.0.0.7:8000"
    return Endpoint(address, found.model, found.version, found.role, found.config_headers)


def test_the_rendered_restriction_covers_the_config_and_leaves_inference_and_metadata_open() -> None:
    protocols, header, value = rendered_restriction()
    assert "model-config" in protocols
    assert {"inference", "metadata", "health"}.isdisjoint(protocols)
    assert header == ADMIN_HEADER
    assert value == admin_key(PARENT) != admin_key(OTHER)


async def test_the_gate_worker_sends_the_rendered_key_with_the_config_request_only(triton: str) -> None:
    client = aio.InferenceServerClient(triton)
    try:
        contract = await fetch_contract(client, gate_endpoint(PARENT, triton))
    finally:
        await client.close()
    assert contract.max_batch_size == 8  # the config was read: the key matched
    carried = {path: ADMIN_HEADER in headers for path, headers in Seen.requests}
    assert carried == {f"/v2/models/{MODEL}": False, f"/v2/models/{MODEL}/config": True}


async def test_another_objects_key_is_refused_and_the_message_does_not_carry_either_key(
    triton: str,
) -> None:
    client = aio.InferenceServerClient(triton)
    try:
        with pytest.raises(InferenceUnavailable) as err:
            await fetch_contract(client, gate_endpoint(OTHER, triton))
    finally:
        await client.close()
    # A wiring error, not "the model is down": the contract holds as Inconclusive (docs/gates.md).
    assert err.value.kind == Failure.BAD_RESPONSE
    message = str(err.value)
    assert "HTTP 403" in message and ADMIN_HEADER in message
    assert admin_key(PARENT) not in message and admin_key(OTHER) not in message
    assert admin_key(OTHER) not in repr(gate_endpoint(OTHER, triton))  # a logged Endpoint shows no key
