"""Model-quality gates, the I/O half: ask the canary and the primary over the V2 inference protocol.

tritonclient's HTTP client, in its asyncio flavour (tritonclient.http.aio, over aiohttp, which
kopf already runs on): a gate run awaits its requests, so it never blocks other objects'
reconciles, and `asyncio.timeout` bounds the whole run and cancels the request in flight, which a
worker thread could not. The math is the pure package modeldeploy.gates; this module only fetches:

- `fetch_contract()`: model metadata (every V2 server; a model not loaded is "not ready") and model
  config (Triton only; MLServer has no config endpoint, so a 404 there means "max_batch_size
  unknown", not an error);
- `ask()`: the golden set in batches, one top-1 per example and each request's client-side latency;
- `run_gate()`: the whole gate, contract then golden set, every check judged; the entry point.

Every failure to talk to a model is one `InferenceUnavailable`, whose `kind` says which
(unreachable, not ready, bad response): the caller turns it into Inconclusive, never Fail.
"""

from __future__ import annotations

import asyncio
import ssl
import time
import urllib.parse
from array import array
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

import aiohttp
import numpy as np
import tritonclient.http.aio as triton_aio
from tritonclient.utils import InferenceServerException, triton_to_np_dtype

from modeldeploy.api.base import parse_duration
from modeldeploy.api.spec import Gates
from modeldeploy.api.status import GateCheck, Verdict
from modeldeploy.gates import checks
from modeldeploy.gates.contract import Contract, ContractError, diff, from_metadata
from modeldeploy.gates.golden import MAX_BYTES, Flat, GoldenSet, Scalar, batches
from modeldeploy.gates.judge import (
    Answers,
    contract_check,
    explain,
    judge_run,
    overall,
    refused,
    thresholds_of,
    unreachable,
)

_MAX_DETAIL = 200
# The request body is JSON; servers built on FastAPI (MLServer) refuse it without saying so.
_JSON = {"Content-Type": "application/json"}
# Per request (aiohttp's total timeout): longer is a server in trouble, whatever the gate's timeout.
_REQUEST_TIMEOUT = 10.0


class Failure(StrEnum):
    UNREACHABLE = "unreachable"
    NOT_READY = "model not ready"
    BAD_RESPONSE = "bad response"


