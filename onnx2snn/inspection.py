"""Per-layer inspection of an ANN or a spiking ONNX file (the data behind ``onnx2snn inspect``).

For an ANN, what normalization does to each node is *observed*, not predicted: the converter's
own passes (``converter.normalize.PASSES``) run one at a time on the graph, and after each pass
the nodes that disappeared, appeared or changed op are recorded (``_Tracker``). A node that
disappears while a neighbouring Conv/Gemm receives new weights was folded into it; a new node
that takes over a removed node's tensors inherits its origin (BatchNormalization -> Mul + Add).
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Sequence

import numpy as np
import onnx
import onnx_graphsurgeon as gs
import torch

from . import ops
from .converter import passes
from .converter.methods.spec import ThresholdMethod
from .converter.normalize import PASSES, _upgrade, normalize
from .converter.validate import validate_convertible
from .dialect import DOMAIN as SNN_DOMAIN
from .dialect import load_model
from .errors import Onnx2SnnError
from .runtime.network import SpikingNetwork, graph_constants, unsupported_nodes

# What each pass does to a node it removes without handing it to another node.
PASS_EFFECTS = {
    "drop_identity_and_dropout": "dropped (a no-op at inference)",
    "fold_constants": "folded into a constant (computed at conversion time)",
    "resolve_dynamic_shapes": "folded into a constant shape",
    "drop_output_softmax": "dropped (monotone: the SNN reads out the argmax of accumulated potentials)",
    "matmul_add_to_gemm": "merged into a Gemm",
    "cancel_transposes": "dropped (cancels another Transpose)",
    "sink_affine_through_transpose": "moved through a Transpose",
    "canonical_reshapes": "rewritten as a canonical Reshape",
    "maxpool_to_average": "replaced by AveragePool (--maxpool average)",
}
# Ops that perform multiply-accumulates on their input (synaptic operations in the SNN).
SYNAPTIC_OPS = ("Conv", "Gemm", "MatMul", "AveragePool", "GlobalAveragePool")
NON_RELU_ACTIVATIONS = {"Sigmoid", "Tanh", "LeakyRelu", "PRelu", "Elu", "Selu", "Gelu", "HardSigmoid",
                        "HardSwish", "Softplus", "Softsign", "Mish", "Celu", "ThresholdedRelu", "Swish"}


@dataclasses.dataclass
class Layer:
    name: str
    op: str
    output_shape: list | None
    parameters: int
    macs: int
    neuron: dict | None = None  # spiking neuron attributes (summarized)
    fate: str | None = None  # ANN: what normalization does to the node
    target: str | None = None  # ANN: the node of the spiking graph that carries it
    unsupported: str | None = None  # ANN: why the node cannot be converted

    def to_json(self) -> dict:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


@dataclasses.dataclass
class Inspection:
    path: str
    kind: str  # "ann" | "spiking"
    layers: list[Layer]
    opset: dict[str, int]
    producer: str
    inputs: list[str]
    outputs: list[str]
    metadata: dict[str, str]
    convertible: bool | None = None
    problem: str | None = None
    notes: list[str] = dataclasses.field(default_factory=list)

    @property
    def parameters(self) -> int:
        return sum(layer.parameters for layer in self.layers)

    @property
    def macs(self) -> int:
        return sum(layer.macs for layer in self.layers)

    def to_json(self) -> dict:
        out = {"file": self.path, "kind": self.kind, "layers": len(self.layers), "parameters": self.parameters,
               "macs": self.macs, "opset": self.opset, "producer": self.producer, "inputs": self.inputs,
               "outputs": self.outputs}
        if self.kind == "ann":
            out.update(convertible=self.convertible, problem=self.problem, notes=self.notes)
        out["metadata"] = self.metadata
        out["rows"] = [layer.to_json() for layer in self.layers]
        return out


# -- shapes, parameters and MACs -------------------------------------------------------------

def _dims(value: onnx.ValueInfoProto) -> list | None:
    if not value.type.HasField("tensor_type") or not value.type.tensor_type.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in value.type.tensor_type.shape.dim]


def _value_text(value: onnx.ValueInfoProto) -> str:
    dims = _dims(value)
    return f"{value.name} [{', '.join(map(str, dims))}]" if dims is not None else value.name


def _with_batch_one(model: onnx.ModelProto) -> onnx.ModelProto:
    model = onnx.ModelProto.FromString(model.SerializeToString())
    initializers = {i.name for i in model.graph.initializer}
    for value in model.graph.input:
        if value.name in initializers:
            continue
        dims = value.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].Clear()
            dims[0].dim_value = 1
    del model.graph.value_info[:]
    return model


def _inferred_shapes(model: onnx.ModelProto) -> dict[str, list]:
    """Shapes (batch 1) of every tensor that onnx shape inference can work out."""
    try:
        inferred = onnx.shape_inference.infer_shapes(_with_batch_one(model), data_prop=True)
    except Exception:  # noqa: BLE001 - shapes are a convenience; an exotic graph just shows "?"
        inferred = model
    shapes = {}
    for value in list(inferred.graph.input) + list(inferred.graph.value_info) + list(inferred.graph.output):
        dims = _dims(value)
        if dims is not None:
            shapes[value.name] = dims
    return shapes


def _executed_shapes(model: onnx.ModelProto) -> dict[str, list]:
    """Shapes of a spiking graph, from one analog pass of the runtime on a zero image."""
    network = SpikingNetwork(model)
    dims = next((_dims(v) for v in model.graph.input if v.name == network.input_name), None)
    if not dims or any(not isinstance(d, int) or d < 1 for d in dims[1:]):
        return _inferred_shapes(model)
    try:
        env = network.analog_tensors(torch.zeros([1] + dims[1:]))
    except Exception:  # noqa: BLE001 - a graph whose shapes don't fit together: show what inference knows
        return _inferred_shapes(model)
    return {name: list(value.shape) for name, value in env.items() if hasattr(value, "shape")}


def _numel(shape: Sequence | None) -> int | None:
    if shape is None or any(not isinstance(d, int) for d in shape):
        return None
    return math.prod(shape)


def _attribute(node: onnx.NodeProto, name: str, default=None):
    for attr in node.attribute:
        if attr.name == name:
            return onnx.helper.get_attribute_value(attr)
    return default


def node_macs(node: onnx.NodeProto, shapes: dict[str, list], constants: dict[str, np.ndarray]) -> int:
    """Multiply-accumulates of one node per image (0 for ops that compute no weighted sums)."""
    if node.domain not in ("", "ai.onnx") or node.op_type not in SYNAPTIC_OPS:
        return 0
    out = _numel(shapes.get(node.output[0]))
    if out is None:
        return 0
    if node.op_type == "Conv":
        weight = constants.get(node.input[1]) if len(node.input) > 1 else None
        if weight is None:
            return 0
        return out * math.prod(weight.shape[1:])  # each output sums C_in/group x kernel products
    if node.op_type in ("Gemm", "MatMul"):
        first = shapes.get(node.input[0])
        if not first:
            return 0
        transposed = node.op_type == "Gemm" and _attribute(node, "transA", 0)
        inner = first[0] if transposed else first[-1]
        return out * inner if isinstance(inner, int) else 0
    if node.op_type == "AveragePool":
        return out * math.prod(_attribute(node, "kernel_shape", [1]))
    in_shape = shapes.get(node.input[0])  # GlobalAveragePool: every input element once
    return _numel(in_shape) or 0


def _constants(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return graph_constants(model.graph)


def node_parameters(node: onnx.NodeProto, constants: dict[str, np.ndarray]) -> int:
    """Elements of the constant tensors a node reads (weights, biases; not shapes or axes)."""
    if node.op_type in ("Reshape", "Pad", "Slice", "Clip", "Resize", "Squeeze", "Unsqueeze", "Expand", "Tile"):
        return 0
    return sum(int(constants[name].size) for name in node.input
               if name in constants and constants[name].dtype.kind == "f")


# -- neurons -----------------------------------------------------------------------------------

def _number(value: float) -> str:
    return f"{value:.4g}"


def summarize_values(values: Sequence[float]) -> str:
    """One value as itself; per-channel values as mean ± std [min, max] over n channels."""
    array = np.asarray(values, dtype=np.float64).reshape(-1)
    if array.size == 1 or np.all(array == array[0]):
        return _number(array[0])
    return (f"{_number(array.mean())} ± {_number(array.std())} [{_number(array.min())}, {_number(array.max())}]"
            f" ({array.size} ch)")


def neuron_summary(node: onnx.NodeProto) -> dict:
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    reset = attrs.get("reset", b"subtract")
    reset = reset.decode() if isinstance(reset, bytes) else reset
    threshold = np.asarray(attrs.get("threshold", [1.0]), dtype=np.float64).reshape(-1)
    v_init = np.asarray(attrs.get("v_init", [0.0]), dtype=np.float64).reshape(-1)
    summary = {"threshold": summarize_values(threshold), "reset": "soft" if reset == "subtract" else "hard",
               "v_init": summarize_values(v_init),
               "threshold_mean": float(threshold.mean()), "channels": int(threshold.size)}
    if np.any(np.asarray(attrs.get("bias", [0.0])) != 0):
        summary["bias"] = summarize_values(attrs["bias"])
    if int(attrs.get("signed", 0)):
        summary["signed"] = True
    if int(attrs.get("burst", 1)) > 1:
        summary["burst"] = int(attrs["burst"])
    if "clip_max" in attrs:
        summary["clip_max"] = float(attrs["clip_max"])
    return summary


def neuron_text(neuron: dict) -> str:
    parts = [f"θ={neuron['threshold']}", f"{neuron['reset']} reset"]
    if neuron["v_init"] != "0":
        parts.append(f"v0={neuron['v_init']}")
    for key in ("bias", "clip_max"):
        if key in neuron:
            parts.append(f"{key}={neuron[key] if isinstance(neuron[key], str) else _number(neuron[key])}")
    if neuron.get("signed"):
        parts.append("signed")
    if neuron.get("burst"):
        parts.append(f"burst {neuron['burst']}")
    return ", ".join(parts)


# -- metadata ----------------------------------------------------------------------------------

def applicable_metadata(metadata: dict[str, str]) -> dict[str, str]:
    """The metadata worth showing: entries that the file's threshold method actually used."""
    shown = dict(metadata)
    method = metadata.get("onnx2snn.threshold_method")
    try:
        parsed = ThresholdMethod.parse(method) if method else None
    except Onnx2SnnError:
        parsed = None
    if parsed is not None and not (parsed.simulates or parsed.kind == "spikenorm"):
        shown.pop("onnx2snn.calibration_timesteps", None)
    if shown.get("onnx2snn.notes") in ("[]", ""):
        shown.pop("onnx2snn.notes")
    return shown


