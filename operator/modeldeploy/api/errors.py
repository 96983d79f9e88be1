"""Turn pydantic validation errors into messages that name the field, as kubectl users expect.

Every line states the rule in words: pydantic's own wording ("String should match pattern '^...$'",
"Input should be a valid string") is rewritten here, an unknown field gets the nearest known one
("did you mean storageUri?"), and a YAML number where a string belongs gets the hint to quote it.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails


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


def describe(error: ValidationError, root: str = "spec", model: type[BaseModel] | None = None) -> list[str]:
    """One line per problem, each naming the field: "spec.scaling.minReplicas: ...".

    `model` is the validated model: with it, an unknown field is answered with the nearest known
    field of the same object, and the "required" line of the field it was meant as is left out (one
    typo, one line)."""
    items = [(_loc(item), item) for item in error.errors(include_url=False)]
    meant: set[tuple[int | str, ...]] = set()
    suggestions: dict[tuple[int | str, ...], str] = {}
    for loc, item in items:
        if item["type"] == "extra_forbidden" and model is not None and loc:
            known = _fields_at(model, loc[:-1])
            guess = _nearest(str(loc[-1]), known)
            if guess is not None:
                suggestions[loc] = f"unknown field; did you mean {guess}?"
                meant.add((*loc[:-1], guess))
            elif known:
                suggestions[loc] = f"unknown field; the fields here are {', '.join(known)}"
    lines: list[str] = []
    for loc, item in items:
        if item["type"] == "missing" and loc in meant:
            continue
        message = suggestions.get(loc) or _message(item)
        lines.append(f"{field_path(loc, root)}: {message}")
    return sorted(dict.fromkeys(lines))


def _loc(item: ErrorDetails) -> tuple[int | str, ...]:
    loc = [p for p in item["loc"] if not _is_union_tag(p) and p != "[key]"]
    cause = (item.get("ctx") or {}).get("error")
    if isinstance(cause, FieldError):
        loc += cause.at
    return tuple(loc)


def _is_union_tag(part: Any) -> bool:
    # pydantic names union members in locations ("int", "constrained-str"); users never wrote those.
    return isinstance(part, str) and (
        part in {"int", "str", "float"} or part.startswith(("constrained-", "function-"))
    )


def _message(item: ErrorDetails) -> str:
    """The rule in words, for the pydantic error types a spec can produce."""
    kind, ctx, value = item["type"], item.get("ctx") or {}, item.get("input")
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "missing":
        return "required"
    if kind == "string_type":
        return _not_a_string(value)
    if kind in {"int_type", "int_parsing", "int_from_float"}:
        return f"must be a whole number, e.g. 1, not {_shown(value)}"
    if kind in {"float_type", "float_parsing"}:
        return f"must be a number, e.g. 0.5, not {_shown(value)}"
    if kind in {"bool_type", "bool_parsing"}:
        return f"must be true or false, not {_shown(value)}"
    if kind in {"model_type", "model_attributes_type", "dict_type"}:
        return f"must be a mapping of fields (key: value), not {_shown(value)}"
    if kind == "list_type":
        return f"must be a list (- item), not {_shown(value)}"
    if kind in {"enum", "literal_error"}:
        allowed = re.findall(r"'([^']*)'", str(ctx.get("expected", "")))
        hint = _nearest(str(value), allowed) if isinstance(value, str) else None
        also = f"; did you mean {hint}?" if hint is not None else ""
        return f"must be one of {', '.join(allowed)}, not {_shown(value)}{also}"
    bounds = {
        "greater_than_equal": ("at least", "ge"),
        "greater_than": ("greater than", "gt"),
        "less_than_equal": ("at most", "le"),
        "less_than": ("less than", "lt"),
    }
    if kind in bounds:
        words, key = bounds[kind]
        return f"must be {words} {_shown(ctx.get(key))}, not {_shown(value)}"
    if kind == "string_too_short":
        return (
            "must not be empty"
            if ctx.get("min_length") == 1
            else f"must be at least {ctx.get('min_length')} characters"
        )
    if kind == "string_too_long":
        return f"must be at most {ctx.get('max_length')} characters"
    if kind in {"too_short", "too_long"}:
        what = "entries" if ctx.get("field_type") == "Dictionary" else "items"
        if kind == "too_short":
            return f"must have at least {ctx.get('min_length')} {what}"
        return f"must have at most {ctx.get('max_length')} {what}, not {ctx.get('actual_length')}"
    if kind == "string_pattern_mismatch":
        # Every pattern of the spec is an api.base.Matches with its own words; this is a safety net
        # that never shows the expression (tests/test_messages.py checks that none is left).
        return "is not in the expected form"
    return _clean(str(item["msg"]))


def _not_a_string(value: Any) -> str:
    if isinstance(value, bool):
        # YAML reads true, yes, on (and their capitals) as booleans.
        word = str(value).lower()
        return f'must be a string, and YAML read this as {word}: put it in quotes, e.g. "{word}"'
    if isinstance(value, int | float):
        return f'must be a string, and YAML read this as a number: put it in quotes, e.g. "{value}"'
    return f"must be a string, not {_shown(value)}"


def _shown(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, str):
        return f'"{value}"' if len(value) <= 64 else f'"{value[:61]}..."'
    return str(value)


def _nearest(word: str, known: Sequence[str]) -> str | None:
    """The known name a typo most likely meant, compared without regard to case."""
    by_lower = {name.lower(): name for name in known}
    found = difflib.get_close_matches(word.lower(), list(by_lower), n=1, cutoff=0.6)
    return by_lower[found[0]] if found else None


def _fields_at(model: type[BaseModel], loc: Sequence[int | str]) -> list[str]:
    """The wire names of the object at `loc` (below `model`), or [] if it is not a model."""
    annotation: Any = model
    for part in loc:
        annotation = _unwrap(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            field = next(
                (
                    f
                    for name, f in annotation.model_fields.items()
                    if (f.alias or name) == part or name == part
                ),
                None,
            )
            if field is None:
                return []
            annotation = field.annotation
        elif typing.get_origin(annotation) is list and isinstance(part, int):
            annotation = typing.get_args(annotation)[0]
        elif typing.get_origin(annotation) is dict:
            annotation = typing.get_args(annotation)[1]
        else:
            return []
    annotation = _unwrap(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [f.alias or name for name, f in annotation.model_fields.items()]
    return []


def _unwrap(annotation: Any) -> Any:
    """X from Annotated[X, ...] and X | None."""
    while True:
        if typing.get_origin(annotation) is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
            continue
        if typing.get_origin(annotation) in (typing.Union, types.UnionType):
            members = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(members) == 1:
                annotation = members[0]
                continue
        return annotation