class InferenceUnavailable(Exception):
    """A model that could not be asked; the message is one line naming the model and the cause."""

    def __init__(self, kind: Failure, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class Endpoint:
    """A V2 HTTP endpoint: `host:port` (no scheme), the model's name and, optionally, its version."""

    address: str
    model: str
    version: str = ""
    role: str = "canary"  # how messages name it; run_gate() sets it
    # Sent with the model-config request only: the operator's Triton restricts `model-config` to
    # the admin header (render/deployment.py: ADMIN_HEADER, admin_key(parent); docs/security.md
    # decides what it guards). Out of repr, so no log of an Endpoint shows it; Triton's 403 names
    # the header only. A 403 there is a wiring error and makes the contract Inconclusive.
    config_headers: Mapping[str, str] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class GateOutcome:
    checks: list[GateCheck]
    verdict: Verdict
    message: str
    requests: int = 0  # inference requests sent, both models together
    seconds: float = 0.0


@dataclass
class _Counter:
    requests: int = 0


def _short(text: object) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= _MAX_DETAIL else line[: _MAX_DETAIL - 3] + "..."


def map_error(endpoint: Endpoint, what: str, err: BaseException) -> InferenceUnavailable:
    """Whatever the client raised -> one InferenceUnavailable naming the model and the cause."""
    who = f"{endpoint.role} {endpoint.model} at {endpoint.address}"
    if isinstance(err, InferenceUnavailable):
        return err
    if isinstance(err, InferenceServerException):
        status = err.status() or ""
        text = _short(err.message())
        lowered = text.lower()
        if status in ("404", "503") or any(
            m in lowered for m in ("not ready", "unavailable", "unknown model")
        ):
            return InferenceUnavailable(Failure.NOT_READY, f"{who}: {what}: HTTP {status or '?'}: {text}")
        if not status:  # the client's own errors: a connection refused surfaces here, without status
            return InferenceUnavailable(Failure.UNREACHABLE, f"{who}: {what}: {text}")
        return InferenceUnavailable(Failure.BAD_RESPONSE, f"{who}: {what}: HTTP {status}: {text}")
    if isinstance(err, aiohttp.ClientConnectionError | OSError | TimeoutError):
        return InferenceUnavailable(
            Failure.UNREACHABLE, f"{who}: {what}: {type(err).__name__}: {_short(err)}"
        )
    return InferenceUnavailable(Failure.BAD_RESPONSE, f"{who}: {what}: {type(err).__name__}: {_short(err)}")


def _client(endpoint: Endpoint) -> triton_aio.InferenceServerClient:
    return triton_aio.InferenceServerClient(endpoint.address, conn_timeout=_REQUEST_TIMEOUT)


async def fetch_contract(client: Any, endpoint: Endpoint) -> Contract:
    """The model's metadata and, where there is one, its config; raises InferenceUnavailable."""
    # No is_model_ready(): tritonclient's aio client leaves its response unread, leaking the
    # connection; the metadata call answers 404 (MLServer) or 400 "unknown model" (Triton) for a
    # model that is not loaded, which maps to NOT_READY below.
    try:
        metadata = await client.get_model_metadata(endpoint.model, endpoint.version)
    except Exception as err:
        raise map_error(endpoint, "model metadata", err) from None
    config: dict[str, Any] | None = None
    try:
        raw = await client.get_model_config(
            endpoint.model, endpoint.version, headers=dict(endpoint.config_headers) or None
        )
        config = raw.get("config", raw) if isinstance(raw, dict) else None
    except InferenceServerException as err:
        if err.status() != "404":  # 404: no config endpoint (MLServer); max_batch_size unknown
            raise map_error(endpoint, "model config", err) from None
    except Exception as err:
        raise map_error(endpoint, "model config", err) from None
    if not isinstance(metadata, dict):
        raise InferenceUnavailable(
            Failure.BAD_RESPONSE, f"{endpoint.role} {endpoint.model}: metadata not a JSON object"
        )
    try:
        return from_metadata(metadata, config)
    except ContractError as err:
        raise InferenceUnavailable(Failure.BAD_RESPONSE, f"{endpoint.role} {endpoint.model}: {err}") from None


def _datatype(contract: Contract, name: str, values: Sequence[Flat]) -> str:
    declared = contract.input(name)
    if declared is not None:
        return declared.datatype
    # Not declared (an MLServer model without `inputs` in its settings): from the JSON values.
    arrays = [v for v in values if isinstance(v, array)]
    if len(arrays) == len(values):
        return "INT64" if all(v.typecode == "q" for v in arrays) else "FP32"
    flat = [x for v in values for x in v]
    if all(isinstance(v, bool) for v in flat):
        return "BOOL"
    if all(isinstance(v, int) and not isinstance(v, bool) for v in flat):
        return "INT64"
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in flat):
        return "FP32"
    return "BYTES"


def _stacked(values: Sequence[Flat], shape: tuple[int, ...], datatype: str) -> Any:
    """One batch of one input, (examples, *shape), from the examples' flat values."""
    rows = (len(values), *shape)
    if datatype == "BYTES":
        encoded = [str(x).encode() for v in values for x in v]
        return np.array(encoded, dtype=np.object_).reshape(rows)
    dtype = triton_to_np_dtype(datatype)
    arrays = [v for v in values if isinstance(v, array)]
    if len(arrays) == len(values):
        # The arrays' own buffers, no Python number made: int64 or float64, then the model's type.
        parts = [np.frombuffer(v, dtype=np.int64 if v.typecode == "q" else np.float64) for v in arrays]
        return np.concatenate(parts).astype(dtype, copy=False).reshape(rows)
    return np.asarray([x for v in values for x in v], dtype=dtype).reshape(rows)


