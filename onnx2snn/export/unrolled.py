"""Export a spiking ONNX graph to plain ONNX that any ONNX runtime runs: standard ops only.

The T-step simulation of ``SpikingNetwork.simulate`` is written out as ordinary ONNX:

- static nodes (those that depend only on the input and weights) appear once, outside time;
- every ``onnx2snn.IF`` node becomes standard ops on an explicit membrane state (see
  ``_emit_neuron``), every spiking MaxPool becomes an accumulator plus a ``MaxPool`` whose
  ``Indices`` output selects the leader (see ``_emit_maxpool``);
- the output is the output layer's potential summed over the T steps, divided by T (exactly
  ``Simulation.outputs[T]``), and one extra output per neuron layer holds its spike count per
  sample over all T steps (``spikes/<layer>``, shape ``[N]``).

Two layouts (``mode``): ``unroll`` writes the T steps one after another (the default: faster in
onnxruntime, see docs/export.md for the measurements), ``loop`` writes one step as the body
of an ONNX ``Loop`` that carries the states (a graph that does not grow with T). Both follow the
runtime's float32 operations in the same order, so the results agree to the last bit or nearly.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..errors import ConfigError, InvalidModelError
from . import _dialect

MODES = ("unroll", "loop")
MIN_OPSET = 13  # ReduceSum with an axes input, Clip with min/max inputs, GreaterOrEqual


@dataclasses.dataclass
class _Context:
    model: onnx.ModelProto
    ranks: dict[str, int]
    specs: dict[str, _dialect.NeuronSpec]
    static_names: set[str]
    initializers: list[onnx.TensorProto] = dataclasses.field(default_factory=list)
    _constants: dict[tuple, str] = dataclasses.field(default_factory=dict)

    def constant(self, value, dtype=np.float32, hint: str = "c") -> str:
        """An initializer holding ``value`` (deduplicated by content)."""
        array = np.asarray(value, dtype=dtype)
        key = (array.dtype.str, array.shape, array.tobytes())
        if key not in self._constants:
            name = f"snn/{hint}{len(self._constants)}"
            self.initializers.append(numpy_helper.from_array(array, name))
            self._constants[key] = name
        return self._constants[key]


def _channel_view(values: np.ndarray, rank: int) -> np.ndarray:
    """As ``ops.neurons.channel_view``: one value stays a scalar, else ``[C, 1, ...]``."""
    values = np.asarray(values, dtype=np.float32).reshape(-1)
    return values.reshape(()) if values.size == 1 else values.reshape([-1] + [1] * (rank - 2))


class _Step:
    """Emits the nodes of one timestep; tensor names carry the step's ``tag``."""

    def __init__(self, ctx: _Context, tag: str, nodes: list[onnx.NodeProto]):
        self.ctx, self.tag, self.nodes = ctx, tag, nodes
        self._count = 0

    def name(self, base: str) -> str:
        return f"{base}@{self.tag}"

    def tensor(self, name: str) -> str:
        """The step-local name of a tensor of the spiking graph (static ones are shared)."""
        return name if (name in self.ctx.static_names or not name) else self.name(name)

    def op(self, op_type: str, inputs: list[str], hint: str, **attrs) -> str:
        self._count += 1
        out = f"snn/{hint}/{self._count}@{self.tag}"
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=out, **attrs))
        return out


