"""The one small interface every traffic router implements, and the pieces they share.

A router is pure: (parent, spec, split) -> the route objects that put that split in force. The
reconciler applies and prunes them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Protocol

from modeldeploy.api.resource import ObjectRef
from modeldeploy.api.spec import Match, ModelDeploymentSpec, StringMatch

# Triton's ports, as every Service in front of it exposes them.
from modeldeploy.render.deployment import GRPC_PORT as GRPC_PORT
from modeldeploy.render.deployment import HTTP_PORT as HTTP_PORT

# An HTTP header name is an RFC 9110 token; Gateway API enforces exactly this pattern.
_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+\-.^_`|~]{1,256}$")
# Characters with a meaning in RE2, ECMAScript and PCRE alike; escaping only these keeps the pattern
# valid in every dialect a gateway may use (Python's re.escape also escapes spaces, which RE2 rejects).
_REGEX_META = frozenset("\\.+*?()|[]{}^$")
# Both routers express "the header is present and empty" this way: Istio reads an empty exact value
# as "the header is present", and Gateway API forbids empty values.
EMPTY_VALUE_REGEX = "^$"


@dataclass(frozen=True)
class Split:
    """How traffic is divided between the primary and the canary track.

    canary_weight: 0..100 share of normal traffic sent to the canary.
    mirror: Shadow; every request is also copied to the canary and its responses are dropped.
    match: A/B; requests matching any of these header sets all go to the canary.
    """

    canary_weight: int
    mirror: bool = False
    match: tuple[Match, ...] = ()

    def __post_init__(self) -> None:
        weight = self.canary_weight
        if isinstance(weight, bool) or not isinstance(weight, int) or not 0 <= weight <= 100:
            raise ValueError(f"canary_weight must be an integer from 0 to 100, got {weight!r}")
        # A shadowed canary serves nobody: live traffic to it would be counted twice.
        if self.mirror and weight != 0:
            raise ValueError(f"a mirrored split sends no live traffic to the canary, got weight {weight}")

    @property
    def primary_weight(self) -> int:
        return 100 - self.canary_weight

    @property
    def steady(self) -> bool:
        """All traffic to the primary and nothing that references the canary."""
        return self.canary_weight == 0 and not self.mirror and not self.match


STEADY = Split(0)


class Router(Protocol):
    name: str  # "gatewayAPI" | "istio" | "replicaRatio", as in TrafficSpec.router
    kinds: tuple[tuple[str, str], ...]  # (apiVersion, kind) of every object it owns, for pruning
    supports_mirror: bool
    supports_match: bool

    def routes(self, parent: ObjectRef, spec: ModelDeploymentSpec, split: Split) -> list[dict[str, Any]]:
        """The complete desired route objects for `split`; raises ValueError for what it cannot do."""
        ...


def check_supported(router: Router, split: Split) -> None:
    if split.mirror and not router.supports_mirror:
        raise ValueError(
            f"rollout.strategy Shadow mirrors traffic, which the {router.name} router cannot do; "
            "configure traffic.gatewayAPI or traffic.istio"
        )
    if split.match and not router.supports_match:
        raise ValueError(
            f"rollout.match pins requests by header, which the {router.name} router cannot do; "
            "configure traffic.gatewayAPI or traffic.istio"
        )


def find(objects: list[dict[str, Any]], api_version: str, kind: str, name: str) -> dict[str, Any] | None:
    for obj in objects:
        if (
            obj.get("apiVersion") == api_version
            and obj.get("kind") == kind
            and (obj.get("metadata") or {}).get("name") == name
        ):
            return obj
    return None


# ------------------------------------------------------------------------------------- headers


def match_headers(match: Match, where: str) -> list[tuple[str, StringMatch]]:
    """The headers of one Match, names lower-cased, in the spec's order.

    Header names are case-insensitive in HTTP, and Istio requires them in lower case, so both
    routers write them lower-cased; a name that is not an HTTP token would be rejected by the API
    server, so it is rejected here, naming the field.
    """
    out: list[tuple[str, StringMatch]] = []
    seen: set[str] = set()
    for raw, value in match.headers.items():
        if not _HEADER_NAME.fullmatch(raw):
            raise ValueError(f"{where}.headers: {raw!r} is not a valid HTTP header name")
        name = raw.lower()
        if name in seen:
            raise ValueError(f"{where}.headers: {name!r} is given twice (header names ignore case)")
        if value.regex == "":
            raise ValueError(f"{where}.headers.{raw}: an empty regex means different things to each proxy")
        seen.add(name)
        out.append((name, value))
    return out


def escape_regex(literal: str) -> str:
    return "".join(f"\\{c}" if c in _REGEX_META else c for c in literal)


def prefix_regex(prefix: str) -> str:
    """A prefix as a regular expression that means the same whether the proxy matches the whole
    value (Envoy) or a substring."""
    return f"^{escape_regex(prefix)}.*"


def as_int(value: Any) -> int | None:
    """An integer field of a live object; None when it is not one (booleans are not weights)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        return None
    return int(value)


@dataclass(frozen=True)
class RouteHold:
    """Why the route in force may not carry the canary's traffic, as its router's controller
    reports it: the step holds and no analysis round counts (docs/routing.md)."""

    reason: str  # the Progressing condition's reason: RouteNotAccepted or RoutePending
    message: str
