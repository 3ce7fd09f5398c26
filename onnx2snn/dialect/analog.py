"""The analog (ANN) meaning of a spiking graph in standard ONNX, for tools that know no onnx2snn domain."""
from __future__ import annotations

import copy

import onnx

from .format import DOMAIN


def as_standard_onnx(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy in which every ``onnx2snn.IF`` is a standard ``Relu`` and every ``onnx2snn.MaxPool`` a
    standard ``MaxPool``: what standard shape inference needs (a Clip ceiling is left out)."""
    standard = copy.deepcopy(model)
    for node in standard.graph.node:
        if node.domain != DOMAIN:
            continue
        if node.op_type == "IF":
            del node.input[1:]
            del node.output[1:]
            del node.attribute[:]
            node.op_type = "Relu"
        node.domain = ""
    del standard.opset_import[:]
    standard.opset_import.extend(o for o in model.opset_import if o.domain != DOMAIN)
    return standard
