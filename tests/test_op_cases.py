"""Every op the runtime runs, on random inputs, against onnxruntime (cases in ``op_cases.py``)."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import helper, numpy_helper

from onnx2snn import dialect, ops
from onnx2snn.runtime.network import graph_constants, node_info

from op_cases import CASES, Case


def runtime_ops() -> set[str]:
    """Every registered op class the runtime executes (standard ones, and dialect ones by domain.op_type)."""
    return {f"{cls.domain}.{cls.op_type}" if cls.domain else cls.op_type
            for cls in ops.registered() if issubclass(cls, ops.Op)}


def test_every_runtime_op_has_cases():
    missing = runtime_ops() - {name for name, cases in CASES.items() if cases}
    assert not missing, f"registered ops without a case in tests/op_cases.py: {sorted(missing)}"


def one_node_model(op: str, case: Case) -> onnx.ModelProto:
    domain, _, op_type = op.rpartition(".")
    names = [name for name, _ in case.inputs]
    node = helper.make_node(op_type, names, ["y"], name="node", domain=domain, **case.attrs)
    graph_inputs = [helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(value.dtype), value.shape)
                    for name, value in case.inputs if name and name not in case.constants]
    initializers = [numpy_helper.from_array(value, name) for name, value in case.inputs if name in case.constants]
    graph = helper.make_graph([node], "case", graph_inputs, [helper.make_tensor_value_info("y", 1, None)],
                              initializer=initializers)
    opsets = [helper.make_opsetid("", case.opset)] + ([helper.make_opsetid(domain, dialect.DIALECT_VERSION)]
                                                     if domain else [])
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 8
    return model


def run_runtime(model: onnx.ModelProto, case: Case) -> np.ndarray:
    """The runtime's op class on the node, called as ``SpikingNetwork.run_nodes`` calls it."""
    node = model.graph.node[0]
    opsets = {o.domain: o.version for o in model.opset_import}
    constants = graph_constants(model.graph)
    info = node_info(node, opsets, constants)
    layer = ops.lookup(info.domain, node.op_type, info.opset)(info)
    values = dict(case.inputs)
    args = [torch.from_numpy(np.ascontiguousarray(values[name])) if name else None for name in node.input]
    while args and args[-1] is None:
        args.pop()
    with torch.inference_mode():
        out = layer.analog(*args) if layer.stateful else layer(*args)
    return out.numpy()


@pytest.mark.parametrize("op, index", [(op, i) for op, cases in CASES.items() for i in range(len(cases))],
                         ids=lambda value: str(value))
def test_runtime_matches_onnxruntime(op, index):
    case = CASES[op][index]
    model = one_node_model(op, case)
    reference = dialect.as_standard_onnx(model) if op.startswith(f"{dialect.DOMAIN}.") else model
    session = ort.InferenceSession(reference.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {name: value for name, value in case.inputs if name and name not in case.constants}
    expected = session.run(None, feeds)[0]
    got = run_runtime(model, case)
    assert got.shape == expected.shape, case.label
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5, err_msg=case.label)
