"""Ops the converter accepts and rewrites away before the runtime sees the graph."""
from __future__ import annotations

from .base import RewrittenOp, register


def _rewritten(op_type: str, notes: str, since: int = 1) -> type:
    cls = type(op_type, (RewrittenOp,), {"op_type": op_type, "notes": notes, "since": since})
    return register(cls)


Relu = _rewritten("Relu", "becomes an IF neuron")
Clip = _rewritten("Clip", "Clip(0, a) and ReLU6 become an IF neuron whose rate is capped (threshold <= a); "
                          "Clip(0, inf) is a ReLU; other bounds are unsupported", since=6)
BatchNormalization = _rewritten(
    "BatchNormalization", "inference mode only; folded into the Conv/Gemm before it, else into the Conv/Gemm "
                          "after it, else kept as a per-channel Mul + Add that feeds the neuron")
Dropout = _rewritten("Dropout", "dropped (inference)")
Softmax = _rewritten("Softmax", "dropped at the output (with a note): the readout takes the argmax of "
                                "accumulated potentials; unsupported elsewhere")
LogSoftmax = _rewritten("LogSoftmax", "dropped at the output, as Softmax")
Constant = _rewritten("Constant", "folded")
for _op in ("Shape", "Gather", "Cast", "ConstantOfShape", "Range", "Expand", "Equal", "Where", "Floor"):
    _rewritten(_op, "allowed only where constant folding removes it (shape computations)")
