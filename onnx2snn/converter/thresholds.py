"""Threshold methods: how each spiking layer's firing threshold comes from calibration data.

- ``max``: the largest ANN activation of the layer (Diehl et al. 2015).
- ``percentile:P``: the P-th percentile of the layer's positive ANN activations, which
  ignores rare outliers (Rueckauer et al. 2017).
- ``spikenorm``: SpikeNorm (Sengupta et al. 2019), layer by layer the largest input current the
  layer receives while the layers before it already spike (see ``spikenorm.py``).

A Clip(0, a)/ReLU6 neuron's threshold is capped at ``a``, so its rate can never exceed the
ANN's ceiling.
"""
from __future__ import annotations

import dataclasses
import re

import numpy as np
import torch

from ..errors import ConfigError
from ..runtime.network import SpikingNetwork

# Positive activations kept per layer for percentiles; a seeded subsample beyond that.
MAX_PERCENTILE_SAMPLES = 1 << 23
# A layer that never activates during calibration still needs a positive threshold.
MIN_THRESHOLD = 1e-6


@dataclasses.dataclass(frozen=True)
class ThresholdMethod:
    kind: str  # "max", "percentile" or "spikenorm"
    percentile: float | None = None

    def __str__(self) -> str:
        return f"percentile:{self.percentile:g}" if self.kind == "percentile" else self.kind

    @classmethod
    def parse(cls, text: "str | ThresholdMethod") -> "ThresholdMethod":
        if isinstance(text, ThresholdMethod):
            return text
        if text in ("max", "spikenorm"):
            return cls(text)
        match = re.fullmatch(r"percentile:([0-9]*\.?[0-9]+)", text or "")
        if match and 0 < float(match.group(1)) <= 100:
            return cls("percentile", float(match.group(1)))
        raise ConfigError(f"unknown threshold method {text!r}; use max, percentile:P (0 < P <= 100) or spikenorm")


def batches(x: torch.Tensor, size: int):
    for start in range(0, len(x), size):
        yield x[start:start + size]


def cap_to_clip(network: SpikingNetwork, thresholds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    capped = {}
    for name, layer in network.neurons().items():
        value = np.maximum(thresholds[name], MIN_THRESHOLD)
        if layer.clip_max is not None:
            value = np.minimum(value, layer.clip_max)
        capped[name] = value.astype(np.float32)
    return capped


def activation_thresholds(network: SpikingNetwork, images: torch.Tensor, method: ThresholdMethod,
                          batch_size: int = 128, seed: int = 0) -> dict[str, np.ndarray]:
    """``max`` and ``percentile`` from one analog (ANN) pass over the calibration images."""
    names = {i: network.node_names[i] for i in network.neuron_nodes}
    maxima = {i: 0.0 for i in names}
    samples: dict[int, list[np.ndarray]] = {i: [] for i in names}
    per_batch_cap = MAX_PERCENTILE_SAMPLES // max(1, -(-len(images) // batch_size))
    rng = np.random.default_rng(seed)

    def probe(index: int, current: torch.Tensor) -> None:
        activation = network.layers[index].analog(current)
        maxima[index] = max(maxima[index], float(activation.max()))
        if method.kind == "percentile":
            positive = activation[activation > 0].float().cpu().numpy()
            if positive.size > per_batch_cap:
                positive = rng.choice(positive, per_batch_cap, replace=False)
            samples[index].append(positive)

    for batch in batches(images, batch_size):
        network.analog(batch, probe=probe)
    result = {}
    for index, name in names.items():
        if method.kind == "percentile":
            values = np.concatenate(samples[index]) if samples[index] else np.zeros(0, np.float32)
            result[name] = np.array([np.percentile(values, method.percentile) if values.size else 0.0])
        else:
            result[name] = np.array([maxima[index]])
    return cap_to_clip(network, result)


def compute_thresholds(network: SpikingNetwork, images: torch.Tensor, method: ThresholdMethod,
                       timesteps: int, batch_size: int = 128) -> dict[str, np.ndarray]:
    """Thresholds for every neuron of ``network`` (also set on it), keyed by node name."""
    if method.kind == "spikenorm":
        from .spikenorm import spikenorm_thresholds
        thresholds = spikenorm_thresholds(network, images, timesteps, batch_size)
    else:
        thresholds = activation_thresholds(network, images, method, batch_size)
    for name, layer in network.neurons().items():
        layer.set_threshold(thresholds[name])
    return thresholds
