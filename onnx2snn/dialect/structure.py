"""Structural checks of any ONNX graph this tool reads (an ANN or a spiking file), before any pass,
allocation or op trusts it.

``validate_structure``: names are unique and valid text, every tensor read is produced, there is
no cycle, tensors have sane shapes and dtypes, constants are finite and no initializer would need
absurd memory, and nodes of the onnx2snn domain have the inputs and outputs their schema allows
(``onnx.checker`` knows nothing of a custom domain). Each problem raises one
``InvalidModelError`` (or ``ResourceError`` for sizes) naming the tensor or node at fault, so
hostile or broken files never reach numpy, torch or graphsurgeon.
"""
from __future__ import annotations

import math
from collections import deque

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from ..errors import InvalidModelError, ResourceError
from ..sizes import DEFAULT_MAX_MEMORY, format_bytes
from .format import DOMAIN
from .schemas import SCHEMAS

# No single weight tensor may exceed this, whatever the memory budget.
MAX_TENSOR_BYTES = DEFAULT_MAX_MEMORY


def dtype_name(data_type: int) -> str:
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
        raise InvalidModelError(f"{what} has an invalid data type ({dtype_name(tensor.data_type)})")
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
        raise InvalidModelError(f"{what} cannot be decoded ({type(error).__name__}: {error})") from error
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
                # a later input of a node is mostly a weight or parameter: name the likelier mistake
                kind = "a missing initializer" if position > 0 else "a dangling input"
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
        if out.name not in producer:
            raise InvalidModelError(f"graph output {out.name!r} is produced by no node")


def _check_value_info(value: onnx.ValueInfoProto, what: str) -> None:
    if not value.type.HasField("tensor_type"):
        return
    for dim in value.type.tensor_type.shape.dim:
        if dim.HasField("dim_value") and dim.dim_value <= 0:
            dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
                    for d in value.type.tensor_type.shape.dim]
            raise InvalidModelError(f"{what} {value.name!r} has a zero or negative dimension (shape {dims})")


def _check_text(graph: onnx.GraphProto) -> None:
    """Names must be text: protobuf hands invalid UTF-8 back as bytes, which crashes onnx's helpers."""
    def text(value, what: str) -> None:
        if not isinstance(value, str):
            raise InvalidModelError(f"{what} is not valid UTF-8 text ({value[:40]!r})")

    text(graph.name, "the graph's name")
    for node in graph.node:
        for value, what in ((node.name, "a node name"), (node.op_type, "an op type"), (node.domain, "a domain")):
            text(value, what)
        for name in list(node.input) + list(node.output):
            text(name, f"a tensor name of node {node.name!r}")
        for attr in node.attribute:
            text(attr.name, f"an attribute name of node {node.name!r}")
            if attr.type in (onnx.AttributeProto.INTS, onnx.AttributeProto.FLOATS) and \
                    not (attr.ints if attr.type == onnx.AttributeProto.INTS else attr.floats):
                # graphsurgeon cannot even write an empty list back (its type is unknowable)
                raise InvalidModelError(f"attribute {attr.name!r} of node {node.name!r} is an empty list")
            if attr.type == onnx.AttributeProto.STRING:
                try:
                    attr.s.decode("utf-8")
                except UnicodeDecodeError as error:
                    raise InvalidModelError(f"attribute {attr.name!r} of node {node.name!r} is not valid UTF-8") \
                        from error
    for value in list(graph.input) + list(graph.output) + list(graph.value_info) + list(graph.initializer):
        text(value.name, "a tensor name")


def _check_dialect_arity(graph: onnx.GraphProto) -> None:
    """Nodes of the onnx2snn domain: count their inputs and outputs against the schema."""
    for node in graph.node:
        schema = SCHEMAS.get(node.op_type) if node.domain == DOMAIN else None
        if schema is None:
            continue  # not ours, or reported as unsupported
        (fewest, most), (least_out, most_out) = schema.inputs, schema.outputs
        if not fewest <= len(node.input) <= most or not least_out <= len(node.output) <= most_out:
            raise InvalidModelError(f"node {node.name or node.op_type!r} ({node.domain}.{node.op_type}) has "
                                    f"{len(node.input)} inputs and {len(node.output)} outputs; it takes "
                                    f"{fewest} to {most} inputs and {least_out} to {most_out} outputs")


def validate_structure(model: onnx.ModelProto, max_tensor_bytes: int = MAX_TENSOR_BYTES) -> None:
    """Checks that hold for any graph the tool reads; raises on the first problem found."""
    if not model.HasField("graph") or not model.graph.node:
        raise InvalidModelError("not an ONNX model (no graph, or a graph with no nodes)")
    graph = model.graph
    _check_text(graph)
    _check_names(graph)
    _check_topology(graph)
    for value in graph.input:
        _check_value_info(value, "graph input")
    for value in graph.output:
        _check_value_info(value, "graph output")
    for tensor, what in _constants(graph):
        _check_tensor(tensor, what, max_tensor_bytes)
    _check_dialect_arity(graph)
