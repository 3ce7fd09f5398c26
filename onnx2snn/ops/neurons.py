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
    """One timestep of an IF neuron (a functional wrapper of ``neuron_scan``).

        v[t] = v[t-1] + x[t]
        s[t] = 1 if v[t] >= threshold else 0
        subtract ("soft reset"):  v[t] <- v[t] - s[t] * threshold
        zero     ("hard reset"):  v[t] <- v[t] * (1 - s[t])

    Returns ``(spikes, v)`` with spikes in {0, 1} of the input's dtype; ``v`` is not modified.
    """
    spikes, v, _ = neuron_scan(x.unsqueeze(0), v.clone(), threshold, reset=reset)
    return spikes[0], v


def signed_burst_step(x: torch.Tensor, v: torch.Tensor, count: torch.Tensor, threshold: torch.Tensor,
                      signed: bool, burst: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One timestep of the extended IF neuron (soft reset only); see ``neuron_scan``.

    Returns ``(k, v, count)``: the signed spike count of the step (in the input's dtype).
    ``v`` and ``count`` are not modified.
    """
    spikes, v, count = neuron_scan(x.unsqueeze(0), v.clone(), threshold, signed=signed, burst=burst,
                                   count=count.clone())
    return spikes[0], v, count


def neuron_scan(current: torch.Tensor, v: torch.Tensor, threshold: torch.Tensor, *, reset: str = "subtract",
                bias: torch.Tensor | None = None, signed: bool = False, burst: int = 1,
                count: torch.Tensor | None = None, out: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """``T`` timesteps of the IF neuron on the currents ``current[T, ...]``: the one implementation
    of the neuron dynamics that the runtime, the calibration methods and SpikeNorm all call.

    Per step t (``threshold`` and ``bias`` broadcast against ``current[t]``):

        v <- v + x[t] (+ bias)
        binary:  k = 1 if v >= threshold else 0
                 subtract ("soft reset"): v <- v - k * threshold;  zero ("hard reset"): v <- v * (1 - k)
        burst (Li & Zeng 2022): k = clamp(floor(v / threshold), 0, burst) spikes in one step
        signed (Wang et al. 2022, "signed neuron with memory"): if no positive spike fires,
            v < 0 and the neuron has fired net positive before, it fires
            k = -min(count, burst, ceil(-v / threshold)) negative spikes, undoing earlier ones
        (burst/signed use reset by subtraction:) v <- v - k * threshold;  count <- count + k

    ``v`` (and ``count``, needed for signed spikes) are updated in place and returned. ``out``
    (``[T, ...]``, any dtype) receives each step's signed spike count k; without it a new tensor
    of the current's dtype is returned.
    """
    extended = signed or burst > 1
    if extended and reset != "subtract":
        raise ValueError("signed and burst spikes need reset 'subtract'")
    if signed and count is None:
        count = torch.zeros_like(v)
    if out is None:
        out = torch.empty(current.shape[:1] + torch.broadcast_shapes(current.shape[1:], v.shape),
                          dtype=current.dtype, device=current.device)
    if not extended:  # the common case, allocation-free per step (float 0/1 spikes: the fastest kernels)
        direct = out.dtype == v.dtype and out.shape[1:] == v.shape
        k = None if direct else torch.empty_like(v)
        for t in range(current.shape[0]):
            spikes = out[t] if direct else k
            v.add_(current[t])
            if bias is not None:
                v.add_(bias)
            torch.ge(v, threshold, out=spikes)
            if reset == "subtract":
                v.addcmul_(spikes, threshold, value=-1.0) if torch.is_tensor(threshold) else v.sub_(spikes * threshold)
            else:
                v.addcmul_(v, spikes, value=-1.0)  # v * (1 - k): zero where it fired
            if not direct:
                out[t].copy_(spikes)
        return out, v, count
    for t in range(current.shape[0]):
        v.add_(current[t])
        if bias is not None:
            v.add_(bias)
        k = torch.clamp(torch.floor(v / threshold), 0, burst)
        if signed:
            undo = torch.minimum(torch.clamp(torch.ceil(-v / threshold), 0, burst), count)
            k = torch.where(v < 0, -undo, k)
            count.add_(k)
        v.sub_(k * threshold)
        out[t] = k
    return out, v, count


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
        spikes, v = self.scan(v, x.unsqueeze(0))
        return spikes[0], v

    def scan(self, state, currents: torch.Tensor):
        """``T`` steps at once on ``currents[T, N, ...]``: ``(outputs[T, N, ...], state)``; the state
        (``v``, or ``(v, count)`` for signed/burst neurons) is updated in place."""
        x = currents[0]
        threshold = channel_view(self.threshold, x.ndim)
        if state is None:
            v = torch.zeros_like(x) + channel_view(self.v_init, x.ndim)
            state = (v, torch.zeros_like(x)) if self.extended else v
        v, count = state if self.extended else (state, None)
        spikes, v, count = neuron_scan(currents, v, threshold, reset=self.reset,
                                       bias=channel_view(self.bias, x.ndim) if self.has_bias else None,
                                       signed=self.signed, burst=self.burst, count=count)
        return spikes * threshold, ((v, count) if self.extended else v)
