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
from ..data import load_split, to_tensor
from ..data.layout import LAYOUTS, resolve_layout, to_layout
from ..devices import resolve_device
from ..dialect import (
    DIALECT_VERSION,
    METADATA,
    RESET_MODES,
    NeuronParameters,
    load_model,
    save_model,
    sha256_file,
    write_neuron_parameters,
)
from ..errors import ConfigError
from ..runtime.distributed import SINGLE, World
from ..runtime.distributed import setup as setup_distributed
from ..runtime.network import SpikingNetwork
from .budget import fit_calibration
from .methods.spec import ThresholdMethod
from .methods.weights import WeightSettings
from .normalize import normalize
from .thresholds import compute_thresholds
from .weight_files import untie_weights, write_changed_constants

DEFAULT_CALIBRATION_IMAGES = 512
DEFAULT_CALIBRATION_TIMESTEPS = 64


@dataclasses.dataclass
class ConversionOptions:
    threshold: str = "auto"
    reset: str = "subtract"
    calibration_timesteps: int = DEFAULT_CALIBRATION_TIMESTEPS
    batch_size: int = 128
    max_memory: int | str | None = None  # bytes or "4GB"; None = sizes.DEFAULT_MAX_MEMORY
    maxpool: str = "spiking"  # "spiking" (max-pool gate) or "average" (substitution, changes the network)
    layout: str = "auto"  # the input layout: "nchw", "nhwc" (Keras/tf2onnx), or "auto" (read from the graph)
    calibrate_weights: bool = False  # also fit each layer's Conv/Gemm weights to the ANN (docs/low_latency.md)

    def validate(self) -> ThresholdMethod:
        """Check the options; returns the parsed threshold method."""
        if self.reset not in RESET_MODES:
            raise ConfigError(f"reset must be one of {', '.join(RESET_MODES)}, not {self.reset!r}", parameter="reset")
        if self.calibration_timesteps < 1:
            raise ConfigError("calibration_timesteps must be at least 1", parameter="calibration_timesteps")
        if self.batch_size < 1:
            raise ConfigError("batch_size must be at least 1", parameter="batch_size")
        if self.layout not in ("auto", *LAYOUTS):
            raise ConfigError(f"layout must be auto, nchw or nhwc, not {self.layout!r}", parameter="layout")
        method = ThresholdMethod.parse(self.threshold)
        if not isinstance(self.calibrate_weights, bool):
            raise ConfigError(f"calibrate_weights must be true or false, not {self.calibrate_weights!r}",
                              parameter="calibrate_weights")
        if self.calibrate_weights and self.reset != "subtract":
            raise ConfigError("calibrate_weights fits the rate code of soft-reset neurons; it needs reset 'subtract', "
                              f"not {self.reset!r}", parameter="calibrate_weights")
        if method.extended_neuron and self.reset != "subtract":
            raise ConfigError(f"threshold method {method} uses signed or burst spikes, which need reset 'subtract'",
                              parameter="reset")
        return method


@dataclasses.dataclass
class Conversion:
    """The spiking model and what the conversion did."""

    model: onnx.ModelProto
    neurons: dict[str, NeuronParameters]
    notes: list[str]
    rank: int = 0  # under torchrun: this process's rank (every rank holds the same result; rank 0 wrote it)

    @property
    def thresholds(self) -> dict[str, np.ndarray]:
        return {name: parameters.threshold for name, parameters in self.neurons.items()}


