"""The golden set: JSON lines, one example a line.

JSON lines rather than CSV because a model's inputs are typed tensors with shapes: a line carries
`{"inputs": {"x": [[0.1, 0.2], [0.3, 0.4]]}}` as it is, with numbers, strings and booleans told
apart, several named inputs and any rank, where CSV would need a column-naming convention for
shapes and a guess for every cell's type. Each line is one example (no batch dimension):

    {"inputs": {"<tensor>": <nested list or scalar>, ...}, "label": <scalar>, "group": <scalar>}

`label` (the expected top-1, for accuracy and PSI without a primary) and `group` (for demographic
parity) are optional. Blank lines are skipped. Every input must have the same shape on every line,
so that examples can be stacked into batches.

A golden set is the user's input, read by the operator itself, so it is bounded before and while
it is parsed (docs/gates.md, Bounds): at most MAX_BYTES of text, MAX_EXAMPLES lines and
MAX_DEPTH levels of nesting. Depth is checked on each line's text before `json.loads` sees it (a
line of a million `[` would otherwise exhaust the interpreter's recursion limit), and lines are
parsed one at a time, so the largest transient tree is one line's. Whatever still goes wrong in
parsing, `RecursionError` and `MemoryError` included, is a GoldenSetError naming the line.

What is kept of a line is compact: each input flattened (row-major; its shape is the set's), numbers
in an `array` (8 bytes each, where a parsed tree costs 32 bytes a float and 64 more a nested list),
other scalars in a flat list. Up to four runs hold their sets at once; trees of nested lists would
hold several times the bytes of the text.
"""

from __future__ import annotations

import json
import re
import sys
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias, cast

Scalar = int | float | str | bool
# One example's tensor as JSON gives it: nested lists of scalars.
Nested = Any
# One example's tensor as kept: flattened in row-major order; `array` of 'q' (every value an
# integer that fits int64) or 'd' (numbers), else a list (booleans, strings, a mix).
Flat: TypeAlias = "array[int] | array[float] | list[Scalar]"  # array is generic from Python 3.12

# The bounds; docs/gates.md (Bounds) has the operator's measured peak memory at these values.
MAX_BYTES = 2 * 1024 * 1024
MAX_EXAMPLES = 100_000
# A line is an object of inputs (2 levels) around a tensor: rank 30 is far past any model's.
MAX_DEPTH = 32
_FIELDS = frozenset({"inputs", "label", "group"})


class GoldenSetError(ValueError):
    """A golden set that cannot be used; the message names the line and the field."""


@dataclass(frozen=True, slots=True)
class Example:
    inputs: dict[str, Flat]
    label: Scalar | None = None
    group: str | None = None


@dataclass(frozen=True)
class GoldenSet:
    examples: tuple[Example, ...]
    # Each input's shape for one example (no batch dimension), the same on every line.
    shapes: dict[str, tuple[int, ...]]

    @property
    def has_labels(self) -> bool:
        return all(e.label is not None for e in self.examples)


def _shape(value: Nested, where: str) -> tuple[int, ...]:
    """The shape of a rectangular nested list of scalars; raises naming `where` otherwise."""
    if isinstance(value, list):
        if not value:
            raise GoldenSetError(f"{where}: an empty list has no shape")
        inner = {_shape(v, where) for v in value}
        if len(inner) != 1:
            raise GoldenSetError(f"{where}: ragged nested lists (rows of different shapes)")
        return (len(value), *inner.pop())
    if isinstance(value, bool | int | float | str):
        return ()
    raise GoldenSetError(f"{where}: {type(value).__name__} is not a number, string, boolean or list")


def _leaves(value: Nested, out: list[Scalar]) -> None:
    if isinstance(value, list):
        for item in value:
            _leaves(item, out)  # depth is bounded (MAX_DEPTH) before a line is parsed
    else:
        out.append(value)


def flatten(value: Nested) -> Flat:
    """A validated tensor (rectangular, scalars only), flat and compact."""
    flat: list[Scalar] = []
    _leaves(value, flat)
    if not any(isinstance(v, bool | str) for v in flat):
        numbers = cast(list[float], flat)  # no bool, no str: int and float only
        try:
            if all(isinstance(v, int) for v in numbers):
                return array("q", cast(list[int], numbers))
        except OverflowError:
            pass  # an integer past int64: as a double, below
        try:
            return array("d", numbers)
        except OverflowError:
            pass  # an integer past a double: kept as JSON gave it
    return flat


def _scalar(value: Any, where: str) -> Scalar:
    if isinstance(value, bool | int | float | str):
        return value
    raise GoldenSetError(f"{where}: must be a number, string or boolean, not {type(value).__name__}")


# A JSON string (escapes included), and what is not a bracket.
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")


