"""Weighted layers: Conv, Gemm and MatMul."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import NodeInfo, Op, WeightLayout, register
from .padding import explicit_pads, pad_input, split_pads

_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


class ConvLayout(WeightLayout):
    """``[out, in / group, k...]``."""

    def axes(self, attrs, weight_ndim):
        return (0, 1) if weight_ndim >= 3 else None


class GemmLayout(WeightLayout):
    """``B`` is ``[in, out]``, or ``[out, in]`` with ``transB``; a transposed ``A`` is not folded."""

    def axes(self, attrs, weight_ndim):
        if attrs.get("transA", 0) or weight_ndim != 2:
            return None
        return (0, 1) if attrs.get("transB", 0) else (1, 0)


@register
class Conv(Op):
    op_type = "Conv"
    inputs = (2, 3)
    weights = (1, 2)
    layout = ConvLayout()
    windowed = True

    @classmethod
    def weight_shape_problem(cls, shapes):
        weight, bias = (shapes + [None, None, None])[1:3]
        if weight is not None and len(weight) < 3:
            return f"weight has shape {weight}; a convolution needs [out, in, k...]"
        if weight is not None and bias is not None and bias != [weight[0]]:
            return f"bias has shape {bias}, expected [{weight[0]}]"
        return None
    notes = "1-D, 2-D and 3-D; with or without bias; grouped and depthwise; any strides, pads, dilations or auto_pad"

    def __init__(self, node: NodeInfo):
        super().__init__(node)
        weight = node.const(1, "weight")
        self.rank = weight.ndim - 2
        if self.rank not in _CONV:
            raise node.fail(f"weight of rank {weight.ndim} is not supported")
        attrs = node.attrs
        self.kernel = list(weight.shape[2:])
        self.strides = list(attrs.get("strides", [1] * self.rank))
        self.dilations = list(attrs.get("dilations", [1] * self.rank))
        self.group = int(attrs.get("group", 1))
        self._pads_for: torch.Size | None = None  # the input size that self._pads was resolved for
        self._pads: tuple = (None, [0] * self.rank)
        self._packed: tuple | None = None  # (weight, its version, input shape, oneDNN weight or None)

    def forward(self, x, weight, bias=None):
        spatial = x.shape[2:]
        if spatial != self._pads_for:  # the padding depends on the input size only with auto_pad
            pads = explicit_pads(self.node.attrs, list(spatial), self.kernel, self.strides, self.dilations)
            self._pads_for, self._pads = spatial, split_pads(pads)
        torch_pads, padding = self._pads
        if torch_pads is not None:
            x = pad_input(x, torch_pads)
        if x.dtype is torch.bfloat16 and x.shape[0] == 1 and self.rank == 2 and x.device.type == "cpu" and not (
                x.requires_grad or weight.requires_grad):  # the prepacked op has no backward
            packed = self._prepacked(x, weight, padding)
            if packed is not None:
                return torch.ops.mkldnn._convolution_pointwise(x, packed, bias, padding, self.strides, self.dilations,
                                                               self.group, "none", [], "")
        return _CONV[self.rank](x, weight, bias, self.strides, padding, self.dilations, self.group)

    def __getstate__(self):
        # the prepacked weight is an opaque oneDNN tensor, which copy.deepcopy and pickle cannot
        # read: copies start without it and prepack again on first use
        state = dict(super().__getstate__())
        state["_packed"] = None
        return state

    def drop_prepacked(self) -> None:
        """Forget the prepacked weight (its owner drops the weight copy it was made from)."""
        self._packed = None

    def _prepacked(self, x: torch.Tensor, weight: torch.Tensor, padding: list[int]) -> torch.Tensor | None:
        """The weight in oneDNN's own layout for inputs of ``x``'s shape (cached while the weight
        tensor and that shape stay), or None where torch would not run this convolution in oneDNN.

        torch runs a bfloat16 CPU convolution in oneDNN too, but ``F.conv2d`` reorders the weight at
        every call; for a single image (a streaming step at batch 1) that reorder is a large share of
        the call (bfloat16 ResNet-20 step: its convolutions 1.28 -> 0.90 ms here), while on blocks of
        100 images the prepacked op was 2-4% slower (simulate, T=32), hence one image only. The same
        primitive, so the same bits (tested); only where torch itself picks oneDNN for this call, and
        for a channels_last weight (the runtime's, see ``blocks.cast_constants``), with which both
        give a channels_last output."""
        # an in-place change of the weight (load_state_dict) bumps its version; the runtime's own
        # casts are inference tensors, which have none (their owner drops them: drop_prepacked)
        version = None if weight.is_inference() else weight._version
        cached = self._packed
        if cached is None or cached[0] is not weight or cached[1] != version or cached[2] != x.shape:
            packed = None
            if weight.is_contiguous(memory_format=torch.channels_last) and _torch_picks_onednn(
                    x, weight, self.strides, padding, self.dilations, self.group):
                packed = torch.ops.mkldnn._reorder_convolution_weight(weight, padding, self.strides, self.dilations,
                                                                      self.group, list(x.shape))
            cached = self._packed = (weight, version, x.shape, packed)
        return cached[3]


def _torch_picks_onednn(x, weight, strides, padding, dilations, group) -> bool:
    """Whether ``F.conv2d`` would run this convolution in oneDNN (torch's private backend query;
    False where this torch lacks it or the prepacked ops)."""
    try:
        backend = torch._C._select_conv_backend(x, weight, None, strides, padding, dilations, False,
                                                [0] * len(strides), group, None)
        return (backend == torch._C._ConvBackend.Mkldnn and torch.ops.mkldnn._reorder_convolution_weight is not None
                and torch.ops.mkldnn._convolution_pointwise is not None)
    except (AttributeError, RuntimeError, TypeError):
        return False


@register
class Gemm(Op):
    op_type = "Gemm"
    inputs = (2, 3)
    weights = (0, 1, 2)
    layout = GemmLayout()

    @classmethod
    def weight_shape_problem(cls, shapes):
        weight = (shapes + [None, None])[1]
        if weight is not None and len(weight) != 2:
            return f"weight has shape {weight}; Gemm needs a 2-D matrix"
        return None
    notes = "transA, transB, alpha and beta"

    def __init__(self, node: NodeInfo):
        super().__init__(node)
        self.trans_a = bool(node.attrs.get("transA", 0))
        self.trans_b = bool(node.attrs.get("transB", 0))
        self.alpha = float(node.attrs.get("alpha", 1.0))
        self.beta = float(node.attrs.get("beta", 1.0))

    def forward(self, a, b, c=None):
        a = a.t() if self.trans_a else a
        b = b.t() if self.trans_b else b
        y = a @ b
        if self.alpha != 1.0:
            y = y * self.alpha
        if c is not None:
            y = y + (c * self.beta if self.beta != 1.0 else c)
        return y


@register
class MatMul(Op):
    op_type = "MatMul"
    inputs = (2, 2)
    weights = (0, 1)
    notes = "MatMul + Add on a 2-D input becomes Gemm; otherwise numpy-style matmul"

    def forward(self, a, b):
        return torch.matmul(a, b)
