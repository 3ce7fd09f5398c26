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


def signed_burst_step(x: torch.Tensor, v: torch.Tensor, count: torch.Tensor, threshold: torch.Tensor,
                      signed: bool, burst: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One timestep of the extended IF neuron (soft reset only); all tensors already broadcast.

        v[t] = v[t-1] + x[t]
        burst (Li & Zeng 2022): k = clamp(floor(v / threshold), 0, burst) spikes in one step
        signed (Wang et al. 2022, "signed neuron with memory"): if no positive spike fires,
            v < 0 and the neuron has fired net positive before, it fires
            k = -min(count, burst, ceil(-v / threshold)) negative spikes, undoing earlier ones
        v <- v - k * threshold;  count <- count + k

    Returns ``(k, v, count)``: the signed spike count of the step (in the input's dtype).
    """
    v = v + x
    k = torch.clamp(torch.floor(v / threshold), 0, burst)
    if signed:
        undo = torch.minimum(torch.clamp(torch.ceil(-v / threshold), 0, burst), count)
        k = torch.where(v < 0, -undo, k)
        count = count + k
    v = v - k * threshold
    return k, v, count


def channel_view(values: torch.Tensor, ndim: int) -> torch.Tensor:
    """Broadcast a per-channel vector over ``[N, C, ...]``; a single value stays a scalar."""
    if values.numel() == 1:
        return values.reshape(())
    return values.reshape([-1] + [1] * (ndim - 2))


@register
class IF(StatefulOp):
    """Integrate-and-fire neuron; attributes ``threshold`` and ``v_init`` (one value, or one per
    channel), ``reset`` (``subtract`` or ``zero``) and optional ``clip_max`` (the ANN's Clip/ReLU6
    ceiling, which caps the threshold).

    Optional low-latency extensions, all off by default (see docs/low_latency.md for their cost):
    ``bias`` (one value or one per channel): a calibration current added at every step, which the
    ANN meaning ignores; ``signed`` (0/1): negative spikes that undo earlier positive ones;
    ``burst`` (>= 1): up to that many spikes in one step. ``signed``/``burst`` need soft reset."""

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
        bias = np.asarray(attrs.get("bias", [0.0]), dtype=np.float32).reshape(-1)
        self.signed = bool(attrs.get("signed", 0))
        self.burst = int(attrs.get("burst", 1))
        if self.burst < 1 or not np.all(np.isfinite(bias)):
            raise node.fail("burst must be at least 1 and bias finite")
        if (self.signed or self.burst > 1) and self.reset != "subtract":
            raise node.fail("signed and burst spikes need reset 'subtract'")
        self.register_buffer("threshold", torch.from_numpy(threshold.copy()))
        self.register_buffer("v_init", torch.from_numpy(v_init.copy()))
        self.register_buffer("bias", torch.from_numpy(bias.copy()))
        self.has_bias = bool(np.any(bias != 0))  # known up front: no device sync per step

    def set_threshold(self, values) -> None:
        values = torch.as_tensor(np.asarray(values, dtype=np.float32).reshape(-1))
        self.threshold = values.to(self.threshold.device)

    def set_v_init(self, values) -> None:
        values = torch.as_tensor(np.asarray(values, dtype=np.float32).reshape(-1))
        self.v_init = values.to(self.v_init.device)

    def set_bias(self, values) -> None:
        values = np.asarray(values, dtype=np.float32).reshape(-1)
        self.has_bias = bool(np.any(values != 0))
        self.bias = torch.as_tensor(values).to(self.bias.device)

    @property
    def extended(self) -> bool:
        """Whether the neuron uses signed or burst spikes (state is then ``(v, count)``)."""
        return self.signed or self.burst > 1

    def analog(self, x):
        return torch.relu(x) if self.clip_max is None else torch.clamp(x, 0.0, self.clip_max)

    def spike_events(self, out: torch.Tensor) -> float:
        """Spikes in one step's output: a burst of k spikes (or k negative ones) counts k."""
        return float((out.abs() / channel_view(self.threshold, out.ndim)).round().sum())

    def step(self, v, x):
        threshold = channel_view(self.threshold, x.ndim)
        if self.has_bias:
            x = x + channel_view(self.bias, x.ndim)
        if self.extended:
            v, count = (torch.zeros_like(x) + channel_view(self.v_init, x.ndim), torch.zeros_like(x)) \
                if v is None else v
            spikes, v, count = signed_burst_step(x, v, count, threshold, self.signed, self.burst)
            return spikes * threshold, (v, count)
        if v is None:
            v = torch.zeros_like(x) + channel_view(self.v_init, x.ndim)
        spikes, v = if_step(x, v, threshold, self.reset)
        return spikes * threshold, v
