"""The calibration's memory budget: the batch size that keeps a threshold method within ``max_memory``.

It adds to ``resources``' per-image measurements what each method keeps for the whole data set
(SpikeNorm's and the calibrated methods' stored spike trains, the percentile samples).
"""
from __future__ import annotations

import dataclasses

import onnx
import torch

from ..resources import check_input_shape, fit_batch, measure
from ..sizes import parse_size
from .methods.common import MAX_PERCENTILE_SAMPLES, TIME_CHUNK
from .methods.spec import ThresholdMethod


def calibration_batch_size(model: onnx.ModelProto, network, calibration: torch.Tensor, method: ThresholdMethod,
                           timesteps: int, batch_size: int, max_memory: int | str | None) -> int:
    """The batch size that keeps calibration within ``max_memory`` (raises when none does)."""
    budget = parse_size(max_memory)
    check_input_shape(model, tuple(calibration.shape[1:]))
    sizes = measure(model, network, calibration[:1], budget)
    images = len(calibration)
    if method.kind in ("max", "percentile"):
        fixed = 0
        if method.kind == "percentile":  # positive activations sampled per layer, then concatenated
            kept = [min(n * images, MAX_PERCENTILE_SAMPLES) * 4 for n in sizes.neurons]
            fixed = sum(kept) + max(kept, default=0)
        per_image = 2 * sizes.per_image  # the pass plus the probe's copies
    else:  # a simulation of the calibration set (SpikeNorm): spike trains stored for a few layers
        largest_layers = sorted(sizes.neurons, reverse=True)[:3]
        fixed = sum(largest_layers) * timesteps * images + sizes.per_image * images // 4
        per_image = sizes.per_image + 4 * TIME_CHUNK * sizes.largest
    return fit_batch("calibration", fixed, per_image, batch_size, budget)


def fit_calibration(model: onnx.ModelProto, network, calibration: torch.Tensor, options, method: ThresholdMethod):
    """``options`` (a ConversionOptions) with the batch size lowered to fit ``options.max_memory``."""
    batch_size = calibration_batch_size(model, network, calibration, method,
                                        options.calibration_timesteps, options.batch_size,
                                        getattr(options, "max_memory", None))
    return dataclasses.replace(options, batch_size=batch_size)
