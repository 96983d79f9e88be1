"""A golden set at an https `storageUri`: fetched by the gate worker, over real TLS.

The server is the puller tests' own (a real TLS server on loopback, a throwaway self-signed
certificate); the operator trusts it the way it trusts any CA, through the system store, which
`SSL_CERT_FILE` points at here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from loopback_http import serving
from modeldeploy.adapters.inference import FetchFailed, fetch_text, redacted
from modeldeploy.gates.golden import MAX_BYTES, MAX_DEPTH
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
    found = asyncio.run(fetch_golden_set(url, 10))
    assert found.problem is None and not found.invalid
    golden = found.golden
    assert golden is not None and len(golden.examples) == 2 and golden.has_labels
    assert trusted.requests[0][0] == "/golden.jsonl" + SIGNED  # the signature is sent, as given


DEEP = b'{"inputs": {"x": ' + b"[" * 100_000 + b"1" + b"]" * 100_000 + b"}}\n"


@pytest.mark.parametrize(
    ("body", "status", "expected", "invalid"),
    [
        # Unreadable: the quality checks are Inconclusive (the store may be mended without an edit).
        pytest.param(b"gone", 404, "HTTP 404", False, id="not-found"),
        pytest.param(b"denied", 403, "HTTP 403", False, id="forbidden"),
        # Invalid: the set itself is at fault, and the quality checks Fail.
        pytest.param(b'{"inputs": {"x": [1.0]}, "lable": 1}\n', 200, "unknown field 'lable'", True,
                     id="bad-line"),
        pytest.param(b"\xff\xfe", 200, "not UTF-8 text", True, id="binary"),
        pytest.param(DEEP, 200, f"line 1: nested deeper than {MAX_DEPTH} levels", True, id="too-deep"),
        pytest.param(b"{not json\n", 200, "line 1: not JSON", True, id="invalid-json"),
        pytest.param(
            GOLDEN * (MAX_BYTES // len(GOLDEN) + 1), 200, f"larger than the {MAX_BYTES // 2**20} MiB allowed",
            True, id="too-many-bytes",
        ),
        pytest.param(b'{"inputs": {"x": [1.0]}}\n{"inputs": {"x": [1.0, 2.0]}}\n', 200, "has shape [2]", True,
                     id="wrong-shape"),
    ],
)  # fmt: skip
def test_a_golden_set_that_cannot_be_used_says_why_without_the_signature(
    trusted: HttpsServer, body: bytes, status: int, expected: str, invalid: bool
) -> None:
    url = trusted.serve("/golden.jsonl", body, status=status) + SIGNED
    found = asyncio.run(fetch_golden_set(url, 10))
    golden, error = found.golden, found.problem
    assert golden is None and error is not None
    assert found.invalid == invalid
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
    found = asyncio.run(fetch_golden_set(url, 10))
    assert found.golden is None and found.problem is not None and "Certificate" in found.problem
    assert not found.invalid


def test_an_unreachable_server_is_one_line() -> None:
    found = asyncio.run(fetch_golden_set("https://127.0.0.1:9/golden.jsonl" + SIGNED, 5))
    golden, error = found.golden, found.problem
    assert golden is None and error is not None and not found.invalid
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


# ------------------------------------------------------------------------------------ redirects


@pytest.fixture
def plain_http() -> Iterator[tuple[str, list[str]]]:
    """A plain-http server on loopback that would serve the golden set: it must never be asked."""
    asked: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            asked.append(self.path)
            self.send_response(200)
            self.send_header("Content-Length", str(len(GOLDEN)))
            self.end_headers()
            self.wfile.write(GOLDEN)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    with serving(Handler) as url:
        yield url, asked


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_off_https_is_refused_and_not_followed(
    trusted: HttpsServer, plain_http: tuple[str, list[str]], status: int
) -> None:
    base, asked = plain_http
    target = f"{base}/golden.jsonl?X-Amz-Signature=elsewhere"
    url = trusted.serve("/golden.jsonl", b"", status=status, headers={"Location": target}) + SIGNED
    found = asyncio.run(fetch_golden_set(url, 10))
    assert found.golden is None and not found.invalid
    assert found.problem == (
        f"goldenSet.storageUri {trusted.base_url}/golden.jsonl: redirected to {base}/golden.jsonl, "
        "which is not https: refused"
    )
    assert asked == [], "the plain-http server was asked"
    assert "s3cr3t" not in found.problem and "elsewhere" not in found.problem


def test_a_redirect_to_https_is_followed(trusted: HttpsServer) -> None:
    trusted.serve("/golden.jsonl", GOLDEN)
    url = trusted.serve("/old.jsonl", b"", status=302, headers={"Location": "/golden.jsonl"})
    found = asyncio.run(fetch_golden_set(url, 10))
    assert found.problem is None and found.golden is not None and len(found.golden.examples) == 2
    assert [path for path, _ in trusted.requests] == ["/old.jsonl", "/golden.jsonl"]


def test_a_redirect_loop_ends(trusted: HttpsServer) -> None:
    url = trusted.serve("/loop.jsonl", b"", status=302, headers={"Location": "/loop.jsonl"})
    found = asyncio.run(fetch_golden_set(url, 10))
    assert found.problem == f"goldenSet.storageUri {url}: more than 5 redirects"
    assert len(trusted.requests) == 6
