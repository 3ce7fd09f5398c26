"""The PyTorch runtime: load a spiking ONNX graph and simulate it over timesteps.

It reads spiking files through the dialect layer and never imports the converter.
"""
from __future__ import annotations

import os

import onnx

from ..dialect import read_spiking
from .blocks import fast_layout, keep_freed_memory
from .network import Simulation, SpikingNetwork


def load(source: str | os.PathLike | onnx.ModelProto) -> SpikingNetwork:
    """A spiking model (a file written by ``onnx2snn convert``, or its ModelProto) as a torch module."""
    return SpikingNetwork(read_spiking(source))


__all__ = ["Simulation", "SpikingNetwork", "fast_layout", "keep_freed_memory", "load"]
