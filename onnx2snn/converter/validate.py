"""Up-front checks of an ONNX graph, before any pass or allocation trusts it.

``validate_structure`` holds for every graph the tool reads (ANN or spiking): names are unique,
every tensor read is produced, there is no cycle, tensors have sane shapes and dtypes, weights
are finite, and no initializer would need absurd memory. ``validate_convertible`` adds what a
convertible ANN needs: one float input and one 2-D logits output.

Each problem raises one ``InvalidModelError`` (or ``ResourceError`` for sizes) naming the
tensor or node at fault, so hostile or broken files never reach numpy, torch or graphsurgeon.
"""
from __future__ import annotations

import math
from collections import deque

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from ..errors import InvalidModelError, ResourceError
from ..resources import DEFAULT_MAX_MEMORY, format_bytes

FLOAT_TYPES = {TensorProto.FLOAT: "float32", TensorProto.FLOAT16: "float16"}
# Inputs that must be float weights: a Conv with int64 or float64 weights is refused, not cast.
WEIGHT_OPERANDS = {
    "Conv": (1, 2), "ConvTranspose": (1, 2), "Gemm": (0, 1, 2), "MatMul": (0, 1),
    "BatchNormalization": (1, 2, 3, 4), "PRelu": (1,), "InstanceNormalization": (1, 2),
}
# No single weight tensor may exceed this, whatever the memory budget.
MAX_TENSOR_BYTES = DEFAULT_MAX_MEMORY


def _dtype_name(data_type: int) -> str:
    try:
        return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(data_type)).name
    except (KeyError, TypeError, ValueError):
        try:
            return TensorProto.DataType.Name(data_type).lower()
        except ValueError:
            return f"unknown type {data_type}"


def _itemsize(data_type: int) -> int | None:
    try:
        return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(data_type)).itemsize
    except (KeyError, TypeError, ValueError):
        return None


def _check_tensor(tensor: onnx.TensorProto, what: str, max_bytes: int) -> None:
    """Shape, size, dtype and finiteness of one constant tensor, before it is decoded."""
    dims = list(tensor.dims)
    if any(d < 0 for d in dims):
        raise InvalidModelError(f"{what} has a negative dimension (shape {dims})")
    itemsize = _itemsize(tensor.data_type)
    if itemsize is None or tensor.data_type == TensorProto.UNDEFINED:
        raise InvalidModelError(f"{what} has an invalid data type ({_dtype_name(tensor.data_type)})")
    numel = math.prod(dims)
    if numel * itemsize > max_bytes:
        raise ResourceError(f"{what} has shape {dims}: {format_bytes(numel * itemsize)}, over the "
                            f"{format_bytes(max_bytes)} limit for one tensor")
    if tensor.data_location == TensorProto.EXTERNAL:
        return  # checked once loaded; onnx_io refuses unsafe locations before that
    if tensor.HasField("raw_data") and tensor.data_type not in (TensorProto.STRING,) and \
            len(tensor.raw_data) != numel * itemsize:
        raise InvalidModelError(f"{what} has shape {dims} ({numel * itemsize} bytes) but holds "
                                f"{len(tensor.raw_data)} bytes of data")
    if tensor.data_type == TensorProto.STRING:
        return
    try:  # decoding proves the stored values match the shape; small next to what follows
        values = numpy_helper.to_array(tensor)
    except Exception as error:  # onnx raises ValueError, TypeError... for inconsistent tensors
        raise InvalidModelError(f"{what} cannot be decoded ({type(error).__name__}: {error})") from None
    if values.dtype.kind in "fc" and values.size and not np.isfinite(values).all():
        bad = "NaN" if np.isnan(values).any() else "Inf"
        raise InvalidModelError(f"{what} holds {bad} values; the weights must be finite")


def _constants(graph: onnx.GraphProto) -> list[tuple[onnx.TensorProto, str]]:
    found = [(init, f"initializer {init.name!r}") for init in graph.initializer]
    for node in graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.TENSOR:
                    found.append((attr.t, f"Constant node {node.name or node.output[0]!r}"))
    return found


def _check_names(graph: onnx.GraphProto) -> None:
    seen: dict[str, str] = {}

    def claim(name: str, owner: str) -> None:
        if not name:
            return
        if name in seen:
            both = "by two initializers" if seen[name] == owner else f"by {seen[name]} and by {owner}"
            raise InvalidModelError(f"duplicate name {name!r}: defined {both}")
        seen[name] = owner

    initializers = {init.name for init in graph.initializer}
    for init in graph.initializer:
        claim(init.name, f"initializer {init.name!r}")
    for tensor in graph.input:
        if tensor.name not in initializers:  # an input may repeat an initializer (a default value)
            claim(tensor.name, f"graph input {tensor.name!r}")
    node_names: set[str] = set()
    for node in graph.node:
        label = f"node {node.name or node.op_type!r}"
        if node.name:
            if node.name in node_names:
                raise InvalidModelError(f"duplicate name: two nodes are called {node.name!r}")
            node_names.add(node.name)
        for out in node.output:
            claim(out, label)


