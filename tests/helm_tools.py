"""Run the real helm binary on the chart, and read the RBAC it grants.

The RBAC helpers expand the rendered roles into rules, by where they apply, so that a test can compare
them with what the operator did (tests/test_rbac_proof.py reads that from the API server's audit log):

    manifests = render_chart({"watchNamespaces": ["ml"]})
    assert ("apps", "deployments", "patch") in rules_in_namespace(manifests, "ml")

A rule is the triple (apiGroup, resource, verb), with subresources written "resource/subresource" and
the core group as "", exactly as RBAC spells them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
CHART_DIR = REPO_ROOT / "charts" / "modeldeploy"
TOOLS_BIN = REPO_ROOT / ".tools" / "bin"
RELEASE_NAME = "modeldeploy"
RELEASE_NAMESPACE = "modeldeploy-system"

Rule = tuple[str, str, str]
Manifest = dict[str, Any]


class HelmNotFoundError(RuntimeError):
    """No helm binary: run `make tools` (scripts/install-tools.sh), or set MODELDEPLOY_HELM."""


def find_helm() -> Path | None:
    """The helm to test with: $MODELDEPLOY_HELM, else the project's .tools/bin/helm, else PATH."""
    override = os.environ.get("MODELDEPLOY_HELM")
    if override:
        return Path(override) if Path(override).is_file() else None
    local = TOOLS_BIN / "helm"
    if local.exists():
        return local
    found = shutil.which("helm")
    return Path(found) if found else None


def run_helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run helm with `args`; with check, raise on a non-zero exit with helm's stderr in the message."""
    helm = find_helm()
    if helm is None:
        raise HelmNotFoundError(HelmNotFoundError.__doc__)
    # A private HOME-like config: no user repositories or plugins change what helm does here.
    with tempfile.TemporaryDirectory(prefix="helm-home-") as home:
        env = {
            **os.environ,
            "HELM_CONFIG_HOME": f"{home}/config",
            "HELM_CACHE_HOME": f"{home}/cache",
            "HELM_DATA_HOME": f"{home}/data",
        }
        proc = subprocess.run(
            [str(helm), *args], capture_output=True, text=True, env=env, timeout=120, check=False
        )
    if check and proc.returncode != 0:
        raise RuntimeError(f"helm {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}")
    return proc


def template(
    values: Mapping[str, Any] | None = None,
    *,
    include_crds: bool = False,
    check: bool = True,
    namespace: str = RELEASE_NAMESPACE,
    release: str = RELEASE_NAME,
) -> subprocess.CompletedProcess[str]:
    """`helm template` of the chart with `values` (a values file, so YAML types arrive unchanged)."""
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", prefix="values-") as f:
        yaml.safe_dump(dict(values or {}), f)
        f.flush()
        args = ["template", release, str(CHART_DIR), "--namespace", namespace, "--values", f.name]
        if include_crds:
            args.append("--include-crds")
        return run_helm(*args, check=check)


def render_chart(
    values: Mapping[str, Any] | None = None,
    *,
    include_crds: bool = False,
    release: str = RELEASE_NAME,
    namespace: str = RELEASE_NAMESPACE,
) -> list[Manifest]:
    """Every manifest the chart renders with `values`, parsed, in helm's order."""
    out = template(values, include_crds=include_crds, release=release, namespace=namespace).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def find(manifests: Iterable[Manifest], kind: str, name: str | None = None) -> list[Manifest]:
    """The manifests of `kind` (and `name`, if given)."""
    return [
        m
        for m in manifests
        if m.get("kind") == kind and (name is None or m.get("metadata", {}).get("name") == name)
    ]


