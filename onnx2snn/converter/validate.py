"""Up-front checks of an ONNX graph, before any pass or allocation trusts it.

``validate_structure`` holds for every graph the tool reads (ANN or spiking): names are unique,
every tensor read is produced, there is no cycle, tensors have sane shapes and dtypes, weights
are finite, and no initializer would need absurd memory. ``validate_convertible`` adds what a
convertible ANN needs: one float input and one 2-D logits output.

Each problem raises one ``InvalidModelError`` (or ``ResourceError`` for sizes) naming the
tensor or node at fault, so hostile or broken files never reach numpy, torch or graphsurgeon.
"""
from __future__ import annotations

import inspect
import math
from collections import deque

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from ..errors import InvalidModelError, ResourceError
from ..onnx_io import check_model
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
                except UnicodeDecodeError:
                    raise InvalidModelError(f"attribute {attr.name!r} of node {node.name!r} is not valid UTF-8") \
                        from None
    for value in list(graph.input) + list(graph.output) + list(graph.value_info) + list(graph.initializer):
        text(value.name, "a tensor name")


def _check_custom_arity(model: onnx.ModelProto) -> None:
    """Nodes of this tool's own domain: onnx.checker has no schema for them, so count inputs here."""
    from .. import ops

    opsets = {o.domain: o.version for o in model.opset_import}
    for node in model.graph.node:
        if node.domain != ops.SNN_DOMAIN:
            continue
        cls = ops.lookup(node.domain, node.op_type, opsets.get(node.domain, ops.SNN_OPSET))
        if cls is None:
            continue  # reported as unsupported
        run = cls.analog if getattr(cls, "stateful", False) else cls.forward
        params = list(inspect.signature(run).parameters.values())[1:]
        if any(p.kind == p.VAR_POSITIONAL for p in params):
            continue
        required = sum(p.default is p.empty and p.kind == p.POSITIONAL_OR_KEYWORD for p in params)
        if not required <= len(node.input) <= len(params) or len(node.output) < 1:
            raise InvalidModelError(f"node {node.name or node.op_type!r} ({node.domain}.{node.op_type}) has "
                                    f"{len(node.input)} inputs and {len(node.output)} outputs; it takes "
                                    f"{required} to {len(params)} inputs and one output")


def _check_weight_shapes(graph: onnx.GraphProto) -> None:
    """Constant weights whose shapes contradict each other, which rewriting passes would trip over."""
    dims = {init.name: list(init.dims) for init in graph.initializer}

    def shape(node: onnx.NodeProto, index: int) -> list[int] | None:
        return dims.get(node.input[index]) if index < len(node.input) and node.input[index] else None

    for node in graph.node:
        label = f"node {node.name or node.op_type!r} ({node.op_type})"
        if node.op_type in ("Conv", "ConvTranspose"):
            weight, bias = shape(node, 1), shape(node, 2)
            if weight is not None and len(weight) < 3:
                raise InvalidModelError(f"{label}: weight has shape {weight}; a convolution needs [out, in, k...]")
            if weight is not None and bias is not None and node.op_type == "Conv" and bias != [weight[0]]:
                raise InvalidModelError(f"{label}: bias has shape {bias}, expected [{weight[0]}]")
        elif node.op_type == "Gemm":
            weight = shape(node, 1)
            if weight is not None and len(weight) != 2:
                raise InvalidModelError(f"{label}: weight has shape {weight}; Gemm needs a 2-D matrix")
        elif node.op_type == "BatchNormalization":
            params = [shape(node, i) for i in range(1, 5)]
            known = [p for p in params if p is not None]
            if any(len(p) != 1 for p in known) or len({tuple(p) for p in known}) > 1:
                raise InvalidModelError(f"{label}: scale, bias, mean and variance must be 1-D of one length, "
                                        f"not {params}")


WINDOWED = ("Conv", "ConvTranspose", "AveragePool", "MaxPool", "LpPool")


def _check_window_attributes(graph: onnx.GraphProto) -> None:
    """pads / strides / dilations of convolutions and pools: right lengths and sane values."""
    dims = {init.name: list(init.dims) for init in graph.initializer}
    for node in graph.node:
        if node.op_type not in WINDOWED:
            continue
        attrs = {a.name: list(a.ints) for a in node.attribute if a.type == onnx.AttributeProto.INTS}
        label = f"node {node.name or node.op_type!r} ({node.op_type})"
        if "kernel_shape" in attrs:
            spatial = len(attrs["kernel_shape"])
        elif node.op_type.startswith("Conv") and len(node.input) > 1 and node.input[1] in dims:
            spatial = len(dims[node.input[1]]) - 2
        else:
            continue
        for name, length, low in (("pads", 2 * spatial, 0), ("strides", spatial, 1), ("dilations", spatial, 1),
                                  ("kernel_shape", spatial, 1)):
            values = attrs.get(name)
            if values is None:
                continue
            if len(values) != length or any(v < low or v > MAX_WINDOW for v in values):
                raise InvalidModelError(f"{label}: {name}={values}; expected {length} values in "
                                        f"[{low}, {MAX_WINDOW}]")


MAX_WINDOW = 4096  # no real kernel, stride or padding is larger; a larger one is an attack on memory


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
    _check_custom_arity(model)


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


def _check_output_reads_input(graph: onnx.GraphProto, input_name: str) -> None:
    """A classifier's output must depend on its input; otherwise it folds to a constant."""
    reached = {input_name}
    for _ in range(len(graph.node)):  # nodes may be unsorted; a fixed point needs at most this many sweeps
        grown = False
        for node in graph.node:
            if any(name in reached for name in node.input) and not set(node.output) <= reached:
                reached.update(node.output)
                grown = True
        if not grown:
            break
    if graph.output[0].name not in reached:
        raise InvalidModelError(f"the output {graph.output[0].name!r} does not depend on the input "
                                f"{input_name!r}; the graph computes a constant")


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
    _check_weight_shapes(graph)
    _check_window_attributes(graph)
    _check_output_reads_input(graph, inputs[0].name)
    check_model(model, "the model")  # arity, attribute types, opsets: also for models never loaded from a file
    rank = _output_rank(model)
    if rank is not None and rank != 2:
        raise InvalidModelError(f"the output {graph.output[0].name!r} has rank {rank}; a classifier must "
                                "output 2-D logits [batch, classes]")
