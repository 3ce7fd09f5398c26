"""SpikeNorm (Sengupta et al. 2019), in time linear in depth.

Layer by layer in topological order, each neuron's threshold becomes the largest input current
it receives over all calibration images and timesteps, with every earlier layer already spiking
at its own SpikeNorm threshold.

Rerunning the whole network for each layer would cost O(depth^2). Instead each layer's spike
trains are stored (one byte per neuron and step) and the next layer's inputs are computed from
them: every node between two neuron layers is evaluated twice (once for the maximum, once to
simulate the layer with its new threshold), so the cost is O(depth). A layer's spike trains are
freed as soon as the last layer that reads them is done. Stateless nodes run on all timesteps
of a chunk at once, by folding time into the batch dimension.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import torch

from ..ops.neurons import channel_view
from ..runtime.network import SpikingNetwork
from .thresholds import MIN_THRESHOLD, batches

TIME_CHUNK = 16


@dataclasses.dataclass
class Segment:
    """The stateless nodes that compute one neuron's input current from earlier spikes."""

    nodes: list[int]
    neuron_reads: list[int]  # neurons whose spikes the segment reads
    batch_reads: list[str]  # static tensors with a batch dimension that the segment reads


def _segments(network: SpikingNetwork) -> dict[int, Segment]:
    producer = {name: i for i, outs in enumerate(network.node_outputs) for name in outs}
    static_nodes = set(network.static_nodes)
    batch_statics = {network.input_name} | {n for i in static_nodes for n in network.node_outputs[i]}
    segments = {}
    for neuron in network.neuron_nodes:
        nodes, neuron_reads, batch_reads = set(), set(), set()
        pending = [network.node_inputs[neuron][0]]
        while pending:
            name = pending.pop()
            if name in batch_statics:
                batch_reads.add(name)
                continue
            index = producer.get(name)
            if index is None or index in nodes:
                continue  # a constant, or already visited
            if network.layers[index].stateful:
                neuron_reads.add(index)
                continue
            nodes.add(index)
            pending.extend(n for n in network.node_inputs[index] if n)
        segments[neuron] = Segment(sorted(nodes), sorted(neuron_reads), sorted(batch_reads))
    return segments


@torch.inference_mode()
def spikenorm_thresholds(network: SpikingNetwork, images: torch.Tensor, timesteps: int,
                         batch_size: int = 128) -> dict[str, np.ndarray]:
    chunks = list(batches(images, batch_size))
    statics = [network.static_env(chunk) for chunk in chunks]
    constants = network.constant_env()
    segments = _segments(network)
    uses = {n: sum(n in s.neuron_reads for s in segments.values()) for n in network.neuron_nodes}
    spikes: dict[int, list[torch.Tensor]] = {}
    thresholds: dict[str, np.ndarray] = {}

    def currents(neuron: int, chunk: int, t0: int, t1: int) -> torch.Tensor:
        """Input current of ``neuron`` at steps t0..t1-1 of one image chunk: [t1-t0, n, ...]."""
        segment, span = segments[neuron], t1 - t0
        target = network.node_inputs[neuron][0]
        if target in statics[chunk]:
            value = statics[chunk][target]
            return value.unsqueeze(0).expand(span, *value.shape)
        env = dict(constants)
        for name in segment.batch_reads:
            value = statics[chunk][name]
            env[name] = value.unsqueeze(0).expand(span, *value.shape).reshape(-1, *value.shape[1:])
        for source in segment.neuron_reads:
            trains = spikes[source][chunk][t0:t1]
            scale = channel_view(network.layers[source].threshold, trains.ndim - 1)
            env[network.node_outputs[source][0]] = trains.reshape(-1, *trains.shape[2:]).float() * scale
        network.run_nodes(env, segment.nodes)
        value = env[target]
        return value.reshape(span, -1, *value.shape[1:])

    for neuron in network.neuron_nodes:
        layer = network.layers[neuron]
        peak = 0.0
        for chunk in range(len(chunks)):
            for t0 in range(0, timesteps, TIME_CHUNK):
                peak = max(peak, float(currents(neuron, chunk, t0, min(timesteps, t0 + TIME_CHUNK)).max()))
        threshold = max(peak, MIN_THRESHOLD)
        if layer.clip_max is not None:
            threshold = min(threshold, layer.clip_max)
        layer.set_threshold([threshold])
        thresholds[network.node_names[neuron]] = np.array([threshold], dtype=np.float32)

        trains_per_chunk = []
        for chunk in range(len(chunks)):
            state, trains = None, None
            for t0 in range(0, timesteps, TIME_CHUNK):
                current = currents(neuron, chunk, t0, min(timesteps, t0 + TIME_CHUNK))
                if trains is None:
                    trains = torch.empty((timesteps, *current.shape[1:]), dtype=torch.bool, device=current.device)
                for step in range(current.shape[0]):
                    out, state = layer.step(state, current[step])
                    trains[t0 + step] = out > 0
            trains_per_chunk.append(trains)
        if uses[neuron]:
            spikes[neuron] = trains_per_chunk
        for source in segments[neuron].neuron_reads:
            uses[source] -= 1
            if uses[source] == 0:
                del spikes[source]
    return thresholds
