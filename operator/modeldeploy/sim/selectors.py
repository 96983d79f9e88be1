"""Label selectors with the grammar and semantics of the Kubernetes API server."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping

from modeldeploy.sim.errors import bad_request

_KEY = r"[A-Za-z0-9]([-A-Za-z0-9_./]*[A-Za-z0-9])?"
_VALUE = r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?"
_SET_RE = re.compile(rf"^(?P<key>{_KEY})\s+(?P<op>in|notin)\s*\((?P<values>[^()]*)\)$")
_NOT_EXISTS_RE = re.compile(rf"^!\s*(?P<key>{_KEY})$")
_EQUALITY_RE = re.compile(rf"^(?P<key>{_KEY})\s*(?P<op>==|=|!=|>|<)\s*(?P<value>\S*)$")
_EXISTS_RE = re.compile(rf"^(?P<key>{_KEY})$")
_VALUE_RE = re.compile(rf"^{_VALUE}$")


@dataclasses.dataclass(frozen=True)
class Requirement:
    """One term of a label selector: ``key op values``."""

    key: str
    op: str  # one of: = != in notin exists !exists > <
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        match self.op:
            case "exists":
                return present
            case "!exists":
                return not present
            case "=" | "in":
                return present and value in self.values
            case "!=" | "notin":
                # As in Kubernetes: an absent key satisfies the negative operators.
                return not present or value not in self.values
            case ">" | "<":
                try:
                    number, bound = int(value or ""), int(self.values[0])
                except ValueError:
                    return False
                return number > bound if self.op == ">" else number < bound
        raise AssertionError(f"unknown operator {self.op!r}")  # pragma: no cover


@dataclasses.dataclass(frozen=True)
class LabelSelector:
    """A parsed ``labelSelector``; all requirements must hold (logical AND)."""

    requirements: tuple[Requirement, ...] = ()

    @classmethod
    def parse(cls, text: str | None) -> LabelSelector:
        """Parse the string form; raise a 400 ``ApiError`` on syntax errors, as the API server does."""
        return cls(tuple(_parse_requirement(term) for term in _split_terms(text or "")))

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        labels = labels or {}
        return all(requirement.matches(labels) for requirement in self.requirements)


def _split_terms(text: str) -> list[str]:
    # Commas separate terms, except inside the parentheses of `in (a,b)`.
    terms: list[str] = []
    depth, start = 0, 0
    for index, char in enumerate(text):
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth < 0:
                raise bad_request(f"unable to parse requirement: unbalanced parentheses in {text!r}")
        elif char == "," and depth == 0:
            terms.append(text[start:index])
            start = index + 1
    if depth:
        raise bad_request(f"unable to parse requirement: unbalanced parentheses in {text!r}")
    terms.append(text[start:])
    stripped = [term.strip() for term in terms]
    if stripped == [""]:
        return []
    if any(not term for term in stripped):
        raise bad_request(f"unable to parse requirement: empty term in {text!r}")
    return stripped


def _parse_requirement(term: str) -> Requirement:
    if match := _SET_RE.match(term):
        values = tuple(value.strip() for value in match["values"].split(","))
        _check_values(term, values)
        return Requirement(match["key"], match["op"], values)
    if match := _NOT_EXISTS_RE.match(term):
        return Requirement(match["key"], "!exists")
    if match := _EQUALITY_RE.match(term):
        op = "=" if match["op"] == "==" else match["op"]
        value = match["value"]
        if op in (">", "<") and not re.fullmatch(r"-?\d+", value):
            raise bad_request(
                f"unable to parse requirement: {term!r}: "
                "for 'gt', 'lt' operators, the value must be an integer"
            )
        _check_values(term, (value,))
        return Requirement(match["key"], op, (value,))
    if match := _EXISTS_RE.match(term):
        return Requirement(match["key"], "exists")
    raise bad_request(f"unable to parse requirement: {term!r}")


def _check_values(term: str, values: tuple[str, ...]) -> None:
    for value in values:
        if len(value) > 63 or not _VALUE_RE.match(value):
            raise bad_request(f"unable to parse requirement: {term!r}: invalid label value: {value!r}")
