"""Which Prometheus a ModelDeployment may make the operator query (pure).

`spec.rollout.analysis.prometheusUrl` is written by whoever may create a ModelDeployment, but the
request is sent by the operator, from the operator's network position and with its egress. So the
operator queries only the Prometheus servers its own configuration allows (`--prometheus-allow`,
the chart's `prometheusAllow`): by default its default Prometheus (`--prometheus-url`) and nothing
else. An object naming another is refused before any request is sent (docs/security.md).

An entry is a base URL: `scheme://host[:port][/path]`. A URL is allowed by an entry with the same
scheme, host and port (the scheme's default port when none is written) whose path is the URL's
path or a parent of it, segment by segment (`http://thanos/tenant-a` allows
`http://thanos/tenant-a/api`, not `http://thanos/tenant-ab`). `*` allows every URL: for clusters
whose every namespace is trusted alike.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

ANY = "*"
ALLOW_FLAG = "--prometheus-allow"
_DEFAULT_PORTS = {"http": 80, "https": 443}


def _key(url: str) -> tuple[str, str, int, tuple[str, ...]] | None:
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    segments = tuple(s for s in parts.path.split("/") if s)
    return scheme, parts.hostname.lower().rstrip("."), port or _DEFAULT_PORTS[scheme], segments


def allowed(url: str, allow: Iterable[str]) -> bool:
    """Whether the operator may query `url`, given the allowed base URLs."""
    entries = list(allow)
    if ANY in entries:
        return True
    wanted = _key(url)
    if wanted is None:
        return False
    for entry in entries:
        base = _key(entry)
        if base is not None and base[:3] == wanted[:3] and wanted[3][: len(base[3])] == base[3]:
            return True
    return False


def refusal(url: str | None, default_url: str, allow: Iterable[str]) -> str | None:
    """The problem line for an object's `prometheusUrl` the operator may not query; None if it may.

    The default URL is always allowed. The refused URL is not repeated (the user wrote it), nor
    are the allowed ones listed (they are the operator's configuration, not the user's)."""
    if url is None or allowed(url, [default_url, *allow]):
        return None
    return (
        "spec.rollout.analysis.prometheusUrl: this operator may not query that Prometheus (it is not "
        f"among the URLs its administrator allowed with {ALLOW_FLAG}, the chart's prometheusAllow); "
        "remove the field to use the operator's default Prometheus, or ask for the URL to be allowed"
    )
