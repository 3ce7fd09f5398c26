"""Ops the converter accepts and rewrites away before the runtime sees the graph."""
from __future__ import annotations

from .base import RewrittenOp, register


def _rewritten(op_type: str, notes: str, inputs: tuple[int, int] = (1, 1), since: int = 1, **declared) -> type:
    cls = type(op_type, (RewrittenOp,), {"op_type": op_type, "notes": notes, "since": since, "inputs": inputs,
                                         **declared})
    return register(cls)


Relu = _rewritten("Relu", "becomes an IF neuron")
Clip = _rewritten("Clip", "Clip(0, a) and ReLU6 become an IF neuron whose rate is capped (threshold <= a); "
                          "Clip(0, inf) is a ReLU; other bounds are unsupported", (1, 3), since=6)
def _batchnorm_shape_problem(cls, shapes: list[list[int] | None]) -> str | None:
    params = (shapes + [None] * 5)[1:5]
    known = [p for p in params if p is not None]
    if any(len(p) != 1 for p in known) or len({tuple(p) for p in known}) > 1:
        return f"scale, bias, mean and variance must be 1-D of one length, not {params}"
    return None


BatchNormalization = _rewritten(
    "BatchNormalization", "inference mode only; folded into the Conv/Gemm before it, else into the Conv/Gemm "
                          "after it, else kept as a per-channel Mul + Add that feeds the neuron", (5, 5),
    weights=(1, 2, 3, 4), weight_shape_problem=classmethod(_batchnorm_shape_problem))
MaxPool = _rewritten("MaxPool", "becomes the spiking max-pool gate `onnx2snn.MaxPool` (any kernel, strides, pads, "
                                "dilations, auto_pad, ceil_mode; not the Indices output); `--maxpool average` "
                                "swaps it for AveragePool instead", windowed=True)
Dropout = _rewritten("Dropout", "dropped (inference)", (1, 3))
Softmax = _rewritten("Softmax", "dropped at the output (with a note): the readout takes the argmax of "
                                "accumulated potentials; unsupported elsewhere")
LogSoftmax = _rewritten("LogSoftmax", "dropped at the output, as Softmax")
Constant = _rewritten("Constant", "folded", (0, 0))
_SHAPE_OPS = {"Shape": (1, 1), "Gather": (2, 2), "Cast": (1, 1), "ConstantOfShape": (1, 1), "Range": (3, 3),
              "Expand": (2, 2), "Equal": (2, 2), "Where": (3, 3), "Floor": (1, 1)}
for _op, _inputs in _SHAPE_OPS.items():
    _rewritten(_op, "allowed only where constant folding removes it (shape computations)", _inputs)
