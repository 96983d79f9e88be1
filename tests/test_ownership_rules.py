"""The pure rules of "only what is ours" (render/ownership.py): which object is a ModelDeployment's
child, how a conflict names who holds an object, which names are refused, and which pairs of
ModelDeployments would share a child. Kubernetes' side is tests/test_ownership.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from modeldeploy.api.base import RESERVED_SUFFIX_MESSAGE
from modeldeploy.api.conditions import find_condition
from modeldeploy.api.resource import ObjectRef, parse_spec
from modeldeploy.api.status import Condition, ConditionStatus, ModelDeploymentStatus, Phase
from modeldeploy.cli import main
from modeldeploy.render.children import TrackPlan, workload_children
from modeldeploy.render.names import Track
from modeldeploy.render.options import RenderOptions
from modeldeploy.render.ownership import (
    child_names,
    collisions,
    conflict_message,
    is_ours,
    owner_of,
    reserved_suffix,
)
from modeldeploy.render.revision import revision
from modeldeploy.rollout.observe import apply_failure
from modeldeploy.rollout.steady import applied_status
from modeldeploy.routing.base import Split
from modeldeploy.routing.registry import router_for

UID = "8c1d7f2e-0000-4000-8000-000000000001"
OTHER = "8c1d7f2e-0000-4000-8000-000000000002"


def ref(
    uid: str, controller: bool | None = True, kind: str = "ModelDeployment", name: str = "scorer"
) -> dict[str, Any]:
    out: dict[str, Any] = {"apiVersion": "modeldeploy.io/v1alpha1", "kind": kind, "name": name, "uid": uid}
    if controller is not None:
        out["controller"] = controller
    return out


def obj(*refs: dict[str, Any], managers: tuple[str, ...] = ()) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "scorer"}
    if refs:
        meta["ownerReferences"] = list(refs)
    if managers:
        meta["managedFields"] = [{"manager": m, "operation": "Update"} for m in managers]
    return {"metadata": meta}


@pytest.mark.parametrize(
    ("found", "expected"),
    [
        pytest.param(obj(ref(UID)), True, id="our-controller-reference"),
        pytest.param(obj(ref(OTHER)), False, id="another-controllers"),
        pytest.param(obj(ref(UID, controller=False)), False, id="ours-but-not-controller"),
        pytest.param(obj(ref(UID, controller=None)), False, id="ours-controller-unset"),
        pytest.param(obj(ref(OTHER), ref(UID, controller=False)), False, id="another-controls-we-are-listed"),
        pytest.param(obj(), False, id="no-owner"),
        pytest.param({}, False, id="no-metadata"),
        pytest.param(obj(ref("")), False, id="empty-uid-never-ours"),
    ],
)
def test_is_ours_by_controller_uid(found: dict[str, Any], expected: bool) -> None:
    assert is_ours(found, UID) is expected


def test_an_empty_parent_uid_owns_nothing() -> None:
    assert not is_ours(obj(ref("")), "")


@pytest.mark.parametrize(
    ("found", "expected"),
    [
        pytest.param(obj(ref(OTHER)), f"owned by ModelDeployment scorer (uid {OTHER})", id="controller"),
        pytest.param(
            obj(ref(OTHER, kind="Deployment", name="web")),
            f"owned by Deployment web (uid {OTHER})",
            id="other-kind",
        ),
        pytest.param(
            obj(managers=("kubectl-create", "helm", "helm")),
            "no owner, managed by helm, kubectl-create",
            id="managers",
        ),
        pytest.param(
            obj(ref(OTHER, controller=False), managers=("kubectl",)),
            "no owner, managed by kubectl",
            id="owner-not-controller",
        ),
        pytest.param(obj(), "no owner", id="nothing-known"),
    ],
)
def test_owner_of_names_who_holds_it(found: dict[str, Any], expected: str) -> None:
    assert owner_of(found) == expected


def test_a_conflict_is_one_line_naming_kind_name_and_holder() -> None:
    message = conflict_message("Service", "scorer", obj(managers=("team",)))
    expected = "exists and is not this ModelDeployment's (no owner, managed by team); left as it is"
    assert message == f"Service/scorer: {expected}"


@pytest.mark.parametrize(
    ("name", "refused"),
    [
        pytest.param("scorer", False, id="plain"),
        pytest.param("scorer-primary", True, id="ends-in-primary"),
        pytest.param("scorer-canary", True, id="ends-in-canary"),
        pytest.param("primary", False, id="the-word-alone"),
        pytest.param("scorerprimary", False, id="no-dash"),
        pytest.param("scorer-primary-v2", False, id="suffix-inside"),
        pytest.param("scorer-main", False, id="the-suggested-name"),
    ],
)
def test_reserved_suffixes(name: str, refused: bool) -> None:
    assert reserved_suffix(name) == (RESERVED_SUFFIX_MESSAGE if refused else None)


@pytest.mark.parametrize(
    ("sources", "expected"),
    [
        pytest.param(
            [("ml", "scorer", "a.yaml"), ("ml", "scorer-primary", "b.yaml")],
            [
                "ModelDeployment scorer (a.yaml) and ModelDeployment scorer-primary (b.yaml) "
                "would both own Service ml/scorer-primary"
            ],
            id="primary-track-service",
        ),
        pytest.param(
            [("ml", "scorer-canary", "b.yaml"), ("ml", "scorer", "a.yaml")],
            [
                "ModelDeployment scorer-canary (b.yaml) and ModelDeployment scorer (a.yaml) "
                "would both own Service ml/scorer-canary"
            ],
            id="canary-either-order",
        ),
        pytest.param([("ml", "scorer", "a"), ("other", "scorer-primary", "b")], [], id="other-namespace"),
        pytest.param([("ml", "scorer", "a"), ("ml", "fraud", "b")], [], id="unrelated"),
        pytest.param(
            [("ml", "scorer", "a"), ("ml", "scorer-grpc", "b")], [], id="grpc-route-is-another-kind"
        ),
        pytest.param(
            [("ml", "s", "a"), ("ml", "s-primary", "b"), ("ml", "s-canary", "c")],
            [
                "ModelDeployment s (a) and ModelDeployment s-primary (b) would both own Service ml/s-primary",
                "ModelDeployment s (a) and ModelDeployment s-canary (c) would both own Service ml/s-canary",
            ],
            id="three-way",
        ),
    ],
)
def test_collisions_name_both_sources(sources: list[tuple[str, str, str]], expected: list[str]) -> None:
    assert collisions(sources) == expected


@pytest.mark.parametrize(
    "traffic",
    [
        pytest.param({}, id="replica-ratio"),
        pytest.param(
            {"gatewayAPI": {"parentRefs": [{"name": "gw"}], "grpc": {"hostnames": ["m.example"]}}},
            id="gateway",
        ),
        pytest.param({"istio": {"hosts": ["m.example"]}}, id="istio"),
    ],
)
def test_child_names_cover_everything_rendered(traffic: dict[str, Any]) -> None:
    """The name scheme `collisions` reasons about is the one the renderer uses, for both tracks and
    every router."""
    spec = parse_spec(
        {
            "model": {
                "name": "m",
                "version": "1",
                "storageUri": "s3://models/m/1",
                "config": {"maxBatchSize": 4},
            },
            "runtime": {"resources": {"requests": {"cpu": "1"}}},
            "scaling": {"minReplicas": 1, "maxReplicas": 3},
            "traffic": traffic,
        }
    )
    parent = ObjectRef(name="scorer", namespace="ml", uid=UID, generation=1)
    tracks = [TrackPlan(track, spec, revision(spec), None) for track in Track]
    router = router_for(spec)
    rendered = workload_children(
        parent, spec, RenderOptions(), tracks, None, routed=bool(router.kinds)
    ) + router.routes(parent, spec, Split(20))
    names = {(o["kind"], o["metadata"]["name"]) for o in rendered if o["kind"] != "ConfigMap"}
    assert names <= child_names("scorer"), names - child_names("scorer")
    assert len(names) >= 5


def test_render_refuses_two_sources_whose_children_collide(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = tmp_path / "models.yaml"
    manifest.write_text(
        """
