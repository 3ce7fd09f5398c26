"""Conversion end to end: ANN ONNX file + calibration images -> spiking ONNX file."""
from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence

import numpy as np
import onnx
import torch

from .. import __version__
from ..data.layout import LAYOUTS, resolve_layout, to_layout
from ..devices import resolve_device
from ..errors import ConfigError
from ..ops import SNN_DOMAIN
from ..ops.neurons import RESET_MODES
from ..onnx_io import load_model, save_model, sha256_file
from ..resources import fit_calibration
from ..runtime.network import SpikingNetwork
from .normalize import normalize
from .thresholds import ThresholdMethod, compute_thresholds

DEFAULT_CALIBRATION_IMAGES = 512
DEFAULT_CALIBRATION_TIMESTEPS = 64


@dataclasses.dataclass
class ConversionOptions:
    threshold: str = "auto"
    reset: str = "subtract"
    calibration_timesteps: int = DEFAULT_CALIBRATION_TIMESTEPS
    batch_size: int = 128
    max_memory: int | str | None = None  # bytes or "4GB"; None = resources.DEFAULT_MAX_MEMORY
    maxpool: str = "spiking"  # "spiking" (max-pool gate) or "average" (substitution, changes the network)
    layout: str = "auto"  # the input layout: "nchw", "nhwc" (Keras/tf2onnx), or "auto" (read from the graph)

    def validate(self) -> ThresholdMethod:
        if self.reset not in RESET_MODES:
            raise ConfigError(f"--reset must be one of {', '.join(RESET_MODES)}, not {self.reset!r}")
        if self.calibration_timesteps < 1:
            raise ConfigError("--calib-timesteps must be at least 1")
        if self.batch_size < 1:
            raise ConfigError("--batch-size must be at least 1")
        if self.layout not in ("auto", *LAYOUTS):
            raise ConfigError(f"--layout must be auto, nchw or nhwc, not {self.layout!r}")
        return ThresholdMethod.parse(self.threshold)


@dataclasses.dataclass
class Conversion:
    """The spiking model and what the conversion did."""

    model: onnx.ModelProto
    thresholds: dict[str, np.ndarray]
    notes: list[str]


def _set_attribute(node: onnx.NodeProto, name: str, value) -> None:
    for attr in list(node.attribute):
        if attr.name == name:
            node.attribute.remove(attr)
    node.attribute.append(onnx.helper.make_attribute(name, value))


def write_neuron_parameters(model: onnx.ModelProto, network: SpikingNetwork) -> None:
    """Copy each neuron's threshold and initial potential from the runtime back into the graph."""
    neurons = network.neurons()
    for node in model.graph.node:
        if node.domain == SNN_DOMAIN and (node.name or node.output[0]) in neurons:
            layer = neurons[node.name or node.output[0]]
            _set_attribute(node, "threshold", [float(v) for v in layer.threshold.cpu().numpy()])
            _set_attribute(node, "v_init", [float(v) for v in layer.v_init.cpu().numpy()])
            # the low-latency extensions are written only when used, so plain graphs stay plain
            if layer.bias.abs().max() > 0:
                _set_attribute(node, "bias", [float(v) for v in layer.bias.cpu().numpy()])
            if layer.signed:
                _set_attribute(node, "signed", 1)
            if layer.burst > 1:
                _set_attribute(node, "burst", int(layer.burst))


def convert_model(model: onnx.ModelProto, calibration: torch.Tensor,
                  options: ConversionOptions | None = None,
                  metadata: dict[str, str] | None = None) -> Conversion:
    """Convert an in-memory ANN with normalized calibration images in the model's input layout
    (``[N, C, H, W]``, or ``[N, H, W, C]`` for an NHWC model; see ``options.layout``). The
    conversion runs on the calibration tensor's device."""
    options = options or ConversionOptions()
    method = options.validate()
    if calibration.ndim < 2 or len(calibration) == 0:
        raise ConfigError("calibration needs at least one image")
    layout = resolve_layout(model, options.layout)
    canonical = normalize(model, reset=options.reset, maxpool=options.maxpool)
    network = SpikingNetwork(canonical.model).to(calibration.device)
    options = fit_calibration(canonical.model, network, calibration, options)  # memory budget, trial run
    if method.extended_neuron and options.reset != "subtract":
        raise ConfigError(f"threshold method {method} uses signed or burst spikes, which need --reset subtract")
    thresholds = compute_thresholds(network, calibration, method, options.calibration_timesteps, options.batch_size)
    spiking = canonical.model
    write_neuron_parameters(spiking, network)
    properties = {
        "onnx2snn.version": __version__,
        "onnx2snn.threshold_method": str(method),
        "onnx2snn.reset": options.reset,
        "onnx2snn.calibration_images": str(len(calibration)),
        "onnx2snn.calibration_timesteps": str(options.calibration_timesteps),
        "onnx2snn.input_layout": layout,
        "onnx2snn.notes": json.dumps(canonical.notes),
        **(metadata or {}),
    }
    del spiking.metadata_props[:]
    onnx.helper.set_model_props(spiking, dict(sorted(properties.items())))
    return Conversion(spiking, thresholds, canonical.notes)


def convert(ann_path: str | os.PathLike, output_path: str | os.PathLike, data: str | os.PathLike,
            mean: Sequence[float], std: Sequence[float], calibration_images: int = DEFAULT_CALIBRATION_IMAGES,
            options: ConversionOptions | None = None, seed: int = 0, device: str = "cpu") -> Conversion:
    """Convert the ANN at ``ann_path``, calibrating on train-split images of ``data``, and write
    the spiking graph to ``output_path`` (atomically)."""
    from ..data import load_split, to_tensor

    options = options or ConversionOptions()
    options.validate()
    target = resolve_device(device)
    if calibration_images < 1:
        raise ConfigError("--calib must be at least 1")
    model = load_model(ann_path)
    layout = resolve_layout(model, options.layout)
    options = dataclasses.replace(options, layout=layout)
    images = load_split(data, "train", limit=calibration_images, seed=seed)
    calibration = to_layout(to_tensor(images.images, mean, std), layout).to(target)
    metadata = {
        "onnx2snn.source_sha256": sha256_file(ann_path),
        "onnx2snn.source_name": os.path.basename(os.fspath(ann_path)),
        "onnx2snn.input_mean": ",".join(f"{v:g}" for v in mean),
        "onnx2snn.input_std": ",".join(f"{v:g}" for v in std),
        "onnx2snn.calibration_seed": str(seed),
    }
    conversion = convert_model(model, calibration, options, metadata)
    save_model(conversion.model, output_path)
    return conversion
