"""The metric provider for canary analysis: Prometheus, over prometheus-api-client.

The interface is Flagger's (RunQuery/IsOnline): `query(promql) -> float | None` and `is_online()`.
A query must yield one instant sample; the templates aggregate, so several series is an error in the
query, not something to sum here. No data (an empty vector, NaN, Inf) is None, which the verdicts
count as Inconclusive. Every failure is a ProviderError whose message is one line and never holds
credentials: userinfo is stripped from the URL (and sent as basic auth instead), header values are
never logged, and any secret that still reaches a message is masked.

The calls block (requests); call them from a worker thread in async code (asyncio.to_thread).
"""

from __future__ import annotations

import ast
import base64
import json
import math
import re
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit, urlunsplit

import requests
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError, ReadTimeoutError
from urllib3.util import Retry

from modeldeploy.analysis.templates import Query
from modeldeploy.analysis.verdicts import ProviderFailure, Result

NAME = "Prometheus"
_MAX_DETAIL = 300
# Prometheus's own errors ("parse error at char 5: ...") fit; anything longer is cut.
_MAX_API_ERROR = 200
_MAX_ERROR_TYPE = 32


class ProviderError(Exception):
    """A query the provider could not answer. `unreachable`: the provider itself is down."""

    def __init__(self, message: str, *, unreachable: bool = False) -> None:
        super().__init__(message)
        self.unreachable = unreachable


class MetricsProvider(Protocol):
    def query(self, promql: str) -> float | None:
        """The single sample the query yields; None for no data. Raises ProviderError."""
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


