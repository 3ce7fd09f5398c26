"""Spike statistics of a simulation: firing rates, synaptic operations and an energy estimate.

Counting rules (docs/tools.md):

- A *spike event* is one spike; a burst of k spikes (or k negative spikes) counts k.
- Each spike of a neuron layer causes ``fan-out`` synaptic operations (accumulates): the
  multiply-accumulates that the weighted ops it feeds (Conv, Gemm, MatMul) perform per input
  element, i.e. their MACs divided by the size of the tensor they read. An average pool in front
  of a weighted op is folded into it (a spike costs the pool outputs it reaches times that op's
  fan-out); in front of a neuron it costs its own adds. Shape ops, Pad, Slice, Concat, Add and
  the spiking max-pool pass a spike on (scaled by min(1, output size / input size)); a spike that
  reaches another neuron directly (a residual Add) costs no synaptic operation. The fan-out is
  the layer's mean: neurons at an image border reach fewer outputs.
- Synaptic ops that depend only on the analog input (the first conv) run once per image, as in
  the ANN: they cost MACs, not accumulates.
- Energy: MACs x ``mac_pj`` + synaptic operations x ``accumulate_pj``. Defaults: 4.6 pJ per 32-bit
  float multiply-accumulate and 0.9 pJ per 32-bit float add at 45 nm (Horowitz, "Computing's
  energy problem", ISSCC 2014: fmult 3.7 pJ + fadd 0.9 pJ). Memory traffic and neuron updates are
  not counted. Change them with a TOML file of ``accumulate_pj`` / ``mac_pj`` (``load_costs``).
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

import numpy as np
import onnx
import torch

from .config import read_toml
from .dialect import is_neuron_node
from .errors import ConfigError
from .inspection import SYNAPTIC_OPS, _constants, _executed_shapes, _numel, node_macs
from .ops.neurons import channel_view
from .runtime.network import SpikingNetwork

DEFAULT_COSTS = {"accumulate_pj": 0.9, "mac_pj": 4.6}
HISTOGRAM_BINS = 20


def load_costs(path: str | os.PathLike | None) -> dict[str, float]:
    """Per-operation energies (pJ) from a TOML file; keys not given keep their defaults."""
    costs = dict(DEFAULT_COSTS)
    if path is None:
        return costs
    values = read_toml(path)
    section = values.get("energy", values)
    for key, value in section.items():
        if key not in costs:
            raise ConfigError(f"{path}: unknown energy cost {key!r}; known: {', '.join(costs)}")
        if not isinstance(value, (int, float)) or value < 0:
            raise ConfigError(f"{path}: {key} must be a non-negative number of picojoules")
        costs[key] = float(value)
    return costs


@dataclasses.dataclass
class GraphCosts:
    """What the graph's structure says, independent of the data."""

    fanout: dict[str, float]  # neuron layer -> synaptic operations per spike
    neurons: dict[str, int]  # neuron layer -> neurons per image
    ann_macs: int  # all MACs of the graph per image (the ANN's cost)
    static_macs: int  # MACs of synaptic ops that read only the analog input (run once per image)
    reached_macs: dict[str, int] = dataclasses.field(default_factory=dict)  # neuron layer -> MACs it feeds


