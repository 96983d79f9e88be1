"""The Argo CD health check for ModelDeployments (charts/modeldeploy/argocd/health.lua), run by lupa
with Lua 5.1 semantics and the libraries Argo CD's gopher-lua VM opens, against the cases in
tests/fixtures/argocd/health_test.yaml (Argo CD's own health_test.yaml convention).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from helm_tools import CHART_DIR, crd_schema

try:
    from lupa.lua51 import LuaError, LuaRuntime
except ImportError:  # a lupa built without the bundled Lua 5.1: its default runtime
    from lupa import LuaError, LuaRuntime

ARGOCD_DIR = CHART_DIR / "argocd"
CHART_CRD = CHART_DIR / "crds" / "modeldeploy.io_modeldeployments.yaml"
HEALTH_LUA = ARGOCD_DIR / "health.lua"
CM_SNIPPET = ARGOCD_DIR / "argocd-cm-snippet.yaml"
CM_KEY = "resource.customizations.health.modeldeploy.io_ModelDeployment"
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "argocd"
# The statuses Argo CD accepts from a health script (anything else becomes Unknown with an error).
ARGO_STATUSES = {"Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"}

# Argo CD's VM opens only these libraries (util/lua/lua.go: package, base, table, and a safe os with
# time and date); string, math, io, debug and coroutine are absent, and so are string methods.
SANDBOX = """
string, math, io, debug, coroutine = nil, nil, nil, nil, nil
local mt = getmetatable("")
if mt then mt.__index = nil end
os = {time = os.time, date = os.date}
"""


def health_cases() -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = yaml.safe_load((FIXTURES / "health_test.yaml").read_text())["tests"]
    return cases


def case_id(case: dict[str, Any]) -> str:
    return Path(case["inputPath"]).stem


def run_health(script: str, obj: dict[str, Any]) -> dict[str, Any]:
    """Run a health script on `obj` the way Argo CD does: `obj` as a global, a table returned."""
    lua = LuaRuntime(unpack_returned_tuples=True)
    lua.execute(SANDBOX)
    lua.globals().obj = lua.table_from(obj, recursive=True)
    result = lua.execute(script)
    return {key: result[key] for key in result}


@pytest.mark.parametrize("case", health_cases(), ids=case_id)
def test_health(case: dict[str, Any]) -> None:
    obj = yaml.safe_load((FIXTURES / case["inputPath"]).read_text())
    assert run_health(HEALTH_LUA.read_text(), obj) == case["healthStatus"]


def test_every_status_is_exercised() -> None:
    statuses = {case["healthStatus"]["status"] for case in health_cases()}
    assert statuses == ARGO_STATUSES
    assert statuses <= ARGO_STATUSES


def test_every_fixture_is_a_case() -> None:
    referenced = {case["inputPath"] for case in health_cases()}
    on_disk = {f"testdata/{p.name}" for p in (FIXTURES / "testdata").glob("*.yaml")}
    assert referenced == on_disk
    assert len(referenced) == len(health_cases()), "a fixture is listed twice"


def test_argocd_cm_snippet_embeds_exactly_health_lua() -> None:
    snippet = yaml.safe_load(CM_SNIPPET.read_text())
    assert (snippet["apiVersion"], snippet["kind"]) == ("v1", "ConfigMap")
    assert snippet["metadata"]["name"] == "argocd-cm"
    assert list(snippet["data"]) == [CM_KEY]
    assert snippet["data"][CM_KEY] == HEALTH_LUA.read_text()


def test_sandbox_matches_argocd() -> None:
    """The sandbox must really lack what Argo CD lacks, or a script using it would pass here and fail
    in Argo CD."""
    for script in ('return string.format("%d", 1)', 'return ("x"):upper()', "return math.floor(1.5)"):
        with pytest.raises(LuaError):
            run_health(script, {})
    assert run_health('return {status = tostring(#"ab") .. "x"}', {}) == {"status": "2x"}


def test_lua_is_5_1() -> None:
    lua = LuaRuntime()
    assert lua.eval("_VERSION") == "Lua 5.1"


@pytest.mark.parametrize("case", health_cases(), ids=case_id)
def test_fixture_is_a_valid_modeldeployment(case: dict[str, Any]) -> None:
    """Each input is what the operator really writes: valid against the chart's CRD. The exception is
    the unknown-phase case, which stands for a newer operator and must differ in status.phase only."""
    obj = yaml.safe_load((FIXTURES / case["inputPath"]).read_text())
    assert (obj["apiVersion"], obj["kind"]) == ("modeldeploy.io/v1alpha1", "ModelDeployment")
    validator = jsonschema.Draft7Validator(crd_schema(CHART_CRD, "v1alpha1"))
    errors = [list(e.absolute_path) for e in validator.iter_errors(obj)]
    expected = [["status", "phase"]] if case_id(case) == "unknown-phase" else []
    assert errors == expected
