"""The metric provider for canary analysis: Prometheus's HTTP query API, over aiohttp.

The interface is Flagger's (RunQuery/IsOnline): `query(promql) -> float | None` and `is_online()`.
A query must yield one instant sample; the templates aggregate, so several series is an error in the
query, not something to sum here. No data (an empty vector, NaN, Inf) is None, which the verdicts
count as Inconclusive. Every failure is a ProviderError whose message is one line and never holds
credentials: userinfo is stripped from the URL (and sent as basic auth instead), header values are
never logged, and any secret that still reaches a message is masked. Nor does a message hold a
label set: the URL may be a user's, and the series' labels are the cluster's (docs/security.md).

**One deadline per call.** A query, its retry and the whole answer are bounded by one deadline
(`timeout_seconds`, or less when the caller's round has less left), not a timeout per socket read:
an endpoint that trickles one byte every few seconds costs a worker that deadline and no more. The
answer is read with aiohttp under `asyncio.timeout`, on an event loop of the calling thread's own
that lives for the call; the calls block, so async code runs them in a worker thread.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import os
import time
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit, urlunsplit

import aiohttp

from modeldeploy.analysis.templates import Query
from modeldeploy.analysis.verdicts import ProviderFailure, Result, without_label_sets

NAME = "Prometheus"
_MAX_DETAIL = 300
# Prometheus's own errors ("parse error at char 5: ...") fit; anything longer is cut.
_MAX_API_ERROR = 200
_MAX_ERROR_TYPE = 32
# An answer of one sample is a few hundred bytes; an error naming many series is still small. A
# larger body is refused unread rather than held in the operator's memory.
MAX_BODY_BYTES = 1 << 20
# Prometheus answers these when it (or a proxy in front of it) cannot serve at all.
_UNAVAILABLE = frozenset({502, 503, 504})
_RETRY_BACKOFF_SECONDS = 0.1


class ProviderError(Exception):
    """A query the provider could not answer. `unreachable`: the provider itself is down."""

    def __init__(self, message: str, *, unreachable: bool = False) -> None:
        super().__init__(message)
        self.unreachable = unreachable


class MetricsProvider(Protocol):
    def query(self, promql: str, *, timeout: float | None = None) -> float | None:
        """The single sample the query yields; None for no data. Raises ProviderError. `timeout`
        shortens the provider's own deadline (what is left of the caller's round)."""
        ...

    def is_online(self) -> bool: ...


def _split_credentials(url: str) -> tuple[str, tuple[str, str] | None]:
    """(url without userinfo, basic-auth pair or None)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("the Prometheus URL must look like http(s)://host[:port][/path]")
    if parts.username is None and parts.password is None:
        return url.rstrip("/"), None
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    netloc = host if parts.port is None else f"{host}:{parts.port}"
    clean = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment)).rstrip("/")
    return clean, (unquote(parts.username or ""), unquote(parts.password or ""))


class _Answer:
    def __init__(self, status: int, body: bytes) -> None:
        self.status = status
        self.body = body


class _TooLarge(Exception):
    pass