def _emit_neuron(step: _Step, node: onnx.NodeProto, state: dict, new_state: dict) -> str:
    """One step of ``neuron_scan`` in standard ops, in the same float32 order:
    v = (v + x) [+ bias]; binary: k = (v >= θ), soft v -= k·θ / hard v = where(k, 0, v);
    burst/signed: k = clip(floor(v/θ), 0, burst), signed undo, count += k, v -= k·θ.
    Returns the output name (k·θ); records k's spike count."""
    ctx, key = step.ctx, node.name or node.output[0]
    spec, rank = ctx.specs[key], ctx.ranks[node.input[0]]
    theta = ctx.constant(_channel_view(spec.threshold, rank), hint="theta")
    x = step.tensor(node.input[0])
    v_prev = state.get(("v", key)) or ctx.constant(_channel_view(spec.v_init, rank), hint="vinit")
    v = step.op("Add", [v_prev, x], f"{key}/v")
    if spec.has_bias:
        v = step.op("Add", [v, ctx.constant(_channel_view(spec.bias, rank), hint="bias")], f"{key}/v")
    if spec.extended:
        zero, burst = ctx.constant(0.0), ctx.constant(float(spec.burst))
        floor = step.op("Floor", [step.op("Div", [v, theta], f"{key}/k")], f"{key}/k")
        k = step.op("Clip", [floor, zero, burst], f"{key}/k")
        if spec.signed:
            count_prev = state.get(("count", key)) or zero
            ceil = step.op("Ceil", [step.op("Div", [step.op("Neg", [v], f"{key}/u"), theta], f"{key}/u")], f"{key}/u")
            undo = step.op("Min", [step.op("Clip", [ceil, zero, burst], f"{key}/u"), count_prev], f"{key}/u")
            negative = step.op("Less", [v, zero], f"{key}/u")
            k = step.op("Where", [negative, step.op("Neg", [undo], f"{key}/u"), k], f"{key}/k")
            new_state[("count", key)] = step.op("Add", [count_prev, k], f"{key}/count")
        v = step.op("Sub", [v, step.op("Mul", [k, theta], f"{key}/v")], f"{key}/v")
    else:
        fired = step.op("GreaterOrEqual", [v, theta], f"{key}/fired")
        k = step.op("Cast", [fired], f"{key}/k", to=TensorProto.FLOAT)
        if spec.reset == "subtract":
            v = step.op("Sub", [v, step.op("Mul", [k, theta], f"{key}/v")], f"{key}/v")
        else:
            v = step.op("Where", [fired, ctx.constant(0.0), v], f"{key}/v")
    new_state[("v", key)] = v
    # Spike count per sample: |k| summed over every non-batch axis (a burst of k counts k).
    magnitude = step.op("Abs", [k], f"{key}/n") if spec.signed else k
    flat = step.op("Flatten", [magnitude], f"{key}/n", axis=1)
    count = step.op("ReduceSum", [flat, ctx.constant([1], np.int64)], f"{key}/n", keepdims=0)
    previous = state.get(("spikes", key))
    new_state[("spikes", key)] = step.op("Add", [previous, count], f"{key}/spikes") if previous else count
    out = step.tensor(node.output[0])
    step.nodes.append(helper.make_node("Mul", [k, theta], [out], name=out))
    return out


def _emit_maxpool(step: _Step, node: onnx.NodeProto, state: dict, new_state: dict) -> None:
    """The spiking max-pool gate (``ops.pooling.MaxPool.step``): a[t] = a[t-1] + x[t]; y[t] is x[t]
    at the position of the window's largest a[t]. ONNX MaxPool's ``Indices`` output names that
    position (first maximum in the window wins, padding never leads), and Gather reads x there."""
    key = node.name or node.output[0]
    if len(node.output) > 1 and node.output[1]:
        raise InvalidModelError(f"node {key!r}: the Indices output of a spiking MaxPool is not supported")
    x = step.tensor(node.input[0])
    previous = state.get(("acc", key))
    accumulated = step.op("Add", [previous, x], f"{key}/acc") if previous else x
    new_state[("acc", key)] = accumulated
    attrs = {k: v for k, v in _dialect.node_attrs(node).items() if k != "storage_order"}
    leaders = f"snn/{key}/leaders@{step.tag}"
    step.nodes.append(helper.make_node("MaxPool", [accumulated], [step.name(f"snn/{key}/max"), leaders],
                                       name=leaders, **attrs))
    flat = step.op("Reshape", [x, step.ctx.constant([-1], np.int64)], f"{key}/flat")
    out = step.tensor(node.output[0])
    step.nodes.append(helper.make_node("Gather", [flat, leaders], [out], name=out, axis=0))


def _emit_step(ctx: _Context, dynamic: list[onnx.NodeProto], tag: str, state: dict,
               nodes: list[onnx.NodeProto]) -> dict:
    """Append one timestep to ``nodes``; ``state`` maps state keys to tensor names (empty at
    t = 0, when the initial values are constants). Returns the new state, whose ``("out",)``
    entry holds the output summed so far."""
    step = _Step(ctx, tag, nodes)
    new_state: dict = {}
    for node in dynamic:
        if _dialect.is_neuron(node):
            _emit_neuron(step, node, state, new_state)
        elif _dialect.is_spiking_maxpool(node):
            _emit_maxpool(step, node, state, new_state)
        else:
            copy = onnx.NodeProto()
            copy.CopyFrom(node)
            copy.name = step.name(node.name or node.output[0])
            copy.ClearField("input")
            copy.input.extend(step.tensor(n) for n in node.input)
            copy.ClearField("output")
            copy.output.extend(step.tensor(n) for n in node.output)
            nodes.append(copy)
    output = step.tensor(ctx.model.graph.output[0].name)
    previous = state.get(("out",))
    new_state[("out",)] = step.op("Add", [previous, output], "out") if previous else output
    return new_state


def _prepare(model: onnx.ModelProto) -> onnx.ModelProto:
    if len(model.graph.output) != 1:
        raise InvalidModelError(f"the graph must have one output, not {len(model.graph.output)}")
    if _dialect.default_opset(model) < MIN_OPSET:
        from onnx import version_converter

        try:
            model = version_converter.convert_version(model, MIN_OPSET)
        except Exception as error:  # noqa: BLE001 - the converter raises many types
            raise InvalidModelError(f"cannot raise the model to opset {MIN_OPSET} for export ({error})") from None
    return model


