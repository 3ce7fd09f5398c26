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
from .methods.common import MAX_PERCENTILE_SAMPLES
from .methods.spec import ThresholdMethod

# Layer-wise calibration works in units of about 2M current elements (layerwise.WORK_ELEMENTS) and scores
# candidates in buffers of 8M elements (candidates.BUFFER_ELEMENTS), with the held-out images' sampled
# currents cached: a working set of a few hundred MB, whatever the number of images.
CALIBRATION_WORKING_SET = 384 * 1024**2


def calibration_batch_size(model: onnx.ModelProto, network, calibration: torch.Tensor, method: ThresholdMethod,
                           timesteps: int, batch_size: int, max_memory: int | str | None) -> int:
    """The batch size that keeps calibration within ``max_memory`` (raises when none does)."""
    budget = parse_size(max_memory)
    check_input_shape(model, tuple(calibration.shape[1:]))
    sizes = measure(model, network, calibration[:1], budget)
    images = len(calibration)
    if method.kind in ("max", "percentile") and not method.simulates:
        fixed = 0
        if method.kind == "percentile":  # positive activations sampled per layer, then concatenated
            kept = [min(n * images, MAX_PERCENTILE_SAMPLES) * 4 for n in sizes.neurons]
            fixed = sum(kept) + max(kept, default=0)
        per_image = 2 * sizes.per_image  # the pass plus the probe's copies
    else:  # a layer-by-layer simulation of the calibration set (SpikeNorm, auto, ...)
        largest_layers = sorted(sizes.neurons, reverse=True)[:3]  # stored while later layers read them
        binary = not method.extended_neuron
        train_bytes = -(-timesteps // 8) if binary else timesteps  # binary trains: 8 steps to a byte
        kept_ann = 0 if method.kind == "spikenorm" else 4 * sum(largest_layers) * images
        fixed = (sum(largest_layers) * train_bytes * images + kept_ann + sizes.per_image * images // 4
                 + CALIBRATION_WORKING_SET)
        per_image = sizes.per_image
    return fit_batch("calibration", fixed, per_image, batch_size, budget)


def fit_calibration(model: onnx.ModelProto, network, calibration: torch.Tensor, options, method: ThresholdMethod):
    """``options`` (a ConversionOptions) with the batch size lowered to fit ``options.max_memory``."""
    batch_size = calibration_batch_size(model, network, calibration, method,
                                        options.calibration_timesteps, options.batch_size,
                                        getattr(options, "max_memory", None))
    return dataclasses.replace(options, batch_size=batch_size)
