"""
A Kubernetes API emulator for the test suite and ``modeldeploy demo``, built on kmock.

kmock is a development (optional) dependency: only the CLI's demo command imports this package,
lazily. Start it with::

    emulator = ClusterEmulator()
    emulator.declare_builtin_resources()
    async with serve_emulator(emulator) as url:
        ...  # point kopf (kopf.ConnectionInfo(server=url)) or a client at url
"""

from modeldeploy.sim.emulator import (
    APPLY_PATCH,
    JSON_PATCH,
    MERGE_PATCH,
    STRATEGIC_MERGE_PATCH,
    ApiRequest,
    ClusterEmulator,
)
from modeldeploy.sim.errors import ApiError
from modeldeploy.sim.resources import BUILTIN_RESOURCES, ResourceSpec
from modeldeploy.sim.selectors import FieldSelector, LabelSelector
from modeldeploy.sim.serving import EmulatorThread, serve_emulator, serve_emulator_in_thread

__all__ = [
    "APPLY_PATCH",
    "BUILTIN_RESOURCES",
    "JSON_PATCH",
    "MERGE_PATCH",
    "STRATEGIC_MERGE_PATCH",
    "ApiError",
    "ApiRequest",
    "ClusterEmulator",
    "EmulatorThread",
    "FieldSelector",
    "LabelSelector",
    "ResourceSpec",
    "serve_emulator",
    "serve_emulator_in_thread",
]
