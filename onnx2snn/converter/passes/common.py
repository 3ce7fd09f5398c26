"""Helpers shared by the passes: shapes, per-channel constants and small graph edits."""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from ..graph_utils import bypass, channel_shape, const_value, only_reader  # noqa: F401  (re-exported)


def refresh_shapes(graph: gs.Graph) -> None:
    """Fill in the shape and dtype of every variable from onnx shape inference.

    Passes that need ranks (is this constant per-channel? is this MatMul 2-D?) call this first;
    graphs from most exporters carry no intermediate shapes.
    """
    try:
        model = gs.export_onnx(graph.copy().cleanup().toposort(), do_type_check=False)
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # an exotic graph: passes then simply find no ranks and leave it alone
        return
    infos = {v.name: v for v in list(inferred.graph.value_info) + list(inferred.graph.output)}
    for name, tensor in graph.tensors().items():
        info = infos.get(name)
        if not isinstance(tensor, gs.Variable) or info is None or not info.type.HasField("tensor_type"):
            continue
        tensor_type = info.type.tensor_type
        if tensor_type.HasField("shape"):
            tensor.shape = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
                            for d in tensor_type.shape.dim]
        if tensor_type.elem_type and tensor.dtype is None:
            tensor.dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor_type.elem_type)


def rank_of(tensor: gs.Tensor) -> int | None:
    shape = tensor.shape
    return None if shape is None else len(shape)


def per_channel(value: np.ndarray, rank: int | None) -> np.ndarray | None:
    """``value`` as a vector along axis 1 of a rank-``rank`` tensor (size 1 or C), or None when
    it varies along any other axis or would broadcast the tensor to a larger rank."""
    if rank is None or value.ndim > rank or value.dtype.kind != "f":
        return None
    if value.size == 1:
        return value.reshape(1).astype(np.float64)
    if rank < 2:
        return None
    shape = (1,) * (rank - value.ndim) + tuple(value.shape)
    if any(d != 1 for i, d in enumerate(shape) if i != 1):
        return None
    return value.reshape(-1).astype(np.float64)


def variable_and_constant(node: gs.Node) -> tuple[int, gs.Tensor, np.ndarray] | None:
    """For a binary node with exactly one constant input: (index of the constant, the variable
    input, the constant's value)."""
    if len(node.inputs) != 2:
        return None
    values = [const_value(t) for t in node.inputs]
    if (values[0] is None) == (values[1] is None):
        return None
    index = 0 if values[0] is not None else 1
    return index, node.inputs[1 - index], values[index]


def readers(tensor: gs.Tensor, graph: gs.Graph) -> list[gs.Node] | None:
    """The nodes that read ``tensor``, or None when it is also a graph output."""
    if tensor in graph.outputs:
        return None
    return list(tensor.outputs)


def live_nodes(graph: gs.Graph) -> list[gs.Node]:
    """A snapshot of the nodes still attached (passes detach nodes; ``cleanup`` drops them later)."""
    return [node for node in graph.nodes if node.outputs]


def rewrite_until_stable(graph: gs.Graph, rewrite_node: Callable[[gs.Node], bool]) -> None:
    """Sweep the graph's nodes with ``rewrite_node`` (True when it changed the graph) until a whole
    sweep changes nothing. Shapes are refreshed before each sweep because a rewrite can create
    tensors without them; one rewrite often enables the next (a chain of affines folds one at a time)."""
    changed = True
    while changed:
        refresh_shapes(graph)
        changed = False
        for node in live_nodes(graph):
            if node.outputs:  # not detached earlier in this sweep
                changed |= bool(rewrite_node(node))
        graph.cleanup().toposort()


def remove_node(graph: gs.Graph, node: gs.Node) -> None:
    """Detach ``node``; ``cleanup`` later drops it."""
    node.inputs.clear()
    node.outputs.clear()


def new_name(graph: gs.Graph, owner: gs.Node | gs.Tensor, suffix: str) -> str:
    """A tensor name derived from ``owner`` that the graph does not use yet (exporters often
    leave node names empty, so two unnamed nodes must not produce the same constant name)."""
    base = owner.name or (owner.outputs[0].name if isinstance(owner, gs.Node) and owner.outputs else "tensor")
    return fresh_name(graph, base + suffix)


def fresh_name(graph: gs.Graph, base: str) -> str:
    names = set(graph.tensors())
    name, index = base, 0
    while name in names:
        index += 1
        name = f"{base}_{index}"
    return name
