"""Spiking neurons: the integrate-and-fire (IF) node of the ``onnx2snn`` domain.

The neuron is a pure step function of its input current and membrane potential; the network
owns the potential. Its output is the spike times the threshold, so that the firing rate
times the threshold approximates the ANN's ReLU activation and the synaptic weights that
follow stay unchanged (equivalently: binary spikes with the threshold folded into the next
layer's weights).
"""
from __future__ import annotations

import logging
import warnings

import numpy as np
import torch

from ..dialect import IF_SCHEMA, IFAttributes, NeuronParameters
from ..logs import logger_level
from .base import NodeInfo, StatefulOp, register


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
                count: torch.Tensor | None = None, out: torch.Tensor | None = None, weighted: bool = False,
                fused: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
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
    of the current's dtype is returned. ``weighted`` writes ``k * threshold`` instead (the IF node's
    output), which saves a pass; exact when ``out`` is float32 or wider. ``current`` and ``out`` may
    also be lists of T tensors (a streaming step passes ``[x]``: at batch 1 the views that add and
    drop a time axis cost as much as a neuron's arithmetic).

    ``fused`` (binary neurons with a floating ``out``): each step runs as one kernel that
    ``torch.compile`` generates (``_fused_step``) instead of four or five passes, with the same
    bits; where compiling fails (no C++ compiler), it says so once and runs the passes below.
    """
    extended = signed or burst > 1
    if extended and reset != "subtract":
        raise ValueError("signed and burst spikes need reset 'subtract'")
    if fused and not extended and out is not None and out[0].dtype.is_floating_point and _fused_available():
        if _fused_scan(current, v, threshold, bias, out, reset, weighted):
            return out, v, count
    if signed and count is None:
        count = torch.zeros_like(v)
    steps = len(current)
    if out is None:
        first = current[0]
        shape = torch.broadcast_shapes(first.shape, v.shape)
        like = v if v.shape == shape else torch.empty(shape, device=first.device)
        out = stacked_like(like, steps, first.dtype)
    if not extended:
        # Three or four in-place passes per step and no allocation (large temporaries cost page
        # faults). k is written straight into out[t] when out matches v (float 0/1 spikes: the
        # fastest kernels), else into one reused buffer that is copied into out[t] (int8 trains,
        # reduced precision). Since k is 0 or 1, v - k*threshold and v - v*k are exactly
        # v - threshold (soft) or 0 (hard) where the neuron fired, v elsewhere. A reduced-precision
        # current is added to the float32 potential as it is: one mixed-dtype pass is cheaper than
        # a float32 copy of the block plus a pass (0.52 against 0.71 ms on 1.6 M values here).
        first_out = out[0]
        direct = first_out.dtype == v.dtype and first_out.shape == v.shape
        buffer = None if direct else torch.empty_like(v)
        scalar = not torch.is_tensor(threshold)
        for t in range(steps):
            v.add_(current[t])
            if bias is not None:
                v.add_(bias)
            k = out[t] if direct else buffer
            torch.ge(v, threshold, out=k)
            if reset == "zero":
                v.addcmul_(v, k, value=-1.0)
                if weighted:
                    k.mul_(threshold)
            elif weighted:
                v.sub_(k.mul_(threshold))
            elif scalar:
                v.sub_(k, alpha=threshold)
            else:
                v.addcmul_(k, threshold, value=-1.0)
            if not direct:
                out[t].copy_(k)
        return out, v, count
    for t in range(steps):
        v.add_(current[t])
        if bias is not None:
            v.add_(bias)
        k = torch.clamp(torch.floor(v / threshold), 0, burst)
        if signed:
            undo = torch.minimum(torch.clamp(torch.ceil(-v / threshold), 0, burst), count)
            k = torch.where(v < 0, -undo, k)
            count.add_(k)
        v.sub_(k * threshold)
        out[t].copy_(k * threshold if weighted else k)
    return out, v, count


def _fused_step(v: torch.Tensor, x: torch.Tensor, threshold: torch.Tensor, bias: torch.Tensor,
                out: torch.Tensor, soft: bool, weighted: bool) -> None:
    """One step of the binary neuron as one expression, for torch.compile to fuse into one pass over
    the tensors (eager, the same arithmetic is the passes of neuron_scan, whose bits it keeps: the
    same float32 additions in the same order, and k * threshold exact for k in {0, 1}). ``bias`` is
    always a tensor (a zero where the neuron has none: adding it changes no value), so that having a
    bias or not does not compile another variant."""
    v.add_(x)
    v.add_(bias)
    k = (v >= threshold).to(v.dtype)
    v.sub_(k * threshold if soft else v * k)
    out.copy_(k * threshold if weighted else k)


_compiled: dict = {}  # "step": the compiled _fused_step, or None once compiling has failed


def _room_for_variants():
    """Each dtype, rank and reset compiles its own variant; torch's default of 8 per function is too few
    for a network run in several precisions (past it, a fullgraph compile fails)."""
    config = torch._dynamo.config
    return config.patch(**{"recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit": 64})


def _fused_available() -> bool:
    return _compiled.get("step", True) is not None


def _fused_scan(current, v, threshold, bias, out, reset: str, weighted: bool) -> bool:
    """``neuron_scan``'s binary steps through the compiled kernel; False (nothing changed) where it
    can't be compiled here."""
    step = _compiled.get("step")
    if step is None:
        # dynamic shapes: one compilation serves every layer and batch size
        step = _compiled["step"] = torch.compile(_fused_step, dynamic=True, fullgraph=True)
    if not torch.is_tensor(threshold):  # a Python float would be compiled in as a constant
        threshold = torch.tensor(float(threshold), device=v.device)
    if bias is None:
        bias = torch.zeros((), device=v.device)
    soft = reset == "subtract"
    # torch's C++ build step logs that it found no CUDA runtime, also on a CPU-only run that never
    # needs one: noise for a user who asked for a CPU kernel
    with _room_for_variants(), logger_level("torch.utils.cpp_extension", logging.ERROR):
        try:
            step(v, current[0], threshold, bias, out[0], soft, weighted)
        except Exception as error:  # compilation happens before the first step writes anything
            _compiled["step"] = None
            warnings.warn(f"the fused neuron kernel could not be compiled ({type(error).__name__}: "
                          f"{str(error).splitlines()[0][:200] if str(error) else ''}); running the neurons unfused, "
                          "which gives the same results more slowly", RuntimeWarning, stacklevel=3)
            return False
        for t in range(1, len(current)):
            step(v, current[t], threshold, bias, out[t], soft, weighted)
    return True


def stacked_like(like: torch.Tensor, steps: int, dtype: torch.dtype) -> torch.Tensor:
    """An empty ``[steps, *like.shape]`` tensor whose every step has ``like``'s memory format
    (channels_last stays channels_last, so the next convolution needs no layout copy)."""
    if steps == 1:  # a streaming step: one call (empty_like keeps the layout of a dense tensor)
        return torch.empty_like(like, dtype=dtype).unsqueeze(0)
    if like.ndim == 4 and not like.is_contiguous() and like.is_contiguous(memory_format=torch.channels_last):
        flat = torch.empty((steps * like.shape[0], *like.shape[1:]), dtype=dtype, device=like.device,
                           memory_format=torch.channels_last)
        return flat.view(steps, *like.shape)
    return torch.empty((steps, *like.shape), dtype=dtype, device=like.device)


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

    schema = IF_SCHEMA
    notes = "spiking neuron that replaces ReLU / Clip(0, a) / ReLU6; output = spike x threshold"

    def __init__(self, node: NodeInfo):
        super().__init__(node)
        attributes = IFAttributes.read(node.attrs, f"node {node.name!r} ({node.op_type})")
        self.reset = attributes.reset
        self.clip_max = attributes.clip_max
        self.register_buffer("threshold", torch.ones(1))
        self.register_buffer("v_init", torch.zeros(1))
        self.register_buffer("bias", torch.zeros(1))
        self._views: tuple | None = None  # see _channel_views
        self.fused = False  # run binary steps through the compiled kernel (SpikingNetwork.fuse_neurons)
        self.configure(attributes.parameters)

    def configure(self, parameters: NeuronParameters) -> None:
        """Take a layer's parameters as calibration decided them (the graph's attributes, or a method's trial)."""
        self.set_threshold(parameters.threshold)
        self.set_v_init(parameters.v_init)
        self.set_bias(parameters.bias)
        self.signed, self.burst = bool(parameters.signed), int(parameters.burst)

    def neuron_parameters(self) -> NeuronParameters:
        return NeuronParameters(self.threshold.cpu().numpy(), self.v_init.cpu().numpy(), self.bias.cpu().numpy(),
                                self.signed, self.burst)

    def set_threshold(self, values) -> None:
        values = torch.as_tensor(np.asarray(values, dtype=np.float32).reshape(-1).copy())
        self.threshold = values.to(self.threshold.device)

    def set_v_init(self, values) -> None:
        values = torch.as_tensor(np.asarray(values, dtype=np.float32).reshape(-1).copy())
        self.v_init = values.to(self.v_init.device)

    def set_bias(self, values) -> None:
        values = np.asarray(values, dtype=np.float32).reshape(-1).copy()
        self.has_bias = bool(np.any(values != 0))  # known up front: no device sync per step
        self.bias = torch.as_tensor(values).to(self.bias.device)

    @property
    def extended(self) -> bool:
        """Whether the neuron uses signed or burst spikes (state is then ``(v, count)``)."""
        return self.signed or self.burst > 1

    def analog(self, x):
        return torch.relu(x) if self.clip_max is None else torch.clamp(x, 0.0, self.clip_max)

    def spike_events(self, out: torch.Tensor) -> float:
        """Spikes in one step's output: a burst of k spikes (or k negative ones) counts k."""
        # counted in float32 and summed in float64: a bfloat16 sum keeps 8 significant bits
        return float((out.float().abs() / channel_view(self.threshold, out.ndim)).round().sum(dtype=torch.float64))

    def step(self, v, x, *, out_dtype: torch.dtype | None = None):
        """One timestep: ``(output, state)``, a one-step ``scan`` with no time axis to add and drop.
        A streaming step at batch 1 makes this call for every neuron, so the common case (binary
        spikes, a potential already there, a float output) goes straight to ``neuron_scan``."""
        dtype = out_dtype or x.dtype
        if v is None or self.signed or self.burst > 1 or not dtype.is_floating_point:
            spikes, v = self.scan(v, [x], out_dtype=out_dtype)
            return spikes[0], v
        threshold, bias = self._channel_views(x.ndim)
        out = torch.empty_like(v, dtype=dtype)
        neuron_scan((x,), v, threshold, reset=self.reset, bias=bias, out=(out,), weighted=True)
        return out, v

    def _channel_views(self, ndim: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Threshold and bias broadcast over ``[N, C, ...]`` (cached: a scan of one step at batch 1
        is short enough for the reshapes to show)."""
        threshold, bias = self._buffers["threshold"], self._buffers["bias"]
        cached = self._views
        if cached is None or cached[0] != ndim or cached[1] is not threshold or cached[2] is not bias:
            view = float(threshold) if threshold.numel() == 1 else channel_view(threshold, ndim)
            cached = self._views = (ndim, threshold, bias, view, channel_view(bias, ndim) if self.has_bias else None)
        return cached[3], cached[4]

    def scan(self, state, currents: torch.Tensor, *, out_dtype: torch.dtype | None = None):
        """``T`` steps at once on ``currents[T, N, ...]``: ``(outputs[T, N, ...], state)``; the state
        (``v``, or ``(v, count)`` for signed/burst neurons) is updated in place. The potential is
        float32 even for bfloat16/float16 currents; ``out_dtype`` (default: the currents') is the
        dtype of the outputs, which are exact in any float type up to the rounding of the threshold.
        ``currents`` may also be a list of T ``[N, ...]`` tensors; the outputs are then a list too."""
        first = currents[0]
        ndim = first.ndim
        threshold, bias = self._channel_views(ndim)
        extended = self.extended
        if state is None:
            v = torch.zeros_like(first, dtype=torch.promote_types(first.dtype, torch.float32)) + channel_view(
                self.v_init, ndim)
            state = (v, torch.zeros_like(v)) if extended else v
        v, count = state if extended else (state, None)
        # A reduced-precision block is scanned as it is (the float32 potential adds it) and each
        # step's output written straight in the wanted dtype: no converted copies of the block.
        dtype = out_dtype or first.dtype
        written = dtype if dtype.is_floating_point else v.dtype
        stacked = isinstance(currents, torch.Tensor)
        steps = len(currents)
        out = stacked_like(v, steps, written) if stacked else [torch.empty_like(v, dtype=written) for _ in currents]
        spikes, v, count = neuron_scan(currents, v, threshold,
                                       reset=self.reset, bias=bias, signed=self.signed, burst=self.burst, count=count,
                                       out=out, weighted=True, fused=self.fused)
        if written != dtype:
            spikes = stacked_like(v, steps, dtype).copy_(spikes) if stacked else [k.to(dtype) for k in spikes]
        return spikes, ((v, count) if extended else v)
