"""Turn pydantic validation errors into messages that name the field, as kubectl users expect."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError


def field_path(loc: Sequence[int | str], root: str = "spec") -> str:
    """("scaling", "metrics", 0, "cpu") -> "spec.scaling.metrics[0].cpu"."""
    path = root
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part:
            path += f".{part}"
    return path


class FieldError(ValueError):
    """A cross-field problem blamed on one field, the one the twin CEL rule's fieldPath names.

    Raise it from a model validator; `at` is the field's path relative to that model, spelled as a
    CEL fieldPath (".minReplicas", ".rollout.strategy")."""

    def __init__(self, at: str, message: str) -> None:
        super().__init__(message)
        # Digits are list indices: ".scaling.metrics.0.cpu" names spec.scaling.metrics[0].cpu.
        self.at = tuple(int(part) if part.isdigit() else part for part in at.split(".") if part)


def _clean(msg: str) -> str:
    # pydantic prefixes messages from our own validators with "Value error, ".
    return msg.removeprefix("Value error, ")


def describe(error: ValidationError, root: str = "spec") -> list[str]:
    """One line per problem, each naming the field: "spec.scaling.minReplicas: ..."."""
    lines: list[str] = []
    for item in error.errors(include_url=False):
        loc = [p for p in item["loc"] if not _is_union_tag(p) and p != "[key]"]
        cause = (item.get("ctx") or {}).get("error")
        if isinstance(cause, FieldError):
            loc += cause.at
        message = _clean(str(item["msg"]))
        if item["type"] == "extra_forbidden":
            message = "unknown field"
        lines.append(f"{field_path(loc, root)}: {message}")
    return sorted(dict.fromkeys(lines))


def _is_union_tag(part: Any) -> bool:
    # pydantic names union members in locations ("int", "constrained-str"); users never wrote those.
    return isinstance(part, str) and (
        part in {"int", "str", "float"} or part.startswith(("constrained-", "function-"))
    )