# -- what normalization does to each ANN node ---------------------------------------------------

def _node_key(node) -> str:
    return node.name or (node.outputs[0].name if node.outputs else "?")


class _Tracker:
    """Follows every original node of a graphsurgeon graph through the normalizing passes."""

    def __init__(self, graph):
        self.graph = graph
        self.origins = {id(n): {_node_key(n)} for n in graph.nodes}  # live node -> original names
        self.nodes = {id(n): n for n in graph.nodes}
        self.original_op = {_node_key(n): n.op for n in graph.nodes}
        self.fates: dict[str, tuple[str, str | None]] = {}  # original name -> (fate, receiving node)

    def _live(self) -> dict[int, object]:
        return {id(n): n for n in self.graph.nodes if n.outputs}

    def run(self, name: str, run_pass) -> None:
        before = self._live()
        snapshot = {key: (list(n.inputs), list(n.outputs), n.op,
                          [id(t) for t in n.inputs if t.__class__.__name__ == "Constant"]) for key, n in before.items()}
        neighbours = {key: [p for t in n.inputs for p in t.inputs] + [c for t in n.outputs for c in t.outputs]
                      for key, n in before.items()}
        run_pass()
        after = self._live()
        created = {key: n for key, n in after.items() if key not in before}
        removed = [key for key in before if key not in after]
        for key, node in created.items():
            self.nodes[key] = node
            self.origins.setdefault(key, set())
        changed_weights = {key for key, n in after.items() if key in before and
                           [id(t) for t in n.inputs if t.__class__.__name__ == "Constant"] != snapshot[key][3]}
        for key in removed:
            outputs = snapshot[key][1]
            name_of = _node_key(self.nodes[key])
            heirs = {k for k, n in created.items() if any(t in outputs for t in n.outputs) or
                     (n.name and n.name == name_of)}  # a rewrite that keeps the name (MatMul -> Gemm)
            grown = True
            while grown:  # new nodes that feed an heir (BN -> Mul -> Add: the Mul) inherit too
                more = {k for k, n in created.items() if k not in heirs and
                        any(c is created[h] for t in n.outputs for c in t.outputs for h in heirs)}
                heirs |= more
                grown = bool(more)
            if heirs:
                for heir in heirs:
                    self.origins[heir] |= self.origins[key]
                continue
            receivers = self._receivers(key, neighbours, set(removed), changed_weights)
            for origin in self.origins[key]:
                if receivers:
                    receiver = _node_key(receivers[0])
                    self.fates[origin] = (f"folded into {receivers[0].op} {receiver!r}", receiver)
                else:
                    self.fates[origin] = (PASS_EFFECTS.get(name, f"removed by the {name} pass"), None)
        for key, node in after.items():
            if key in before and node.op != snapshot[key][2]:
                for origin in self.origins[key]:
                    self.fates.setdefault(origin + "\0op", (f"{snapshot[key][2]} -> {node.op}", None))

    @staticmethod
    def _receivers(key: int, neighbours: dict, removed: set[int], changed: set[int]) -> list:
        """Conv/Gemm nodes with new weights next to ``key``, looking through other removed nodes
        (BN became Mul + Add, and both folded into the conv before them)."""
        seen, frontier, found = {key}, [key], []
        while frontier:
            for node in neighbours.get(frontier.pop(), []):
                if id(node) in seen:
                    continue
                seen.add(id(node))
                if id(node) in changed and node.op in ("Conv", "Gemm"):
                    found.append(node)
                elif id(node) in removed:
                    frontier.append(id(node))
        return found

    def fate_of(self, original: str) -> tuple[str, str | None]:
        """(what happened, the final node carrying it) for an original node name."""
        carriers = [n for key, n in self._live().items() if original in self.origins.get(key, ())]
        if carriers:
            final = carriers[-1]
            op = self.original_op[original]
            if final.op == "IF":
                detail = "replaced by an IF neuron"
                if final.attrs.get("clip_max") is not None:
                    detail += f" (rate capped at {final.attrs['clip_max']:g})"
                return detail, _node_key(final)
            if _node_key(final) == original and final.op == op:
                return "kept", original
            names = " + ".join(f"{n.op} {_node_key(n)!r}" for n in carriers)
            if len(carriers) > 1 or final.op != op:
                return f"became {names}", _node_key(final)
            return "kept", _node_key(final)
        if original in self.fates:
            return self.fates[original]
        return "removed", None


