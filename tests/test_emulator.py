"""
The Kubernetes API emulator (modeldeploy.sim): pure semantics table-driven, then over real HTTP
with aiohttp, the official ``kubernetes`` client and a real kopf operator.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import kmock
import kopf
import kubernetes
import pytest

from modeldeploy.sim import (
    ApiError,
    ClusterEmulator,
    EmulatorThread,
    FieldSelector,
    LabelSelector,
    patches,
    serve_emulator,
    ssa,
)
from modeldeploy.sim.paths import ApiPath, derive_verb, parse_api_path

APPLY = "application/apply-patch+yaml"
MERGE = "application/merge-patch+json"
SMP = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"

MDEP = "/apis/modeldeploy.io/v1alpha1/namespaces/ml/modeldeployments"
DEPLOY = "/apis/apps/v1/namespaces/ml/deployments"
CMS = "/api/v1/namespaces/ml/configmaps"


def deployment(name: str = "triton", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "ml"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "triton", "image": "tritonserver:25.10"}]},
            },
            **spec,
        },
    }


def mdep(name: str = "fraud", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "modeldeploy.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name, "namespace": "ml"},
        "spec": {"model": {"name": "fraud_scorer", "version": "7"}, **spec},
    }


# --- Pure semantics, table-driven ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        pytest.param("/api/v1/namespaces", ApiPath("", "v1", "namespaces"), id="namespace-list"),
        pytest.param(
            "/api/v1/namespaces/ml", ApiPath("", "v1", "namespaces", name="ml"), id="namespace-object"
        ),
        pytest.param(
            "/api/v1/namespaces/ml/status",
            ApiPath("", "v1", "namespaces", name="ml", subresource="status"),
            id="namespace-status",
        ),
        pytest.param(
            "/api/v1/namespaces/ml/pods", ApiPath("", "v1", "pods", namespace="ml"), id="namespaced-list"
        ),
        pytest.param(
            "/apis/apps/v1/namespaces/ml/deployments/d/scale",
            ApiPath("apps", "v1", "deployments", "ml", "d", "scale"),
            id="namespaced-subresource",
        ),
        pytest.param(
            "/apis/apps/v1/deployments", ApiPath("apps", "v1", "deployments"), id="cluster-wide-list"
        ),
        pytest.param("/apis/apps/v1", ApiPath("apps", "v1"), id="group-version-discovery"),
        pytest.param("/apis/apps", ApiPath("apps"), id="group-discovery"),
        pytest.param("/apis", None, id="root-discovery"),
        pytest.param("/version", None, id="non-api"),
    ],
)
def test_api_path_parsing(path: str, expected: ApiPath | None) -> None:
    assert parse_api_path(path) == expected


@pytest.mark.parametrize(
    ("method", "path", "query", "verb"),
    [
        pytest.param("GET", "/api/v1/namespaces/ml/pods", {}, "list", id="list"),
        pytest.param("GET", "/api/v1/namespaces/ml/pods", {"watch": "true"}, "watch", id="watch"),
        pytest.param("GET", "/api/v1/namespaces/ml/pods/p", {"watch": "1"}, "watch", id="named-watch"),
        pytest.param("GET", "/api/v1/namespaces/ml/pods/p", {}, "get", id="get"),
        pytest.param("POST", "/api/v1/namespaces/ml/pods", {}, "create", id="create"),
        pytest.param("PUT", "/api/v1/namespaces/ml/pods/p", {}, "update", id="update"),
        pytest.param("PATCH", "/api/v1/namespaces/ml/pods/p/status", {}, "patch", id="patch-status"),
        pytest.param("DELETE", "/api/v1/namespaces/ml/pods/p", {}, "delete", id="delete"),
        pytest.param("DELETE", "/api/v1/namespaces/ml/pods", {}, "deletecollection", id="deletecollection"),
        pytest.param("GET", "/apis/apps/v1", {}, None, id="discovery"),
    ],
)
def test_api_verbs(method: str, path: str, query: dict[str, str], verb: str | None) -> None:
    assert derive_verb(method, parse_api_path(path), query) == verb


LABELS = {"app": "triton", "tier": "gpu", "track": "canary", "replicas": "3"}


@pytest.mark.parametrize(
    ("selector", "matches"),
    [
        pytest.param("", True, id="empty-matches-all"),
        pytest.param("app=triton", True, id="equals"),
        pytest.param("app==triton", True, id="double-equals"),
        pytest.param("app=other", False, id="equals-mismatch"),
        pytest.param("app!=other", True, id="not-equals"),
        pytest.param("missing!=x", True, id="not-equals-absent-key"),
        pytest.param("app in (triton, other)", True, id="in"),
        pytest.param("app in (a,b)", False, id="in-mismatch"),
        pytest.param("app notin (a,b)", True, id="notin"),
        pytest.param("missing notin (a)", True, id="notin-absent-key"),
        pytest.param("track notin (canary)", False, id="notin-mismatch"),
        pytest.param("tier", True, id="exists"),
        pytest.param("missing", False, id="exists-absent"),
        pytest.param("!missing", True, id="not-exists"),
        pytest.param("!tier", False, id="not-exists-present"),
        pytest.param("app=triton,tier in (gpu),!missing", True, id="conjunction"),
        pytest.param("app=triton,tier=cpu", False, id="conjunction-one-fails"),
        pytest.param("replicas>2", True, id="greater-than"),
        pytest.param("replicas<2", False, id="less-than"),
    ],
)
def test_label_selector(selector: str, matches: bool) -> None:
    assert LabelSelector.parse(selector).matches(LABELS) is matches


@pytest.mark.parametrize(
    "selector",
    [
        pytest.param("app in (a", id="unbalanced"),
        pytest.param("app=a,,b=c", id="empty-term"),
        pytest.param("app=a b", id="space-in-value"),
        pytest.param("=x", id="no-key"),
        pytest.param("replicas>x", id="non-integer-bound"),
    ],
)
def test_label_selector_syntax_errors(selector: str) -> None:
    with pytest.raises(ApiError) as err:
        LabelSelector.parse(selector)
    assert err.value.code == 400


@pytest.mark.parametrize(
    ("selector", "matches"),
    [
        pytest.param("metadata.name=a", True, id="name"),
        pytest.param("metadata.name==b", False, id="name-mismatch"),
        pytest.param("metadata.namespace!=other", True, id="namespace-not"),
        pytest.param("metadata.name=a,metadata.namespace=ml", True, id="conjunction"),
    ],
)
def test_field_selector(selector: str, matches: bool) -> None:
    obj = {"metadata": {"name": "a", "namespace": "ml"}}
    assert FieldSelector.parse(selector, {"metadata.name", "metadata.namespace"}).matches(obj) is matches


def test_field_selector_rejects_unsupported_fields() -> None:
    with pytest.raises(ApiError, match=r"field label not supported: spec\.replicas"):
        FieldSelector.parse("spec.replicas=1", {"metadata.name"})


@pytest.mark.parametrize(
    ("target", "patch", "expected"),
    [
        # The examples of RFC 7386, appendix A.
        pytest.param({"a": "b"}, {"a": "c"}, {"a": "c"}, id="replace"),
        pytest.param({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}, id="add"),
        pytest.param({"a": "b"}, {"a": None}, {}, id="null-deletes"),
        pytest.param({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}, id="nested"),
        pytest.param({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}, id="lists-replace"),
        pytest.param({"a": "foo"}, {"a": {"b": "c"}}, {"a": {"b": "c"}}, id="scalar-to-map"),
        pytest.param({"e": None}, {"a": 1}, {"e": None, "a": 1}, id="existing-null-kept"),
        pytest.param({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}, id="null-in-new-map"),
    ],
)
def test_merge_patch(target: dict[str, Any], patch: dict[str, Any], expected: dict[str, Any]) -> None:
    before = json.dumps(target)
    assert patches.merge_patch(target, patch) == expected
    assert json.dumps(target) == before  # never mutates


def _pod(*containers: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {"spec": {"containers": list(containers), **spec}}


@pytest.mark.parametrize(
    ("target", "patch", "expected"),
    [
        pytest.param(
            _pod({"name": "a", "image": "1"}, {"name": "b", "image": "1"}),
            _pod({"name": "b", "image": "2"}),
            _pod({"name": "a", "image": "1"}, {"name": "b", "image": "2"}),
            id="containers-merge-by-name",
        ),
        pytest.param(
            _pod({"name": "a"}),
            _pod({"name": "sidecar", "image": "x"}),
            _pod({"name": "a"}, {"name": "sidecar", "image": "x"}),
            id="containers-append-new",
        ),
        pytest.param(
            _pod({"name": "a"}, {"name": "b"}),
            _pod({"name": "a", "$patch": "delete"}),
            _pod({"name": "b"}),
            id="containers-delete-directive",
        ),
        pytest.param(
            _pod({"name": "a", "env": [{"name": "X", "value": "1"}, {"name": "Y", "value": "1"}]}),
            _pod({"name": "a", "env": [{"name": "Y", "value": "2"}]}),
            _pod({"name": "a", "env": [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}]}),
            id="env-by-name",
        ),
        pytest.param(
            _pod({"name": "a", "ports": [{"containerPort": 8000, "name": "http"}]}),
            _pod({"name": "a", "ports": [{"containerPort": 8002, "name": "metrics"}]}),
            _pod(
                {
                    "name": "a",
                    "ports": [
                        {"containerPort": 8000, "name": "http"},
                        {"containerPort": 8002, "name": "metrics"},
                    ],
                }
            ),
            id="container-ports-by-containerPort",
        ),
        pytest.param(
            {"spec": {"ports": [{"port": 8000, "name": "http"}, {"port": 8001, "name": "grpc"}]}},
            {"spec": {"ports": [{"port": 8001, "targetPort": 9001}]}},
            {
                "spec": {
                    "ports": [
                        {"port": 8000, "name": "http"},
                        {"port": 8001, "name": "grpc", "targetPort": 9001},
                    ]
                }
            },
            id="service-ports-by-port",
        ),
        pytest.param(
            _pod(volumes=[{"name": "shm", "emptyDir": {}}]),
            _pod(volumes=[{"name": "models", "emptyDir": {}}]),
            _pod(volumes=[{"name": "shm", "emptyDir": {}}, {"name": "models", "emptyDir": {}}]),
            id="volumes-by-name",
        ),
        pytest.param(
            _pod({"name": "a", "volumeMounts": [{"mountPath": "/dev/shm", "name": "shm"}]}),
            _pod({"name": "a", "volumeMounts": [{"mountPath": "/dev/shm", "name": "shm2"}]}),
            _pod({"name": "a", "volumeMounts": [{"mountPath": "/dev/shm", "name": "shm2"}]}),
            id="volumeMounts-by-mountPath",
        ),
        pytest.param(
            _pod({"name": "a", "args": ["--x", "--y"]}),
            _pod({"name": "a", "args": ["--z"]}),
            _pod({"name": "a", "args": ["--z"]}),
            id="unkeyed-lists-replace",
        ),
        pytest.param(
            _pod({"name": "a"}, {"name": "b"}),
            {"spec": {"containers": [{"name": "c"}, {"$patch": "replace"}]}},
            _pod({"name": "c"}),
            id="list-replace-directive",
        ),
        pytest.param(
            {"metadata": {"finalizers": ["a"]}},
            {"metadata": {"finalizers": ["b", "a"]}},
            {"metadata": {"finalizers": ["a", "b"]}},
            id="finalizers-union",
        ),
        pytest.param(
            {"metadata": {"finalizers": ["a", "b"]}},
            {"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}},
            {"metadata": {"finalizers": ["b"]}},
            id="delete-from-primitive-list",
        ),
        pytest.param(
            {"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}},
            {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}},
            {"spec": {"strategy": {"type": "Recreate"}}},
            id="retain-keys",
        ),
        pytest.param(
            {"spec": {"a": 1, "b": {"c": 2}}},
            {"spec": {"a": None, "b": {"$patch": "replace", "d": 3}}},
            {"spec": {"b": {"d": 3}}},
            id="null-deletes-and-map-replace",
        ),
    ],
)
def test_strategic_merge_patch(
    target: dict[str, Any], patch: dict[str, Any], expected: dict[str, Any]
) -> None:
    assert patches.strategic_merge_patch(target, patch) == expected


@pytest.mark.parametrize(
    ("operations", "expected"),
    [
        pytest.param([{"op": "add", "path": "/spec/b", "value": 2}], {"spec": {"a": [1], "b": 2}}, id="add"),
        pytest.param([{"op": "remove", "path": "/spec/a/0"}], {"spec": {"a": []}}, id="remove"),
        pytest.param([{"op": "replace", "path": "/spec/a", "value": 3}], {"spec": {"a": 3}}, id="replace"),
        pytest.param(
            [{"op": "test", "path": "/spec/a", "value": [1]}, {"op": "add", "path": "/spec/a/-", "value": 2}],
            {"spec": {"a": [1, 2]}},
            id="test-then-append",
        ),
    ],
)
def test_json_patch(operations: list[dict[str, Any]], expected: dict[str, Any]) -> None:
    assert patches.json_patch({"spec": {"a": [1]}}, operations) == expected


@pytest.mark.parametrize(
    ("operations", "code"),
    [
        pytest.param([{"op": "test", "path": "/spec/a", "value": [2]}], 422, id="failed-test"),
        pytest.param([{"op": "remove", "path": "/spec/missing"}], 422, id="missing-path"),
        pytest.param({"op": "add"}, 400, id="not-a-list"),
    ],
)
def test_json_patch_errors(operations: Any, code: int) -> None:
    with pytest.raises(ApiError) as err:
        patches.json_patch({"spec": {"a": [1]}}, operations)
    assert err.value.code == code


def _apply(
    live: dict[str, Any],
    config: dict[str, Any],
    entries: list[ssa.ManagedEntry],
    manager: str,
    force: bool = False,
) -> tuple[dict[str, Any], list[ssa.ManagedEntry]]:
    return ssa.server_side_apply(live, config, entries, manager=manager, api_version="v1", force=force)


@pytest.mark.parametrize(
    ("first", "second", "expected"),
    [
        pytest.param(
            {"data": {"a": "1", "b": "2"}},
            {"data": {"a": "1"}},
            {"data": {"a": "1"}},
            id="omitted-field-removed",
        ),
        pytest.param(
            {"metadata": {"labels": {"x": "1"}}, "data": {"a": "1"}},
            {"data": {"a": "1"}},
            {"metadata": {}, "data": {"a": "1"}},
            id="emptied-map-pruned",
        ),
        pytest.param(
            {"spec": {"containers": [{"name": "a", "image": "1"}, {"name": "b", "image": "1"}]}},
            {"spec": {"containers": [{"name": "b", "image": "2"}]}},
            {"spec": {"containers": [{"name": "b", "image": "2"}]}},
            id="keyed-item-removed",
        ),
        pytest.param(
            {"spec": {"containers": [{"name": "a", "image": "1", "args": ["x"]}]}},
            {"spec": {"containers": [{"name": "a", "image": "1"}]}},
            {"spec": {"containers": [{"name": "a", "image": "1"}]}},
            id="field-of-keyed-item-removed",
        ),
        pytest.param(
            {"spec": {"args": ["a", "b"]}},
            {"spec": {"args": ["c"]}},
            {"spec": {"args": ["c"]}},
            id="atomic-list-replaced",
        ),
    ],
)
def test_server_side_apply_reapply(
    first: dict[str, Any], second: dict[str, Any], expected: dict[str, Any]
) -> None:
    merged, entries = _apply({}, first, [], "op")
    merged, entries = _apply(merged, second, entries, "op")
    assert merged == expected
    assert [entry.fields for entry in entries] == [ssa.field_set(second)]


def test_server_side_apply_keeps_fields_that_another_manager_owns() -> None:
    merged, entries = _apply({}, {"data": {"a": "1", "b": "2"}}, [], "op")
    merged, entries = _apply(merged, {"data": {"b": "2"}}, entries, "other")  # same value: shared
    merged, entries = _apply(merged, {"data": {"a": "1"}}, entries, "op")
    assert merged == {"data": {"a": "1", "b": "2"}}
    assert {e.manager: e.fields for e in entries} == {"op": {("f:data", "f:a")}, "other": {("f:data", "f:b")}}


def test_server_side_apply_conflicts_and_force() -> None:
    merged, entries = _apply({}, {"spec": {"replicas": 2, "image": "x"}}, [], "op")
    with pytest.raises(ApiError) as err:
        _apply(merged, {"spec": {"replicas": 5}}, entries, "hpa")
    assert err.value.code == 409
    assert err.value.details == {
        "causes": [
            {
                "reason": "FieldManagerConflict",
                "message": 'conflict with "op" using v1',
                "field": ".spec.replicas",
            }
        ]
    }
    merged, entries = _apply(merged, {"spec": {"replicas": 5}}, entries, "hpa", force=True)
    assert merged == {"spec": {"replicas": 5, "image": "x"}}
    assert {e.manager: e.fields for e in entries} == {
        "op": {("f:spec", "f:image")},
        "hpa": {("f:spec", "f:replicas")},
    }


def test_update_takes_ownership_from_the_applier() -> None:
    merged, entries = _apply({}, {"data": {"a": "1", "b": "2"}}, [], "op")
    patched = patches.merge_patch(merged, {"data": {"b": "3"}})
    entries = ssa.track_update(entries, merged, patched, manager="kubectl", api_version="v1")
    merged, entries = _apply(patched, {"data": {"a": "1"}}, entries, "op")  # op drops b, but kubectl owns it
    assert merged == {"data": {"a": "1", "b": "3"}}


def test_fields_v1_round_trip() -> None:
    config = {
        "metadata": {"labels": {"a": "b"}},
        "spec": {"containers": [{"name": "c", "ports": [{"containerPort": 1}]}]},
    }
    paths = ssa.field_set(config)
    encoded = ssa.fields_to_v1(paths)
    assert encoded == {
        "f:metadata": {"f:labels": {"f:a": {}}},
        "f:spec": {
            "f:containers": {
                'k:{"name":"c"}': {
                    ".": {},
                    "f:name": {},
                    "f:ports": {'k:{"containerPort":1}': {".": {}, "f:containerPort": {}}},
                }
            }
        },
    }
    assert ssa.fields_from_v1(encoded) == paths


# --- Over HTTP with aiohttp -------------------------------------------------------------------------


@pytest.fixture
def emulator() -> ClusterEmulator:
    emulator = ClusterEmulator()
    emulator.declare_builtin_resources()
    return emulator


@pytest.fixture
async def url(emulator: ClusterEmulator) -> AsyncIterator[str]:
    async with serve_emulator(emulator) as url:
        yield url


@pytest.fixture
async def http(url: str) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(url) as session:
        yield session


async def call(
    http: aiohttp.ClientSession,
    method: str,
    path: str,
    body: Any = None,
    *,
    content_type: str = "application/json",
    **params: str,
) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body)
    headers = {"Content-Type": content_type} if body is not None else {}
    async with http.request(method, path, data=data, headers=headers, params=params) as response:
        return response.status, await response.json()


async def watch(http: aiohttp.ClientSession, path: str, **params: str) -> list[dict[str, Any]]:
    """Read a watch stream until the server ends it (pass timeoutSeconds)."""
    async with http.get(path, params={"watch": "true", **params}) as response:
        assert response.status == 200
        return [json.loads(line) async for line in response.content if line.strip()]


async def test_kmock_defect_on_namespace_list_is_still_present() -> None:
    # When this fails, kmock fixed parse_path(): drop ClusterEmulator.__call__ (see tests/README.md).
    plain = kmock.KubernetesEmulator()
    plain.resources["v1/namespaces"] = kmock.ResourceInfo(
        kind="Namespace", namespaced=False, verbs={"list", "watch"}
    )
    async with (
        plain,
        kmock.Server(plain) as server,
        aiohttp.ClientSession(str(server.url)) as session,
        session.get("/api/v1/namespaces") as response,
    ):
        assert response.status == 500
        assert "ValueError" in await response.text()


async def test_namespaces_are_served(http: aiohttp.ClientSession) -> None:
    assert (await call(http, "POST", "/api/v1/namespaces", {"metadata": {"name": "ml"}}))[0] == 201
    code, listing = await call(http, "GET", "/api/v1/namespaces")
    assert code == 200
    assert [ns["metadata"]["name"] for ns in listing["items"]] == ["ml"]
    assert listing["items"][0]["status"] == {"phase": "Active"}
    code, namespace = await call(http, "GET", "/api/v1/namespaces/ml")
    assert (code, namespace["kind"]) == (200, "Namespace")


async def test_discovery_lists_verbs_and_subresources(http: aiohttp.ClientSession) -> None:
    code, listing = await call(http, "GET", "/apis/apps/v1")
    assert (code, listing["groupVersion"]) == (200, "apps/v1")
    by_name = {entry["name"]: entry for entry in listing["resources"]}
    assert {"list", "watch", "patch"} <= set(by_name["deployments"]["verbs"])
    assert by_name["deployments/scale"]["kind"] == "Scale"
    assert by_name["deployments/status"]["verbs"] == ["get", "patch", "update"]
    code, core = await call(http, "GET", "/api/v1")
    assert core["groupVersion"] == "v1"
    code, crs = await call(http, "GET", "/apis/modeldeploy.io/v1alpha1")
    assert crs["resources"][0]["shortNames"] == ["mdep"]


async def test_unknown_resource_is_404(http: aiohttp.ClientSession) -> None:
    code, status = await call(http, "GET", "/apis/example.com/v1/namespaces/ml/widgets")
    assert (code, status["reason"]) == (404, "NotFound")


async def test_create_get_list_with_selectors(http: aiohttp.ClientSession, emulator: ClusterEmulator) -> None:
    for name, labels in [
        ("a", {"app": "x", "track": "stable"}),
        ("b", {"app": "x", "track": "canary"}),
        ("c", {}),
    ]:
        code, created = await call(http, "POST", CMS, {"metadata": {"name": name, "labels": labels}})
        assert code == 201
    meta = created["metadata"]
    assert meta["uid"]
    assert meta["creationTimestamp"].endswith("Z")
    assert (meta["generation"], meta["resourceVersion"]) == (1, "3")

    code, fetched = await call(http, "GET", f"{CMS}/c")
    assert (code, fetched) == (200, created)

    async def names(**params: str) -> list[str]:
        code, listing = await call(http, "GET", CMS, **params)
        assert code == 200, listing
        assert listing["kind"] == "ConfigMapList"
        assert listing["metadata"]["resourceVersion"] == "3"
        return [item["metadata"]["name"] for item in listing["items"]]

    assert await names() == ["a", "b", "c"]
    assert await names(labelSelector="app=x,track!=canary") == ["a"]
    assert await names(labelSelector="track in (canary, stable)") == ["a", "b"]
    assert await names(labelSelector="!app") == ["c"]
    assert await names(fieldSelector="metadata.name=b") == ["b"]
    assert await names(fieldSelector="metadata.name!=b", labelSelector="app") == ["a"]
    code, error = await call(http, "GET", CMS, labelSelector="app in (x")
    assert (code, error["reason"]) == (400, "BadRequest")
    code, error = await call(http, "GET", CMS, fieldSelector="data.k=v")
    assert code == 400
    assert emulator.get_object("", "v1", "configmaps", "ml", "a") == (await call(http, "GET", f"{CMS}/a"))[1]


async def test_create_conflicts_and_generate_name(http: aiohttp.ClientSession) -> None:
    assert (await call(http, "POST", CMS, {"metadata": {"name": "a"}}))[0] == 201
    code, error = await call(http, "POST", CMS, {"metadata": {"name": "a"}})
    assert (code, error["reason"]) == (409, "AlreadyExists")
    code, generated = await call(
        http, "POST", "/api/v1/namespaces/ml/events", {"metadata": {"generateName": "kopf-"}}
    )
    assert code == 201
    assert generated["metadata"]["name"].startswith("kopf-")
    assert len(generated["metadata"]["name"]) == len("kopf-") + 5
    code, error = await call(http, "POST", CMS, {"metadata": {"name": "Not_Valid"}})
    assert (code, error["reason"]) == (422, "Invalid")
    code, error = await call(http, "POST", CMS, {"metadata": {"name": "x", "labels": {"a": "b/c"}}})
    assert code == 422


async def test_pagination(http: aiohttp.ClientSession) -> None:
    for name in "abcde":
        await call(http, "POST", CMS, {"metadata": {"name": name}})
    seen: list[str] = []
    token = ""
    while True:
        params = {"limit": "2", **({"continue": token} if token else {})}
        _, page = await call(http, "GET", CMS, **params)
        seen += [item["metadata"]["name"] for item in page["items"]]
        token = page["metadata"].get("continue", "")
        if not token:
            break
    assert seen == list("abcde")


async def test_generation_and_resource_version(http: aiohttp.ClientSession) -> None:
    code, obj = await call(http, "POST", MDEP, mdep())
    assert (code, obj["metadata"]["generation"]) == (201, 1)
    rv = int(obj["metadata"]["resourceVersion"])

    _, obj = await call(
        http, "PATCH", f"{MDEP}/fraud", {"metadata": {"labels": {"a": "b"}}}, content_type=MERGE
    )
    assert obj["metadata"]["generation"] == 1  # metadata only
    assert int(obj["metadata"]["resourceVersion"]) > rv

    _, obj = await call(
        http, "PATCH", f"{MDEP}/fraud/status", {"status": {"phase": "Stable"}}, content_type=MERGE
    )
    assert obj["metadata"]["generation"] == 1  # status only

    _, obj = await call(
        http, "PATCH", f"{MDEP}/fraud", {"spec": {"model": {"version": "8"}}}, content_type=MERGE
    )
    assert obj["metadata"]["generation"] == 2

    before = obj["metadata"]["resourceVersion"]
    _, obj = await call(
        http, "PATCH", f"{MDEP}/fraud", {"spec": {"model": {"version": "8"}}}, content_type=MERGE
    )
    assert obj["metadata"]["resourceVersion"] == before  # a no-op patch writes nothing


async def test_status_subresource(http: aiohttp.ClientSession) -> None:
    created = mdep()
    created["status"] = {"phase": "Injected"}
    _, obj = await call(http, "POST", MDEP, created)
    assert "status" not in obj  # ignored on create

    _, obj = await call(
        http, "PATCH", f"{MDEP}/fraud", {"status": {"phase": "X"}, "spec": {"a": 1}}, content_type=MERGE
    )
    assert ("status" not in obj, obj["spec"]["a"]) == (True, 1)

    body = {"status": {"phase": "Stable"}, "spec": {"a": 2}, "metadata": {"labels": {"x": "y"}}}
    _, obj = await call(http, "PATCH", f"{MDEP}/fraud/status", body, content_type=MERGE)
    assert obj["status"] == {"phase": "Stable"}
    assert obj["spec"]["a"] == 1
    assert "labels" not in obj["metadata"]

    obj["status"] = {"phase": "Ignored"}
    obj["spec"]["a"] = 3
    code, replaced = await call(http, "PUT", f"{MDEP}/fraud", obj)
    assert (code, replaced["status"], replaced["spec"]["a"]) == (200, {"phase": "Stable"}, 3)

    replaced["status"] = {"phase": "Failed"}
    replaced["spec"]["a"] = 4
    _, updated = await call(http, "PUT", f"{MDEP}/fraud/status", replaced)
    assert (updated["status"], updated["spec"]["a"]) == ({"phase": "Failed"}, 3)

    code, _ = await call(http, "PATCH", f"{CMS}/x/status", {"status": {}}, content_type=MERGE)
    assert code == 404  # configmaps have no status subresource


async def test_optimistic_concurrency(http: aiohttp.ClientSession) -> None:
    _, obj = await call(http, "POST", DEPLOY, deployment())
    stale = json.loads(json.dumps(obj))
    obj["spec"]["replicas"] = 3
    code, fresh = await call(http, "PUT", f"{DEPLOY}/triton", obj)
    assert (code, fresh["metadata"]["generation"]) == (200, 2)

    stale["spec"]["replicas"] = 4
    code, error = await call(http, "PUT", f"{DEPLOY}/triton", stale)
    assert (code, error["reason"]) == (409, "Conflict")
    assert "the object has been modified" in error["message"]

    patch = {"metadata": {"resourceVersion": stale["metadata"]["resourceVersion"]}, "spec": {"replicas": 5}}
    code, _ = await call(http, "PATCH", f"{DEPLOY}/triton", patch, content_type=MERGE)
    assert code == 409
    patch["metadata"]["resourceVersion"] = fresh["metadata"]["resourceVersion"]
    code, _ = await call(http, "PATCH", f"{DEPLOY}/triton", patch, content_type=MERGE)
    assert code == 200

    # kopf's JSON patches guard with a `test` op on the resourceVersion; a stale one is 422.
    ops = [
        {"op": "test", "path": "/metadata/resourceVersion", "value": "1"},
        {"op": "add", "path": "/spec/paused", "value": True},
    ]
    code, _ = await call(http, "PATCH", f"{DEPLOY}/triton", ops, content_type=JSON_PATCH)
    assert code == 422

    selector = {"spec": {"selector": {"matchLabels": {"app": "other"}}}}
    code, error = await call(http, "PATCH", f"{DEPLOY}/triton", selector, content_type=SMP)
    assert (code, error["message"]) == (422, "spec.selector: Invalid value: field is immutable")


async def test_strategic_merge_patch_only_for_builtins(http: aiohttp.ClientSession) -> None:
    await call(http, "POST", DEPLOY, deployment())
    sidecar = {"spec": {"template": {"spec": {"containers": [{"name": "proxy", "image": "envoy"}]}}}}
    code, obj = await call(http, "PATCH", f"{DEPLOY}/triton", sidecar, content_type=SMP)
    assert code == 200
    assert [c["name"] for c in obj["spec"]["template"]["spec"]["containers"]] == ["triton", "proxy"]

    await call(http, "POST", MDEP, mdep())
    code, error = await call(http, "PATCH", f"{MDEP}/fraud", {"spec": {"a": 1}}, content_type=SMP)
    assert (code, error["reason"]) == (415, "UnsupportedMediaType")


async def test_server_side_apply(http: aiohttp.ClientSession, emulator: ClusterEmulator) -> None:
    config = deployment()
    config["metadata"]["labels"] = {"team": "ml"}
    code, error = await call(http, "PATCH", f"{DEPLOY}/triton", config, content_type=APPLY)
    assert (code, error["reason"]) == (400, "BadRequest")  # no fieldManager

    code, obj = await call(
        http, "PATCH", f"{DEPLOY}/triton", config, content_type=APPLY, fieldManager="modeldeploy"
    )
    assert code == 201
    [entry] = obj["metadata"]["managedFields"]
    assert (entry["manager"], entry["operation"]) == ("modeldeploy", "Apply")
    assert entry["fieldsV1"]["f:metadata"] == {"f:labels": {"f:team": {}}}

    # Re-applying the same configuration is a no-op: same resourceVersion, no write, no event.
    mark = emulator.log_position()
    _, again = await call(
        http, "PATCH", f"{DEPLOY}/triton", config, content_type=APPLY, fieldManager="modeldeploy"
    )
    assert again == obj
    events = await watch(
        http, DEPLOY, resourceVersion=obj["metadata"]["resourceVersion"], timeoutSeconds="0.05"
    )
    assert events == []
    assert [r.verb for r in emulator.write_requests(since=mark)] == ["patch"]

    # A YAML body, omitting the label: the applier owned it alone, so it goes.
    yaml_config = (
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: triton}\n"
        "spec:\n  replicas: 2\n  selector: {matchLabels: {app: triton}}\n"
        "  template:\n    metadata: {labels: {app: triton}}\n"
        "    spec: {containers: [{name: triton, image: 'tritonserver:25.10'}]}\n"
    )
    async with http.patch(
        f"{DEPLOY}/triton",
        data=yaml_config,
        headers={"Content-Type": APPLY},
        params={"fieldManager": "modeldeploy"},
    ) as response:
        assert response.status == 200
        obj = await response.json()
    assert "labels" not in obj["metadata"]
    assert obj["metadata"]["generation"] == 1  # metadata only

    # Another manager changing an owned field conflicts, unless it forces; then ownership moves.
    hpa = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "triton"},
        "spec": {"replicas": 5},
    }
    code, error = await call(http, "PATCH", f"{DEPLOY}/triton", hpa, content_type=APPLY, fieldManager="hpa")
    assert (code, error["reason"]) == (409, "Conflict")
    assert error["details"]["causes"][0]["field"] == ".spec.replicas"
    code, obj = await call(
        http, "PATCH", f"{DEPLOY}/triton", hpa, content_type=APPLY, fieldManager="hpa", force="true"
    )
    assert (code, obj["spec"]["replicas"], obj["metadata"]["generation"]) == (200, 5, 2)
    managers = {entry["manager"]: entry["fieldsV1"] for entry in obj["metadata"]["managedFields"]}
    assert "f:replicas" not in managers["modeldeploy"]["f:spec"]

    # The status subresource: applying status leaves the spec alone and vice versa.
    status = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "triton"},
        "status": {"replicas": 5},
    }
    code, obj = await call(
        http, "PATCH", f"{DEPLOY}/triton/status", status, content_type=APPLY, fieldManager="kcm"
    )
    assert (code, obj["status"], obj["metadata"]["generation"]) == (200, {"replicas": 5}, 2)
    subresources = {entry["manager"]: entry.get("subresource") for entry in obj["metadata"]["managedFields"]}
    assert subresources["kcm"] == "status"


async def test_scale_subresource(http: aiohttp.ClientSession) -> None:
    await call(http, "POST", DEPLOY, deployment())
    code, scale = await call(http, "GET", f"{DEPLOY}/triton/scale")
    assert (code, scale["spec"], scale["status"]["selector"]) == (200, {"replicas": 2}, "app=triton")
    code, scale = await call(
        http, "PATCH", f"{DEPLOY}/triton/scale", {"spec": {"replicas": 4}}, content_type=MERGE
    )
    assert (code, scale["spec"]["replicas"]) == (200, 4)
    _, obj = await call(http, "GET", f"{DEPLOY}/triton")
    assert (obj["spec"]["replicas"], obj["metadata"]["generation"]) == (4, 2)


async def test_garbage_collection_cascades(http: aiohttp.ClientSession, emulator: ClusterEmulator) -> None:
    _, owner = await call(http, "POST", MDEP, mdep())

    def ref(obj: dict[str, Any]) -> list[dict[str, Any]]:
        meta = obj["metadata"]
        return [
            {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": meta["name"], "uid": meta["uid"]}
        ]

    child = deployment()
    child["metadata"]["ownerReferences"] = ref(owner)
    _, child = await call(http, "POST", DEPLOY, child)
    await call(http, "POST", CMS, {"metadata": {"name": "config", "ownerReferences": ref(child)}})
    await call(http, "POST", CMS, {"metadata": {"name": "bystander"}})
    held = {
        "metadata": {"name": "held", "ownerReferences": ref(owner), "finalizers": ["example.com/cleanup"]}
    }
    _, held = await call(http, "POST", CMS, held)
    since = owner["metadata"]["resourceVersion"]

    code, status = await call(http, "DELETE", f"{MDEP}/fraud")
    assert (code, status["status"]) == (200, "Success")
    for _ in range(100):
        if emulator.get_object("", "v1", "configmaps", "ml", "config") is None:
            break
        await asyncio.sleep(0.01)
    assert emulator.get_object("apps", "v1", "deployments", "ml", "triton") is None
    assert emulator.get_object("", "v1", "configmaps", "ml", "config") is None
    assert emulator.get_object("", "v1", "configmaps", "ml", "bystander") is not None
    held_now = emulator.get_object("", "v1", "configmaps", "ml", "held")
    assert held_now is not None
    assert held_now["metadata"]["deletionTimestamp"]

    events = await watch(http, CMS, resourceVersion=since, timeoutSeconds="0.05")
    seen = [(e["type"], e["object"]["metadata"]["name"]) for e in events]
    assert seen[:3] == [("ADDED", "config"), ("ADDED", "bystander"), ("ADDED", "held")]
    assert sorted(seen[3:]) == [("DELETED", "config"), ("MODIFIED", "held")]  # GC order is unspecified

    # Removing the finalizer completes the deletion.
    patch = {"metadata": {"finalizers": None}}
    code, _ = await call(http, "PATCH", f"{CMS}/held", patch, content_type=MERGE)
    assert code == 200
    assert emulator.get_object("", "v1", "configmaps", "ml", "held") is None


async def test_orphan_propagation_keeps_dependents(
    http: aiohttp.ClientSession, emulator: ClusterEmulator
) -> None:
    _, owner = await call(http, "POST", CMS, {"metadata": {"name": "owner"}})
    ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner["metadata"]["uid"]}
    await call(http, "POST", CMS, {"metadata": {"name": "child", "ownerReferences": [ref]}})
    await call(http, "DELETE", f"{CMS}/owner", {"propagationPolicy": "Orphan"})
    await asyncio.sleep(0.01)
    child = emulator.get_object("", "v1", "configmaps", "ml", "child")
    assert child is not None
    assert "ownerReferences" not in child["metadata"]


async def test_dangling_owner_references_are_collected(
    http: aiohttp.ClientSession, emulator: ClusterEmulator
) -> None:
    _, owner = await call(http, "POST", CMS, {"metadata": {"name": "owner"}})
    live = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner["metadata"]["uid"]}
    gone = {"apiVersion": "v1", "kind": "ConfigMap", "name": "gone", "uid": "00000000-dead"}
    # A controller re-creating a child after its owner went: the GC deletes it again.
    await call(http, "POST", CMS, {"metadata": {"name": "orphan", "ownerReferences": [gone]}})
    await call(http, "POST", CMS, {"metadata": {"name": "mixed", "ownerReferences": [live, gone]}})
    for _ in range(100):
        if emulator.get_object("", "v1", "configmaps", "ml", "orphan") is None:
            break
        await asyncio.sleep(0.01)
    assert emulator.get_object("", "v1", "configmaps", "ml", "orphan") is None
    mixed = emulator.get_object("", "v1", "configmaps", "ml", "mixed")
    assert mixed is not None
    assert mixed["metadata"]["ownerReferences"] == [live]


async def test_watch_timeout_resume_and_gone(http: aiohttp.ClientSession, emulator: ClusterEmulator) -> None:
    emulator.watch_history = 3
    _, first = await call(http, "POST", CMS, {"metadata": {"name": "a"}})
    loop = asyncio.get_running_loop()
    started = loop.time()
    events = await watch(http, CMS, timeoutSeconds="0.2")
    assert 0.15 < loop.time() - started < 2
    assert [e["type"] for e in events] == ["ADDED"]  # the initial state, then the stream ends

    rv = first["metadata"]["resourceVersion"]
    await call(http, "POST", CMS, {"metadata": {"name": "b"}})
    await call(http, "PATCH", f"{CMS}/b", {"data": {"k": "v"}}, content_type=MERGE)
    events = await watch(http, CMS, resourceVersion=rv, timeoutSeconds="0.05")
    assert [(e["type"], e["object"]["metadata"]["resourceVersion"]) for e in events] == [
        ("ADDED", "2"),
        ("MODIFIED", "3"),
    ]

    for name in "cde":
        await call(http, "POST", CMS, {"metadata": {"name": name}})
    [error] = await watch(http, CMS, resourceVersion=rv, timeoutSeconds="1")
    assert (error["type"], error["object"]["code"], error["object"]["reason"]) == ("ERROR", 410, "Expired")


async def test_watch_with_selector_sees_objects_enter_and_leave(http: aiohttp.ClientSession) -> None:
    async with http.get(
        CMS, params={"watch": "true", "labelSelector": "track=canary", "timeoutSeconds": "5"}
    ) as stream:
        await call(http, "POST", CMS, {"metadata": {"name": "a", "labels": {"track": "stable"}}})
        for track in ("canary", "stable"):
            patch = {"metadata": {"labels": {"track": track}}}
            await call(http, "PATCH", f"{CMS}/a", patch, content_type=MERGE)
        seen = [json.loads(await stream.content.readline()) for _ in range(2)]
    assert [e["type"] for e in seen] == ["ADDED", "DELETED"]


async def test_watch_initial_events_and_bookmarks(
    http: aiohttp.ClientSession, emulator: ClusterEmulator
) -> None:
    emulator.bookmark_interval = 0.05
    await call(http, "POST", CMS, {"metadata": {"name": "a"}})
    events = await watch(
        http, CMS, sendInitialEvents="true", allowWatchBookmarks="true", timeoutSeconds="0.12"
    )
    assert [e["type"] for e in events][:2] == ["ADDED", "BOOKMARK"]
    assert events[1]["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}
    assert events[-1]["type"] == "BOOKMARK"


async def test_mark_deployment_ready_notifies_watchers(
    http: aiohttp.ClientSession, emulator: ClusterEmulator
) -> None:
    _, obj = await call(http, "POST", DEPLOY, deployment())
    ready = emulator.mark_deployment_ready("ml", "triton")
    assert ready["status"]["readyReplicas"] == ready["status"]["availableReplicas"] == 2
    assert ready["status"]["observedGeneration"] == 1
    assert [c["type"] for c in ready["status"]["conditions"]] == ["Available", "Progressing"]
    events = await watch(
        http, DEPLOY, resourceVersion=obj["metadata"]["resourceVersion"], timeoutSeconds="0.05"
    )
    assert [(e["type"], e["object"]["status"]["readyReplicas"]) for e in events] == [("MODIFIED", 2)]


async def test_dry_run_and_delete_collection(http: aiohttp.ClientSession, emulator: ClusterEmulator) -> None:
    code, obj = await call(http, "POST", CMS, {"metadata": {"name": "a", "labels": {"x": "1"}}}, dryRun="All")
    assert (code, obj["metadata"]["name"]) == (201, "a")
    assert emulator.get_object("", "v1", "configmaps", "ml", "a") is None
    for name, labels in [("a", {"x": "1"}), ("b", {"x": "1"}), ("c", {})]:
        await call(http, "POST", CMS, {"metadata": {"name": name, "labels": labels}})
    code, deleted = await call(http, "DELETE", CMS, labelSelector="x=1")
    assert [item["metadata"]["name"] for item in deleted["items"]] == ["a", "b"]
    assert [o["metadata"]["name"] for o in emulator.list_objects("", "v1", "configmaps", "ml")] == ["c"]


async def test_namespace_deletion_empties_it(http: aiohttp.ClientSession, emulator: ClusterEmulator) -> None:
    await call(http, "POST", "/api/v1/namespaces", {"metadata": {"name": "ml"}})
    await call(http, "POST", CMS, {"metadata": {"name": "a"}})
    code, namespace = await call(http, "DELETE", "/api/v1/namespaces/ml")
    assert (code, namespace["status"]["phase"]) == (200, "Terminating")
    for _ in range(100):
        if emulator.get_object("", "v1", "namespaces", None, "ml") is None:
            break
        await asyncio.sleep(0.01)
    assert emulator.get_object("", "v1", "namespaces", None, "ml") is None
    assert emulator.list_objects("", "v1", "configmaps") == []


async def test_request_log_and_api_verbs(http: aiohttp.ClientSession, emulator: ClusterEmulator) -> None:
    mark = emulator.log_position()
    await call(http, "GET", "/apis/apps/v1")
    await call(http, "POST", DEPLOY, deployment())
    await call(
        http, "PATCH", f"{DEPLOY}/triton", deployment(), content_type=APPLY, fieldManager="modeldeploy"
    )
    await call(http, "PATCH", f"{DEPLOY}/triton/status", {"status": {"replicas": 1}}, content_type=MERGE)
    await call(http, "GET", f"{DEPLOY}/triton")
    await watch(http, DEPLOY, timeoutSeconds="0.01")
    assert emulator.api_verbs(since=mark) == {
        ("apps", "deployments", "create"),
        ("apps", "deployments", "patch"),
        ("apps", "deployments/status", "patch"),
        ("apps", "deployments", "get"),
        ("apps", "deployments", "watch"),
    }
    writes = emulator.write_requests(since=mark)
    assert [(w.verb, w.content_type, w.field_manager, w.status) for w in writes] == [
        ("create", "application/json", None, 201),
        ("patch", APPLY, "modeldeploy", 200),
        ("patch", MERGE, None, 200),
    ]
    assert (writes[0].namespace, writes[2].subresource) == ("ml", "status")
    assert (emulator.request_log[-1].verb, emulator.request_log[-1].status) == ("watch", 200)


async def test_kmock_reactions_still_take_precedence(
    http: aiohttp.ClientSession, emulator: ClusterEmulator
) -> None:
    emulator["patch", kmock.resource("apps", "v1", "deployments")] << 503
    await call(http, "POST", DEPLOY, deployment())
    async with http.patch(f"{DEPLOY}/triton", json={}, headers={"Content-Type": MERGE}) as response:
        assert response.status == 503


def test_direct_helpers_without_a_server() -> None:
    emulator = ClusterEmulator()
    emulator.declare_builtin_resources()
    seeded = emulator.put_object({**deployment(), "status": {"replicas": 2}})
    assert (seeded["status"], seeded["metadata"]["generation"]) == (
        {"replicas": 2},
        1,
    )  # seeding keeps status
    owner_ref = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "triton",
        "uid": seeded["metadata"]["uid"],
    }
    emulator.put_object(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "c", "namespace": "ml", "ownerReferences": [owner_ref]},
        }
    )

    patched = emulator.patch_object("apps", "v1", "deployments", "ml", "triton", {"spec": {"replicas": 3}})
    assert (patched["spec"]["replicas"], patched["status"], patched["metadata"]["generation"]) == (
        3,
        {"replicas": 2},
        2,
    )
    ready = emulator.mark_deployment_ready("ml", "triton")
    assert (ready["status"]["readyReplicas"], ready["status"]["observedGeneration"]) == (3, 2)
    rv = emulator.resource_version
    assert emulator.mark_deployment_ready("ml", "triton") == ready  # already so: no write
    assert emulator.resource_version == rv

    emulator.delete_object("apps", "v1", "deployments", "ml", "triton")
    assert emulator.get_object("apps", "v1", "deployments", "ml", "triton") is None
    assert emulator.get_object("", "v1", "configmaps", "ml", "c") is None  # collected synchronously offline
    assert emulator.objects["apps/v1/deployments", "ml", "triton"].history[0]["spec"]["replicas"] == 2
    with pytest.raises(KeyError, match="not declared"):
        emulator.put_object({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}})


# --- With the official kubernetes client (sync, in a thread) ------------------------------------------


@pytest.fixture
def threaded_url() -> Iterator[tuple[ClusterEmulator, str]]:
    emulator = ClusterEmulator()
    emulator.declare_builtin_resources()
    with EmulatorThread(emulator) as server:
        yield emulator, server.url


def test_official_kubernetes_client(threaded_url: tuple[ClusterEmulator, str]) -> None:
    emulator, url = threaded_url
    from kubernetes.client import ApiClient, AppsV1Api, Configuration, CoreV1Api, CustomObjectsApi
    from kubernetes.client.exceptions import ApiException

    with ApiClient(Configuration(host=url)) as client:
        core, apps, custom = CoreV1Api(client), AppsV1Api(client), CustomObjectsApi(client)
        core.create_namespace({"metadata": {"name": "ml"}})
        assert [ns.metadata.name for ns in core.list_namespace().items] == ["ml"]

        core.create_namespaced_config_map("ml", {"metadata": {"name": "a", "labels": {"app": "x"}}})
        core.create_namespaced_config_map("ml", {"metadata": {"name": "b"}})
        listed = core.list_namespaced_config_map("ml", label_selector="app=x")
        assert [cm.metadata.name for cm in listed.items] == ["a"]
        assert listed.metadata.resource_version == str(emulator.resource_version)

        # Server-side apply: create, then re-apply without a field, then a no-op.
        config = deployment()
        config["spec"]["template"]["spec"]["containers"][0]["args"] = ["--strict-readiness=true"]
        created = apps.patch_namespaced_deployment(
            "triton", "ml", config, field_manager="modeldeploy", _content_type=APPLY
        )
        del config["spec"]["template"]["spec"]["containers"][0]["args"]
        reapplied = apps.patch_namespaced_deployment(
            "triton", "ml", config, field_manager="modeldeploy", _content_type=APPLY
        )
        assert reapplied.spec.template.spec.containers[0].args is None
        assert reapplied.metadata.generation == created.metadata.generation + 1
        noop = apps.patch_namespaced_deployment(
            "triton", "ml", config, field_manager="modeldeploy", _content_type=APPLY
        )
        assert noop.metadata.resource_version == reapplied.metadata.resource_version

        # A dict body defaults to a strategic merge patch in this client.
        patched = apps.patch_namespaced_deployment("triton", "ml", {"spec": {"replicas": 3}})
        assert patched.spec.replicas == 3

        # Status subresource and optimistic concurrency.
        status = apps.patch_namespaced_deployment_status(
            "triton", "ml", {"status": {"replicas": 3}}, _content_type=MERGE
        )
        assert (status.status.replicas, status.metadata.generation) == (3, patched.metadata.generation)
        with pytest.raises(ApiException) as err:
            apps.replace_namespaced_deployment("triton", "ml", client.sanitize_for_serialization(created))
        assert err.value.status == 409

        # Custom resources, and a watch that the server ends after timeoutSeconds.
        custom.create_namespaced_custom_object("modeldeploy.io", "v1alpha1", "ml", "modeldeployments", mdep())
        events = list(
            kubernetes.watch.Watch().stream(
                custom.list_namespaced_custom_object,
                "modeldeploy.io",
                "v1alpha1",
                "ml",
                "modeldeployments",
                timeout_seconds=1,
            )
        )
        assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("ADDED", "fraud")]

        # Garbage collection: the configmap owned by the deployment goes with it.
        owner = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "triton", "uid": created.metadata.uid}
        core.create_namespaced_config_map("ml", {"metadata": {"name": "owned", "ownerReferences": [owner]}})
        apps.delete_namespaced_deployment("triton", "ml")
        for _ in range(100):
            if emulator.get_object("", "v1", "configmaps", "ml", "owned") is None:
                break
            time.sleep(0.01)
        assert emulator.get_object("", "v1", "configmaps", "ml", "owned") is None
        with pytest.raises(ApiException) as err:
            core.read_namespaced_config_map("owned", "ml")
        assert err.value.status == 404


# --- A real kopf operator -----------------------------------------------------------------------------


async def test_real_kopf_operator_starts_its_watchers(url: str, emulator: ClusterEmulator) -> None:
    registry = kopf.OperatorRegistry()

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return kopf.ConnectionInfo(server=url, default_namespace="default")

    @kopf.on.event("modeldeploy.io", "v1alpha1", "modeldeployments", registry=registry)
    def observe(body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
        patch.status["observedGeneration"] = body["metadata"]["generation"]

    emulator.put_object(mdep())
    stop, ready = asyncio.Event(), asyncio.Event()
    operator = asyncio.create_task(
        kopf.operator(registry=registry, clusterwide=True, standalone=True, stop_flag=stop, ready_flag=ready)
    )
    try:
        await asyncio.wait_for(ready.wait(), timeout=5)
        for _ in range(200):
            obj = emulator.get_object("modeldeploy.io", "v1alpha1", "modeldeployments", "ml", "fraud")
            if obj and obj.get("status", {}).get("observedGeneration") == 1:
                break
            await asyncio.sleep(0.02)
        else:
            pytest.fail("kopf never patched the status")

        # A spec change reaches the running watcher, and the status follows the new generation.
        patch = {"spec": {"model": {"version": "8"}}}
        emulator.patch_object("modeldeploy.io", "v1alpha1", "modeldeployments", "ml", "fraud", patch)
        for _ in range(200):
            obj = emulator.get_object("modeldeploy.io", "v1alpha1", "modeldeployments", "ml", "fraud")
            if obj and obj.get("status", {}).get("observedGeneration") == 2:
                break
            await asyncio.sleep(0.02)
        else:
            pytest.fail("kopf did not see the spec change")
    finally:
        stop.set()
        await asyncio.wait_for(operator, timeout=10)

    verbs = emulator.api_verbs()
    assert ("modeldeploy.io", "modeldeployments", "watch") in verbs
    assert ("apiextensions.k8s.io", "customresourcedefinitions", "watch") in verbs
    assert ("modeldeploy.io", "modeldeployments/status", "patch") in verbs
    assert not emulator.errors