class PrometheusProvider:
    """MetricsProvider for a Prometheus-compatible HTTP API (Prometheus, Thanos, Mimir...)."""

    def __init__(
        self,
        url: str,
        timeout_seconds: float = 5,
        headers: Mapping[str, str] | None = None,
        *,
        verify_tls: bool = True,
        retries: int = 1,
    ) -> None:
        self.url, auth = _split_credentials(url)
        self.timeout_seconds = timeout_seconds
        self._headers = dict(headers or {})
        basic = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode() if auth is not None else None
        if basic is not None:
            self._headers["Authorization"] = f"Basic {basic}"
        self._verify_tls = verify_tls
        # Few, quick retries, within the one deadline: the rollout re-asks every interval anyway.
        self._retries = retries
        # Masked in every message, in case a server or a proxy echoes one back (basic auth too,
        # as the header carries it).
        secrets = [*(auth or ()), *self._headers.values(), *([basic] if basic else [])]
        self._secrets = sorted((s for s in secrets if len(s) >= 3), key=len, reverse=True)

    def __repr__(self) -> str:
        # Never the headers or the credentials.
        return f"PrometheusProvider({self.url!r})"

    def close(self) -> None:
        """Nothing is held between calls: each call opens and closes its own connection."""

    def __enter__(self) -> PrometheusProvider:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # ------------------------------------------------------------------------------- the API

    def query(self, promql: str, *, timeout: float | None = None) -> float | None:
        deadline = self.timeout_seconds if timeout is None else max(0.0, min(self.timeout_seconds, timeout))
        answer = self._fetch(promql, deadline)
        if answer.status != 200:
            raise self._status_error(answer.status, answer.body)
        try:
            payload = json.loads(answer.body)
        except ValueError:
            raise self._error(
                f"{NAME} request failed: the answer is not JSON ({len(answer.body)} bytes) ({self.url})"
            ) from None
        return self._single_value(payload)

    def is_online(self) -> bool:
        # As Flagger does: a trivial query proves the query path works, not just the TCP port.
        try:
            return self.query("vector(1)") == 1.0
        except ProviderError:
            return False

    # ---------------------------------------------------------------------------- transport

    def _fetch(self, promql: str, deadline: float) -> _Answer:
        loop = asyncio.new_event_loop()
        try:
            return loop.run_until_complete(self._fetch_within(promql, deadline))
        finally:
            # Not asyncio.run(): that waits for the default executor, where a slow DNS lookup may
            # still run past the deadline. Closing the loop leaves that thread to finish alone.
            loop.close()

    async def _fetch_within(self, promql: str, deadline: float) -> _Answer:
        try:
            async with asyncio.timeout(deadline):
                return await self._ask(promql)
        except TimeoutError:
            raise self._error(
                f"{NAME} unreachable: no answer within {deadline:g}s ({self.url})", True
            ) from None
        except aiohttp.ClientConnectionError as err:
            raise self._error(f"{NAME} unreachable: {_connection_reason(err)} ({self.url})", True) from None
        except _TooLarge:
            raise self._error(
                f"{NAME} request failed: an answer over {MAX_BODY_BYTES} bytes ({self.url})"
            ) from None
        except aiohttp.ClientError as err:
            raise self._error(f"{NAME} request failed: {type(err).__name__} ({self.url})") from None

    async def _ask(self, promql: str) -> _Answer:
        connector = aiohttp.TCPConnector(ssl=self._verify_tls, force_close=True)
        async with aiohttp.ClientSession(
            connector=connector, headers=self._headers, timeout=aiohttp.ClientTimeout()
        ) as session:
            for attempt in range(self._retries + 1):
                last = attempt == self._retries
                try:
                    async with session.get(
                        f"{self.url}/api/v1/query", params={"query": promql}, allow_redirects=False
                    ) as response:
                        if response.status in _UNAVAILABLE and not last:
                            await asyncio.sleep(_RETRY_BACKOFF_SECONDS)
                            continue
                        return _Answer(response.status, await _bounded_body(response))
                except aiohttp.ClientConnectorError:
                    if last:
                        raise
                    await asyncio.sleep(_RETRY_BACKOFF_SECONDS)
        raise AssertionError("unreachable: the last attempt returns or raises")

    # ------------------------------------------------------------------------------ helpers

    def _mask(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return " ".join(text.split())[:_MAX_DETAIL]  # one line, bounded

    def _error(self, message: str, unreachable: bool = False) -> ProviderError:
        return ProviderError(self._mask(message), unreachable=unreachable)

    def _status_error(self, status: int, body: bytes) -> ProviderError:
        if status in (401, 403):
            # The body is not shown: some proxies echo the request, headers included.
            return self._error(f"{NAME} refused the credentials: HTTP {status} ({self.url})")
        detail = _api_error(body)
        if status in _UNAVAILABLE or status == 429:
            return self._error(f"{NAME} unreachable: HTTP {status} {detail} ({self.url})", True)
        return self._error(f"{NAME} query failed: HTTP {status} {detail}")

    def _single_value(self, payload: Any) -> float | None:
        data = payload.get("data") if isinstance(payload, dict) else None
        if not isinstance(data, dict) or payload.get("status") != "success":
            raise self._error(f"{NAME} returned an answer that is not the query API's ({self.url})")
        kind, result = data.get("resultType"), data.get("result")
        if kind == "scalar" and isinstance(result, list) and len(result) == 2:
            return self._to_float(result[1])  # [timestamp, "value"]
        if kind == "matrix":
            raise self._error(
                f"{NAME} query returned a range vector; use an instant vector, e.g. rate(x[1m])"
            )
        if kind != "vector" or not isinstance(result, list):
            raise self._error(
                f"{NAME} query returned a {str(kind)[:16]!r} result, expected an instant vector"
            )
        if not result:
            return None
        if len(result) > 1:
            # Counted, never shown: the series' labels are the cluster's, and the reason goes to
            # status and Events, which whoever made the object can read.
            raise self._error(
                f"{NAME} query returned {len(result)} series, expected one; aggregate it (e.g. sum(...))"
            )
        value = result[0].get("value") if isinstance(result[0], dict) else None
        if not isinstance(value, list) or len(value) != 2:
            raise self._error(f"{NAME} returned a sample that is not [time, value]")
        return self._to_float(value[1])

    def _to_float(self, raw: Any) -> float | None:
        try:
            value = float(raw)
        except (TypeError, ValueError):
            raise self._error(f"{NAME} query returned a non-numeric value") from None
        # NaN is 0/0 with no traffic; Inf a division by zero. Neither is a measurement.
        return value if math.isfinite(value) else None


async def _bounded_body(response: aiohttp.ClientResponse) -> bytes:
    if (response.content_length or 0) > MAX_BODY_BYTES:
        raise _TooLarge
    chunks: list[bytes] = []
    size = 0
    while chunk := await response.content.read(MAX_BODY_BYTES + 1 - size):
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise _TooLarge
    return b"".join(chunks)


def _connection_reason(err: aiohttp.ClientConnectionError) -> str:
    cause = getattr(err, "os_error", None)
    if isinstance(cause, OSError):
        if cause.errno is not None and cause.errno > 0:
            return os.strerror(cause.errno).lower()
        if cause.strerror:
            return cause.strerror.lower()
    return type(err).__name__


def _api_error(body: bytes) -> str:
    """The API's `errorType: error`, capped, its label sets taken out.

    Any other body is not shown, only its size: the URL may be a user's (spec.rollout.analysis.
    prometheusUrl), and echoing whatever answers there into .status would let anyone who can
    create a ModelDeployment read internal HTTP services through the operator.
    """
    try:
        payload = json.loads(body)
    except ValueError:
        payload = None
    if isinstance(payload, dict) and isinstance(payload.get("error"), str):
        kind = str(payload.get("errorType", "error"))[:_MAX_ERROR_TYPE]
        return f"{kind}: {without_label_sets(payload['error'])[:_MAX_API_ERROR]}"
    return f"(not a Prometheus API error: {len(body)} bytes, not shown)"


def query_round(
    provider: MetricsProvider, queries: Iterable[Query], *, deadline_seconds: float | None = None
) -> dict[str, Result]:
    """Every query's result by key, failures included as ProviderFailure. Never raises.

    Once the provider proves unreachable, the remaining queries are not sent: they would fail the
    same way, each after its own timeout, and stall the reconcile. `deadline_seconds` bounds the
    whole round: each query gets what is left, and none is sent once it has run out.
    """
    out: dict[str, Result] = {}
    down: ProviderFailure | None = None
    ends = None if deadline_seconds is None else time.monotonic() + deadline_seconds
    for q in queries:
        left = None if ends is None else ends - time.monotonic()
        if down is None and left is not None and left <= 0:
            down = ProviderFailure(
                f"metrics provider: the round's {deadline_seconds:g}s deadline passed", unreachable=True
            )
        if down is not None:
            out[q.key] = down
            continue
        try:
            out[q.key] = provider.query(q.promql) if left is None else provider.query(q.promql, timeout=left)
        except ProviderError as err:
            failure = ProviderFailure(str(err), unreachable=err.unreachable)
            out[q.key] = failure
            if err.unreachable:
                down = failure
        except Exception as err:
            # A provider bug must cost an Inconclusive round, never the reconcile.
            out[q.key] = ProviderFailure(f"metrics provider error: {type(err).__name__}")
    return out