def _unsupported_reason(op: str, domain: str, opset: int) -> str:
    domain = "" if domain == "ai.onnx" else domain
    later = [c.since for c in ops.registered() if c.domain == domain and c.op_type == op]
    if later:
        return f"supported from opset {min(later)}; this graph imports opset {opset}"
    if op in NON_RELU_ACTIVATIONS:
        return f"{op} is not ReLU-like: an IF neuron's firing rate approximates only ReLU / Clip(0, a)"
    if domain:
        return f"custom domain {domain!r}: no conversion rule"
    return f"no conversion rule for {op} (see `onnx2snn ops`)"


@dataclasses.dataclass
class _Normalization:
    fates: dict[str, tuple[str, str | None]]  # node name -> (what happened, node that carries it)
    notes: list[str]
    problem: str | None  # what stops conversion, or None
    unsupported: dict[str, str]  # node name -> why
    canonical: onnx.ModelProto | None  # the normalized graph, when it converts


def _normalization_fates(model: onnx.ModelProto) -> _Normalization:
    """Run the converter's passes on ``model`` one at a time and record each node's fate."""
    unsupported: dict[str, str] = {}
    for name, op, opset in unsupported_nodes(model, runtime_only=False):
        domain = next((n.domain for n in model.graph.node if (n.name or n.output[0]) == name), "")
        unsupported[name] = _unsupported_reason(op, domain, opset)
    try:
        validate_convertible(model)
        model = _upgrade(model)
    except Onnx2SnnError as error:
        return _Normalization({}, [], str(error), unsupported, None)
    graph = gs.import_onnx(model)
    tracker = _Tracker(graph)
    notes: list[str] = []
    problem = None
    try:
        for run_pass in PASSES:
            tracker.run(run_pass.__name__, lambda run_pass=run_pass: run_pass(graph, notes))
        tracker.run("mark_spiking_sites", lambda: passes.mark_spiking_sites(graph, notes))
        graph.cleanup().toposort()
    except Exception as error:  # noqa: BLE001 - a pass can choke on a graph it would refuse anyway
        problem = f"normalization failed: {error}"
    fates = {name: tracker.fate_of(name) for name in tracker.original_op}
    remaining = {_node_key(n): n.op for n in graph.nodes if n.outputs and n.op not in ("IF", "Constant")
                 and ops.lookup(n.domain or "", n.op, 99) is not None
                 and not issubclass(ops.lookup(n.domain or "", n.op, 99), ops.Op)}
    for final_name, op in remaining.items():
        for name, (_, target) in fates.items():
            if target == final_name and name not in unsupported:
                unsupported[name] = (
                    "only Clip(0, a) (a clamped ReLU, e.g. ReLU6) becomes a neuron; this Clip's bounds are not "
                    "(0, a > 0) or not constant" if op == "Clip" else
                    f"{op} remains after normalization (a shape computation that did not fold to a constant)")
    canonical = None
    if problem is None and not unsupported:
        try:
            result = normalize(model)  # the converter's own verdict, including its final checks
            notes, canonical = result.notes, result.model
        except Onnx2SnnError as error:
            problem = str(error)
    elif problem is None:
        problem = f"{len(unsupported)} unsupported node(s)"
    return _Normalization(fates, notes, problem, unsupported, canonical)