def nesting_problem(line: str, limit: int = MAX_DEPTH) -> str | None:
    """Why `line` must not reach a recursive parser (nested deeper than `limit`, brackets that do
    not balance), or None. No tree is built, and each level costs one scan of the line's brackets:
    a round removes every innermost pair, so `limit` rounds leave nothing of a line nested no
    deeper than `limit`. Bracket kinds are not told apart here; json.loads refuses `[}` after."""
    if line.count("[") + line.count("{") <= limit:
        return None  # cannot be deeper than its brackets, counted in strings too
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", line)).replace("{", "[").replace("}", "]")
    for _ in range(limit):
        if not brackets:
            return None
        brackets = brackets.replace("[]", "")
    if not brackets:
        return None
    if "[]" in brackets:
        return f"nested deeper than {limit} levels"
    return "not JSON (brackets do not balance)"


def _lines(text: str) -> Iterator[tuple[int, str]]:
    """Numbered lines, one copied at a time (splitlines() would copy the whole set at once, and
    would split a JSON string at U+2028)."""
    start, number = 0, 0
    while start < len(text):
        end = text.find("\n", start)
        end = len(text) if end < 0 else end
        number += 1
        yield number, text[start:end]
        start = end + 1


def utf8_size(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def parse_golden_set(text: str) -> GoldenSet:
    """Parse JSON lines into a GoldenSet within the bounds; the first problem raises
    GoldenSetError, never anything else."""
    size = utf8_size(text)
    if size > MAX_BYTES:
        raise GoldenSetError(
            f"golden set: {size} bytes, more than the {MAX_BYTES // (1024 * 1024)} MiB allowed"
        )
    at = "golden set"
    try:
        return _parse(text)
    except RecursionError:
        raise GoldenSetError(f"{at}: nested too deeply to parse") from None
    except MemoryError:
        raise GoldenSetError(f"{at}: too large to parse in the operator's memory") from None


def _parse(text: str) -> GoldenSet:
    examples: list[Example] = []
    shapes: dict[str, tuple[int, ...]] = {}
    first_line = 0
    for number, raw in _lines(text):
        if not raw.strip():
            continue
        at = f"golden set line {number}"
        if len(examples) == MAX_EXAMPLES:
            raise GoldenSetError(f"{at}: more than {MAX_EXAMPLES} examples")
        problem = nesting_problem(raw)
        if problem is not None:
            raise GoldenSetError(f"{at}: {problem}")
        try:
            row = json.loads(raw)
        except json.JSONDecodeError as err:
            raise GoldenSetError(f"{at}: not JSON ({err.msg} at column {err.colno})") from None
        except (RecursionError, MemoryError) as err:
            raise GoldenSetError(f"{at}: cannot be parsed ({type(err).__name__})") from None
        if not isinstance(row, dict):
            raise GoldenSetError(f"{at}: must be a JSON object with inputs, not {type(row).__name__}")
        unknown = sorted(set(row) - _FIELDS)
        if unknown:
            raise GoldenSetError(f"{at}: unknown field {unknown[0]!r} (allowed: group, inputs, label)")
        inputs = row.get("inputs")
        if not isinstance(inputs, dict) or not inputs:
            raise GoldenSetError(f"{at}: inputs must be a non-empty object of tensor name -> values")
        line_shapes = {name: _shape(value, f"{at}: inputs.{name}") for name, value in inputs.items()}
        if not examples:
            shapes, first_line = line_shapes, number
        elif line_shapes.keys() != shapes.keys():
            raise GoldenSetError(
                f"{at}: inputs {sorted(line_shapes)} differ from line {first_line}'s {sorted(shapes)}"
            )
        else:
            for name, shape in line_shapes.items():
                if shape != shapes[name]:
                    raise GoldenSetError(
                        f"{at}: inputs.{name} has shape {list(shape)}, line {first_line}'s has "
                        f"{list(shapes[name])}: every line must have the same shape"
                    )
        label = row.get("label")
        group = row.get("group")
        examples.append(
            Example(
                inputs={sys.intern(name): flatten(value) for name, value in inputs.items()},
                label=None if label is None else _scalar(label, f"{at}: label"),
                group=None if group is None else str(_scalar(group, f"{at}: group")),
            )
        )
    if not examples:
        raise GoldenSetError("golden set: no examples (every line is blank)")
    return GoldenSet(examples=tuple(examples), shapes=shapes)


def batches(examples: Sequence[Example], size: int) -> list[range]:
    """The index ranges of consecutive batches of at most `size` examples."""
    if size < 1:
        raise ValueError("batch size must be at least 1")
    return [range(i, min(i + size, len(examples))) for i in range(0, len(examples), size)]
