"""The fallback when no traffic router is configured: one Service `<name>` selects both tracks,
and the split is realised by pod counts, which the rollout computes. There is nothing to route,
so there are no objects."""

from __future__ import annotations

from typing import Any

from modeldeploy.api.resource import ObjectRef
from modeldeploy.api.spec import ModelDeploymentSpec
from modeldeploy.routing.base import Split, check_supported


class ReplicaRatioRouter:
    name = "replicaRatio"
    kinds: tuple[tuple[str, str], ...] = ()
    supports_mirror = False
    supports_match = False

    def routes(self, parent: ObjectRef, spec: ModelDeploymentSpec, split: Split) -> list[dict[str, Any]]:
        # A Service balances over pods: it can neither copy requests nor look at headers.
        check_supported(self, split)
        return []
