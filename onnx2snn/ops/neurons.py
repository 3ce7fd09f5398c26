"""Spiking neurons: the integrate-and-fire (IF) node of the ``onnx2snn`` domain.

The neuron is a pure step function of its input current and membrane potential; the network
owns the potential. Its output is the spike times the threshold, so that the firing rate
times the threshold approximates the ANN's ReLU activation and the synaptic weights that
follow stay unchanged (equivalently: binary spikes with the threshold folded into the next
layer's weights).
"""
from __future__ import annotations

import numpy as np
import torch

from .base import SNN_DOMAIN, NodeInfo, StatefulOp, register

RESET_MODES = ("subtract", "zero")


def if_step(x: torch.Tensor, v: torch.Tensor, threshold: torch.Tensor,
            reset: str) -> tuple[torch.Tensor, torch.Tensor]:
    """One timestep of an IF neuron.

        v[t] = v[t-1] + x[t]
        s[t] = 1 if v[t] >= threshold else 0
        subtract ("soft reset"):  v[t] <- v[t] - s[t] * threshold
        zero     ("hard reset"):  v[t] <- v[t] * (1 - s[t])

    Returns ``(spikes, v)`` with spikes in {0, 1} of the input's dtype.
    """
    v = v + x
    spikes = (v >= threshold).to(x.dtype)
    if reset == "subtract":
        v = v - spikes * threshold
    else:
        v = v * (1.0 - spikes)
    return spikes, v


def channel_view(values: torch.Tensor, ndim: int) -> torch.Tensor:
    """Broadcast a per-channel vector over ``[N, C, ...]``; a single value stays a scalar."""
    if values.numel() == 1:
        return values.reshape(())
    return values.reshape([-1] + [1] * (ndim - 2))


@register
class IF(StatefulOp):
    """Integrate-and-fire neuron; attributes ``threshold`` and ``v_init`` (one value, or one per
    channel), ``reset`` (``subtract`` or ``zero``) and optional ``clip_max`` (the ANN's Clip/ReLU6
    ceiling, which caps the threshold)."""

    domain = SNN_DOMAIN
    op_type = "IF"
    notes = "spiking neuron that replaces ReLU / Clip(0, a) / ReLU6; output = spike x threshold"

    def __init__(self, node: NodeInfo):
        super().__init__(node)
        attrs = node.attrs
        reset = attrs.get("reset", b"subtract")
        self.reset = reset.decode() if isinstance(reset, bytes) else reset
        if self.reset not in RESET_MODES:
            raise node.fail(f"reset must be one of {RESET_MODES}, not {self.reset!r}")
        threshold = np.asarray(attrs.get("threshold", [1.0]), dtype=np.float32).reshape(-1)
        if threshold.size == 0 or not np.all(np.isfinite(threshold)) or np.any(threshold <= 0):
            raise node.fail("threshold must be finite and positive")
        v_init = np.asarray(attrs.get("v_init", [0.0]), dtype=np.float32).reshape(-1)
        self.clip_max = float(attrs["clip_max"]) if "clip_max" in attrs else None
        self.register_buffer("threshold", torch.from_numpy(threshold.copy()))
        self.register_buffer("v_init", torch.from_numpy(v_init.copy()))

    def set_threshold(self, values) -> None:
        values = torch.as_tensor(np.asarray(values, dtype=np.float32).reshape(-1))
        self.threshold = values.to(self.threshold.device)

    def set_v_init(self, values) -> None:
        values = torch.as_tensor(np.asarray(values, dtype=np.float32).reshape(-1))
        self.v_init = values.to(self.v_init.device)

    def analog(self, x):
        return torch.relu(x) if self.clip_max is None else torch.clamp(x, 0.0, self.clip_max)

    def step(self, v, x):
        threshold = channel_view(self.threshold, x.ndim)
        if v is None:
            v = torch.zeros_like(x) + channel_view(self.v_init, x.ndim)
        spikes, v = if_step(x, v, threshold, self.reset)
        return spikes * threshold, v