def _inputs(golden: GoldenSet, rows: range, contract: Contract) -> list[Any]:
    out = []
    for name, shape in golden.shapes.items():
        values = [golden.examples[i].inputs[name] for i in rows]
        datatype = _datatype(contract, name, values)
        array_ = _stacked(values, shape, datatype)
        tensor = triton_aio.InferInput(name, list(array_.shape), datatype)
        # JSON, not Triton's binary tensor extension: the V2 protocol's own encoding, which every
        # server speaks (MLServer fails on binary data).
        tensor.set_data_from_numpy(array_, binary_data=False)
        out.append(tensor)
    return out


def _prediction_output(contract: Contract, wanted: str | None, response: Any) -> str:
    if wanted is not None:
        return wanted
    if contract.outputs:
        return contract.outputs[0].name
    outputs = response.get_response().get("outputs") or []
    if not outputs:
        raise ValueError("the response has no outputs")
    return str(outputs[0]["name"])


async def ask(
    client: Any,
    endpoint: Endpoint,
    contract: Contract,
    golden: GoldenSet,
    batch_size: int,
    prediction_output: str | None,
    counter: _Counter | None = None,
) -> Answers:
    """Send the golden set in batches; one top-1 per example (None where a batch failed).

    A model that becomes unreachable or not ready mid-run leaves every example unanswered: what it
    answered before that is not judged, a dying canary is not a measured one. A batch the model
    refuses (HTTP 400, 500) leaves only that batch unanswered.
    """
    counter = counter if counter is not None else _Counter()
    predictions: list[Scalar | None] = [None] * len(golden.examples)
    latencies: list[float] = []
    first_error: str | None = None
    continuous: bool | None = None
    declared = {t.name for t in contract.inputs}
    if declared and not declared >= golden.shapes.keys():
        message = (
            f"golden set inputs {sorted(golden.shapes)} are not inputs of the {endpoint.role} model "
            f"{endpoint.model} (it takes {sorted(declared)})"
        )
        return Answers(predictions=(None,) * len(predictions), error=message)
    for rows in batches(golden.examples, batch_size):
        try:
            inputs = _inputs(golden, rows, contract)
        except (ValueError, TypeError, OverflowError) as err:  # 10**400 as INT64, say
            message = f"golden set does not fit {endpoint.role} input: {_short(err)}"
            return Answers(predictions=(None,) * len(predictions), error=message)
        started = time.perf_counter()
        counter.requests += 1
        wanted = prediction_output or (contract.outputs[0].name if contract.outputs else None)
        outputs = None if wanted is None else [triton_aio.InferRequestedOutput(wanted, binary_data=False)]
        try:
            response = await client.infer(
                endpoint.model, inputs, model_version=endpoint.version, outputs=outputs, headers=_JSON
            )
        except Exception as err:
            mapped = map_error(endpoint, f"infer (examples {rows.start + 1}-{rows.stop})", err)
            if mapped.kind != Failure.BAD_RESPONSE:
                return Answers(
                    predictions=(None,) * len(predictions), latencies=tuple(latencies), error=str(mapped)
                )
            first_error = first_error or str(mapped)
            continue
        elapsed = time.perf_counter() - started
        latencies.append(elapsed)
        try:
            name = _prediction_output(contract, prediction_output, response)
            array = response.as_numpy(name)
            if array is None:
                raise ValueError(f"no output {name!r} in the response")
            if array.ndim == 0 or array.shape[0] != len(rows):
                raise ValueError(f"output {name} has shape {list(array.shape)} for a batch of {len(rows)}")
            datatype = next(
                (o["datatype"] for o in response.get_response()["outputs"] if o["name"] == name), ""
            )
            for k, i in enumerate(rows):
                row = np.asarray(array[k]).reshape(-1).tolist()
                predictions[i] = checks.top1(row)
                if continuous is None:
                    continuous = checks.continuous(datatype, len(row))
        except (ValueError, KeyError, TypeError) as err:
            first_error = first_error or f"{endpoint.role} {endpoint.model}: bad response: {_short(err)}"
    return Answers(
        predictions=tuple(predictions),
        continuous=bool(continuous),
        latencies=tuple(latencies),
        error=first_error,
    )


@dataclass(frozen=True)
class GoldenInput:
    """A run's golden set, or why there is none: `invalid` when the set itself is at fault (its
    size, nesting, lines or shapes; the quality checks Fail), else it could not be read (not
    found, unreachable, HTTP error; they are Inconclusive)."""

    golden: GoldenSet | None
    problem: str | None = None
    invalid: bool = False


