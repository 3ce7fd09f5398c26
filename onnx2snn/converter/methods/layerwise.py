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

from ...ops.neurons import channel_view, neuron_scan
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


# Elements of one work unit's current (8 MB of float32): time is folded into the batch, so each
# convolution still runs on a large batch, while the working set stays in cache and every large
# temporary is small enough for the allocator to reuse it instead of mapping fresh pages.
WORK_ELEMENTS = 1 << 21


def fast_layout(x: torch.Tensor) -> torch.Tensor:
    """Channels-last for image tensors: convolutions on spike tensors run about 1.5-2x faster on CPU."""
    return x.contiguous(memory_format=torch.channels_last) if x.ndim == 4 else x


def new_trains(timesteps: int, shape: torch.Size, dtype: torch.dtype, device) -> torch.Tensor:
    """``[T, *shape]`` storage for a layer's outputs, each step laid out like the currents (channels-last
    for images), so that writing them and reading them back as the next layer's input copies nothing."""
    if len(shape) != 4:
        return torch.empty((timesteps, *shape), dtype=dtype, device=device)
    flat = torch.empty((timesteps * shape[0], *shape[1:]), dtype=dtype, device=device,
                       memory_format=torch.channels_last)
    return flat.view(timesteps, *shape)


class BitTrains:
    """Binary spike trains packed 8 steps to a byte (``[ceil(T / 8), n, ...]`` uint8, bit ``t % 8`` of
    byte ``t // 8``): a stored layer costs T/8 bytes per neuron, so the stored layers of a deep network
    stay small (ResNet-20's first stage: 67 MB per layer for 512 images at T=64, not 537 MB)."""

    def __init__(self, timesteps: int, shape: torch.Size, device):
        self.bits = new_trains(-(-timesteps // 8), shape, torch.uint8, device).zero_()

    def write(self, t0: int, images: slice, spikes: torch.Tensor) -> None:
        """Store ``spikes`` (``[span, n_images, ...]``, 0/1 int8) as the steps from ``t0``."""
        for i, step in enumerate(spikes):
            group, bit = divmod(t0 + i, 8)
            self.bits[group, images].add_(step.view(torch.uint8), alpha=1 << bit)

    def clear(self, images: slice) -> None:
        """Forget the spikes of ``images`` (``write`` adds bits), so that they can be written again."""
        self.bits[:, images].zero_()

    def read_into(self, t0: int, images: slice, out: torch.Tensor) -> None:
        """``out`` (``[span, n_images, ...]``) receives the 0/1 spikes of the steps from ``t0``."""
        for i in range(out.shape[0]):
            group, bit = divmod(t0 + i, 8)
            out[i].copy_((self.bits[group, images] >> bit) & 1)


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
        self._elements: dict[int, int] = {}
        self._buffer: torch.Tensor | None = None  # binary spikes of one work unit, reused while shapes agree

    def _env(self, neuron: int, chunk: int, repeat: int, images: slice) -> dict[str, torch.Tensor]:
        env = dict(self.constants)
        for name in self.segments[neuron].batch_reads:
            value = self.statics[chunk][name][images]
            if repeat > 1:
                value = fast_layout(value.unsqueeze(0).expand(repeat, *value.shape).reshape(-1, *value.shape[1:]))
            env[name] = value
        return env

    def ann_input(self, neuron: int, chunk: int) -> torch.Tensor:
        """The ANN's input current of ``neuron`` (every earlier neuron acting as its ReLU)."""
        target = self.network.node_inputs[neuron][0]
        if target in self.statics[chunk]:
            return self.statics[chunk][target]
        env = self._env(neuron, chunk, 1, slice(None))
        for source in self.segments[neuron].neuron_reads:
            env[self.network.node_outputs[source][0]] = self.ann[source][chunk]
        self.network.run_nodes(env, self.segments[neuron].nodes)
        return env[target]

    def currents(self, neuron: int, chunk: int, t0: int, t1: int, images: slice = slice(None)) -> torch.Tensor:
        """The SNN's input current of ``neuron`` at steps t0..t1-1 for the chunk's ``images``:
        ``[t1 - t0, n, ...]``; the segment's nodes run once on all steps (time folded into the batch)."""
        target, span = self.network.node_inputs[neuron][0], t1 - t0
        if target in self.statics[chunk]:
            value = self.statics[chunk][target][images]
            return value.unsqueeze(0).expand(span, *value.shape)
        env = self._env(neuron, chunk, span, images)
        for source in self.segments[neuron].neuron_reads:
            stored = self.trains[source][chunk]
            trains = stored.bits[0, images] if isinstance(stored, BitTrains) else stored[0, images]
            shape = (span, *trains.shape)
            values = torch.empty((span * shape[1], *shape[2:]), device=trains.device,
                                 memory_format=torch.channels_last if len(shape) == 5 else torch.contiguous_format)
            folded = values.view(shape)  # time folded into the batch
            if isinstance(stored, BitTrains):
                stored.read_into(t0, images, folded)
            else:  # (a cast, then a float multiply: 3x faster than one mixed-dtype multiply)
                folded.copy_(stored[t0:t1, images])
            if is_neuron(self.network.layers[source]):  # signed spike counts times the threshold
                folded.mul_(channel_view(self.network.layers[source].threshold, len(shape) - 1))
            env[self.network.node_outputs[source][0]] = values
        self.network.run_nodes(env, self.segments[neuron].nodes)
        value = env[target]
        return value.reshape(span, -1, *value.shape[1:])

    def elements(self, node: int) -> int:
        """Elements of one image's input current of ``node``."""
        if node not in self._elements:
            self._elements[node] = self.currents(node, 0, 0, 1, slice(0, 1))[0, 0].numel()
        return self._elements[node]

    def units(self, node: int, chunk: int, time_outer: bool = False):
        """``(t0, t1, images)`` work units covering the chunk, each about WORK_ELEMENTS of current;
        image groups outermost (a neuron's state lives through time) unless ``time_outer``."""
        n, per_image = len(self.chunks[chunk]), self.elements(node)
        span = max(1, min(TIME_CHUNK, self.timesteps, WORK_ELEMENTS // per_image))
        group = max(1, min(n, WORK_ELEMENTS // (span * per_image)))
        times = [(t0, min(self.timesteps, t0 + span)) for t0 in range(0, self.timesteps, span)]
        groups = [slice(i0, min(n, i0 + group)) for i0 in range(0, n, group)]
        if time_outer:
            return [(t0, t1, images) for t0, t1 in times for images in groups]
        return [(t0, t1, images) for images in groups for t0, t1 in times]

    def unit_groups(self, node: int, chunk: int) -> list[tuple[slice, list[tuple[int, int]]]]:
        """The work units of ``units`` by image group: ``(images, [(t0, t1), ...])``, steps in order."""
        groups: list[tuple[slice, list[tuple[int, int]]]] = []
        for t0, t1, images in self.units(node, chunk):
            if not groups or groups[-1][0] != images:
                groups.append((images, []))
            groups[-1][1].append((t0, t1))
        return groups

    def neuron_trains(self, neuron: int, chunk: int) -> torch.Tensor | BitTrains:
        """The spike trains of a neuron layer at its current parameters (``BitTrains`` for binary spikes,
        else ``[T, n, ...]`` int8 signed spike counts), stepped by the one neuron kernel exactly as the
        runtime's ``IF.scan`` steps it."""
        trains = None
        for images, times in self.unit_groups(neuron, chunk):
            currents = (self.currents(neuron, chunk, t0, t1, images) for t0, t1 in times)
            trains = self.group_trains(neuron, chunk, images, currents, trains)
        return trains

    def layer_trains(self, neuron: int) -> list:
        """``neuron_trains`` of every chunk."""
        return [self.neuron_trains(neuron, chunk) for chunk in range(len(self.chunks))]

    def group_trains(self, neuron: int, chunk: int, images: slice, currents, trains=None):
        """Step the neuron layer at its current parameters through all T steps of one image group and
        write its spikes into the chunk's ``trains`` (allocated when None; the group's earlier spikes there
        are replaced). ``currents`` yields the group's currents in step order (``[span, n, ...]`` each, all
        T steps together). Returns ``trains``."""
        layer, state, t0 = self.network.layers[neuron], None, 0
        binary = not layer.extended
        for current in currents:
            t1 = t0 + current.shape[0]
            if trains is None:
                shape = (len(self.chunks[chunk]), *current.shape[2:])
                trains = (BitTrains(self.timesteps, shape, current.device) if binary
                          else new_trains(self.timesteps, shape, torch.int8, current.device))
            if binary:
                if t0 == 0:
                    trains.clear(images)
                if self._buffer is None or self._buffer.shape != current.shape:
                    self._buffer = new_trains(current.shape[0], current.shape[1:], torch.int8, current.device)
                out = self._buffer
            else:
                out = trains[t0:t1, images]
            ndim = current.ndim - 1
            threshold = channel_view(layer.threshold, ndim)
            if state is None:
                v = torch.zeros_like(current[0]) + channel_view(layer.v_init, ndim)
                state = (v, torch.zeros_like(v) if layer.signed else None)
            v, count = state
            _, v, count = neuron_scan(current, v, threshold, reset=layer.reset,
                                      bias=channel_view(layer.bias, ndim) if layer.has_bias else None,
                                      signed=layer.signed, burst=layer.burst, count=count, out=out)
            state = (v, count)
            if binary:
                trains.write(t0, images, out)
            t0 = t1
        return trains

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
