"""Weight calibration's two touches on the spiking graph: private copies of shared weights before it,
and the fitted weights written back after it (only initializers change; the graph stays as it was)."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from ..runtime.network import SpikingNetwork

TUNED_OPS = ("Conv", "Gemm")


def untie_weights(model: onnx.ModelProto) -> list[str]:
    """Give every Conv/Gemm that shares a weight or bias initializer with another node its own copy, so
    that fitting one consumer never changes another. Returns the copies' names."""
    graph = model.graph
    initializers = {init.name: init for init in graph.initializer}
    readers: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            readers[name] = readers.get(name, 0) + 1
    taken = set(initializers) | {name for node in graph.node for name in node.output}
    copies = []
    for index, node in enumerate(graph.node):
        if node.op_type not in TUNED_OPS or node.domain not in ("", "ai.onnx"):
            continue
        for position in (1, 2):
            if position >= len(node.input):
                continue
            name = node.input[position]
            if name not in initializers or readers.get(name, 0) < 2:
                continue
            readers[name] -= 1  # the last reader keeps the original
            copy, suffix = f"{name}.{node.name or index}", 0
            while copy in taken:
                suffix += 1
                copy = f"{name}.{node.name or index}.{suffix}"
            taken.add(copy)
            clone = onnx.TensorProto()
            clone.CopyFrom(initializers[name])
            clone.name = copy
            graph.initializer.append(clone)
            node.input[position] = copy
            copies.append(copy)
    return copies


def write_changed_constants(model: onnx.ModelProto, network: SpikingNetwork) -> list[str]:
    """Replace every initializer whose value the network now holds differently (the fitted weights).
    Returns the names written."""
    constants = network.constant_env()
    written = []
    for index, init in enumerate(model.graph.initializer):
        value = constants.get(init.name)
        if value is None or not value.dtype.is_floating_point:
            continue
        old = numpy_helper.to_array(init)
        new = value.detach().cpu().numpy().astype(old.dtype).reshape(old.shape)
        if not np.array_equal(old, new):
            model.graph.initializer[index].CopyFrom(numpy_helper.from_array(new, init.name))
            written.append(init.name)
    return written