async def _run(
    gates: Gates,
    golden: GoldenSet | None,
    golden_error: str | None,
    golden_invalid: bool,
    canary: Endpoint,
    primary: Endpoint | None,
    counter: _Counter,
) -> list[GateCheck]:
    thresholds = thresholds_of(gates)
    contract_on = gates.contract.enabled
    if golden is None and golden_invalid and thresholds.any_quality_check():
        # The user's set is at fault whatever the models say: Fail now, and ask them nothing.
        reason = f"golden set invalid: {golden_error}"
        skipped = [GateCheck(name="contract", verdict=Verdict.INCONCLUSIVE, message=f"not run: {reason}")]
        return (skipped if contract_on else []) + refused(thresholds, reason)
    canary_client = _client(canary)
    primary_client = _client(primary) if primary is not None else None
    try:
        try:
            canary_contract = await fetch_contract(canary_client, canary)
        except InferenceUnavailable as err:
            return unreachable(thresholds, str(err), contract=contract_on)
        primary_contract: Contract | None = None
        primary_error: str | None = None
        if primary is not None and primary_client is not None:
            try:
                primary_contract = await fetch_contract(primary_client, primary)
            except InferenceUnavailable as err:
                primary_error = str(err)

        results: list[GateCheck] = []
        if contract_on:
            if primary_contract is not None:
                check = contract_check(
                    diff(primary_contract, canary_contract),
                    allow_breaking=gates.contract.allow_contract_change,
                )
            else:
                reason = primary_error or "no primary serving to compare the contract with"
                check = GateCheck(name="contract", verdict=Verdict.INCONCLUSIVE, message=reason)
            results.append(check)
            if check.verdict == Verdict.FAIL:
                # The golden set would be refused or meaningless: say so rather than send it.
                return results + unreachable(thresholds, "not run: the contract check failed")

        if not thresholds.any_quality_check():
            return results
        if golden is None:
            return results + unreachable(thresholds, f"golden set unreadable: {golden_error or 'not given'}")
        assert gates.golden_set is not None
        batch = gates.golden_set.batch_size
        answers = await ask(
            canary_client, canary, canary_contract, golden, batch, gates.prediction_output, counter
        )
        primary_answers: Answers | None = None
        needs_primary = thresholds.min_agreement is not None or thresholds.max_psi is not None
        if answers.answered < thresholds.min_answered:
            # Every check is Inconclusive on the canary's side: asking the primary would cost a
            # whole golden set of requests and change nothing.
            needs_primary = False
        if primary is not None and needs_primary:
            if primary_contract is None or primary_client is None:
                primary_answers = Answers(predictions=(None,) * len(golden.examples), error=primary_error)
            else:
                primary_answers = await ask(
                    primary_client, primary, primary_contract, golden, batch, gates.prediction_output, counter
                )
        return results + judge_run(golden, thresholds, answers, primary_answers)
    finally:
        await canary_client.close()
        if primary_client is not None:
            await primary_client.close()


# A golden set over https is read whole into memory and parsed: bounded as every golden set is.
GOLDEN_MAX_BYTES = MAX_BYTES
# Redirects followed, each to https only: the download is as private as the URL the user gave.
_MAX_REDIRECTS = 5


class FetchFailed(Exception):
    """A golden set that could not be downloaded; the message names the URL without its query.
    `invalid`: the body itself is at fault (too large, not UTF-8), not the way to it."""

    def __init__(self, message: str, *, invalid: bool = False) -> None:
        super().__init__(message)
        self.invalid = invalid


def redacted(uri: str) -> str:
    """The URL as messages show it: no query or fragment (a presigned URL's signature is there)
    and no user info."""
    scheme, _, rest = uri.partition("://")
    host_path = rest.split("?", 1)[0].split("#", 1)[0]
    netloc, slash, path = host_path.partition("/")
    return f"{scheme}://{netloc.rpartition('@')[2]}{slash}{path}"


