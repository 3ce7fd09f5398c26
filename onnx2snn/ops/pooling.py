"""Average pooling and mean reductions (linear, so they act on spike trains unchanged)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import NodeInfo, Op, as_int_list, register
from .padding import explicit_pads, split_pads

_AVG = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}


@register
class AveragePool(Op):
    op_type = "AveragePool"
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

    def forward(self, x):
        return x.mean(dim=tuple(range(2, x.ndim)), keepdim=True)


@register
class ReduceMean(Op):
    op_type = "ReduceMean"
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
