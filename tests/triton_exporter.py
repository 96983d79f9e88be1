"""Triton-format metrics with controllable traffic: modeldeploy.sim.triton_exporter, for the tests."""

from modeldeploy.sim.triton_exporter import Counters, Traffic, TritonExporter

__all__ = ["Counters", "Traffic", "TritonExporter"]