async def fetch_text(uri: str, timeout: float, limit: int = GOLDEN_MAX_BYTES) -> str:
    """GET `uri` (https, TLS verified against the system's CAs) as UTF-8 text of at most `limit`
    bytes. Redirects are followed only to https URLs (at most _MAX_REDIRECTS): one to http would
    send the request, a presigned URL's signature included, in clear, and let anyone on the path
    answer in the server's name. No proxy from the environment, as for the model endpoints."""
    shown = redacted(uri)
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session:
            # A context of its own, made now: the system's CAs as SSL_CERT_FILE/SSL_CERT_DIR say at
            # the time (aiohttp's shared context is fixed when it is imported).
            context = ssl.create_default_context()
            url = uri
            for _hop in range(_MAX_REDIRECTS + 1):
                async with session.get(url, allow_redirects=False, ssl=context) as response:
                    if response.status in (301, 302, 303, 307, 308):
                        location = response.headers.get("Location")
                        if not location:
                            raise FetchFailed(f"{shown}: HTTP {response.status} redirect without a Location")
                        url = urllib.parse.urljoin(str(response.url), location)
                        if urllib.parse.urlsplit(url).scheme != "https":
                            raise FetchFailed(
                                f"{shown}: redirected to {redacted(url)}, which is not https: refused"
                            )
                        continue
                    if response.status != 200:
                        raise FetchFailed(f"{shown}: HTTP {response.status} {response.reason or ''}".rstrip())
                    data = await _read_at_most(response.content, limit + 1)
                    break
            else:
                raise FetchFailed(f"{shown}: more than {_MAX_REDIRECTS} redirects")
    except aiohttp.ClientError as err:
        raise FetchFailed(f"{shown}: {type(err).__name__}: {_short(redacted_text(err, uri))}") from None
    except TimeoutError:
        raise FetchFailed(f"{shown}: no answer within {timeout:.0f}s") from None
    if len(data) > limit:
        raise FetchFailed(f"{shown}: larger than the {_mib(limit)} allowed", invalid=True)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise FetchFailed(
            f"{shown}: not UTF-8 text ({err.reason} at byte {err.start})", invalid=True
        ) from None


async def _read_at_most(stream: aiohttp.StreamReader, size: int) -> bytes:
    """The body up to `size` bytes: read(n) answers with what is buffered, often less than n."""
    chunks: list[bytes] = []
    total = 0
    while total < size:
        chunk = await stream.read(size - total)
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    return b"".join(chunks)


def _mib(size: int) -> str:
    return f"{size / (1024 * 1024):g} MiB" if size >= 1024 * 1024 else f"{size} bytes"


def redacted_text(err: BaseException, uri: str) -> str:
    """An error's text with the full URL (query included) replaced by its redacted form."""
    return str(err).replace(uri, redacted(uri))


async def run_gate(
    gates: Gates,
    golden: GoldenSet | None,
    canary: Endpoint,
    primary: Endpoint | None,
    *,
    golden_error: str | None = None,
    golden_invalid: bool = False,
    clock: Callable[[], float] = time.monotonic,
) -> GateOutcome:
    """Run every check of `spec.rollout.gates` against the canary (and the primary, when one
    serves), within `gates.timeout`. Never raises for a model or network problem: those make the
    checks Inconclusive. `golden` None with `golden_error`: the golden set could not be read or
    parsed: the contract check still runs, and the quality checks Fail with that reason when
    `golden_invalid` (the set itself is at fault), else are Inconclusive.
    The latency check times the canary's requests only."""
    started = clock()
    counter = _Counter()
    canary = replace(canary, role="canary")
    primary = None if primary is None else replace(primary, role="primary")
    timeout = parse_duration(gates.timeout)
    try:
        async with asyncio.timeout(timeout):
            results = await _run(gates, golden, golden_error, golden_invalid, canary, primary, counter)
    except TimeoutError:
        results = unreachable(
            thresholds_of(gates),
            f"the gate run timed out after {gates.timeout} ({counter.requests} requests sent)",
            contract=gates.contract.enabled,
        )
    return GateOutcome(
        checks=results,
        verdict=overall(results),
        message=explain(results),
        requests=counter.requests,
        seconds=clock() - started,
    )