# -- the public entry points -------------------------------------------------------------------

def inspect_model(path: str | os.PathLike) -> Inspection:
    """Per-layer description of an ANN or spiking ONNX file."""
    model = load_model(path)
    graph = model.graph
    constants = _constants(model)
    spiking = any(n.domain == SNN_DOMAIN for n in graph.node)
    shapes = _executed_shapes(model) if spiking else _inferred_shapes(model)
    normalization = None if spiking else _normalization_fates(onnx.ModelProto.FromString(model.SerializeToString()))
    final_shapes = {}  # ANN: the shape each node's carrier has in the normalized graph, run once
    if normalization is not None and normalization.canonical is not None:
        executed = _executed_shapes(normalization.canonical)
        final_shapes = {n.name or n.output[0]: executed.get(n.output[0]) for n in normalization.canonical.graph.node}
    metadata = {p.key: p.value for p in model.metadata_props}
    initializers = {i.name for i in graph.initializer}
    info = Inspection(
        path=os.fspath(path), kind="spiking" if spiking else "ann", layers=[],
        opset={o.domain or "ai.onnx": o.version for o in model.opset_import},
        producer=f"{model.producer_name} {model.producer_version}".strip(),
        inputs=[_value_text(v) for v in graph.input if v.name not in initializers],
        outputs=[_value_text(v) for v in graph.output],
        metadata=applicable_metadata(metadata) if spiking else metadata)
    fates, unsupported = {}, {}
    if normalization is not None:
        fates, info.notes, info.problem = normalization.fates, normalization.notes, normalization.problem
        unsupported = normalization.unsupported
        info.convertible = info.problem is None
    for node in graph.node:
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
            continue
        name = node.name or node.output[0]
        target = fates.get(name, (None, None))[1]
        if final_shapes.get(target) is not None and (target == name or fates[name][0].startswith("replaced")):
            shapes[node.output[0]] = final_shapes[target]
        layer = Layer(name=name, op=node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}",
                      output_shape=shapes.get(node.output[0]), parameters=node_parameters(node, constants),
                      macs=node_macs(node, shapes, constants))
        if node.domain == SNN_DOMAIN and node.op_type == "IF":
            layer.neuron = neuron_summary(node)
        if not spiking:
            layer.fate, layer.target = fates.get(name, (None, None))
            layer.unsupported = unsupported.get(name)
            absorbed = [n for n, (fate, target) in fates.items() if target == name and fate.startswith("folded")]
            if layer.fate == "kept" and absorbed:
                layer.fate = f"kept, absorbs {', '.join(absorbed)}"
        info.layers.append(layer)
    return info


@dataclasses.dataclass
class DiffRow:
    ann: Layer | None
    snn: Layer | None
    fate: str


def diff(ann: Inspection, snn: Inspection) -> list[DiffRow]:
    """Line an ANN up with its spiking file: each ANN node next to the spiking node that carries
    it (by the observed normalization), then spiking nodes that no ANN node maps to."""
    by_name = {layer.name: layer for layer in snn.layers}
    rows, used = [], set()
    for layer in ann.layers:
        target = by_name.get(layer.target) if layer.target else None
        rows.append(DiffRow(layer, target if target is not None and target.name not in used else None,
                            layer.unsupported and f"unsupported: {layer.unsupported}" or layer.fate or ""))
        if target is not None:
            used.add(target.name)
    for layer in snn.layers:
        if layer.name not in used and not any(r.ann and r.ann.target == layer.name for r in rows):
            rows.append(DiffRow(None, layer, "added by normalization"))
    return rows


def diff_json(rows: list[DiffRow]) -> list[dict]:
    return [{"ann": r.ann.to_json() if r.ann else None, "snn": r.snn.to_json() if r.snn else None, "fate": r.fate}
            for r in rows]


def dumps(info: Inspection) -> str:
    return json.dumps(info.to_json(), indent=2)
