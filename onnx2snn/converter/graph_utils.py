"""Small helpers over onnx-graphsurgeon graphs used by the normalizing passes."""
from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs


def const_value(tensor: gs.Tensor) -> np.ndarray | None:
    """The value of a tensor if it is a constant, else None."""
    if isinstance(tensor, gs.Constant):
        return np.asarray(tensor.values)
    return None


def bypass(graph: gs.Graph, node: gs.Node, keep: gs.Tensor) -> None:
    """Remove ``node`` by routing every reader of its first output to ``keep`` instead."""
    out = node.outputs[0]
    for consumer in list(out.outputs):
        for i, tensor in enumerate(consumer.inputs):
            if tensor is out:
                consumer.inputs[i] = keep
    for i, tensor in enumerate(graph.outputs):
        if tensor is out:
            # Keep the graph's output name stable where the kept tensor is an inner one.
            if not isinstance(keep, gs.Constant) and keep not in graph.inputs:
                keep.name = out.name
                keep.shape = keep.shape or out.shape
                keep.dtype = keep.dtype or out.dtype
            graph.outputs[i] = keep
    node.outputs.clear()
    node.inputs.clear()


def only_reader(tensor: gs.Tensor, graph: gs.Graph) -> gs.Node | None:
    """The single node that reads ``tensor``, if exactly one does and it is not a graph output."""
    if len(tensor.outputs) != 1 or tensor in graph.outputs:
        return None
    return tensor.outputs[0]


def channel_shape(rank: int | None, channels: int) -> list[int]:
    """Shape that broadcasts a per-channel vector over ``[N, C, ...]`` of the given rank."""
    return [channels] + [1] * max(0, (rank or 4) - 2)
