"""config.pbtxt (protobuf text format) from spec.model.config, and the ConfigMap carrying it."""

from __future__ import annotations

import json
from typing import Any

from modeldeploy.api.resource import ObjectRef
from modeldeploy.api.spec import ModelSource
from modeldeploy.render.names import REVISION_LABEL, metadata

CONFIG_KEY = "config.pbtxt"


def _quote(value: str) -> str:
    # Protobuf text format string literals accept JSON's escaping.
    return json.dumps(value)


def config_pbtxt(model: ModelSource) -> str | None:
    """The rendered config.pbtxt, or None when the repository's own config is to be used."""
    config = model.config
    if config is None:
        return None
    lines = [
        f"name: {_quote(model.name)}",
        f"backend: {_quote(model.backend)}",
        f"max_batch_size: {config.max_batch_size}",
    ]
    if config.dynamic_batching is not None:
        batching = config.dynamic_batching
        lines.append("dynamic_batching {")
        if batching.preferred_batch_size:
            lines.append(f"  preferred_batch_size: [ {', '.join(map(str, batching.preferred_batch_size))} ]")
        if batching.max_queue_delay_microseconds is not None:
            lines.append(f"  max_queue_delay_microseconds: {batching.max_queue_delay_microseconds}")
        if batching.preserve_ordering is not None:
            lines.append(f"  preserve_ordering: {str(batching.preserve_ordering).lower()}")
        lines.append("}")
    for group in config.instance_groups:
        lines.append("instance_group {")
        lines.append(f"  kind: {group.kind}")
        lines.append(f"  count: {group.count}")
        if group.gpus:
            lines.append(f"  gpus: [ {', '.join(map(str, group.gpus))} ]")
        lines.append("}")
    for key in sorted(config.parameters):
        lines.append(
            f"parameters {{ key: {_quote(key)} value: {{ string_value: {_quote(config.parameters[key])} }} }}"
        )
    return "\n".join(lines) + "\n"


def config_map_name(parent: ObjectRef, revision: str) -> str:
    return f"{parent.name}-config-{revision}"


def config_map(parent: ObjectRef, model: ModelSource, revision: str) -> dict[str, Any] | None:
    text = config_pbtxt(model)
    if text is None:
        return None
    # One immutable ConfigMap per revision: the primary keeps reading its own config while a canary
    # of the next revision runs beside it.
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(parent, config_map_name(parent, revision), {REVISION_LABEL: revision}),
        "immutable": True,
        "data": {CONFIG_KEY: text},
    }
