"""Layer-by-layer access to a network's ANN activations and SNN input currents, in linear time.

This generalizes the machinery of ``spikenorm.py``: neuron layers are visited in topological
order; each visited layer leaves behind its ANN output (float, one per image) and its spike
trains (signed spike counts per step, int8), and the next layer's inputs are computed from those
through its segment of stateless nodes. Stored values are freed as soon as the last layer that
reads them is done, so no prefix of the network is ever rerun. Stateful nodes that are not
neurons (the spiking max-pool gate) are visited in the same order and simply stepped through
time (``pass_through``); their outputs are stored as float trains.
"""
from __future__ import annotations

import torch

from ...ops.neurons import channel_view
from ...runtime.network import SpikingNetwork
from .common import TIME_CHUNK, Segment


def stateful_segments(network: SpikingNetwork) -> dict[int, Segment]:
    """For every stateful node (neuron or not), the stateless nodes computing its first input from
    earlier stateful nodes' outputs and static tensors."""
    producer = {name: i for i, outs in enumerate(network.node_outputs) for name in outs}
    batch_statics = {network.input_name} | {n for i in network.static_nodes for n in network.node_outputs[i]}
    segments = {}
    for node in stateful_nodes(network):
        nodes, reads, batch_reads = set(), set(), set()
        pending = [network.node_inputs[node][0]]
        while pending:
            name = pending.pop()
            if name in batch_statics:
                batch_reads.add(name)
                continue
            index = producer.get(name)
            if index is None or index in nodes:
                continue  # a constant, or already visited
            if network.layers[index].stateful:
                reads.add(index)
                continue
            nodes.add(index)
            pending.extend(n for n in network.node_inputs[index] if n)
        segments[node] = Segment(sorted(nodes), sorted(reads), sorted(batch_reads))
    return segments


def stateful_nodes(network: SpikingNetwork) -> list[int]:
    return [i for i, layer in enumerate(network.layers) if layer.stateful]


def is_neuron(layer) -> bool:
    return getattr(layer, "neuron", True)


class LayerwiseRun:
    """Calibration images split into chunks, with stored activations of the layers done so far."""

    def __init__(self, network: SpikingNetwork, chunks: list[torch.Tensor], timesteps: int, simulate: bool = True):
        self.network, self.chunks, self.timesteps, self.simulate = network, chunks, timesteps, simulate
        self.track_ann = True  # SpikeNorm needs only the spike trains
        self.statics = [network.static_env(chunk) for chunk in chunks]
        self.constants = network.constant_env()
        self.segments = stateful_segments(network)
        self.order = stateful_nodes(network)
        self.uses = {n: sum(n in s.neuron_reads for s in self.segments.values()) for n in self.order}
        self.ann: dict[int, list[torch.Tensor]] = {}
        self.trains: dict[int, list[torch.Tensor]] = {}

    def _env(self, neuron: int, chunk: int, repeat: int) -> dict[str, torch.Tensor]:
        env = dict(self.constants)
        for name in self.segments[neuron].batch_reads:
            value = self.statics[chunk][name]
            if repeat > 1:
                value = value.unsqueeze(0).expand(repeat, *value.shape).reshape(-1, *value.shape[1:])
            env[name] = value
        return env

    def ann_input(self, neuron: int, chunk: int) -> torch.Tensor:
        """The ANN's input current of ``neuron`` (every earlier neuron acting as its ReLU)."""
        target = self.network.node_inputs[neuron][0]
        if target in self.statics[chunk]:
            return self.statics[chunk][target]
        env = self._env(neuron, chunk, 1)
        for source in self.segments[neuron].neuron_reads:
            env[self.network.node_outputs[source][0]] = self.ann[source][chunk]
        self.network.run_nodes(env, self.segments[neuron].nodes)
        return env[target]

    def currents(self, neuron: int, chunk: int, t0: int, t1: int) -> torch.Tensor:
        """The SNN's input current of ``neuron`` at steps t0..t1-1: ``[t1 - t0, n, ...]``."""
        target, span = self.network.node_inputs[neuron][0], t1 - t0
        if target in self.statics[chunk]:
            value = self.statics[chunk][target]
            return value.unsqueeze(0).expand(span, *value.shape)
        env = self._env(neuron, chunk, span)
        for source in self.segments[neuron].neuron_reads:
            trains = self.trains[source][chunk][t0:t1]
            values = trains.reshape(-1, *trains.shape[2:]).float()
            if is_neuron(self.network.layers[source]):  # signed spike counts times the threshold
                values = values * channel_view(self.network.layers[source].threshold, trains.ndim - 1)
            env[self.network.node_outputs[source][0]] = values
        self.network.run_nodes(env, self.segments[neuron].nodes)
        value = env[target]
        return value.reshape(span, -1, *value.shape[1:])

    def pass_through(self, node: int) -> None:
        """A stateful node that is not a neuron: its ANN output, and its outputs over time (float)."""
        layer = self.network.layers[node]
        ann = [layer.analog(self.ann_input(node, chunk)) for chunk in range(len(self.chunks))] if self.track_ann else []
        trains = None
        if self.simulate and self.uses[node]:
            trains = []
            for chunk in range(len(self.chunks)):
                state, train = None, None
                for t0, t1 in self.time_chunks():
                    current = self.currents(node, chunk, t0, t1)
                    for step in range(current.shape[0]):
                        out, state = layer.step(state, current[step])
                        if train is None:
                            train = torch.empty((self.timesteps, *out.shape), dtype=out.dtype, device=out.device)
                        train[t0 + step] = out
                trains.append(train)
        self.record(node, ann, trains)

    def time_chunks(self):
        for t0 in range(0, self.timesteps, TIME_CHUNK):
            yield t0, min(self.timesteps, t0 + TIME_CHUNK)

    def record(self, neuron: int, ann: list[torch.Tensor], trains: list[torch.Tensor] | None) -> None:
        """Keep a finished layer's outputs while a later layer reads them; free what is no longer read."""
        if self.uses[neuron]:
            self.ann[neuron] = ann
            if trains is not None:
                self.trains[neuron] = trains
        for source in self.segments[neuron].neuron_reads:
            self.uses[source] -= 1
            if self.uses[source] == 0:
                self.ann.pop(source, None)
                self.trains.pop(source, None)
