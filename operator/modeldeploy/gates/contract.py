"""The data contract of a model: its input and output tensors, and how large a batch it takes.

Pure. Built from the V2 protocol's model metadata (`GET /v2/models/<m>`: names, datatypes, shapes
with -1 for a variable dimension) and, where the server has one, Triton's model config
(`max_batch_size`; MLServer has no config endpoint, so it is unknown there). `diff()` compares the
canary with the primary from the point of view of a client written against the primary:

- inputs: removed or added (clients do not send it; unless the config marks it optional),
  datatype changed, rank changed, or a dimension narrowed (-1 -> n, or n -> m) break clients;
  a fixed dimension widened to -1 is compatible;
- outputs: removed, datatype changed, rank changed, or a dimension widened or changed (n -> -1,
  n -> m) break clients; an added output, or -1 -> n, is compatible;
- max_batch_size: smaller (or 0, no batching) on the canary breaks clients that batch as the
  primary allows; larger is compatible; unknown on either side is not compared.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

VARIABLE = -1


class ContractError(ValueError):
    """Metadata that does not describe a model (a bad response), named in the message."""


@dataclass(frozen=True)
class Tensor:
    name: str
    datatype: str
    shape: tuple[int, ...]
    optional: bool = False


@dataclass(frozen=True)
class Contract:
    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]
    max_batch_size: int | None = None  # None: unknown (no config endpoint)

    def input(self, name: str) -> Tensor | None:
        return next((t for t in self.inputs if t.name == name), None)

    def output(self, name: str) -> Tensor | None:
        return next((t for t in self.outputs if t.name == name), None)


@dataclass(frozen=True)
class Change:
    breaking: bool
    tensor: str  # "input x", "output y", or "max_batch_size"
    reason: str  # one line, naming the tensor and the difference


def _tensors(items: Any, what: str, optional: frozenset[str] = frozenset()) -> tuple[Tensor, ...]:
    if not isinstance(items, list):
        raise ContractError(f"model metadata: {what} must be a list")
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise ContractError(f"model metadata: {what}[{i}] must be an object")
        name, datatype, shape = item.get("name"), item.get("datatype"), item.get("shape")
        if not isinstance(name, str) or not name:
            raise ContractError(f"model metadata: {what}[{i}].name must be a non-empty string")
        if not isinstance(datatype, str) or not datatype:
            raise ContractError(f"model metadata: {what}[{i}] ({name}).datatype must be a string")
        if not isinstance(shape, list) or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= VARIABLE for d in shape
        ):
            raise ContractError(
                f"model metadata: {what}[{i}] ({name}).shape must be a list of integers >= -1"
            )
        out.append(
            Tensor(name=name, datatype=datatype.upper(), shape=tuple(shape), optional=name in optional)
        )
    return tuple(out)


def from_metadata(metadata: Mapping[str, Any], config: Mapping[str, Any] | None = None) -> Contract:
    """A Contract from V2 metadata JSON and, when known, Triton's model config JSON."""
    max_batch_size: int | None = None
    optional: frozenset[str] = frozenset()
    if config is not None:
        raw = config.get("max_batch_size")
        if raw is not None:
            if not isinstance(raw, int) or isinstance(raw, bool) or raw < 0:
                raise ContractError("model config: max_batch_size must be an integer >= 0")
            max_batch_size = raw
        inputs = config.get("input") or []
        if isinstance(inputs, list):
            optional = frozenset(
                i["name"] for i in inputs if isinstance(i, Mapping) and i.get("optional") and "name" in i
            )
    return Contract(
        inputs=_tensors(metadata.get("inputs", []), "inputs", optional),
        outputs=_tensors(metadata.get("outputs", []), "outputs"),
        max_batch_size=max_batch_size,
    )


def _shape(shape: Sequence[int]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def _dims(old: Tensor, new: Tensor, what: str, *, narrow_breaks: bool) -> Change | None:
    """A shape difference; narrow_breaks: for inputs, -1 -> n breaks; for outputs, n -> -1 does."""
    said = f"{what} {old.name}: shape {_shape(old.shape)} -> {_shape(new.shape)}"
    if old.shape == new.shape:
        return None
    if len(old.shape) != len(new.shape):
        return Change(True, f"{what} {old.name}", f"{said} (rank {len(old.shape)} -> {len(new.shape)})")
    for i, (a, b) in enumerate(zip(old.shape, new.shape, strict=True)):
        if a == b:
            continue
        if a != VARIABLE and b != VARIABLE:
            return Change(True, f"{what} {old.name}", f"{said} (dimension {i}: {a} -> {b})")
        widened = b == VARIABLE  # a fixed dimension became variable
        if widened != narrow_breaks:
            kind = "now variable" if widened else f"now fixed at {b}"
            return Change(True, f"{what} {old.name}", f"{said} (dimension {i} {kind})")
    return Change(False, f"{what} {old.name}", f"{said} (compatible)")


def diff(primary: Contract, canary: Contract) -> list[Change]:
    """Every difference from the primary's contract to the canary's, inputs first, in order."""
    changes: list[Change] = []
    for old in primary.inputs:
        new = canary.input(old.name)
        if new is None:
            changes.append(
                Change(True, f"input {old.name}", f"input {old.name} removed: clients still send it")
            )
            continue
        if new.datatype != old.datatype:
            changes.append(
                Change(
                    True, f"input {old.name}", f"input {old.name}: datatype {old.datatype} -> {new.datatype}"
                )
            )
        change = _dims(old, new, "input", narrow_breaks=True)
        if change is not None:
            changes.append(change)
    for new in canary.inputs:
        if primary.input(new.name) is None:
            if new.optional:
                changes.append(Change(False, f"input {new.name}", f"input {new.name} added, optional"))
            else:
                changes.append(
                    Change(
                        True,
                        f"input {new.name}",
                        f"input {new.name} added ({new.datatype} {_shape(new.shape)}): "
                        "clients do not send it",
                    )
                )
    for old in primary.outputs:
        new = canary.output(old.name)
        if new is None:
            changes.append(Change(True, f"output {old.name}", f"output {old.name} removed: clients read it"))
            continue
        if new.datatype != old.datatype:
            changes.append(
                Change(
                    True,
                    f"output {old.name}",
                    f"output {old.name}: datatype {old.datatype} -> {new.datatype}",
                )
            )
        change = _dims(old, new, "output", narrow_breaks=False)
        if change is not None:
            changes.append(change)
    for new in canary.outputs:
        if primary.output(new.name) is None:
            changes.append(
                Change(
                    False,
                    f"output {new.name}",
                    f"output {new.name} added ({new.datatype} {_shape(new.shape)})",
                )
            )
    old_max, new_max = primary.max_batch_size, canary.max_batch_size
    if old_max is not None and new_max is not None and old_max != new_max:
        said = f"max_batch_size {old_max} -> {new_max}"
        if new_max == 0 or (old_max != 0 and new_max < old_max):
            changes.append(Change(True, "max_batch_size", f"{said}: clients batch up to {old_max}"))
        else:
            changes.append(Change(False, "max_batch_size", f"{said} (compatible)"))
    return changes