def _check_topology(graph: onnx.GraphProto) -> None:
    """Every input is produced (no dangling input or missing initializer) and there is no cycle."""
    available = {init.name for init in graph.initializer} | {i.name for i in graph.input} | {""}
    producer = {out: index for index, node in enumerate(graph.node) for out in node.output if out}
    waiting_on = [0] * len(graph.node)
    readers: dict[int, list[int]] = {}
    for index, node in enumerate(graph.node):
        for position, name in enumerate(node.input):
            if name in available:
                continue
            if name not in producer:
                kind = "a missing initializer" if position > 0 and node.op_type in WEIGHT_OPERANDS \
                    else "a dangling input"
                raise InvalidModelError(f"node {node.name or node.op_type!r} ({node.op_type}) reads {name!r}, "
                                        f"which no node, input or initializer provides ({kind})")
            waiting_on[index] += 1
            readers.setdefault(producer[name], []).append(index)
    ready = deque(i for i, count in enumerate(waiting_on) if count == 0)
    done = 0
    while ready:
        index = ready.popleft()
        done += 1
        for reader in readers.get(index, []):
            waiting_on[reader] -= 1
            if waiting_on[reader] == 0:
                ready.append(reader)
    if done < len(graph.node):
        stuck = [graph.node[i].name or graph.node[i].op_type for i, c in enumerate(waiting_on) if c][:4]
        raise InvalidModelError(f"the graph has a cycle through node(s) {', '.join(map(repr, stuck))}")
    for out in graph.output:
        if out.name not in producer and out.name not in available - {""}:
            raise InvalidModelError(f"graph output {out.name!r} is produced by no node")


def _check_value_info(value: onnx.ValueInfoProto, what: str) -> None:
    if not value.type.HasField("tensor_type"):
        return
    for dim in value.type.tensor_type.shape.dim:
        if dim.HasField("dim_value") and dim.dim_value <= 0:
            dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
                    for d in value.type.tensor_type.shape.dim]
            raise InvalidModelError(f"{what} {value.name!r} has a zero or negative dimension (shape {dims})")


def validate_structure(model: onnx.ModelProto, max_tensor_bytes: int = MAX_TENSOR_BYTES) -> None:
    """Checks that hold for any graph the tool reads; raises on the first problem found."""
    if not model.HasField("graph") or not model.graph.node:
        raise InvalidModelError("not an ONNX model (no graph, or a graph with no nodes)")
    graph = model.graph
    _check_names(graph)
    _check_topology(graph)
    for value in graph.input:
        _check_value_info(value, "graph input")
    for value in graph.output:
        _check_value_info(value, "graph output")
    for tensor, what in _constants(graph):
        _check_tensor(tensor, what, max_tensor_bytes)


def _tensor_type(graph: onnx.GraphProto) -> dict[str, int]:
    types = {init.name: init.data_type for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.TENSOR:
                    types[node.output[0]] = attr.t.data_type
    return types


def _check_weight_dtypes(graph: onnx.GraphProto) -> None:
    types = _tensor_type(graph)
    for name, data_type in types.items():
        if data_type in (TensorProto.DOUBLE, TensorProto.BFLOAT16, TensorProto.COMPLEX64, TensorProto.COMPLEX128):
            raise InvalidModelError(f"tensor {name!r} is {_dtype_name(data_type)}; floating-point weights "
                                    "must be float32 or float16")
    for node in graph.node:
        for position in WEIGHT_OPERANDS.get(node.op_type, ()):
            if position < len(node.input) and node.input[position] in types:
                data_type = types[node.input[position]]
                if data_type not in FLOAT_TYPES:
                    raise InvalidModelError(
                        f"node {node.name or node.op_type!r} ({node.op_type}) reads {node.input[position]!r} "
                        f"of type {_dtype_name(data_type)}; weights must be float32 or float16")


def _rank(value: onnx.ValueInfoProto) -> int | None:
    tensor_type = value.type.tensor_type
    return len(tensor_type.shape.dim) if tensor_type.HasField("shape") else None


def _output_rank(model: onnx.ModelProto) -> int | None:
    rank = _rank(model.graph.output[0])
    if rank is not None:
        return rank
    try:  # the declared output has no shape: infer it
        inferred = onnx.shape_inference.infer_shapes(model)
        return _rank(inferred.graph.output[0])
    except Exception:  # inference is a best effort; the trial run catches the rest
        return None


def validate_convertible(model: onnx.ModelProto) -> None:
    """``validate_structure`` plus what a convertible ANN needs; called first thing by ``normalize``."""
    validate_structure(model)
    graph = model.graph
    initializers = {init.name for init in graph.initializer}
    inputs = [value for value in graph.input if value.name not in initializers]
    if len(inputs) != 1 or len(graph.output) != 1:
        raise InvalidModelError(f"the graph must have one input and one output, not {len(inputs)} and "
                                f"{len(graph.output)}")
    elem_type = inputs[0].type.tensor_type.elem_type
    if elem_type and elem_type not in FLOAT_TYPES:
        raise InvalidModelError(f"graph input {inputs[0].name!r} is {_dtype_name(elem_type)}; "
                                "the input must be float32 or float16 images")
    _check_weight_dtypes(graph)
    rank = _output_rank(model)
    if rank is not None and rank != 2:
        raise InvalidModelError(f"the output {graph.output[0].name!r} has rank {rank}; a classifier must "
                                "output 2-D logits [batch, classes]")
