"""onnx2snn: convert ONNX ANNs into spiking neural networks and run them on PyTorch.

    import onnx2snn
    onnx2snn.convert("ann.onnx", "snn.onnx", "data/cifar10", mean, std)
    net = onnx2snn.load("snn.onnx")
    x, labels = onnx2snn.load_images("data/cifar10", net.metadata, limit=100)
    logits = net.simulate(x, timesteps=64).outputs[64]

The public API is ``onnx2snn.api`` (re-exported here), the error classes, and the modules
``onnx2snn.data``, ``onnx2snn.report``, ``onnx2snn.atomic``, ``onnx2snn.runtime`` and
``onnx2snn.dialect``. The API's names are imported on first use, so that ``import
onnx2snn.runtime`` (or ``onnx2snn.dialect``) does not load the converter.
"""
from __future__ import annotations

import importlib

from .errors import (
    ConfigError,
    DataError,
    DialectVersionError,
    InvalidModelError,
    Onnx2SnnError,
    ResourceError,
    UnsupportedOpError,
)

__version__ = "0.1.0"

_API = ("DEFAULT_CALIBRATION_IMAGES", "DEFAULT_CALIBRATION_TIMESTEPS", "DIALECT_VERSION", "METADATA", "Canonical",
        "Conversion",
        "ConversionOptions", "Evaluation", "NeuronParameters", "Simulation", "SpikingNetwork", "ThresholdMethod",
        "ann_predictions", "convert", "convert_model", "evaluate", "input_normalization", "load", "load_images",
        "load_model", "load_split", "normalize", "save_model", "to_tensor")

__all__ = [*_API, "ConfigError", "DataError", "DialectVersionError", "InvalidModelError", "Onnx2SnnError",
           "ResourceError", "UnsupportedOpError", "__version__"]


def __getattr__(name: str):
    if name in _API:
        value = getattr(importlib.import_module(".api", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