def graph_costs(model: onnx.ModelProto) -> GraphCosts:
    shapes = _executed_shapes(model)
    constants = _constants(model)
    nodes = [n for n in model.graph.node if not (n.op_type == "Constant" and n.domain in ("", "ai.onnx"))]
    readers: dict[str, list[onnx.NodeProto]] = {}
    for node in nodes:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    macs = {id(n): node_macs(n, shapes, constants) for n in nodes}
    outputs = {o.name for o in model.graph.output}
    memo: dict[str, float] = {}

    def fanout(tensor: str) -> float:
        if tensor in memo:
            return memo[tensor]
        memo[tensor] = 0.0  # guards against cycles in a malformed graph
        size = _numel(shapes.get(tensor))
        total = 0.0
        for node in readers.get(tensor, []):
            if is_neuron_node(node) or not size:
                continue  # the current of the next neuron: no synaptic operation
            out = node.output[0]
            out_size = _numel(shapes.get(out))
            if node.op_type in ("AveragePool", "GlobalAveragePool") and node.domain in ("", "ai.onnx"):
                # a fixed-weight pool before a weighted layer is folded into it: each of the pool
                # outputs a spike reaches costs that layer's fan-out; before a neuron, the pool's own adds
                total += macs[id(node)] / size * (fanout(out) or 1.0)
            elif node.op_type in SYNAPTIC_OPS and node.domain in ("", "ai.onnx"):
                if node.input[0] == tensor:
                    total += macs[id(node)] / size
            elif out_size:  # shape ops, Pad, Slice, Concat, Add, spiking max-pool: pass the spike on
                total += fanout(out) * min(1.0, out_size / size)
        memo[tensor] = total
        return total

    def reached_macs(tensor: str, seen: set) -> int:
        """MACs of the synaptic ops a layer's output reaches before the next neuron (its ANN cost)."""
        total = 0
        for node in readers.get(tensor, []):
            if is_neuron_node(node) or id(node) in seen:
                continue
            seen.add(id(node))
            total += macs[id(node)] + reached_macs(node.output[0], seen)
        return total

    network = SpikingNetwork(model)
    static = {network.node_names[i] for i in network.static_nodes}
    neurons, fanouts, reached = {}, {}, {}
    for node in nodes:
        if is_neuron_node(node):
            name = node.name or node.output[0]
            neurons[name] = _numel(shapes.get(node.output[0])) or 0
            fanouts[name] = 0.0 if node.output[0] in outputs else fanout(node.output[0])
            reached[name] = reached_macs(node.output[0], set())
    static_macs = sum(macs[id(n)] for n in nodes if (n.name or n.output[0]) in static)
    return GraphCosts(fanouts, neurons, sum(macs.values()), static_macs, reached)


class SpikeRecorder:
    """An ``on_step`` hook for ``SpikingNetwork.simulate``: counts spike events per neuron and per
    step (summed over the batch and over every batch it sees), and records membrane-potential
    traces of chosen neurons of the first image of the first batch."""

    def __init__(self, network, traces: dict[str, Sequence[int]] | None = None):
        self.network = network
        self.names = {i: network.node_names[i] for i in network.neuron_nodes}
        self.per_neuron: dict[str, torch.Tensor] = {}
        self.per_step: dict[str, list[float]] = {name: [] for name in self.names.values()}
        self.images = 0
        self.steps = 0
        self.trace_request = {k: list(v) for k, v in (traces or {}).items()}
        unknown = set(self.trace_request) - set(self.names.values())
        if unknown:
            raise ConfigError(f"--trace names no neuron layer: {', '.join(sorted(unknown))}; "
                              f"neuron layers: {', '.join(self.names.values())}")
        self.traces: dict[str, dict[int, dict[str, list[float]]]] = {}
        self._tracing = bool(self.trace_request)

    def start_batch(self, size: int) -> None:
        """Call before each simulate(): the next steps belong to a new batch of ``size`` images."""
        if self.images:
            self._tracing = False  # traces follow the first image only
        self.images += size

    def __call__(self, t: int, env: dict, states: dict) -> None:
        self.steps = max(self.steps, t)
        for index, name in self.names.items():
            layer = self.network.layers[index]
            out = env[self.network.node_outputs[index][0]]
            events = (out.abs() / channel_view(layer.threshold, out.ndim)).round()
            per_neuron = events.sum(0, dtype=torch.float64)  # stays on the device: no sync per step
            if name in self.per_neuron:
                self.per_neuron[name] += per_neuron
            else:
                self.per_neuron[name] = per_neuron
            steps = self.per_step[name]
            if len(steps) < t:
                steps.append(per_neuron.sum())
            else:
                steps[t - 1] = steps[t - 1] + per_neuron.sum()
            if self._tracing and name in self.trace_request:
                state = states.get(index)
                v = state[0] if isinstance(state, tuple) else state
                layer_traces = self.traces.setdefault(name, {})
                flat_v, flat_k = v[0].reshape(-1), events[0].reshape(-1)
                for neuron in self.trace_request[name]:
                    if not 0 <= neuron < flat_v.numel():
                        raise ConfigError(f"--trace {name}:{neuron}: the layer has {flat_v.numel()} neurons")
                    trace = layer_traces.setdefault(neuron, {"v": [], "spikes": [], "threshold": float(
                        layer.threshold.reshape(-1)[min(neuron // max(1, flat_v.numel() // layer.threshold.numel()),
                                                        layer.threshold.numel() - 1)])})
                    trace["v"].append(float(flat_v[neuron]))
                    trace["spikes"].append(float(flat_k[neuron]))


@dataclasses.dataclass
class LayerStats:
    name: str
    neurons: int  # per image
    spikes: float  # per image, over T_max steps
    rate: float  # spikes per neuron per step
    histogram: list[int]  # neurons per firing-rate bin
    fanout: float
    sops: float  # synaptic operations per image over T_max
    ann_macs: float  # MACs per image of the ops this layer feeds, in the ANN


