"""Up-front checks of an ANN before conversion, before any pass or allocation trusts it.

``validate_convertible`` adds to the dialect's ``validate_structure`` (which holds for every graph
the tool reads) what a convertible ANN needs: one float input and one 2-D logits output, float
weights of consistent shapes, sane convolution and pooling windows. Which inputs are weights
and which ops have windows, each op class of the registry says.

Each problem raises one ``InvalidModelError`` naming the tensor or node at fault, so hostile or
broken files never reach numpy, torch or graphsurgeon.
"""
from __future__ import annotations

import onnx
from onnx import TensorProto

from .. import ops
from ..dialect import check_model, validate_structure
from ..dialect.structure import dtype_name
from ..errors import InvalidModelError

FLOAT_TYPES = {TensorProto.FLOAT: "float32", TensorProto.FLOAT16: "float16"}


def _declared(op_type: str, opset: int):
    """The registry's class for a standard-domain op type, or None (unsupported: reported later)."""
    return ops.lookup("", op_type, opset)


def _check_weight_shapes(graph: onnx.GraphProto, opset: int) -> None:
    """Constant weights whose shapes contradict each other, which rewriting passes would trip over."""
    dims = {init.name: list(init.dims) for init in graph.initializer}
    for node in graph.node:
        declared = _declared(node.op_type, opset)
        if declared is None or not declared.weights:
            continue
        shapes = [dims.get(name) if name else None for name in node.input]
        problem = declared.weight_shape_problem(shapes)
        if problem:
            raise InvalidModelError(f"node {node.name or node.op_type!r} ({node.op_type}): {problem}")


def _check_window_attributes(graph: onnx.GraphProto, opset: int) -> None:
    """pads / strides / dilations of convolutions and pools: right lengths and sane values."""
    dims = {init.name: list(init.dims) for init in graph.initializer}
    for node in graph.node:
        declared = _declared(node.op_type, opset)
        if declared is None or not declared.windowed:
            continue
        attrs = {a.name: list(a.ints) for a in node.attribute if a.type == onnx.AttributeProto.INTS}
        label = f"node {node.name or node.op_type!r} ({node.op_type})"
        if "kernel_shape" in attrs:
            spatial = len(attrs["kernel_shape"])
        elif declared.layout is not None and len(node.input) > 1 and node.input[1] in dims:
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


def _tensor_type(graph: onnx.GraphProto) -> dict[str, int]:
    types = {init.name: init.data_type for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.TENSOR:
                    types[node.output[0]] = attr.t.data_type
    return types


def _check_weight_dtypes(graph: onnx.GraphProto, opset: int) -> None:
    types = _tensor_type(graph)
    for name, data_type in types.items():
        if data_type in (TensorProto.DOUBLE, TensorProto.BFLOAT16, TensorProto.COMPLEX64, TensorProto.COMPLEX128):
            raise InvalidModelError(f"tensor {name!r} is {dtype_name(data_type)}; floating-point weights "
                                    "must be float32 or float16")
    for node in graph.node:
        declared = _declared(node.op_type, opset)
        for position in declared.weights if declared is not None else ():
            if position < len(node.input) and node.input[position] in types:
                data_type = types[node.input[position]]
                if data_type not in FLOAT_TYPES:
                    raise InvalidModelError(
                        f"node {node.name or node.op_type!r} ({node.op_type}) reads {node.input[position]!r} "
                        f"of type {dtype_name(data_type)}; weights must be float32 or float16")


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


def _standard_opset(model: onnx.ModelProto) -> int:
    return max([o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] or [1])


def validate_convertible(model: onnx.ModelProto, checked: bool = False) -> None:
    """``validate_structure`` plus what a convertible ANN needs; called first thing by ``normalize``.

    ``checked``: ``validate_structure`` and ``onnx.checker`` already passed (``dialect.load_model``)."""
    if not checked:
        validate_structure(model)
    graph = model.graph
    opset = _standard_opset(model)
    initializers = {init.name for init in graph.initializer}
    inputs = [value for value in graph.input if value.name not in initializers]
    if len(inputs) != 1 or len(graph.output) != 1:
        raise InvalidModelError(f"the graph must have one input and one output, not {len(inputs)} and "
                                f"{len(graph.output)}")
    elem_type = inputs[0].type.tensor_type.elem_type
    if elem_type and elem_type not in FLOAT_TYPES:
        raise InvalidModelError(f"graph input {inputs[0].name!r} is {dtype_name(elem_type)}; "
                                "the input must be float32 or float16 images")
    _check_weight_dtypes(graph, opset)
    _check_weight_shapes(graph, opset)
    _check_window_attributes(graph, opset)
    _check_output_reads_input(graph, inputs[0].name)
    if not checked:
        check_model(model, "the model")  # arity, attribute types, opsets: also for models never loaded from a file
    rank = _output_rank(model)
    if rank is not None and rank != 2:
        raise InvalidModelError(f"the output {graph.output[0].name!r} has rank {rank}; a classifier must "
                                "output 2-D logits [batch, classes]")
