"""Turn any supported ANN graph into the canonical graph: IF neurons at every spiking site.

The canonical graph is itself the spiking graph with placeholder thresholds; run in analog
mode (each neuron acting as its ReLU) it computes the same function as the ANN.
"""
from __future__ import annotations

import dataclasses
import logging

import onnx
import onnx_graphsurgeon as gs
from onnx import version_converter
from onnx_graphsurgeon.logger import G_LOGGER

from .. import ops
from ..dialect import DIALECT_VERSION, DOMAIN, check_model, is_neuron_node
from ..errors import ConfigError, InvalidModelError, UnsupportedOpError
from ..runtime.network import unsupported_nodes
from . import passes
from .validate import validate_convertible

G_LOGGER.severity = G_LOGGER.CRITICAL
log = logging.getLogger(__name__)

MIN_OPSET = 11  # older graphs are first upgraded with onnx's version converter
PASSES = [
    passes.drop_identity_and_dropout,
    passes.fold_constants,
    passes.resolve_dynamic_shapes,  # Shape -> Gather -> Concat -> Reshape chains left by the exporter
    passes.fold_constants,
    passes.drop_output_softmax,
    passes.matmul_add_to_gemm,
    passes.cancel_transposes,  # NHWC graphs: Transpose pairs around each conv
    passes.batchnorm_to_affine,
    passes.fold_affine_into_producer,  # BN / Mul / Add after a Conv or Gemm
    passes.sink_affine_through_transpose,
    passes.fold_affine_into_consumer,  # preprocessing, BN on the input or before a conv
    passes.canonical_reshapes,
    passes.drop_default_inputs,
    passes.drop_default_attributes,
    passes.free_batch_dimension,
    passes.fold_constants,
]


@dataclasses.dataclass
class Canonical:
    model: onnx.ModelProto
    notes: list[str]


def _default_opset(model: onnx.ModelProto) -> int:
    for opset in model.opset_import:
        if opset.domain in ("", "ai.onnx"):
            return opset.version
    raise InvalidModelError("the model imports no standard ONNX opset")


def _upgrade(model: onnx.ModelProto) -> onnx.ModelProto:
    opset = _default_opset(model)
    if opset >= MIN_OPSET:
        return model
    try:
        return version_converter.convert_version(model, 13)
    except Exception as error:  # the converter raises bare RuntimeErrors of many kinds
        raise InvalidModelError(f"opset {opset} is older than {MIN_OPSET} and could not be upgraded: {error}") \
            from error


def _export(graph: gs.Graph, source: onnx.ModelProto) -> onnx.ModelProto:
    # Intermediate shapes may be stale after rewriting; shape inference recomputes them.
    io = set(map(id, list(graph.inputs) + list(graph.outputs)))
    for tensor in graph.tensors().values():
        if isinstance(tensor, gs.Variable) and id(tensor) not in io:
            tensor.shape = None
    graph.cleanup().toposort()
    model = gs.export_onnx(graph, do_type_check=False)
    model.ir_version = source.ir_version
    del model.opset_import[:]
    model.opset_import.extend([
        onnx.helper.make_opsetid("", _default_opset(source)),
        onnx.helper.make_opsetid(DOMAIN, DIALECT_VERSION),
    ])
    model.producer_name = "onnx2snn"
    try:
        model = onnx.shape_inference.infer_shapes(model)
    except Exception:  # shape information is a convenience for viewers, not a requirement
        pass
    return model


def normalize(model: onnx.ModelProto, reset: str = "subtract", maxpool: str = "spiking",
              checked: bool = False) -> Canonical:
    """The canonical spiking graph of ``model``; raises ``UnsupportedOpError`` listing every node
    without a conversion rule.

    ``maxpool="spiking"`` (default) turns each MaxPool into the spiking max-pool gate
    (``onnx2snn.MaxPool``); ``maxpool="average"`` replaces it by AveragePool, which changes the
    network, with a warning. ``checked``: the model was read by ``dialect.load_model``, whose
    structural checks need not run again.
    """
    if maxpool not in passes.MAXPOOL_MODES:
        raise ConfigError(f"maxpool must be one of {', '.join(passes.MAXPOOL_MODES)}, not {maxpool!r}",
                          parameter="maxpool")
    validate_convertible(model, checked)  # refuse broken or hostile graphs before any pass touches them
    model = _upgrade(model)
    missing = unsupported_nodes(model, runtime_only=False)
    if missing:
        raise UnsupportedOpError(missing, ops.supported_names())
    try:
        graph = gs.import_onnx(model)
    except Exception as error:
        raise InvalidModelError(f"cannot read the graph: {error}") from error
    notes: list[str] = []
    if maxpool == "average":
        passes.maxpool_to_average(graph, notes)
    for run_pass in PASSES:
        run_pass(graph, notes)
    passes.mark_spiking_sites(graph, notes, reset)
    canonical = _export(graph, model)
    missing = unsupported_nodes(canonical, runtime_only=True)
    if missing:
        raise UnsupportedOpError(
            missing, ops.supported_names(),
            detail="these remain after normalization (a shape computation that did not fold, "
                   "or an activation with no spiking equivalent)")
    if not any(is_neuron_node(n) for n in canonical.graph.node):
        raise InvalidModelError("the model has no ReLU (or Clip(0, a)) to turn into a spiking neuron")
    check_model(canonical, "the normalized graph")
    for note in notes:
        log.info(note)
    return Canonical(canonical, notes)
