"""Shape passes: resolve shape computations, make Reshape targets batch-agnostic, free the batch.

Exporters with constant folding off, and exports with a dynamic batch, compute Reshape targets
(and sometimes Slice/Pad arguments) at run time from ``Shape -> Gather -> Unsqueeze -> Concat``.
The spiking graph needs them constant, with the batch dimension left free.
"""
from __future__ import annotations

import math

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from .common import const_value, new_name, refresh_shapes

# Inputs that carry shapes, indices or pads rather than data: (op, input indices).
SHAPE_INPUTS = {"Reshape": (1,), "Slice": (1, 2, 3, 4), "Pad": (1, 3), "Unsqueeze": (1,), "Squeeze": (1,),
                "ReduceMean": (1,), "Expand": (1,), "Tile": (1,), "ConstantOfShape": (0,)}
# Two batch sizes tell batch-dependent shape entries from fixed ones.
PROBE_BATCHES = (2, 3)


def _dynamic_shape_tensors(graph: gs.Graph) -> list[gs.Variable]:
    found = {}
    for node in graph.nodes:
        for index in SHAPE_INPUTS.get(node.op, ()):
            if index < len(node.inputs) and isinstance(node.inputs[index], gs.Variable) and node.inputs[index].name:
                found[node.inputs[index].name] = node.inputs[index]
    return list(found.values())


def _evaluate(graph: gs.Graph, tensors: list[gs.Variable], batch: int) -> list[np.ndarray] | None:
    """The values of ``tensors`` when the graph runs on zeros with the given batch size."""
    import onnxruntime as ort

    if len(graph.inputs) != 1 or not graph.inputs[0].shape:
        return None
    spatial = list(graph.inputs[0].shape[1:])
    if not all(isinstance(d, int) for d in spatial):
        return None
    probe = graph.copy()
    names = [t.name for t in tensors]
    probe_tensors = probe.tensors()
    outputs = []
    for name in names:
        tensor = probe_tensors[name]
        tensor.dtype = tensor.dtype or np.int64
        outputs.append(tensor)
    probe.outputs = outputs
    try:
        model = gs.export_onnx(probe.cleanup().toposort(), do_type_check=False)
        for output in model.graph.output:  # shapes unknown: let onnxruntime infer them
            output.type.tensor_type.ClearField("shape")
        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        dtype = onnx.helper.tensor_dtype_to_np_dtype(model.graph.input[0].type.tensor_type.elem_type)
        feed = {session.get_inputs()[0].name: np.zeros([batch] + spatial, dtype=dtype)}
        return session.run(names, feed)
    except Exception:  # the graph cannot run as is; the support check reports what remains
        return None


def _batch_free(node: gs.Node, small: np.ndarray, large: np.ndarray) -> np.ndarray | None:
    """A constant equivalent of a shape input that differs between the two probe batches."""
    if node.op != "Reshape" or small.shape != large.shape or small.ndim != 1 or node.attrs.get("allowzero", 0):
        return None
    differs = np.flatnonzero(small != large)
    if list(differs) == [0] and small[0] == PROBE_BATCHES[0] and large[0] == PROBE_BATCHES[1]:
        result = small.copy()
        result[0] = 0  # 0 copies the input's batch dimension
        return result
    if len(differs) == 1 and -1 not in small:
        result = small.copy()
        result[differs[0]] = -1  # the one batch-dependent entry is inferred from the size
        return result
    return None


def resolve_dynamic_shapes(graph: gs.Graph, notes: list[str]) -> None:
    """Replace run-time shape computations by constants, keeping the batch dimension free."""
    tensors = _dynamic_shape_tensors(graph)
    if not tensors:
        return
    small = _evaluate(graph, tensors, PROBE_BATCHES[0])
    large = _evaluate(graph, tensors, PROBE_BATCHES[1]) if small is not None else None
    if large is None:
        return
    replacement = {}
    for tensor, a, b in zip(tensors, small, large):
        for node in list(tensor.outputs):
            if a.shape == b.shape and np.array_equal(a, b):
                value = a
            else:
                value = _batch_free(node, a, b)
                if value is None:
                    continue
            key = (tensor.name, node.op)
            if key not in replacement:
                replacement[key] = gs.Constant(new_name(graph, tensor, "_resolved")
                                               + ("" if node.op == "Reshape" else "_" + node.op),
                                               np.asarray(value))
            for index, t in enumerate(node.inputs):
                if t is tensor:
                    node.inputs[index] = replacement[key]
    if replacement:
        notes.append(f"resolved {len(replacement)} run-time shape computation(s) into constants")
    graph.cleanup()


def canonical_reshapes(graph: gs.Graph, notes: list[str]) -> None:
    """Make Reshape targets batch-agnostic: the leading dimension becomes 0 (copy the batch), and
    a reshape to ``[batch, features]`` becomes ``Flatten``."""
    refresh_shapes(graph)
    for node in graph.nodes:
        if node.op != "Reshape":
            continue
        shape = const_value(node.inputs[1])
        data = node.inputs[0]
        if shape is None or shape.size == 0 or not data.shape:
            continue
        target = [int(s) for s in shape.reshape(-1)]
        if node.attrs.get("allowzero", 0):
            if 0 in target:
                continue
            node.attrs["allowzero"] = 0  # without zeros in the target, allowzero changes nothing
        rest_in = list(data.shape[1:])
        if any(not isinstance(d, int) for d in rest_in):
            continue
        if target[0] == 0:
            target[0] = -1  # 0 copies the batch; with the other dimensions fixed, -1 means the same
        rest_out = target[1:]
        if -1 in rest_out:
            if target[0] == -1:
                continue
            known = math.prod(d for d in rest_out if d != -1)
            if known == 0 or math.prod(rest_in) % known:
                continue
            rest_out = [math.prod(rest_in) // known if d == -1 else d for d in rest_out]
        if math.prod(rest_in) != math.prod(rest_out):
            continue  # the batch mixes with other dimensions: leave it exactly as exported
        batch = data.shape[0]
        if target[0] == -1 or (isinstance(batch, int) and target[0] == batch):
            if len(rest_out) == 1:  # [batch, features]: the one spelling of a flatten is Flatten
                node.op, node.attrs = "Flatten", {"axis": 1}
                node.inputs.pop()
            else:
                node.inputs[1] = gs.Constant(new_name(graph, node.inputs[1], "_batchfree"),
                                             np.array([0] + rest_out, dtype=np.int64))


def free_batch_dimension(graph: gs.Graph, notes: list[str]) -> None:
    """A graph exported with a fixed batch size gets a symbolic one, so any batch runs."""
    for tensor in list(graph.inputs) + list(graph.outputs):
        if tensor.shape:
            tensor.shape = ["N"] + list(tensor.shape[1:])


def drop_default_inputs(graph: gs.Graph, notes: list[str]) -> None:
    """Spell optional inputs one way: a Pad's constant value of 0 is the default, so it goes, and
    trailing empty inputs go (exporters differ on both)."""
    for node in graph.nodes:
        if node.op == "Pad" and len(node.inputs) > 2:
            value = const_value(node.inputs[2])
            mode = node.attrs.get("mode", "constant")
            mode = mode.decode() if isinstance(mode, bytes) else mode
            if value is not None and value.size == 1 and float(value.reshape(-1)[0]) == 0.0 and mode == "constant":
                node.inputs[2] = gs.Variable.empty()
        while len(node.inputs) > 1 and not node.inputs[-1].name:
            node.inputs.pop()
