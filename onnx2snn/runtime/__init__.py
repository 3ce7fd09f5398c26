"""The PyTorch runtime: load a spiking ONNX graph and simulate it over timesteps."""
from __future__ import annotations

import os

from ..onnx_io import load_model
from .network import Simulation, SpikingNetwork


def load(path: str | os.PathLike) -> SpikingNetwork:
    """Load a spiking ONNX file (as written by ``onnx2snn convert``) into a torch module."""
    return SpikingNetwork(load_model(path))


__all__ = ["Simulation", "SpikingNetwork", "load"]