apiVersion: modeldeploy.io/v1alpha1
kind: ModelDeployment
metadata: {name: scorer, namespace: ml}
spec:
  model: {name: m, version: "1", storageUri: s3://models/m/1}
  traffic: {gatewayAPI: {parentRefs: [{name: gw}]}}
---
apiVersion: modeldeploy.io/v1alpha1
kind: ModelDeployment
metadata: {name: scorer-primary, namespace: ml}
spec:
  model: {name: m, version: "1", storageUri: s3://models/m/1}
"""
    )
    assert main(["render", "-f", str(manifest)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    refused = f"ModelDeployment scorer-primary: metadata.name: {RESERVED_SUFFIX_MESSAGE}"
    assert f"error: {manifest}: document 2: {refused}" in lines, lines
    assert (
        f"error: ModelDeployment scorer ({manifest}: document 1) and ModelDeployment scorer-primary "
        f"({manifest}: document 2) would both own Service ml/scorer-primary"
    ) in lines, lines
    assert len(lines) == 2, lines


def test_render_of_distinct_names_is_unchanged(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = tmp_path / "models.yaml"
    doc = (
        "apiVersion: modeldeploy.io/v1alpha1\nkind: ModelDeployment\nmetadata: {{name: {name}}}\n"
        "spec:\n  model: {{name: m, version: '1', storageUri: s3://models/m/1}}\n"
    )
    manifest.write_text(doc.format(name="scorer") + "---\n" + doc.format(name="fraud"))
    assert main(["render", "-f", str(manifest)]) == 0
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(
    ("errors", "conflicts", "expected"),
    [
        pytest.param([], [], None, id="nothing-failed"),
        pytest.param(["HPA/s: refused"], [], ("ApplyFailed", "HPA/s: refused"), id="refused"),
        pytest.param([], ["Service/s: taken"], ("ChildConflict", "Service/s: taken"), id="conflict"),
        pytest.param(
            ["HPA/s: refused"],
            ["Service/s: taken"],
            ("ChildConflict", "Service/s: taken; HPA/s: refused"),
            id="conflict-named-first",
        ),
    ],
)
def test_the_degraded_reason_of_children_not_written(
    errors: list[str], conflicts: list[str], expected: tuple[str, str] | None
) -> None:
    assert apply_failure(errors, conflicts) == expected


# ------------------------------------------------------------------ the status a pass writes
_PARENT = ObjectRef(namespace="ns", name="s", uid="u", generation=3)


def _status(phase: Phase, degraded: ConditionStatus, canary: str | None = None) -> ModelDeploymentStatus:
    return ModelDeploymentStatus(
        phase=phase,
        canary_revision=canary,
        ready_replicas=2,
        conditions=[
            Condition(type="Degraded", status=degraded, reason="r", message="", last_transition_time="t0"),
            Condition(type="Ready", status="True", reason="r", message="", last_transition_time="t0"),
        ],
    )


@pytest.mark.parametrize(
    ("old", "decided", "failure", "phase", "degraded", "since"),
    [
        pytest.param(
            _status(Phase.STABLE, "False"),
            _status(Phase.STABLE, "False"),
            None,
            Phase.STABLE,
            ("False", "r"),
            "t0",
            id="nothing-failed-nothing-moves",
        ),
        pytest.param(
            _status(Phase.STABLE, "False"),
            _status(Phase.STABLE, "False"),
            ("ApplyFailed", "HPA/s: refused"),
            Phase.FAILED,
            ("True", "ApplyFailed"),
            "now",
            id="steady-fails-as-a-whole",
        ),
        pytest.param(
            _status(Phase.PROGRESSING, "False", canary="abc"),
            _status(Phase.PROGRESSING, "False", canary="abc"),
            ("ChildConflict", "Service/s: taken"),
            Phase.PROGRESSING,
            ("True", "ChildConflict"),
            "now",
            id="rollout-keeps-its-step",
        ),
        pytest.param(
            _status(Phase.PROGRESSING, "True", canary="abc"),
            _status(Phase.PROGRESSING, "False", canary="abc").model_copy(
                update={
                    "conditions": [
                        Condition(
                            type="Degraded",
                            status="False",
                            reason="Healthy",
                            message="",
                            last_transition_time="now",
                        )
                    ]
                }
            ),
            ("ApplyFailed", "HTTPRoute/s: refused"),
            Phase.PROGRESSING,
            ("True", "ApplyFailed"),
            "t0",
            id="failing-again-is-no-transition",
        ),
        pytest.param(
            _status(Phase.FAILED, "True", canary="abc"),
            _status(Phase.FAILED, "True", canary="abc"),
            ("ApplyFailed", "HTTPRoute/s: refused"),
            Phase.FAILED,
            ("True", "r"),
            "t0",
            id="a-failed-rollout-keeps-its-reason",
        ),
    ],
)
def test_the_status_a_pass_writes_adds_what_its_writes_could_not_do(
    old: ModelDeploymentStatus,
    decided: ModelDeploymentStatus,
    failure: tuple[str, str] | None,
    phase: Phase,
    degraded: tuple[str, str],
    since: str,
) -> None:
    out = applied_status(old, decided, _PARENT, failure, "now")
    found = find_condition(out.conditions, "Degraded")
    assert found is not None
    assert out.phase == phase
    assert (found.status, found.reason) == degraded
    assert found.last_transition_time == since
