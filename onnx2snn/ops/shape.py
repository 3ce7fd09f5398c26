"""Layout ops: Reshape, Flatten, Transpose, Concat, Slice, Pad, Squeeze, Unsqueeze.

Shapes, slices and pads must be constants after normalization; the batch dimension stays free.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .base import MANY, NodeInfo, Op, as_int_list, register


@register
class Reshape(Op):
    op_type = "Reshape"
    inputs = (2, 2)
    since = 5
    notes = ("constant target; run-time Shape -> Gather -> Concat chains are resolved by the converter with the "
             "batch dimension kept free; a reshape to [batch, features] becomes Flatten")

    def __init__(self, node: NodeInfo):
        super().__init__(node)
        self.shape = as_int_list(node.const(1, "shape"))
        self.allowzero = bool(node.attrs.get("allowzero", 0))

    def forward(self, x, _shape=None):
        shape = [x.shape[i] if (s == 0 and not self.allowzero) else s for i, s in enumerate(self.shape)]
        return x.reshape(shape)


@register
class Flatten(Op):
    op_type = "Flatten"
    notes = "any axis"

    def forward(self, x):
        axis = int(self.node.attrs.get("axis", 1))
        axis = axis + x.ndim if axis < 0 else axis
        return x.reshape(math.prod(x.shape[:axis]), -1)


@register
class Transpose(Op):
    op_type = "Transpose"
    notes = "NHWC Transpose pairs around convolutions (TensorFlow/Keras exports) cancel out"

    def forward(self, x):
        perm = self.node.attrs.get("perm")
        return x.permute(*perm) if perm is not None else x.permute(*reversed(range(x.ndim)))


@register
class Concat(Op):
    op_type = "Concat"
    inputs = (1, MANY)
    notes = "any axis (DenseNet-style feature concatenation of spiking paths)"

    def forward(self, *xs):
        return torch.cat(xs, dim=int(self.node.attrs["axis"]))


@register
class Slice(Op):
    op_type = "Slice"
    inputs = (3, 5)
    since = 10
    notes = "constant starts/ends/axes/steps, any step including negative (option-A shortcuts)"

    def __init__(self, node: NodeInfo):
        super().__init__(node)
        self.starts = as_int_list(node.const(1, "starts"))
        self.ends = as_int_list(node.const(2, "ends"))
        axes = node.optional_const(3, "axes")
        steps = node.optional_const(4, "steps")
        self.axes = as_int_list(axes) if axes is not None else list(range(len(self.starts)))
        self.steps = as_int_list(steps) if steps is not None else [1] * len(self.starts)
        if 0 in self.steps:
            raise node.fail("a slice step of 0 is invalid")
        self._plan_for: torch.Size | None = None  # the input shape that self._plan was resolved for
        self._plan: tuple = ((), [])

    def _resolve(self, shape: torch.Size) -> tuple[tuple, list[tuple[int, int, int, int]]]:
        """One basic index for the positive steps, (axis, start, end, step) for the negative ones
        (ONNX axes are distinct, so slicing one axis leaves the others' lengths as they are)."""
        index: list = [slice(None)] * len(shape)
        reversed_axes = []
        for start, end, axis, step in zip(self.starts, self.ends, self.axes, self.steps):
            axis = axis + len(shape) if axis < 0 else axis
            start, end, step = slice(start, end, step).indices(shape[axis])
            if step > 0:
                index[axis] = slice(start, end, step)
            else:
                reversed_axes.append((axis, start, end, step))
        return tuple(index), reversed_axes

    def forward(self, x, *unused):
        if x.shape != self._plan_for:  # resolved once per input shape (a streaming step pays no arithmetic)
            self._plan_for, self._plan = x.shape, self._resolve(x.shape)
        index, reversed_axes = self._plan
        x = x[index]
        for axis, start, end, step in reversed_axes:
            x = x.index_select(axis, torch.arange(start, end, step, device=x.device))
        return x


@register
class Pad(Op):
    op_type = "Pad"
    inputs = (2, 4)
    since = 11
    notes = "constant, reflect and edge modes; constant pads (negative pads crop)"

    _MODES = {"constant": "constant", "reflect": "reflect", "edge": "replicate"}

    def __init__(self, node: NodeInfo):
        super().__init__(node)
        self.pads = as_int_list(node.const(1, "pads"))
        value = node.optional_const(2, "constant_value")
        self.value = float(value.reshape(-1)[0]) if value is not None and value.size else 0.0
        axes = node.optional_const(3, "axes")
        self.axes = as_int_list(axes) if axes is not None else None
        mode = node.attrs.get("mode", b"constant")
        mode = mode.decode() if isinstance(mode, bytes) else mode
        if mode not in self._MODES:
            raise node.fail(f"pad mode {mode!r} is not supported")
        self.mode = self._MODES[mode]
        self._pads_for: int | None = None  # the input rank that self._torch_pads was resolved for
        self._torch_pads: list[int] = []

    def forward(self, x, *unused):
        if x.ndim != self._pads_for:
            self._pads_for, self._torch_pads = x.ndim, self._resolve(x.ndim)
        if self.mode == "constant":
            return F.pad(x, self._torch_pads, value=self.value)
        return F.pad(x, self._torch_pads, mode=self.mode)

    def _resolve(self, ndim: int) -> list[int]:
        """ONNX pads (begins of every axis, then ends) as F.pad's list, last axis first."""
        axes = self.axes if self.axes is not None else list(range(ndim))
        axes = [a + ndim if a < 0 else a for a in axes]
        count = len(axes)
        begins, ends = dict(zip(axes, self.pads[:count])), dict(zip(axes, self.pads[count:]))
        torch_pads: list[int] = []
        for axis in reversed(range(ndim)):
            torch_pads += [begins.get(axis, 0), ends.get(axis, 0)]
        while len(torch_pads) > 2 and torch_pads[-2:] == [0, 0]:
            torch_pads = torch_pads[:-2]
        return torch_pads


def _axes(node: NodeInfo) -> list[int] | None:
    if "axes" in node.attrs:
        return as_int_list(node.attrs["axes"])
    axes = node.optional_const(1, "axes")
    return None if axes is None else as_int_list(axes)


@register
class Squeeze(Op):
    op_type = "Squeeze"
    inputs = (1, 2)
    notes = "axes as attribute or constant input"

    def forward(self, x, *unused):
        axes = _axes(self.node)
        if axes is None:
            return x.squeeze()
        return x.squeeze(tuple(a + x.ndim if a < 0 else a for a in axes))


@register
class Unsqueeze(Op):
    op_type = "Unsqueeze"
    inputs = (1, 2)
    notes = "axes as attribute or constant input"

    def forward(self, x, *unused):
        axes = _axes(self.node)
        if axes is None:
            raise self.node.fail("Unsqueeze needs axes")
        rank = x.ndim + len(axes)
        for axis in sorted(a + rank if a < 0 else a for a in axes):
            x = x.unsqueeze(axis)
        return x
