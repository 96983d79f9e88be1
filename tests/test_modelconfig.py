"""config.pbtxt against Triton's own schema: the copies of it, every rendered config, and the merge.

The schema is `inference.ModelConfig` from model_config.proto, as tritonclient ships it compiled
(`tritonclient/grpc/model_config_pb2.py`). The operator's renderer and the model puller each carry
a verbatim copy (importing tritonclient's would load grpc: docs/reference.md says why); the first
tests prove the copies are that file, byte for byte, so an upgrade of tritonclient cannot drift
from them unnoticed.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from google.protobuf import text_format

from modeldeploy.api.spec import DEFAULT_MODELS_SIZE_LIMIT, ModelDeploymentSpec
from modeldeploy.render import model_config_pb2
from modeldeploy.render.deployment import puller_max_bytes
from modeldeploy.render.modelconfig import CONFIG_ANNOTATION, config_pbtxt

ROOT = Path(__file__).resolve().parents[1]
PULLER_DIR = ROOT / "runtime-images" / "model-puller"
GOLDEN = sorted((ROOT / "tests" / "golden").glob("*.yaml"))
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))


def _tritonclient_schema() -> Path:
    spec = importlib.util.find_spec("tritonclient")  # the package only: tritonclient.grpc needs grpcio
    assert spec is not None
    assert spec.submodule_search_locations
    return Path(next(iter(spec.submodule_search_locations))) / "grpc" / "model_config_pb2.py"


def _load_puller() -> ModuleType:
    spec = importlib.util.spec_from_file_location("modeldeploy_model_puller_mc", PULLER_DIR / "puller.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


puller = _load_puller()


@pytest.mark.parametrize(
    "copy",
    [
        pytest.param(ROOT / "operator" / "modeldeploy" / "render" / "model_config_pb2.py", id="renderer"),
        pytest.param(PULLER_DIR / "model_config_pb2.py", id="model-puller"),
    ],
)
def test_schema_copies_are_tritonclients(copy: Path) -> None:
    assert copy.read_bytes() == _tritonclient_schema().read_bytes(), (
        f"{copy} differs from tritonclient's model_config_pb2.py: copy it again after a tritonclient bump"
    )


def _configs(path: Path) -> list[str]:
    """Every rendered config.pbtxt of a golden file: the pod templates' annotation (one per Deployment
    with spec.model.config; the puller reads it as a file)."""
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    return [
        d["spec"]["template"]["metadata"]["annotations"][CONFIG_ANNOTATION]
        for d in docs
        if d["kind"] == "Deployment"
        and CONFIG_ANNOTATION in (d["spec"]["template"]["metadata"].get("annotations") or {})
    ]


def _model_specs() -> list[Any]:
    params = []
    for example in EXAMPLES:
        for doc in yaml.safe_load_all(example.read_text()):
            if (
                doc
                and doc.get("kind") == "ModelDeployment"
                and doc["spec"]["model"].get("config") is not None
            ):
                params.append(pytest.param(doc, id=f"{example.stem}/{doc['metadata']['name']}"))
    return params


@pytest.mark.parametrize("doc", _model_specs())
def test_every_example_renders_a_config_triton_parses(doc: dict[str, Any]) -> None:
    spec = ModelDeploymentSpec.model_validate(doc["spec"])
    text = config_pbtxt(spec.model)
    assert text is not None
    message = text_format.Parse(text, model_config_pb2.ModelConfig())
    assert message.name == spec.model.name
    assert message.backend == spec.model.backend


@pytest.mark.parametrize("path", [pytest.param(p, id=p.stem) for p in GOLDEN])
def test_golden_configs_parse_with_tritons_schema(path: Path) -> None:
    for text in _configs(path):
        text_format.Parse(text, model_config_pb2.ModelConfig())


# A TorchScript model's own configuration, as a repository would carry it beside model.pt.
TORCHSCRIPT_CONFIG = """
name: "recommender"
platform: "pytorch_libtorch"
max_batch_size: 16
input [ { name: "INPUT__0" data_type: TYPE_INT64 dims: [ 50 ] } ]
output [ { name: "OUTPUT__0" data_type: TYPE_FP32 dims: [ 200 ] } ]
model_warmup [ {
  name: "ids" batch_size: 4
  inputs { key: "INPUT__0" value: { data_type: TYPE_INT64 dims: [ 50 ] random_data: true } }
} ]
"""


def test_pytorch_example_merges_over_a_torchscript_models_config() -> None:
    """examples/gateway-canary.yaml's rendered config (golden) over the model's own: Triton can load it."""
    (rendered,) = _configs(ROOT / "tests" / "golden" / "gateway-canary.yaml")
    text, fields = puller.merge_config(TORCHSCRIPT_CONFIG, rendered, "recommender")
    merged = text_format.Parse(text, model_config_pb2.ModelConfig())
    assert (merged.max_batch_size, merged.backend, merged.platform) == (32, "pytorch", "pytorch_libtorch")
    assert [i.name for i in merged.input] == ["INPUT__0"]
    assert [o.name for o in merged.output] == ["OUTPUT__0"]
    assert [w.name for w in merged.model_warmup] == ["ids"]
    assert merged.dynamic_batching.max_queue_delay_microseconds == 1000
    assert fields == ["backend", "dynamic_batching", "instance_group", "max_batch_size", "name"]


def test_puller_default_limit_is_the_renderers_for_the_default_volume() -> None:
    # The operator always passes --max-bytes; the puller's own default matches it for the default volume.
    assert puller_max_bytes(DEFAULT_MODELS_SIZE_LIMIT) == puller.DEFAULT_MAX_BYTES
