"""Echoes.behind: a cached copy older than our last write of it is not decided from (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from modeldeploy.handlers.echoes import Echoes


def obj(version: str | None, uid: str = "u1") -> dict[str, Any]:
    meta: dict[str, Any] = {"uid": uid}
    if version is not None:
        meta["resourceVersion"] = version
    return {"metadata": meta}


CASES = [
    pytest.param("100", obj("99"), True, id="older-than-our-write"),
    pytest.param("100", obj("100"), False, id="our-write-itself"),
    pytest.param("100", obj("101"), False, id="newer-someone-wrote-after-us"),
    pytest.param("100", obj("99", uid="u2"), False, id="another-object"),
    pytest.param(None, obj("99"), False, id="never-written"),
    pytest.param("100", obj("9a"), False, id="not-an-integer-cached"),
    pytest.param("abc", obj("99"), False, id="not-an-integer-written"),
    pytest.param("100", obj(None), False, id="no-version"),
    pytest.param("1000", obj("999"), True, id="compared-as-numbers-not-strings"),
]


@pytest.mark.parametrize(("written", "cached", "behind"), CASES)
def test_a_cached_copy_older_than_our_write_is_behind(
    written: str | None, cached: dict[str, Any], behind: bool
) -> None:
    echoes = Echoes()
    if written is not None:
        echoes.wrote(obj(written))
    assert echoes.behind(cached) is behind
