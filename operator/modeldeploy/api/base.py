"""Shared pieces of the API models: camelCase wire names, shared types, CEL rules."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.alias_generators import to_camel
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, core_schema

GROUP = "modeldeploy.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "ModelDeployment"
PLURAL = "modeldeployments"
SINGULAR = "modeldeployment"
SHORT_NAMES = ["mdep"]
# Children are named <name>-primary, <name>-canary, and pods append more: the API server refuses
# a longer name (the CRD's metadata.name.maxLength).
MAX_NAME_LENGTH = 50
# ... and so a name ending in -primary or -canary would share a child's name with another
# ModelDeployment: `scorer-primary`'s Service is the one `scorer` routes its primary track to.
RESERVED_NAME_SUFFIXES = ("-primary", "-canary")
RESERVED_SUFFIX_MESSAGE = (
    "must not end in -primary or -canary: the operator names each ModelDeployment's per-track "
    "Deployments and Services <name>-primary and <name>-canary, so such a name would share a Service "
    "with another ModelDeployment (scorer-primary with scorer's); choose another, e.g. scorer-main"
)


class Track(StrEnum):
    """The two tracks of a rollout: the value of the `modeldeploy.io/track` label on pods (and so
    in Prometheus), and the suffix of each track's Deployment and Service."""

    PRIMARY = "primary"
    CANARY = "canary"


# CEL rules are attached to the JSON schema of the model that declares them, under this key;
# the CRD generator turns them into x-kubernetes-validations.
CEL_KEY = "x-kubernetes-validations"
# Where Matches leaves its pattern and message in the JSON schema; crd.py makes a CEL rule of it.
MATCHES_KEY = "x-modeldeploy-matches"


def cel_string(value: str) -> str:
    """`value` as a single-quoted CEL string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


@dataclass(frozen=True)
class Matches:
    """A string pattern that users never see: the error states the rule in words, with an example.

    Use it in Annotated[str, Matches(...)] instead of Field(pattern=...). pydantic would answer
    "String should match pattern '^...$'", and so would the API server for a schema `pattern`; here
    the operator raises `message`, and the CRD gets a CEL rule `self.matches(...)` with the same
    message (crd.py), so `kubectl apply` says the same words."""

    pattern: str
    message: str

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        return core_schema.no_info_after_validator_function(self._check, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        json_schema = handler(schema)
        json_schema[MATCHES_KEY] = {"pattern": self.pattern, "message": self.message}
        return json_schema

    def _check(self, value: str) -> str:
        if not re.fullmatch(self.pattern, value):
            raise ValueError(self.message)
        return value

    def rule(self) -> dict[str, str]:
        """The CEL twin; the pattern has no construct that Python's re and CEL's RE2 read differently."""
        return {"rule": f"self.matches({cel_string(self.pattern)})", "message": self.message}


# Go's time.ParseDuration subset that users write in YAML: "500ms", "90s", "5m", "1h30m".
DURATION_PATTERN = r"^([0-9]+(ms|s|m|h))+$"
DURATION_MESSAGE = (
    "must be a duration: whole numbers each followed by ms, s, m or h, without spaces, e.g. 90s, 5m or 1h30m"
)
DNS1123_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS1123_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"


def dns_label(what: str, example: str) -> Matches:
    return Matches(
        DNS1123_LABEL,
        f"must be {what}: lower-case letters, digits and '-', starting and ending with a letter or digit, "
        f"e.g. {example}",
    )


def dns_subdomain(what: str, example: str) -> Matches:
    return Matches(
        DNS1123_SUBDOMAIN,
        f"must be {what}: lower-case letters, digits, '-' and '.', starting and ending with a letter or "
        f"digit, e.g. {example}",
    )


Duration = Annotated[str, Matches(DURATION_PATTERN, DURATION_MESSAGE), Field(max_length=32)]
# Free-form passthrough objects (affinity, HPA behavior, raw metric specs).
PRESERVE_KEY = "x-kubernetes-preserve-unknown-fields"


def cel(*rules: tuple[str, str, str]) -> dict[str, Any]:
    """json_schema_extra for CEL rules: (rule, message, fieldPath-relative-to-this-object)."""
    out = []
    for rule, message, field_path in rules:
        entry = {"rule": rule, "message": message}
        if field_path:
            entry["fieldPath"] = field_path
        out.append(entry)
    return {CEL_KEY: out}


class Model(BaseModel):
    """Base for every API object: camelCase on the wire, unknown fields rejected."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        use_enum_values=True,
    )


def duration_between(low: str, high: str | None = None) -> dict[str, Any]:
    """json_schema_extra for a Duration field bounded by the API server (CEL's duration())."""
    rule = f"duration(self) >= duration('{low}')"
    if high is not None:
        rule += f" && duration(self) <= duration('{high}')"
    # duration() fails on a malformed string: that one gets only the pattern rule's message.
    guarded = f"!self.matches({cel_string(DURATION_PATTERN)}) || ({rule})"
    return cel((guarded, _bounds_message(low, high), ""))


def check_duration_between(value: str, low: str, high: str | None = None) -> str:
    """The operator's twin of duration_between, with the same message."""
    seconds = parse_duration(value)
    if seconds < parse_duration(low) or (high is not None and seconds > parse_duration(high)):
        raise ValueError(_bounds_message(low, high))
    return value


def _bounds_message(low: str, high: str | None) -> str:
    return f"must be between {low} and {high}" if high is not None else f"must be at least {low}"


_DURATION_PART = re.compile(r"([0-9]+)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: str) -> float:
    """Seconds in a duration such as "1m30s"; the schema pattern guarantees the shape."""
    if not re.fullmatch(DURATION_PATTERN, value):
        raise ValueError(DURATION_MESSAGE)
    return sum(int(n) * _UNIT_SECONDS[unit] for n, unit in _DURATION_PART.findall(value))


# Manual control. `paused` is a level ("true" while paused); the others carry a one-shot token
# (the CLI writes a timestamp) that the operator acts on once and remembers in status.handled.
ANNOTATION_PREFIX = f"{GROUP}/"
PAUSED_ANNOTATION = f"{GROUP}/paused"
PROMOTE_ANNOTATION = f"{GROUP}/promote"
ABORT_ANNOTATION = f"{GROUP}/abort"
RETRY_ANNOTATION = f"{GROUP}/retry"
RESUME_ANNOTATION = f"{GROUP}/resume"