def operator_service_account(manifests: Iterable[Manifest]) -> tuple[str, str]:
    """(namespace, name) of the ServiceAccount the operator Deployment runs as."""
    (deployment,) = find(manifests, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    return deployment["metadata"]["namespace"], pod["serviceAccountName"]


def _expand(rules: Iterable[Mapping[str, Any]]) -> set[Rule]:
    out: set[Rule] = set()
    for rule in rules:
        for group in rule.get("apiGroups", []):
            for resource in rule.get("resources", []):
                for verb in rule.get("verbs", []):
                    out.add((group, resource, verb))
    return out


def _binds_operator(binding: Manifest, sa: tuple[str, str]) -> bool:
    return any(
        s.get("kind") == "ServiceAccount" and (s.get("namespace"), s.get("name")) == sa
        for s in binding.get("subjects", [])
    )


def _role_rules(manifests: list[Manifest], binding: Manifest) -> set[Rule]:
    ref = binding["roleRef"]
    if ref["kind"] == "ClusterRole":
        roles = find(manifests, "ClusterRole", ref["name"])
    else:
        namespace = binding["metadata"]["namespace"]
        roles = [r for r in find(manifests, "Role", ref["name"]) if r["metadata"]["namespace"] == namespace]
    if not roles:
        raise ValueError(f"{binding['kind']} {binding['metadata']['name']} refers to a missing {ref}")
    return _expand(roles[0].get("rules", []))


def rbac_rules_by_scope(manifests: Iterable[Manifest]) -> dict[str | None, set[Rule]]:
    """The rules bound to the operator's ServiceAccount, by where they apply.

    Key None: granted cluster-wide (ClusterRoleBindings), which also covers cluster-scoped resources.
    Key "ns": granted by RoleBindings in namespace "ns" only. Roles bound to nobody, such as the
    aggregated edit/view ClusterRoles, grant the operator nothing and are left out.
    """
    manifests = list(manifests)
    sa = operator_service_account(manifests)
    scopes: dict[str | None, set[Rule]] = {None: set()}
    for binding in find(manifests, "ClusterRoleBinding"):
        if _binds_operator(binding, sa):
            scopes[None] |= _role_rules(manifests, binding)
    for binding in find(manifests, "RoleBinding"):
        if _binds_operator(binding, sa):
            namespace = binding["metadata"]["namespace"]
            scopes.setdefault(namespace, set()).update(_role_rules(manifests, binding))
    return scopes


def rbac_rules(manifests: Iterable[Manifest]) -> set[Rule]:
    """Every (apiGroup, resource, verb) the operator is granted anywhere (the union of all scopes)."""
    return set().union(*rbac_rules_by_scope(manifests).values())


def rules_in_namespace(manifests: Iterable[Manifest], namespace: str | None) -> set[Rule]:
    """What the operator may do in `namespace`; None means cluster-wide (and cluster-scoped) requests."""
    scopes = rbac_rules_by_scope(manifests)
    if namespace is None:
        return scopes[None]
    return scopes[None] | scopes.get(namespace, set())


def install_notes(
    values: Mapping[str, Any] | None = None,
    *,
    release: str = RELEASE_NAME,
    namespace: str = RELEASE_NAMESPACE,
) -> str:
    """The chart's NOTES.txt as `helm install` prints it (a client-side dry run: no cluster)."""
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", prefix="values-") as f:
        yaml.safe_dump(dict(values or {}), f)
        f.flush()
        args = ["install", release, str(CHART_DIR), "--dry-run=client", "-n", namespace, "--values", f.name]
        out = run_helm(*args).stdout
    return out.split("\nNOTES:\n", 1)[1]


def notes_rbac_by_scope(notes: str) -> dict[str | None, set[Rule]]:
    """The rules NOTES.txt says the chart granted, by scope as rbac_rules_by_scope() keys them: None for
    "Cluster-wide", else each namespace named in an "In a, b ..." heading. A rule line is
    `<resource>[.<group>][/<subresource>]: <verbs>`, as `kubectl describe role` names resources."""
    section = notes.split("\nRBAC granted to ", 1)[1].split("\nSo the operator may read", 1)[0]
    scopes: dict[str | None, set[Rule]] = {}
    current: list[str | None] = []
    for line in section.splitlines()[2:]:  # the heading's two lines
        if line.startswith("    "):
            head, verbs = line.strip().split(": ", 1)
            verbs = verbs.split(" (only ", 1)[0]
            head, _, sub = head.partition("/")
            resource, _, group = head.partition(".")
            if sub:
                resource = f"{resource}/{sub}"
            for scope in current:
                scopes.setdefault(scope, set()).update((group, resource, v) for v in verbs.split(", "))
        elif line.startswith("  Cluster-wide"):
            current = [None]
        elif line.startswith("  In "):
            names = line.removeprefix("  In ").split(" only,", 1)[0].split(", a Role", 1)[0]
            current = [n.strip() for n in names.split(",")]
        else:
            raise ValueError(f"NOTES.txt: unexpected line in the RBAC section: {line!r}")
    return scopes


def notes_people_rules(notes: str) -> dict[str, set[Rule]]:
    """The rules NOTES.txt says are aggregated into the built-in roles, by heading ("admin and edit",
    "view"); empty when the notes have no such section."""
    if "\nFor people, not the operator" not in notes:
        return {}
    section = notes.split("\nFor people, not the operator", 1)[1].split("\n\n", 1)[0]
    out: dict[str, set[Rule]] = {}
    heading = ""
    for line in section.splitlines()[2:]:
        if line.startswith("    "):
            head, verbs = line.strip().split(": ", 1)
            head, _, sub = head.partition("/")
            resource, _, group = head.partition(".")
            resource = f"{resource}/{sub}" if sub else resource
            out.setdefault(heading, set()).update((group, resource, v) for v in verbs.split(", "))
        else:
            heading = line.strip().rstrip(":")
    return out


def notes_readable_kinds(notes: str) -> list[str]:
    """The kinds NOTES.txt says the operator may read every object of."""
    after = notes.split("\nSo the operator may read", 1)[1].split("\n", 2)[1]
    return [k.strip() for k in after.strip().rstrip(".").split(",")]


def helm_required_in_ci() -> bool:
    """Whether a missing helm must fail the tests rather than skip them (CI sets CI=true)."""
    return os.environ.get("CI", "").lower() in ("true", "1", "yes")


def require_helm() -> Path:
    """The helm binary; a missing one skips on a developer machine and fails under CI=true."""
    import pytest

    path = find_helm()
    if path is None:
        message = "helm not found: run `make tools` (scripts/install-tools.sh)"
        if helm_required_in_ci():
            pytest.fail(message)
        pytest.skip(message)
    return path


def strict_openapi(schema: Any) -> Any:
    """An openAPIV3Schema as the API server applies it with strict field validation: an object schema
    that declares properties rejects unknown ones, unless it preserves unknown fields. Branches of
    allOf/anyOf/oneOf/not only constrain the main schema's fields, so they are left as they are."""
    if not isinstance(schema, dict):
        return schema
    out = dict(schema)
    if "properties" in out:
        out["properties"] = {name: strict_openapi(sub) for name, sub in out["properties"].items()}
        if "additionalProperties" not in out and not out.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
    for key in ("items", "additionalProperties"):
        if isinstance(out.get(key), dict):
            out[key] = strict_openapi(out[key])
    return out


def crd_schema(path: Path, version: str) -> dict[str, Any]:
    """The strict openAPIV3Schema of `version` in the CRD file at `path`."""
    crd = yaml.safe_load(path.read_text())
    (served,) = [v for v in crd["spec"]["versions"] if v["name"] == version]
    schema: dict[str, Any] = strict_openapi(served["schema"]["openAPIV3Schema"])
    # The API server checks ObjectMeta itself: a CRD that bounds metadata.name never makes it strict.
    if "metadata" in schema.get("properties", {}):
        schema["properties"]["metadata"] = served["schema"]["openAPIV3Schema"]["properties"]["metadata"]
    return schema
