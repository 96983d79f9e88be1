"""config.pbtxt from spec.model.config, built with Triton's own schema, and the pod annotation carrying it.

The message is Triton's `inference.ModelConfig` (model_config.proto), from model_config_pb2 beside
this module: a verbatim copy of the module tritonclient ships (tests/test_modelconfig.py checks it
byte for byte). It is a copy, not an import of `tritonclient.grpc.model_config_pb2`, because
importing that runs `tritonclient.grpc`'s package, which loads grpc and the gRPC client: I/O
libraries the pure layers may not import (pyproject's import-linter contracts). The generated
module needs protobuf only, which is data, not I/O.

The rendered file is not the model's whole configuration: the model puller merges it over the
model's own config.pbtxt (runtime-images/model-puller/puller.py, `merge_config`; docs/reference.md).
"""

from __future__ import annotations

from typing import Any

from google.protobuf import text_format

from modeldeploy.api.spec import ModelSource
from modeldeploy.render import model_config_pb2

CONFIG_KEY = "config.pbtxt"
CONFIG_ANNOTATION = "modeldeploy.io/config.pbtxt"
# Read by people looking at the pod template; the text format takes '#' comments.
HEADER = (
    "# Rendered by modeldeploy from spec.model.config. The model puller merges it over the model's\n"
    "# own config.pbtxt: each field below replaces the model's (a list replaces the whole list,\n"
    "# parameters are merged by key), everything else of the model's stays. name, backend and\n"
    "# max_batch_size are always the ModelDeployment's; a max_batch_size not printed is 0.\n"
)


def model_config(model: ModelSource) -> Any | None:
    """The ModelConfig message the ModelDeployment states, or None when it states none."""
    config = model.config
    if config is None:
        return None
    message = model_config_pb2.ModelConfig(
        name=model.name, backend=str(model.backend), max_batch_size=config.max_batch_size
    )
    if config.dynamic_batching is not None:
        batching = config.dynamic_batching
        message.dynamic_batching.SetInParent()  # present even when empty: "batch, with the defaults"
        message.dynamic_batching.preferred_batch_size.extend(batching.preferred_batch_size or [])
        if batching.max_queue_delay_microseconds is not None:
            message.dynamic_batching.max_queue_delay_microseconds = batching.max_queue_delay_microseconds
        if batching.preserve_ordering is not None:
            message.dynamic_batching.preserve_ordering = batching.preserve_ordering
    for group in config.instance_groups:
        message.instance_group.add(
            kind=model_config_pb2.ModelInstanceGroup.Kind.Value(str(group.kind)),
            count=group.count,
            gpus=group.gpus or [],
        )
    for key in sorted(config.parameters):
        message.parameters[key].string_value = config.parameters[key]
    return message


def config_pbtxt(model: ModelSource) -> str | None:
    """The rendered config.pbtxt, or None when the repository's own config is to be used as is."""
    message = model_config(model)
    if message is None:
        return None
    return HEADER + str(text_format.MessageToString(message))


def config_annotation(model: ModelSource) -> dict[str, str]:
    """The pod-template annotation that carries the rendered config.pbtxt, empty when there is none.

    The puller reads it as a file through a downwardAPI volume (render/deployment.py). An annotation,
    not a ConfigMap: the operator then needs no write, list or watch on ConfigMaps, which RBAC could
    only grant on every ConfigMap in scope (docs/security.md, "The ConfigMap read"). The pod template
    holds it per revision, so a canary and the primary each read their own."""
    text = config_pbtxt(model)
    return {} if text is None else {CONFIG_ANNOTATION: text}
