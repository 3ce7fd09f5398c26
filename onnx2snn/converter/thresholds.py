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


BASES = ("max", "percentile", "robust", "spikenorm", "auto")
V_INIT_MODES = ("zero", "half", "opt")
SPEC_HELP = ("BASE[+MODIFIER...]; BASE: max | percentile:P | robust | spikenorm | auto; MODIFIER: "
             "layer | channel | vzero | vhalf | vopt | biascorr | potcorr | scale | signed | burst:G")


@dataclasses.dataclass(frozen=True)
class ThresholdMethod:
    """A conversion method: where thresholds come from plus optional calibration steps.

    ``kind``: max | percentile | robust (percentile picked per layer from calibration loss) |
    spikenorm | auto (all calibration steps, choices made on held-out train images).
    Modifiers (docs/low_latency.md): ``channel`` thresholds, ``v_init`` zero|half|opt,
    ``biascorr`` / ``potcorr`` (mean-error correction as a bias current / as initial potential),
    ``scale`` (threshold scale searched per layer), ``signed`` and ``burst:G`` spikes.
    """

    kind: str
    percentile: float | None = None
    channel: bool = False
    v_init: str = "zero"
    bias_correction: bool = False
    potential_correction: bool = False
    scale_search: bool = False
    signed: bool = False
    burst: int = 1

    def __str__(self) -> str:
        base = f"percentile:{self.percentile:g}" if self.kind == "percentile" else self.kind
        if self.kind == "auto":
            return base + "".join(self._neuron_parts())
        parts = [base]
        if self.channel:
            parts.append("channel")
        if self.v_init != "zero":
            parts.append("v" + self.v_init)
        if self.bias_correction:
            parts.append("biascorr")
        if self.potential_correction:
            parts.append("potcorr")
        if self.scale_search:
            parts.append("scale")
        return "+".join(parts) + "".join(self._neuron_parts())

    def _neuron_parts(self) -> list[str]:
        return (["+signed"] if self.signed else []) + ([f"+burst:{self.burst}"] if self.burst > 1 else [])

    @property
    def simulates(self) -> bool:
        """Whether calibration simulates the SNN layer by layer (not one ANN pass)."""
        return (self.kind in ("robust", "auto") or self.bias_correction or self.potential_correction
                or self.scale_search or self.v_init == "opt")

    @property
    def extended_neuron(self) -> bool:
        return self.signed or self.burst > 1

    @classmethod
    def parse(cls, text: "str | ThresholdMethod") -> "ThresholdMethod":
        if isinstance(text, ThresholdMethod):
            return text
        if not isinstance(text, str) or not text.strip():
            raise ConfigError(f"empty threshold method; use {SPEC_HELP}")
        base, *modifiers = [part.strip() for part in text.strip().split("+")]
        fields: dict = {}
        match = re.fullmatch(r"percentile:([0-9]*\.?[0-9]+)", base)
        if match and 0 < float(match.group(1)) <= 100:
            fields.update(kind="percentile", percentile=float(match.group(1)))
        elif base in ("max", "robust", "spikenorm", "auto"):
            fields["kind"] = base
        else:
            raise ConfigError(f"unknown threshold method {base!r} in {text!r}; use {SPEC_HELP} "
                              "(percentile needs 0 < P <= 100)")
        for modifier in modifiers:
            burst = re.fullmatch(r"burst:([0-9]+)", modifier)
            if modifier in ("layer", "channel"):
                fields["channel"] = modifier == "channel"
            elif modifier in ("vzero", "vhalf", "vopt"):
                fields["v_init"] = modifier[1:]
            elif modifier == "biascorr":
                fields["bias_correction"] = True
            elif modifier == "potcorr":
                fields["potential_correction"] = True
            elif modifier == "scale":
                fields["scale_search"] = True
            elif modifier == "signed":
                fields["signed"] = True
            elif burst and 1 <= int(burst.group(1)) <= 127:
                fields["burst"] = int(burst.group(1))
            else:
                raise ConfigError(f"unknown modifier {modifier!r} in threshold method {text!r}; use {SPEC_HELP} "
                                  "(burst:G needs 1 <= G <= 127)")
        if fields["kind"] == "spikenorm" and modifiers:
            raise ConfigError(f"spikenorm takes no modifiers, got {text!r}")
        if fields["kind"] == "auto" and set(fields) - {"kind", "signed", "burst"}:
            raise ConfigError(f"auto chooses its own calibration steps; only +signed and +burst:G may follow it, "
                              f"got {text!r}")
        return cls(**fields)


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
                       timesteps: int, batch_size: int = 128, seed: int = 0) -> dict[str, np.ndarray]:
    """Thresholds for every neuron of ``network`` (also set on it, with any initial potential,
    bias and spike mode the method calibrates), keyed by node name."""
    method = ThresholdMethod.parse(method)
    if method.kind == "spikenorm":
        from .spikenorm import spikenorm_thresholds
        thresholds = spikenorm_thresholds(network, images, timesteps, batch_size)
    elif method.kind in ("max", "percentile") and method == ThresholdMethod(method.kind, method.percentile):
        thresholds = activation_thresholds(network, images, method, batch_size, seed)
    else:
        from .methods.calibrate import calibrate
        return calibrate(network, images, method, timesteps, batch_size, seed)
    for name, layer in network.neurons().items():
        layer.set_threshold(thresholds[name])
    return thresholds
