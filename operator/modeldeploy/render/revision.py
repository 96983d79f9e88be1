"""The revision: a stable hash of everything that changes the pods or the Triton config."""

from __future__ import annotations

import hashlib
import json

from modeldeploy.api.spec import DEFAULT_GPU_RESOURCE, DEFAULT_TMP_SIZE_LIMIT, ModelDeploymentSpec, Volumes


def revision(spec: ModelDeploymentSpec) -> str:
    # Scaling, traffic and rollout settings do not change what a pod runs, so they are left out:
    # editing them must not start a canary. Defaults are included, so that writing a default
    # explicitly yields the same revision as omitting it.
    runtime = spec.runtime.model_dump(mode="json", by_alias=True)
    if spec.runtime.volumes == Volumes():
        # Added in a later release: objects that leave it at its default keep their revision, so
        # an operator upgrade rolls their pods in place rather than starting a canary for each.
        del runtime["volumes"]
    elif spec.runtime.volumes.tmp_size_limit == DEFAULT_TMP_SIZE_LIMIT:
        del runtime["volumes"]["tmpSizeLimit"]  # added later still: the same reason
    material = {
        "model": spec.model.model_dump(mode="json", by_alias=True),
        "runtime": {
            **runtime,
            # Unset means nvidia.com/gpu: writing that out must not start a canary (nor may this
            # normalisation change the revision of objects that leave it unset).
            "gpuResource": None
            if spec.runtime.effective_gpu_resource == DEFAULT_GPU_RESOURCE
            else spec.runtime.gpu_resource,
        },
    }
    encoded = json.dumps(material, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(encoded).hexdigest()[:10]