def export_unrolled(model: onnx.ModelProto, timesteps: int, mode: str = "unroll") -> onnx.ModelProto:
    """The plain-ONNX equivalent of ``SpikingNetwork(model).simulate(x, timesteps)``.

    Outputs: the accumulated output (the spiking graph's output name, ``[N, ...]``) and one
    ``spikes/<layer>`` (``[N]``, float32) per neuron layer, in graph order."""
    if mode not in MODES:
        raise ConfigError(f"mode must be one of {MODES}, not {mode!r}")
    if int(timesteps) < 1:
        raise ConfigError(f"-T must be a positive integer, not {timesteps}")
    timesteps = int(timesteps)
    model = _prepare(model)
    part = _dialect.partition(model)
    neurons = [n for n in part.dynamic if _dialect.is_neuron(n)]
    if not neurons:
        raise InvalidModelError("the graph has no spiking neurons (onnx2snn.IF nodes) to export")
    shapes = _dialect.tensor_shapes(model)
    ctx = _Context(model=model, ranks={k: len(v) for k, v in shapes.items()},
                   specs={n.name or n.output[0]: _dialect.neuron_spec(model, n) for n in neurons},
                   static_names=part.static_names)

    nodes: list[onnx.NodeProto] = list(part.static)
    state = _emit_step(ctx, part.dynamic, "t0", {}, nodes)
    if timesteps > 1 and mode == "unroll":
        for t in range(1, timesteps):
            state = _emit_step(ctx, part.dynamic, f"t{t}", state, nodes)
    elif timesteps > 1:
        state = _emit_loop(ctx, part.dynamic, timesteps - 1, state, nodes)

    graph_output = model.graph.output[0]
    outputs = [helper.make_tensor_value_info(graph_output.name, TensorProto.FLOAT, _dims(graph_output))]
    nodes.append(helper.make_node("Div", [state[("out",)], ctx.constant(float(timesteps))], [graph_output.name],
                                  name="snn/readout"))
    for node in neurons:
        key = node.name or node.output[0]
        name = f"spikes/{key}"
        nodes.append(helper.make_node("Identity", [state[("spikes", key)]], [name], name=name))
        outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, [_batch_dim(graph_output)]))

    graph = helper.make_graph(nodes, f"{model.graph.name or 'snn'}_T{timesteps}", list(model.graph.input),
                              outputs, initializer=list(model.graph.initializer) + ctx.initializers)
    opset = max(_dialect.default_opset(model), MIN_OPSET)
    result = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                               producer_name="onnx2snn-export")
    result.ir_version = max(model.ir_version, 7)
    metadata = {p.key: p.value for p in model.metadata_props}
    metadata.update({"onnx2snn.export": f"onnx-{mode}", "onnx2snn.export_timesteps": str(timesteps)})
    for key, value in sorted(metadata.items()):
        result.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(result)
    return result


def _emit_loop(ctx: _Context, dynamic: list[onnx.NodeProto], trips: int, state: dict,
               nodes: list[onnx.NodeProto]) -> dict:
    """Steps 1..T-1 as an ONNX Loop. Step 0 runs before it, so every carried state already has
    its full shape; the body reads static tensors and weights from the outer scope."""
    keys = sorted(state, key=repr)
    body_inputs = {key: f"snn/carry{i}" for i, key in enumerate(keys)}
    body_nodes: list[onnx.NodeProto] = [helper.make_node("Identity", ["snn/cond"], ["snn/cond_out"])]
    out = _emit_step(ctx, dynamic, "loop", body_inputs, body_nodes)
    if set(out) != set(keys):
        raise AssertionError("the loop body changed the set of states")  # a bug, not an input error
    body_outputs = []
    for i, key in enumerate(keys):
        name = f"snn/carry{i}_out"
        body_nodes.append(helper.make_node("Identity", [out[key]], [name]))
        body_outputs.append(name)
    def value(name, elem=TensorProto.FLOAT, shape=None):
        return helper.make_tensor_value_info(name, elem, shape)

    body = helper.make_graph(
        body_nodes, "snn_step",
        [value("snn/iter", TensorProto.INT64, []), value("snn/cond", TensorProto.BOOL, [])]
        + [value(body_inputs[k]) for k in keys],
        [value("snn/cond_out", TensorProto.BOOL, [])] + [value(n) for n in body_outputs])
    final = [f"snn/final{i}" for i in range(len(keys))]
    nodes.append(helper.make_node("Loop", [ctx.constant(trips, np.int64, "trips"), ""]
                                  + [state[k] for k in keys], final, name="snn/time_loop", body=body))
    return dict(zip(keys, final))


def _dims(value: onnx.ValueInfoProto) -> list:
    return [d.dim_param if d.dim_param else (d.dim_value or None) for d in value.type.tensor_type.shape.dim]


def _batch_dim(value: onnx.ValueInfoProto):
    dims = _dims(value)
    return dims[0] if dims else None
