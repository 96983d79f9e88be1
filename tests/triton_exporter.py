"""Triton-format metrics with controllable traffic: testbed.triton_exporter, for the tests."""

from testbed.triton_exporter import Counters, Traffic, TritonExporter

__all__ = ["Counters", "Traffic", "TritonExporter"]
