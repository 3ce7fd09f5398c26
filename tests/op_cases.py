"""One-node cases for every op the runtime runs, keyed by op type ("onnx2snn.X" for dialect ops).

``tests/test_op_cases.py`` runs each case with the runtime's op class and with onnxruntime and
fails when a registered runtime op has no case here: a new op is one class plus its cases.
"""
from __future__ import annotations

import dataclasses

import numpy as np

RNG = np.random.default_rng(11)


def r(*shape, low=None):
    values = RNG.normal(0, 1, shape).astype(np.float32)
    return values if low is None else (np.abs(values) + low).astype(np.float32)


def i64(*values):
    return np.array(values, dtype=np.int64)


@dataclasses.dataclass
class Case:
    """``inputs``: the node's inputs in order, as name -> value; names in ``constants`` become
    initializers, the others graph inputs. An empty name is an omitted optional input."""

    label: str
    inputs: list[tuple[str, np.ndarray | None]]
    attrs: dict = dataclasses.field(default_factory=dict)
    constants: tuple[str, ...] = ()
    opset: int = 13


def binary(op: str) -> list[Case]:
    b_low = 0.5 if op == "Div" else None  # keep divisors away from zero
    return [Case("tensor-by-tensor", [("a", r(2, 3, 4, 4)), ("b", r(2, 3, 4, 4, low=b_low))]),
            Case("broadcast-tensor", [("a", r(2, 3, 4, 4)), ("b", r(1, 3, 1, 1, low=b_low))]),
            Case("by-constant", [("a", r(2, 3, 4)), ("b", r(3, 1, low=b_low))], constants=("b",))]


CASES: dict[str, list[Case]] = {
    "Add": binary("Add"),
    "Sub": binary("Sub"),
    "Mul": binary("Mul"),
    "Div": binary("Div"),
    "Neg": [Case("neg", [("x", r(2, 5))])],
    "Identity": [Case("identity", [("x", r(2, 3, 2))])],
    "Conv": [
        Case("1-D", [("x", r(2, 3, 11)), ("w", r(4, 3, 3)), ("b", r(4))], {"pads": [1, 2], "strides": [2]},
             constants=("w", "b")),
        Case("2-D grouped", [("x", r(2, 4, 7, 7)), ("w", r(6, 2, 3, 3)), ("b", r(6))],
             {"group": 2, "pads": [1, 0, 1, 2], "dilations": [1, 2]}, constants=("w", "b")),
        Case("2-D same-upper no bias", [("x", r(1, 3, 8, 8)), ("w", r(5, 3, 4, 4))],
             {"auto_pad": "SAME_UPPER", "strides": [2, 2]}, constants=("w",)),
        Case("3-D", [("x", r(1, 2, 6, 5, 5)), ("w", r(3, 2, 3, 3, 3)), ("b", r(3))],
             {"pads": [1, 1, 1, 1, 1, 1], "strides": [2, 1, 2]}, constants=("w", "b")),
    ],
    "Gemm": [
        Case("transB alpha beta", [("a", r(3, 5)), ("b", r(4, 5)), ("c", r(4))],
             {"transB": 1, "alpha": 0.5, "beta": 2.0}, constants=("b", "c")),
        Case("transA no bias", [("a", r(5, 3)), ("b", r(5, 4))], {"transA": 1}, constants=("b",)),
    ],
    "MatMul": [Case("3-D by 2-D", [("a", r(2, 3, 5)), ("b", r(5, 4))], constants=("b",))],
    "AveragePool": [
        Case("2-D pads", [("x", r(2, 3, 7, 7))], {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}),
        Case("2-D count pads", [("x", r(1, 2, 6, 6))],
             {"kernel_shape": [3, 3], "pads": [0, 1, 2, 1], "count_include_pad": 1}),
        Case("1-D ceil", [("x", r(2, 3, 9))], {"kernel_shape": [2], "strides": [2], "ceil_mode": 1}),
    ],
    "GlobalAveragePool": [Case("2-D", [("x", r(2, 3, 5, 4))])],
    "ReduceMean": [
        Case("axes attribute", [("x", r(2, 3, 4, 5))], {"axes": [2, 3], "keepdims": 0}),
        Case("axes input (opset 18)", [("x", r(2, 3, 4, 5)), ("axes", i64(-1))], {"keepdims": 1},
             constants=("axes",), opset=18),
    ],
    "Flatten": [Case("axis 2", [("x", r(2, 3, 4, 5))], {"axis": 2})],
    "Reshape": [Case("zero and -1", [("x", r(2, 3, 4)), ("shape", i64(0, -1, 2))], constants=("shape",))],
    "Transpose": [Case("perm", [("x", r(2, 3, 4))], {"perm": [0, 2, 1]}),
                  Case("reversed", [("x", r(2, 3, 4))])],
    "Concat": [Case("three on axis 1", [("a", r(2, 1, 3)), ("b", r(2, 2, 3)), ("c", r(2, 4, 3))], {"axis": 1})],
    "Slice": [
        Case("negative steps", [("x", r(2, 7, 6)), ("starts", i64(5, -1)), ("ends", i64(0, -100)),
                                ("axes", i64(1, 2)), ("steps", i64(-2, -1))],
             constants=("starts", "ends", "axes", "steps")),
        Case("positive steps", [("x", r(2, 7, 6)), ("starts", i64(1)), ("ends", i64(100)), ("axes", i64(-1)),
                                ("steps", i64(2))], constants=("starts", "ends", "axes", "steps")),
    ],
    "Pad": [
        Case("reflect", [("x", r(1, 2, 5, 5)), ("pads", i64(0, 0, 1, 2, 0, 0, 2, 1))], {"mode": "reflect"},
             constants=("pads",)),
        Case("edge", [("x", r(1, 2, 5, 5)), ("pads", i64(0, 0, 2, 0, 0, 0, 1, 3))], {"mode": "edge"},
             constants=("pads",)),
        Case("constant value", [("x", r(2, 3, 4)), ("pads", i64(0, 1, 1, 0, 0, 2)),
                                ("value", np.array(0.5, np.float32))], constants=("pads", "value")),
    ],
    "Squeeze": [Case("axes input", [("x", r(2, 1, 3, 1)), ("axes", i64(1, -1))], constants=("axes",)),
                Case("axes attribute (opset 11)", [("x", r(2, 1, 3))], {"axes": [1]}, opset=11)],
    "Unsqueeze": [Case("axes input", [("x", r(2, 3)), ("axes", i64(0, -1))], constants=("axes",)),
                  Case("axes attribute (opset 11)", [("x", r(2, 3))], {"axes": [1]}, opset=11)],
    # dialect ops: their analog (ANN) meaning, against the standard op they stand for
    "onnx2snn.IF": [Case("analog is ReLU", [("x", r(2, 3, 4))], {"threshold": [0.5], "v_init": [0.0]})],
    "onnx2snn.MaxPool": [
        Case("overlapping pads", [("x", r(2, 3, 7, 7))], {"kernel_shape": [3, 3], "strides": [2, 2],
                                                          "pads": [1, 1, 1, 1]}),
        Case("dilated ceil", [("x", r(1, 2, 8, 8))], {"kernel_shape": [2, 2], "dilations": [2, 2],
                                                      "ceil_mode": 1, "strides": [2, 2]}),
    ],
}
