"""Where the tests find the real control plane and the upstream CRDs: the same search as
scripts/install-control-plane.py (which `make test` runs first), read from that script so the two
cannot drift. $KUBEBUILDER_ASSETS, else ../shared/k8s/bin, else .tools/k8s/bin; and
$MODELDEPLOY_THIRD_PARTY_CRDS, else ../shared/third-party-crds, else .tools/third-party-crds."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

REPO_ROOT = Path(__file__).resolve().parent.parent
SCRIPT = REPO_ROOT / "scripts" / "install-control-plane.py"


def _load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("install_control_plane", SCRIPT)
    assert spec is not None and spec.loader is not None, SCRIPT
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


setup = _load_script()
CONTROL_PLANE_PART, CRDS_PART = setup.PARTS
KUBERNETES: str = setup.KUBERNETES


def found(part: object) -> Path | None:
    folder: Path | None = setup.locate(part, os.environ)[0]
    return folder


# None when there is no control plane to be had here.
ASSETS = found(CONTROL_PLANE_PART)
# Where the CRDs are, else where they were looked for first (so that a message names it).
THIRD_PARTY_CRDS: Path = found(CRDS_PART) or Path(
    os.environ.get("MODELDEPLOY_THIRD_PARTY_CRDS") or CRDS_PART.shared
)
# The one line a run without a control plane prints, once.
MISSING = (
    f"real API server tier not run: no {', '.join(setup.BINARIES)} (Kubernetes {KUBERNETES}) in"
    f" $KUBEBUILDER_ASSETS, ../shared/k8s/bin or .tools/k8s/bin; {setup.HOW_TO_PROVIDE}"
)