_ERRNO = re.compile(r"\[Errno -?\d+\] ([^'\")\]]+)")
_STATUS = re.compile(r"^HTTP Status Code (\d+) \((.*)\)$", re.DOTALL)
# Prometheus answers these when it (or a proxy in front of it) cannot serve at all.
_UNAVAILABLE = frozenset({502, 503, 504})


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
        # Masked in every message, in case a server or a proxy echoes one back (basic auth too,
        # as the header carries it).
        secrets = [*(auth or ()), *(headers or {}).values()]
        if auth is not None:
            secrets.append(base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode())
        self._secrets = sorted((s for s in secrets if len(s) >= 3), key=len, reverse=True)
        # Few, quick retries: the rollout re-asks every interval anyway, and a long backoff here
        # would stall a reconcile. Read timeouts are not retried (a slow query stays slow), and
        # a final 5xx is returned, not raised, so that its body reaches the error message.
        retry = Retry(
            total=retries,
            connect=retries,
            read=0,
            status=retries,
            backoff_factor=0.1,
            status_forcelist=tuple(_UNAVAILABLE),
            allowed_methods=frozenset({"GET", "POST"}),
            raise_on_status=False,
        )
        self._client = PrometheusConnect(
            url=self.url,
            headers=dict(headers) if headers else None,
            auth=auth,
            retry=retry,
            timeout=timeout_seconds,
        )

    def __repr__(self) -> str:
        # Never the headers or the credentials.
        return f"PrometheusProvider({self.url!r})"

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> PrometheusProvider:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # ------------------------------------------------------------------------------- the API

    def query(self, promql: str) -> float | None:
        try:
            data = self._client.custom_query(promql)
        except requests.exceptions.Timeout:
            raise self._error(
                f"{NAME} unreachable: no answer within {self.timeout_seconds:g}s ({self.url})", True
            ) from None
        except requests.exceptions.ConnectionError as err:
            # With retries, urllib3 wraps a read timeout in MaxRetryError, which requests turns into
            # ConnectionError rather than Timeout.
            cause = getattr(err.args[0] if err.args else None, "reason", None)
            # NewConnectionError subclasses ConnectTimeoutError in urllib3 2, for compatibility.
            timed_out = isinstance(cause, ReadTimeoutError) or (
                isinstance(cause, ConnectTimeoutError) and not isinstance(cause, NewConnectionError)
            )
            if timed_out:
                raise self._error(
                    f"{NAME} unreachable: no answer within {self.timeout_seconds:g}s ({self.url})", True
                ) from None
            raise self._error(f"{NAME} unreachable: {_connection_reason(err)} ({self.url})", True) from None
        except PrometheusApiClientException as err:
            raise self._status_error(str(err)) from None
        except (requests.exceptions.RequestException, ValueError, KeyError, TypeError) as err:
            # Anything else from the transport, or a body that is not the Prometheus API's JSON.
            raise self._error(f"{NAME} request failed: {type(err).__name__}: {err} ({self.url})") from None
        return self._single_value(data)

    def is_online(self) -> bool:
        # As Flagger does: a trivial query proves the query path works, not just the TCP port.
        try:
            return self.query("vector(1)") == 1.0
        except ProviderError:
            return False

    # ------------------------------------------------------------------------------ helpers

    def _mask(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return " ".join(text.split())[:_MAX_DETAIL]  # one line, bounded

    def _error(self, message: str, unreachable: bool = False) -> ProviderError:
        return ProviderError(self._mask(message), unreachable=unreachable)

    def _status_error(self, message: str) -> ProviderError:
        # prometheus-api-client reports non-200 answers as "HTTP Status Code <n> (<body repr>)".
        matched = _STATUS.match(message)
        if matched is None:
            return self._error(f"{NAME} query failed: {message}")
        status = int(matched.group(1))
        if status in (401, 403):
            # The body is not shown: some proxies echo the request, headers included.
            return self._error(f"{NAME} refused the credentials: HTTP {status} ({self.url})")
        detail = _api_error(matched.group(2))
        if status in _UNAVAILABLE or status == 429:
            return self._error(f"{NAME} unreachable: HTTP {status} {detail} ({self.url})", True)
        return self._error(f"{NAME} query failed: HTTP {status} {detail}")

    def _single_value(self, data: Any) -> float | None:
        if not isinstance(data, list):
            raise self._error(f"{NAME} returned an unexpected result: {type(data).__name__}")
        if not data:
            return None
        if len(data) == 2 and not isinstance(data[0], dict):
            return self._to_float(data[1])  # a scalar result: [timestamp, "value"]
        if any(not isinstance(item, dict) or "value" not in item for item in data):
            raise self._error(
                f"{NAME} query returned a range vector; use an instant vector, e.g. rate(x[1m])"
            )
        if len(data) > 1:
            raise self._error(
                f"{NAME} query returned {len(data)} series, expected one; aggregate it (e.g. sum(...)). "
                f"First: {_labels(data[0])}"
            )
        return self._to_float(data[0]["value"][1])

    def _to_float(self, raw: Any) -> float | None:
        try:
            value = float(raw)
        except (TypeError, ValueError):
            raise self._error(f"{NAME} query returned a non-numeric value: {raw!r}") from None
        # NaN is 0/0 with no traffic; Inf a division by zero. Neither is a measurement.
        return value if math.isfinite(value) else None


def _connection_reason(err: BaseException) -> str:
    found = _ERRNO.search(str(err))
    if found:
        return found.group(1).strip().lower()
    cause = err.args[0] if err.args else err
    reason = getattr(cause, "reason", cause)
    return type(reason).__name__


def _api_error(body_repr: str) -> str:
    """The API's `errorType: error` from the body repr the client put in its message, capped.

    Any other body is not shown, only its size: the URL may be a user's (spec.rollout.analysis.
    prometheusUrl), and echoing whatever answers there into .status would let anyone who can
    create a ModelDeployment read internal HTTP services through the operator.
    """
    try:
        body = ast.literal_eval(body_repr)
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
    except (ValueError, SyntaxError):
        text = body_repr
    try:
        payload = json.loads(text)
    except ValueError:
        payload = None
    if isinstance(payload, dict) and isinstance(payload.get("error"), str):
        kind = str(payload.get("errorType", "error"))[:_MAX_ERROR_TYPE]
        return f"{kind}: {payload['error'][:_MAX_API_ERROR]}"
    return f"(not a Prometheus API error: {len(text)} bytes, not shown)"


def _labels(item: Any) -> str:
    metric = item.get("metric", {}) if isinstance(item, dict) else {}
    return "{" + ",".join(f'{k}="{v}"' for k, v in sorted(metric.items())) + "}"


def run(provider: MetricsProvider, queries: Iterable[Query]) -> dict[str, Result]:
    """Every query's result by key, failures included as ProviderFailure. Never raises.

    Once the provider proves unreachable, the remaining queries are not sent: they would fail the
    same way, each after its own timeout, and stall the reconcile.
    """
    out: dict[str, Result] = {}
    down: ProviderFailure | None = None
    for q in queries:
        if down is not None:
            out[q.key] = down
            continue
        try:
            out[q.key] = provider.query(q.promql)
        except ProviderError as err:
            failure = ProviderFailure(str(err), unreachable=err.unreachable)
            out[q.key] = failure
            if err.unreachable:
                down = failure
        except Exception as err:
            # A provider bug must cost an Inconclusive round, never the reconcile.
            out[q.key] = ProviderFailure(f"metrics provider error: {type(err).__name__}")
    return out
