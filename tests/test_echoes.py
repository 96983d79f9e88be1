"""Echoes of our own writes: skipped, but never a user's edit hiding behind one."""

from __future__ import annotations

from typing import Any

import pytest

from modeldeploy.handlers.echoes import Echoes


def obj(rv: str, generation: int = 1, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "metadata": {
            "uid": "u-1",
            "resourceVersion": rv,
            "generation": generation,
            "annotations": annotations or {},
        }
    }


ACTED_ON = obj("10", generation=3, annotations={"team": "fraud"})


@pytest.mark.parametrize(
    ("event", "echo"),
    [
        pytest.param(obj("11", 3, {"team": "fraud"}), True, id="our-status-write"),
        pytest.param(obj("12", 3, {"team": "fraud"}), False, id="a-later-write"),
        pytest.param(obj("11", 4, {"team": "fraud"}), False, id="spec-changed-before-our-write"),
        pytest.param(
            obj("11", 3, {"team": "fraud", "modeldeploy.io/promote": "t1"}),
            False,
            id="command-before-our-write",
        ),
        pytest.param({"metadata": {"uid": "u-1"}}, False, id="no-resource-version"),
    ],
)
def test_a_model_deployment_event_is_an_echo_only_if_nothing_else_changed(
    event: dict[str, Any], echo: bool
) -> None:
    echoes = Echoes()
    echoes.wrote(obj("11", 3, {"team": "fraud"}), acted_on=ACTED_ON)
    assert echoes.is_echo(event) is echo


def test_a_child_event_with_our_apply_s_version_is_an_echo() -> None:
    echoes = Echoes()
    echoes.wrote({"metadata": {"uid": "c-1", "resourceVersion": "7"}})
    assert echoes.is_echo({"metadata": {"uid": "c-1", "resourceVersion": "7"}})
    assert not echoes.is_echo({"metadata": {"uid": "c-1", "resourceVersion": "8"}})  # kubelet moved it on
    assert not echoes.is_echo({"metadata": {"uid": "c-2", "resourceVersion": "7"}})


def test_an_echo_after_a_pass_read_an_older_copy_is_not_skipped() -> None:
    """The cache lagged: a pass read version 6 after we wrote 7, and decided from it. The echo of 7
    must wake a pass, or the decision made from 6 would stand (issue 9, seen in the benchmark)."""
    echoes = Echoes()
    echoes.wrote({"metadata": {"uid": "c-1", "resourceVersion": "7"}})
    echoes.read({"metadata": {"uid": "c-1", "resourceVersion": "6"}})
    assert not echoes.is_echo({"metadata": {"uid": "c-1", "resourceVersion": "7"}})


def test_reading_the_version_we_wrote_keeps_its_echo_skipped() -> None:
    echoes = Echoes()
    echoes.wrote({"metadata": {"uid": "c-1", "resourceVersion": "7"}})
    echoes.read({"metadata": {"uid": "c-1", "resourceVersion": "7"}})
    echoes.read({"metadata": {"uid": "c-2", "resourceVersion": "3"}})  # never written by us
    assert echoes.is_echo({"metadata": {"uid": "c-1", "resourceVersion": "7"}})