def _convert(model: onnx.ModelProto, calibration: torch.Tensor, options: ConversionOptions, method: ThresholdMethod,
             metadata: dict[str, str], checked: bool, world: World = SINGLE) -> Conversion:
    if calibration.ndim < 2 or len(calibration) == 0:
        raise ConfigError("calibration needs at least one image", parameter="calibration")
    layout = resolve_layout(model, options.layout)
    canonical = normalize(model, reset=options.reset, maxpool=options.maxpool, checked=checked)
    weights = WeightSettings() if options.calibrate_weights else None
    if weights is not None and world.active:  # the weight fit is not sharded: every process would fit its own
        raise ConfigError("--calibrate-weights runs in one process; run `onnx2snn convert` without torchrun",
                          parameter="calibrate_weights")
    if weights is not None:
        untie_weights(canonical.model)
    network = SpikingNetwork(canonical.model).to(calibration.device)  # the conversion runs where its images are
    options = fit_calibration(canonical.model, network, calibration, options, method)  # memory budget, trial run
    neurons = compute_thresholds(network, calibration, method, options.calibration_timesteps, options.batch_size,
                                 world=world, weights=weights)
    spiking = canonical.model
    write_neuron_parameters(spiking, neurons)
    if weights is not None:
        write_changed_constants(spiking, network)
        metadata = {**metadata, METADATA.weight_calibration: json.dumps(dataclasses.asdict(weights), sort_keys=True)}
    properties = {
        METADATA.dialect_version: str(DIALECT_VERSION),
        METADATA.package_version: __version__,
        METADATA.threshold_method: str(method),
        METADATA.reset: options.reset,
        METADATA.calibration_images: str(len(calibration)),
        METADATA.calibration_timesteps: str(options.calibration_timesteps),
        METADATA.input_layout: layout,
        METADATA.notes: json.dumps(canonical.notes),
        **metadata,
    }
    del spiking.metadata_props[:]
    onnx.helper.set_model_props(spiking, dict(sorted(properties.items())))
    return Conversion(spiking, neurons, canonical.notes, world.rank)


def convert_model(model: onnx.ModelProto, calibration: torch.Tensor,
                  options: ConversionOptions | None = None,
                  metadata: dict[str, str] | None = None) -> Conversion:
    """Convert an in-memory ANN with normalized calibration images in the model's input layout
    (``[N, C, H, W]``, or ``[N, H, W, C]`` for an NHWC model; see ``options.layout``). The
    conversion runs on the calibration tensor's device."""
    options = options or ConversionOptions()
    return _convert(model, calibration, options, options.validate(), metadata or {}, checked=False)


def convert(ann_path: str | os.PathLike, output_path: str | os.PathLike, data: str | os.PathLike,
            mean: Sequence[float], std: Sequence[float], calibration_images: int = DEFAULT_CALIBRATION_IMAGES,
            options: ConversionOptions | None = None, seed: int = 0, device: str = "cpu",
            metadata: dict[str, str] | None = None) -> Conversion:
    """Convert the ANN at ``ann_path``, calibrating on train-split images of ``data``, and write
    the spiking graph to ``output_path`` (atomically). ``metadata`` adds entries to the file's
    ``metadata_props`` (the CLI records its effective configuration there). Under ``torchrun`` each
    process calibrates on its share of the calibration batches, the statistics are combined across
    processes (runtime/distributed.py), every process returns the same conversion, and rank 0
    writes the file."""
    options = options or ConversionOptions()
    method = options.validate()
    target = resolve_device(device)
    world = setup_distributed(str(target))
    target = torch.device(world.device(str(target)))
    if calibration_images < 1:
        raise ConfigError("calibration_images must be at least 1", parameter="calibration_images")
    model = load_model(ann_path)  # the structural checks run here, once
    layout = resolve_layout(model, options.layout)
    options = dataclasses.replace(options, layout=layout)
    images = load_split(data, "train", limit=calibration_images, seed=seed)
    calibration = to_layout(to_tensor(images.images, mean, std), layout).to(target)
    metadata = {
        **(metadata or {}),
        METADATA.source_sha256: sha256_file(ann_path),
        METADATA.source_name: os.path.basename(os.fspath(ann_path)),
        METADATA.input_mean: ",".join(f"{v:g}" for v in mean),
        METADATA.input_std: ",".join(f"{v:g}" for v in std),
        METADATA.calibration_seed: str(seed),
    }
    conversion = _convert(model, calibration, options, method, metadata, checked=True, world=world)
    if world.rank == 0:
        save_model(conversion.model, output_path)
    world.barrier()  # the file exists when any process returns
    return conversion
