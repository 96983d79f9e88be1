"""A golden set at an https `storageUri`: fetched by the gate worker, over real TLS.

The server is the puller tests' own (a real TLS server on loopback, a throwaway self-signed
certificate); the operator trusts it the way it trusts any CA, through the system store, which
`SSL_CERT_FILE` points at here.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from modeldeploy.adapters.inference import FetchFailed, fetch_text, redacted
from modeldeploy.handlers.gates import fetch_golden_set
from test_model_puller import HttpsServer, https_server, tls_files

__all__ = ["https_server", "tls_files"]  # fixtures, shared with the puller's tests

GOLDEN = b'{"inputs": {"x": [1.0, 2.0]}, "label": 1}\n{"inputs": {"x": [3.0, 4.0]}, "label": 0}\n'
SIGNED = "?X-Amz-Signature=s3cr3t&X-Amz-Credential=AKIA"


@pytest.fixture
def trusted(https_server: HttpsServer, monkeypatch: pytest.MonkeyPatch) -> HttpsServer:
    monkeypatch.setenv("SSL_CERT_FILE", str(https_server.ca_file))
    return https_server


def test_a_golden_set_is_fetched_and_parsed(trusted: HttpsServer) -> None:
    url = trusted.serve("/golden.jsonl", GOLDEN) + SIGNED
    golden, error = asyncio.run(fetch_golden_set(url, 10))
    assert error is None
    assert golden is not None and len(golden.examples) == 2 and golden.has_labels
    assert trusted.requests[0][0] == "/golden.jsonl" + SIGNED  # the signature is sent, as given


@pytest.mark.parametrize(
    ("body", "status", "expected"),
    [
        pytest.param(b"gone", 404, "HTTP 404", id="not-found"),
        pytest.param(b"denied", 403, "HTTP 403", id="forbidden"),
        pytest.param(b'{"inputs": {"x": [1.0]}, "lable": 1}\n', 200, "unknown field 'lable'", id="bad-line"),
        pytest.param(b"\xff\xfe", 200, "not UTF-8 text", id="binary"),
    ],
)
def test_a_golden_set_that_cannot_be_used_says_why_without_the_signature(
    trusted: HttpsServer, body: bytes, status: int, expected: str
) -> None:
    url = trusted.serve("/golden.jsonl", body, status=status) + SIGNED
    golden, error = asyncio.run(fetch_golden_set(url, 10))
    assert golden is None and error is not None
    assert expected in error
    assert error.startswith(f"goldenSet.storageUri {trusted.base_url}/golden.jsonl")
    assert "s3cr3t" not in error and "AKIA" not in error


def test_a_golden_set_larger_than_the_limit_is_refused(trusted: HttpsServer) -> None:
    url = trusted.serve("/big.jsonl", GOLDEN * 10)
    with pytest.raises(FetchFailed, match="larger than"):
        asyncio.run(fetch_text(url, 10, limit=len(GOLDEN)))


def test_an_untrusted_certificate_is_refused(
    https_server: HttpsServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "none.pem"
    empty.write_text("")
    monkeypatch.setenv("SSL_CERT_FILE", str(empty))
    monkeypatch.setenv("SSL_CERT_DIR", str(tmp_path))
    url = https_server.serve("/golden.jsonl", GOLDEN)
    golden, error = asyncio.run(fetch_golden_set(url, 10))
    assert golden is None and error is not None and "Certificate" in error


def test_an_unreachable_server_is_one_line() -> None:
    golden, error = asyncio.run(fetch_golden_set("https://127.0.0.1:9/golden.jsonl" + SIGNED, 5))
    assert golden is None and error is not None
    assert error.startswith("goldenSet.storageUri https://127.0.0.1:9/golden.jsonl: ") and "\n" not in error
    assert "s3cr3t" not in error


@pytest.mark.parametrize(
    ("uri", "shown"),
    [
        ("https://h.example/g.jsonl", "https://h.example/g.jsonl"),
        ("https://h.example/g.jsonl?sig=1#x", "https://h.example/g.jsonl"),
        ("https://user:pw@h.example:8443/a/b.jsonl?t=2", "https://h.example:8443/a/b.jsonl"),
        ("https://h.example", "https://h.example"),
    ],
)
def test_redacted(uri: str, shown: str) -> None:
    assert redacted(uri) == shown
