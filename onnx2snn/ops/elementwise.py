"""Broadcasting arithmetic: the residual Add and affine Mul/Add/Sub/Div by constants."""
from __future__ import annotations

import torch

from .base import Op, register


@register
class Add(Op):
    op_type = "Add"
    inputs = (2, 2)
    notes = "residual sums of spiking paths, and bias or affine terms"

    def forward(self, a, b):
        return torch.add(a, b)  # the operator form goes through Tensor.__add__'s Python wrapper


@register
class Sub(Op):
    op_type = "Sub"
    inputs = (2, 2)
    notes = "by a constant (input preprocessing: folded into the first layer) or between tensors"

    def forward(self, a, b):
        return a - b


@register
class Mul(Op):
    op_type = "Mul"
    inputs = (2, 2)
    notes = "per-channel constants fold into the adjacent Conv/Gemm; otherwise runs as is"

    def forward(self, a, b):
        return a * b


@register
class Div(Op):
    op_type = "Div"
    inputs = (2, 2)
    notes = "by a constant (input preprocessing: folded into the first layer) or between tensors"

    def forward(self, a, b):
        return a / b


@register
class Identity(Op):
    op_type = "Identity"
    notes = "dropped by the converter"

    def forward(self, x):
        return x


@register
class Neg(Op):
    op_type = "Neg"

    def forward(self, x):
        return torch.neg(x)
