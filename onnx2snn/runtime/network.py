"""A spiking ONNX graph as a torch ``nn.Module``, simulated over timesteps.

The graph is executed node by node in topological order. Nodes that depend only on the
(constant, analog) input and on weights are *static*: they are computed once per batch and
not once per timestep. Stateful nodes (neurons) are never static; the network owns their
state, so the same module runs any number of simulations.

The dynamic nodes run over a *block* of timesteps at once (see ``blocks.py``): time is folded
into the batch, so each convolution or GEMM is one large call over ``steps x N`` inputs, and
each neuron scans its ``steps`` currents with ``IF.scan``, its state carried from block to block.
The block length comes from a memory budget, so peak memory does not grow with T.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn

from .. import ops
from ..dialect import NeuronParameters
from ..errors import InvalidModelError, UnsupportedOpError
from . import blocks
from .timesteps import timestep_list

Probe = Callable[[int, torch.Tensor], None]
StepHook = Callable[[int, dict, dict], None]  # (t, tensors by name, neuron states by node index)


def _to_tensor(array: np.ndarray) -> torch.Tensor:
    if array.dtype.kind == "f":
        array = array.astype(np.float32)
    elif array.dtype.kind in "iub":
        array = array.astype(np.int64)
    return torch.from_numpy(np.ascontiguousarray(array))


def _opsets(model: onnx.ModelProto) -> dict[str, int]:
    return {("" if o.domain == "ai.onnx" else o.domain): o.version for o in model.opset_import}


def graph_constants(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    constants = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
            for attr in node.attribute:
                if attr.name == "value":
                    constants[node.output[0]] = numpy_helper.to_array(attr.t)
    return constants


def node_info(node: onnx.NodeProto, opsets: dict[str, int], constants: dict[str, np.ndarray]) -> ops.NodeInfo:
    domain = "" if node.domain == "ai.onnx" else node.domain
    return ops.NodeInfo(
        name=node.name or node.output[0], op_type=node.op_type, domain=domain,
        opset=opsets.get(domain, 1),
        attrs={a.name: onnx.helper.get_attribute_value(a) for a in node.attribute},
        inputs=list(node.input), outputs=list(node.output),
        constants={i: constants[n] for i, n in enumerate(node.input) if n in constants})


def unsupported_nodes(model: onnx.ModelProto, runtime_only: bool) -> list[tuple[str, str, int]]:
    """Every node with no rule: (name, op_type, opset). ``runtime_only`` also rejects ops the
    converter would have rewritten away."""
    opsets = _opsets(model)
    missing = []
    for node in model.graph.node:
        domain = "" if node.domain == "ai.onnx" else node.domain
        if node.op_type == "Constant" and not domain:
            continue
        cls = ops.lookup(domain, node.op_type, opsets.get(domain, 1))
        if cls is None or (runtime_only and not issubclass(cls, ops.Op)):
            missing.append((node.name or node.output[0], node.op_type, opsets.get(domain, 1)))
    return missing


@dataclasses.dataclass
class Simulation:
    """What one simulation returns.

    ``outputs[T]`` is the output layer's accumulated potential over the first T steps divided
    by T, shape ``[N, classes]``. ``spikes[name]`` is the total spike count of each neuron
    layer over all T_max steps, summed over the batch (when recorded).
    """

    outputs: dict[int, torch.Tensor]
    spikes: dict[str, float]
    neurons: dict[str, int]


class SpikingNetwork(nn.Module):
    """Executes an ONNX graph whose neurons are ``onnx2snn.IF`` nodes."""

    def __init__(self, model: onnx.ModelProto):
        super().__init__()
        graph = model.graph
        constants = graph_constants(graph)
        inputs = [i.name for i in graph.input if i.name not in constants]
        if len(inputs) != 1 or len(graph.output) != 1:
            raise InvalidModelError(
                f"the graph must have one input and one output, not {len(inputs)} and {len(graph.output)}")
        self.input_name, self.output_name = inputs[0], graph.output[0].name
        missing = unsupported_nodes(model, runtime_only=True)
        if missing:
            raise UnsupportedOpError(missing, [c.op_type for c in ops.registered() if issubclass(c, ops.Op)])

        opsets = _opsets(model)
        nodes = [n for n in graph.node if not (n.op_type == "Constant" and n.domain in ("", "ai.onnx"))]
        self._check_order(nodes, set(constants) | {self.input_name})
        self.metadata = {p.key: p.value for p in model.metadata_props}
        self.node_names = [n.name or n.output[0] for n in nodes]
        self.node_inputs = [list(n.input) for n in nodes]
        self.node_outputs = [list(n.output) for n in nodes]
        self.layers = nn.ModuleList()
        for node in nodes:
            info = node_info(node, opsets, constants)
            cls = ops.lookup(info.domain, node.op_type, info.opset)
            fewest, most = cls.inputs
            if not fewest <= len(node.input) <= most:
                raise info.fail(f"has {len(node.input)} inputs; it takes {fewest} to {most}")
            self.layers.append(cls(info))

        used = {name for names in self.node_inputs for name in names}
        self._constant_names = sorted(n for n in constants if n in used)
        for index, name in enumerate(self._constant_names):
            self.register_buffer(f"const{index}", _to_tensor(constants[name]), persistent=False)

        static = set(self._constant_names) | {self.input_name}
        self.static_nodes, self.dynamic_nodes = [], []
        for index, layer in enumerate(self.layers):
            is_static = not layer.stateful and all(n in static or not n for n in self.node_inputs[index])
            (self.static_nodes if is_static else self.dynamic_nodes).append(index)
            if is_static:
                static.update(self.node_outputs[index])
        self.neuron_nodes = [i for i, layer in enumerate(self.layers) if layer.stateful and layer.neuron]
        if not self.neuron_nodes:
            raise InvalidModelError("the graph has no spiking neurons (no ReLU to convert)")
        self.plan = blocks.BlockPlan.build(self)
        # Synaptic ops of the dynamic part run in this dtype (float32, or bfloat16/float16 where
        # measured harmless); membrane potentials stay float32. See set_precision.
        self.precision = torch.float32
        self.block_memory = blocks.DEFAULT_BLOCK_MEMORY  # bytes of activations per block
        self._cast_cache: dict = {}
        self._stream: blocks.Stream | None = None

    @staticmethod
    def _check_order(nodes: Sequence[onnx.NodeProto], known: set[str]) -> None:
        known = set(known) | {""}
        for node in nodes:
            absent = [n for n in node.input if n not in known]
            if absent:
                raise InvalidModelError(
                    f"node {node.name!r} reads {absent[0]!r}, which no earlier node produces "
                    "(the graph is not topologically sorted, has a cycle, or a dangling input)")
            known.update(node.output)

    # -- execution -------------------------------------------------------------------------

    def constant_env(self) -> dict[str, torch.Tensor]:
        return {name: getattr(self, f"const{i}") for i, name in enumerate(self._constant_names)}

    def run_nodes(self, env: dict[str, torch.Tensor], indices: Iterable[int],
                  states: dict[int, object] | None = None, probe: Probe | None = None) -> None:
        """Execute ``indices`` in order, reading and writing ``env``.

        With ``states`` given, stateful nodes take one timestep; otherwise they act as the ANN.
        ``probe(index, input)`` sees the input current of each neuron.
        """
        for index in indices:
            layer = self.layers[index]
            args = [env[name] if name else None for name in self.node_inputs[index]]
            while args and args[-1] is None:
                args.pop()
            if layer.stateful:
                if probe is not None and layer.neuron:
                    probe(index, args[0])
                if states is None:
                    out = layer.analog(*args)
                else:
                    out, states[index] = layer.step(states.get(index), *args)
            else:
                out = layer(*args)
            if isinstance(out, tuple):
                env.update(zip(self.node_outputs[index], out))
            else:
                env[self.node_outputs[index][0]] = out

    def set_constants(self, values: dict[str, torch.Tensor]) -> None:
        """Overwrite constant tensors in place (every reader sees the new values); cached copies of the
        weights in another precision or layout are dropped with them."""
        constants = self.constant_env()
        with torch.no_grad():
            for name, value in values.items():
                constants[name].copy_(value)
        self._drop_weight_copies()

    def static_env(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        env = self.constant_env()
        env[self.input_name] = x
        self.run_nodes(env, self.static_nodes)
        return env

    @torch.inference_mode()
    def analog(self, x: torch.Tensor, probe: Probe | None = None) -> torch.Tensor:
        """The ANN's output: every neuron acts as its ReLU (or Clip)."""
        return self.analog_tensors(x, probe)[self.output_name]

    @torch.inference_mode()
    def analog_tensors(self, x: torch.Tensor, probe: Probe | None = None) -> dict[str, torch.Tensor]:
        """Every tensor of one analog (ANN) pass, by name, constants included: what shape and
        memory measurements read."""
        env = self.static_env(x)
        self.run_nodes(env, self.dynamic_nodes, probe=probe)
        return env

    def set_precision(self, dtype: torch.dtype | str) -> SpikingNetwork:
        """Run the synaptic ops of the dynamic part in ``dtype`` (``float32``, ``bfloat16`` or
        ``float16``). Spikes are exact in every one of them; what changes is the rounding of the
        weights, of the spike amplitude (the threshold) and of each layer's summed current.
        Membrane potentials and the readout stay float32."""
        dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
        if dtype not in (torch.float32, torch.bfloat16, torch.float16):
            raise ValueError(f"precision must be float32, bfloat16 or float16, not {dtype}")
        self.precision = dtype
        self._drop_weight_copies()
        return self

    def _drop_weight_copies(self) -> None:
        """Forget the weights cached in another precision or layout: the dynamic part's cast
        constants (``blocks.cast_constants``) and the convolutions' prepacked oneDNN weights."""
        self._cast_cache = {}
        for layer in self.layers:
            if isinstance(layer, ops.synaptic.Conv):
                layer.drop_prepacked()

    def fuse_neurons(self, enabled: bool = True) -> SpikingNetwork:
        """Run each binary neuron's step as one kernel that ``torch.compile`` generates (one pass over
        the potential instead of four or five; the same results). It needs a C++ compiler (or CUDA
        for GPU tensors), and the first simulation compiles for some seconds; without a compiler it
        warns once and runs unfused. It pays on large layers: ResNet-20 at batch 100 in docs/runtime.md."""
        for index in self.neuron_nodes:
            self.layers[index].fused = bool(enabled)
        return self

    def _apply(self, fn, recurse=True):
        result = super()._apply(fn, recurse)
        self._drop_weight_copies()  # cached weight copies follow the module's device and dtype
        if self._stream is not None:
            self._stream = self._stream.apply(fn)
        return result

    @torch.inference_mode()
    def simulate(self, x: torch.Tensor, timesteps: int | Sequence[int], count_spikes: bool = False,
                 block: int | None = None, on_step: StepHook | None = None,
                 progress: Callable[[int], None] | None = None) -> Simulation:
        """Run T_max timesteps with ``x`` as a constant input current.

        One run yields the readout at every requested T: the output layer's potential
        accumulated over the first T steps, divided by T. ``block`` timesteps run at once
        (default: as many as ``block_memory`` allows). ``on_step(t, env, states)`` (optional)
        sees every step's tensors and neuron states (spike statistics, membrane traces); it runs
        the per-step interpreter, which keeps every tensor of a step, so it is slower.
        ``progress(steps)`` (optional) is told how many timesteps each block advanced.
        """
        wanted = timestep_list(timesteps)
        if on_step is not None:
            return self._simulate_stepwise(x, wanted, count_spikes, on_step, progress)
        run = blocks.Run(self, blocks.fast_layout(x), count_spikes)
        accumulated, outputs, t = None, {}, 0
        while t < wanted[-1]:
            steps = min(run.block_length(block), wanted[-1] - t)
            out = run.block(steps)
            if progress is not None:
                progress(steps)
            for s in range(steps):  # sequential sum: the same figures for any block length
                step_out = out[s].float()
                accumulated = step_out.clone() if accumulated is None else accumulated.add_(step_out)
                t += 1
                if t in wanted:
                    outputs[t] = accumulated / t
        spikes = {self.node_names[i]: run.counts[i] for i in self.neuron_nodes} if count_spikes else {}
        neurons = {self.node_names[i]: run.sizes[i] for i in self.neuron_nodes} if count_spikes else {}
        return Simulation(outputs=outputs, spikes=spikes, neurons=neurons)

    def _simulate_stepwise(self, x: torch.Tensor, wanted: list[int], count_spikes: bool,
                           on_step: StepHook, progress: Callable[[int], None] | None = None) -> Simulation:
        """The reference interpreter: one timestep at a time, node by node, every tensor kept."""
        env_static = self.static_env(x)
        states: dict[int, object] = {}
        counts = {i: 0.0 for i in self.neuron_nodes}
        sizes = {}
        accumulated = None
        outputs = {}
        for t in range(1, wanted[-1] + 1):
            env = dict(env_static)
            self.run_nodes(env, self.dynamic_nodes, states)
            on_step(t, env, states)
            if progress is not None:
                progress(1)
            out = env[self.output_name]
            accumulated = out.clone() if accumulated is None else accumulated.add_(out)
            if count_spikes:
                for i in self.neuron_nodes:
                    fired = env[self.node_outputs[i][0]]
                    counts[i] += self.layers[i].spike_events(fired)
                    sizes[i] = fired[0].numel()
            if t in wanted:
                outputs[t] = accumulated / t
        spikes = {self.node_names[i]: counts[i] for i in self.neuron_nodes} if count_spikes else {}
        neurons = {self.node_names[i]: sizes[i] for i in self.neuron_nodes} if count_spikes else {}
        return Simulation(outputs=outputs, spikes=spikes, neurons=neurons)

    def forward(self, x: torch.Tensor, timesteps: int = 32) -> torch.Tensor:
        """Mean output over ``timesteps`` steps (for apps that embed the network as a module)."""
        return self.simulate(x, timesteps).outputs[int(timesteps)]

    # -- streaming ---------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget the state of a stream: the next ``step`` starts from the initial potentials."""
        self._stream = None

    @torch.inference_mode()
    def step(self, x: torch.Tensor) -> torch.Tensor:
        """Advance the network held in this module by one timestep with input ``x`` (which may
        change from step to step: video or event frames) and return this step's output
        (the increment of the output potential; its running mean is ``simulate``'s readout).
        The state lives in the module until ``reset``; it moves with ``.to(device)``."""
        if self._stream is None:
            self._stream = blocks.Stream()
        return self._stream.step(self, x)

    def neurons(self) -> dict[str, ops.StatefulOp]:
        return {self.node_names[i]: self.layers[i] for i in self.neuron_nodes}

    def configure_neurons(self, parameters: dict[str, NeuronParameters]) -> None:
        """Give the named neuron layers new parameters (as a threshold method returns them)."""
        neurons = self.neurons()
        for name, values in parameters.items():
            neurons[name].configure(values)
