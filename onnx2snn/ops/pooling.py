"""Pooling: average pooling and mean reductions (linear, so they act on spike trains unchanged),
and the spiking max-pool gate."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..dialect import MAXPOOL_SCHEMA
from .base import NodeInfo, Op, StatefulOp, as_int_list, register
from .padding import explicit_pads, split_pads

_AVG = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}


@register
class AveragePool(Op):
    op_type = "AveragePool"
    windowed = True
    notes = "any kernel, strides, pads, auto_pad, ceil_mode and count_include_pad"

    def __init__(self, node: NodeInfo):
        super().__init__(node)
        self.kernel = as_int_list(node.attrs["kernel_shape"])
        self.rank = len(self.kernel)
        if self.rank not in _AVG:
            raise node.fail(f"{self.rank}-D pooling is not supported")
        self.strides = as_int_list(node.attrs.get("strides", [1] * self.rank))
        self.ceil_mode = bool(node.attrs.get("ceil_mode", 0))
        self.count_include_pad = bool(node.attrs.get("count_include_pad", 0))
        if as_int_list(node.attrs.get("dilations", [1] * self.rank)) != [1] * self.rank:
            raise node.fail("dilated average pooling is not supported")

    def forward(self, x):
        pads = explicit_pads(self.node.attrs, list(x.shape[2:]), self.kernel, self.strides, [1] * self.rank)
        pool = _AVG[self.rank]
        if not any(pads):
            return pool(x, self.kernel, self.strides, 0, self.ceil_mode)
        torch_pads, padding = split_pads(pads)
        if torch_pads is None and all(p <= k // 2 for p, k in zip(padding, self.kernel)):
            return pool(x, self.kernel, self.strides, padding, self.ceil_mode, self.count_include_pad)
        # Asymmetric or large pads: pad explicitly; divide by the count of real cells when required.
        torch_pads = torch_pads or [p for b in reversed(padding) for p in (b, b)]
        summed = pool(F.pad(x, torch_pads), self.kernel, self.strides, 0, self.ceil_mode)
        if self.count_include_pad:
            return summed
        ones = F.pad(torch.ones_like(x[:1, :1]), torch_pads)
        return summed / pool(ones, self.kernel, self.strides, 0, self.ceil_mode)


@register
class GlobalAveragePool(Op):
    op_type = "GlobalAveragePool"
    notes = "linear: acts on spike trains unchanged"

    def forward(self, x):
        return x.mean(dim=tuple(range(2, x.ndim)), keepdim=True)


@register
class ReduceMean(Op):
    op_type = "ReduceMean"
    inputs = (1, 2)
    notes = "axes as attribute (opset < 18) or constant input (opset 18+)"

    def __init__(self, node: NodeInfo):
        super().__init__(node)
        axes = node.attrs.get("axes")
        if axes is None and node.opset >= 18:
            axes = node.optional_const(1, "axes")
        self.axes = None if axes is None else tuple(as_int_list(axes))
        self.keepdims = bool(node.attrs.get("keepdims", 1))
        if self.axes is None and node.attrs.get("noop_with_empty_axes", 0):
            raise node.fail("noop_with_empty_axes is not supported")

    def forward(self, x, *unused):
        axes = self.axes if self.axes is not None else tuple(range(x.ndim))
        return x.mean(dim=axes, keepdim=self.keepdims)


_MAX = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}


@register
class SpikingMaxPool(StatefulOp):
    """Spiking max-pool (Rueckauer et al. 2017): a gate per pooling window.

    The ANN meaning (``analog``) is the ordinary max-pool. Over time, the gate tracks the input
    each window has accumulated so far, ``a[t] = a[t-1] + x[t]``, and passes on the current input
    of the window's leader, ``y[t] = x[t][argmax a[t]]``. Since each input spike carries its
    layer's threshold, the leader is the input neuron with the highest firing rate so far, and
    the output's rate converges to the largest input rate: the max-pool of the rates. Ties go to
    the first position in the window; padded cells never lead. Its attributes are the standard
    MaxPool's; it has its own node type so that no reader mistakes it for a stateless max-pool.
    """

    schema = MAXPOOL_SCHEMA
    windowed = True
    neuron = False
    notes = ("spiking max-pool gate: passes the spikes of the input with the highest accumulated count so far "
             "(Rueckauer et al. 2017); the converter writes it for each standard MaxPool")

    def __init__(self, node: NodeInfo):
        super().__init__(node)
        self.kernel = as_int_list(node.attrs["kernel_shape"])
        self.rank = len(self.kernel)
        if self.rank not in _MAX:
            raise node.fail(f"{self.rank}-D pooling is not supported")
        if len(node.outputs) > 1 and node.outputs[1]:
            raise node.fail("the Indices output of MaxPool is not supported")
        self.strides = as_int_list(node.attrs.get("strides", [1] * self.rank))
        self.dilations = as_int_list(node.attrs.get("dilations", [1] * self.rank))
        self.ceil_mode = bool(node.attrs.get("ceil_mode", 0))

    def _padded(self, x: torch.Tensor, value: float) -> torch.Tensor:
        pads = explicit_pads(self.node.attrs, list(x.shape[2:]), self.kernel, self.strides, self.dilations)
        torch_pads = [p for b, e in zip(reversed(pads[:self.rank]), reversed(pads[self.rank:])) for p in (b, e)]
        return F.pad(x, torch_pads, value=value) if any(torch_pads) else x

    def _pool(self, x: torch.Tensor, return_indices: bool = False):
        return _MAX[self.rank](x, self.kernel, self.strides, 0, self.dilations, self.ceil_mode, return_indices)

    def analog(self, x):
        return self._pool(self._padded(x, -math.inf))

    def step(self, accumulated, x):
        accumulated = x.clone() if accumulated is None else accumulated + x
        _, leaders = self._pool(self._padded(accumulated, -math.inf), return_indices=True)
        current = self._padded(x, 0.0)
        # Indices are flat positions within each (sample, channel) plane of the padded input.
        gathered = current.flatten(2).gather(2, leaders.flatten(2))
        return gathered.view(leaders.shape), accumulated