@dataclasses.dataclass
class SpikeStatistics:
    timesteps: int  # T_max
    images: int
    layers: list[LayerStats]
    bin_edges: list[float]
    sops_by_t: dict[int, float]  # synaptic operations per image over the first T steps
    ann_macs: int
    static_macs: int
    costs: dict[str, float]
    traces: dict = dataclasses.field(default_factory=dict)

    @property
    def spikes(self) -> float:
        return sum(layer.spikes for layer in self.layers)

    @property
    def sops(self) -> float:
        return sum(layer.sops for layer in self.layers)

    @property
    def rate(self) -> float:
        neurons = sum(layer.neurons for layer in self.layers)
        return self.spikes / (neurons * self.timesteps) if neurons else 0.0

    def energy_uj(self, t: int | None = None) -> dict[str, float]:
        """Energy per image in microjoules: the SNN over the first ``t`` steps, and the ANN."""
        sops = self.sops_by_t[t] if t is not None else self.sops
        snn = self.static_macs * self.costs["mac_pj"] + sops * self.costs["accumulate_pj"]
        return {"snn": snn * 1e-6, "ann": self.ann_macs * self.costs["mac_pj"] * 1e-6}

    def to_json(self) -> dict:
        energy = self.energy_uj()
        return {
            "timesteps": self.timesteps, "images": self.images, "spikes_per_image": self.spikes,
            "firing_rate": self.rate, "sops_per_image": self.sops, "ann_macs_per_image": self.ann_macs,
            "static_macs_per_image": self.static_macs, "costs_pj": self.costs,
            "energy_uj_per_image": energy,
            "sops_by_t": {str(t): v for t, v in sorted(self.sops_by_t.items())},
            "rate_bin_edges": self.bin_edges,
            "layers": [dataclasses.asdict(layer) for layer in self.layers],
            "traces": {name: {str(k): v for k, v in neurons.items()} for name, neurons in self.traces.items()},
        }


def summarize(recorder: SpikeRecorder, costs: GraphCosts, energy: dict[str, float] | None = None,
              timesteps: Sequence[int] = ()) -> SpikeStatistics:
    """Per-layer and total statistics from a recorder that has seen ``recorder.images`` images."""
    n, steps = max(1, recorder.images), max(1, recorder.steps)
    top = 1.0
    for index in recorder.names:
        layer = recorder.network.layers[index]
        top = max(top, float(getattr(layer, "burst", 1)))
    edges = np.linspace(0.0, top, HISTOGRAM_BINS + 1)
    per_step = {name: [float(v) for v in values] for name, values in recorder.per_step.items()}
    layers = []
    for name, counts in recorder.per_neuron.items():
        counts = counts.cpu()
        rates = counts.reshape(-1).numpy() / (n * steps)
        histogram, _ = np.histogram(np.clip(rates, 0, top), bins=edges)
        spikes = float(counts.sum()) / n
        layers.append(LayerStats(
            name=name, neurons=int(counts.numel()), spikes=spikes, rate=float(rates.mean()),
            histogram=[int(v) for v in histogram], fanout=costs.fanout.get(name, 0.0),
            sops=spikes * costs.fanout.get(name, 0.0), ann_macs=costs.reached_macs.get(name, 0)))
    sops_by_t = {}
    for t in sorted(set(timesteps) | {steps}):
        if t <= steps:
            sops_by_t[t] = sum(sum(per_step[name][:t]) * costs.fanout.get(name, 0.0) for name in per_step) / n
    return SpikeStatistics(timesteps=steps, images=recorder.images, layers=layers, bin_edges=[float(e) for e in edges],
                           sops_by_t=sops_by_t, ann_macs=costs.ann_macs, static_macs=costs.static_macs,
                           costs=dict(energy or DEFAULT_COSTS), traces=recorder.traces)


def parse_traces(specs: Sequence[str]) -> dict[str, list[int]]:
    """``LAYER:I,J,...`` (flat neuron indices within one image) -> {layer: [I, J, ...]}."""
    traces: dict[str, list[int]] = {}
    for spec in specs:
        layer, _, indices = spec.rpartition(":")
        try:
            values = [int(v) for v in indices.split(",") if v.strip()]
        except ValueError:
            values = []
        if not layer or not values or min(values) < 0:
            raise ConfigError(f"--trace wants LAYER:I[,J...] with neuron indices, not {spec!r}")
        traces.setdefault(layer, []).extend(values)
    return traces
