"""The public Python API: every command of the CLI is one call here.

    import onnx2snn

    onnx2snn.convert("ann.onnx", "snn.onnx", "data/cifar10", mean, std)
    net = onnx2snn.load("snn.onnx")                        # a torch.nn.Module
    x, labels = onnx2snn.load_images("data/cifar10", net.metadata, limit=100)
    accuracy = (net.simulate(x, 64).outputs[64].argmax(1) == labels).float().mean()
    result = onnx2snn.evaluate("snn.onnx", "data/cifar10", timesteps=[32, 64], limit=500)
"""
from __future__ import annotations

from .converter.convert import (
                                DEFAULT_CALIBRATION_IMAGES,
                                DEFAULT_CALIBRATION_TIMESTEPS,
                                Conversion,
                                ConversionOptions,
                                convert,
                                convert_model,
)
from .converter.methods.spec import ThresholdMethod
from .converter.normalize import Canonical, normalize
from .data import input_normalization, load_images, load_split, to_tensor
from .dialect import DIALECT_VERSION, METADATA, NeuronParameters, load_model, save_model
from .evaluation import Evaluation, ann_predictions, evaluate
from .runtime import Simulation, SpikingNetwork, load

__all__ = ["DEFAULT_CALIBRATION_IMAGES", "DEFAULT_CALIBRATION_TIMESTEPS", "DIALECT_VERSION", "METADATA", "Canonical",
           "Conversion",
           "ConversionOptions", "Evaluation", "NeuronParameters", "Simulation", "SpikingNetwork", "ThresholdMethod",
           "ann_predictions", "convert", "convert_model", "evaluate", "input_normalization", "load", "load_images",
           "load_model", "load_split", "normalize", "save_model", "to_tensor"]
