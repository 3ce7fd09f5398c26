"""Time-blocked execution of a spiking network's dynamic part.

A block of ``steps`` timesteps runs node by node with time folded into the batch: a tensor of
the block is ``[steps * N, ...]``, step-major, so each Conv/Gemm/pool/Add is one large call.
Stateful ops see the block as ``[steps, N, ...]``: a neuron scans its ``steps`` currents in one
``IF.scan`` call (the one neuron kernel, ``ops.neurons.neuron_scan``); other stateful ops (the
spiking max-pool) step through it one timestep at a time. States are carried from block to
block, so any block length gives the same spikes as stepping one timestep at a time.

Memory: tensors are freed after their last reader, and the block length is chosen from
``SpikingNetwork.block_memory`` and the peak bytes that one timestep of the block held, measured
on the first block (which runs a single step). So peak memory does not depend on T.
"""
from __future__ import annotations

import dataclasses

import torch

DEFAULT_BLOCK_MEMORY = 48 * 1024**2  # measured on ResNet-20, batch 100: 5-16% faster than 24 MiB
MAX_BLOCK = 64  # longer blocks gain nothing measurable and delay the readouts


def fast_layout(x: torch.Tensor) -> torch.Tensor:
    """Images in channels_last: the faster convolution layout on CPU (oneDNN) and on GPU."""
    return x.contiguous(memory_format=torch.channels_last) if x.ndim == 4 else x


def _nbytes(value) -> int:
    return value.numel() * value.element_size() if isinstance(value, torch.Tensor) else 0


@dataclasses.dataclass
class BlockPlan:
    """What the graph's structure says about block execution, computed once per network."""

    batch_static: set[str]  # static tensors that carry the batch (they depend on the input)
    dynamic_constants: list[str]  # constants read by dynamic nodes
    free_after: list[list[str]]  # per dynamic node: tensors nobody reads later
    args: list[list[str]]  # per dynamic node: its input names, trailing omitted inputs dropped
    produced: set[str]  # tensors that dynamic nodes produce (they change every step)

    @classmethod
    def build(cls, net) -> BlockPlan:
        batch_static = {net.input_name}
        for index in net.static_nodes:
            if any(n in batch_static for n in net.node_inputs[index]):
                batch_static.update(net.node_outputs[index])
        constants = set(net._constant_names)
        dynamic_constants = sorted({n for i in net.dynamic_nodes for n in net.node_inputs[i] if n in constants})
        produced = {n for i in net.dynamic_nodes for n in net.node_outputs[i]}
        last_reader: dict[str, int] = {}
        for position, index in enumerate(net.dynamic_nodes):
            for name in net.node_inputs[index]:
                if name in produced:
                    last_reader[name] = position
        free_after: list[list[str]] = [[] for _ in net.dynamic_nodes]
        for name, position in last_reader.items():
            if name != net.output_name:
                free_after[position].append(name)
        args = []
        for index in net.dynamic_nodes:
            names = list(net.node_inputs[index])
            while names and not names[-1]:
                names.pop()
            args.append(names)
        return cls(batch_static, dynamic_constants, free_after, args, produced)


def cast_constants(net) -> dict[str, torch.Tensor]:
    """The dynamic nodes' constants in the network's precision, 4-D weights channels_last
    (cached until the module moves or changes precision)."""
    buffer = next(net.buffers(), None)
    key = (net.precision, buffer.device if buffer is not None else None)
    if key not in net._cast_cache:
        constants = net.constant_env()
        cast = {}
        for name in net.plan.dynamic_constants:
            value = constants[name]
            if value.is_floating_point() and value.dtype != net.precision:
                value = value.to(net.precision)
            cast[name] = fast_layout(value)
        net._cast_cache = {key: cast}
    return net._cast_cache[key]


@dataclasses.dataclass
class _Call:
    """One dynamic node of a block, its arguments resolved (see ``Run._program``)."""

    index: int
    layer: object
    forward: object
    args: list  # a str names a tensor of the block; anything else is the argument itself
    outputs: list[str]
    free: list[str]  # tensors nobody reads after this node
    stateful: bool
    scan: bool  # a neuron: one scan over the block
    neuron: bool


class Run:
    """One simulation in progress: the static environment of its input, the states, the counts."""

    def __init__(self, net, x: torch.Tensor, count_spikes: bool = False):
        self.net = net
        self.count_spikes = count_spikes
        self.states: dict[int, object] = {}
        self.counts = {i: 0.0 for i in net.neuron_nodes}
        self.sizes: dict[int, int] = {}
        self.step_bytes: int | None = None  # peak bytes per timestep of a block, once measured
        self._measured: set[int] = set()  # block lengths whose memory was measured
        self.set_input(x)

    def set_input(self, x: torch.Tensor) -> None:
        """A new input from the next step on (streaming); the states are kept."""
        self.batch = x.shape[0]
        self.env_static = self.net.static_env(x)
        self._repeated: dict[tuple[str, int], torch.Tensor] = {}
        self._programs: dict[int, tuple[dict, list[_Call]]] = {}

    def block_length(self, requested: int | None) -> int:
        if requested is not None:
            if int(requested) < 1:
                raise ValueError("block must be at least 1 timestep")
            return int(requested)
        if self.step_bytes is None:
            return 1  # the first block measures what one step holds
        return max(1, min(MAX_BLOCK, self.net.block_memory // max(1, self.step_bytes)))

    def _static(self, name: str, steps: int) -> torch.Tensor:
        """A batch-carrying static tensor, repeated for each step of the block (cached)."""
        value = self.env_static[name]
        if value.is_floating_point() and value.dtype != self.net.precision:
            value = value.to(self.net.precision)
        if steps == 1:
            return value
        key = (name, steps)
        if key not in self._repeated:
            self._repeated[key] = fast_layout(value.repeat(steps, *([1] * (value.ndim - 1))))
        return self._repeated[key]

    def _program(self, steps: int, constants: dict[str, torch.Tensor]) -> list[_Call]:
        """The dynamic nodes as calls whose arguments are looked up once per block length: a
        step then pays no dictionary search, module indexing or ``nn.Module.__call__``."""
        cached = self._programs.get(steps)
        if cached is None or cached[0] is not constants:  # new precision or device: new constants
            net, plan, program = self.net, self.net.plan, []
            for position, index in enumerate(net.dynamic_nodes):
                layer = net.layers[index]
                scan = layer.stateful and hasattr(layer, "scan") and len(plan.args[position]) == 1
                args: list = []
                for number, name in enumerate(plan.args[position]):
                    if not name:
                        args.append(None)
                    elif name in plan.produced:
                        args.append(name)  # a str marks a tensor of the block, looked up per block
                    elif layer.stateful and number == 0:  # a constant current: the same at every step
                        value = self.env_static[name]
                        args.append(value if scan and steps == 1 else value.unsqueeze(0).expand(steps, *value.shape))
                    elif name in constants:
                        args.append(constants[name])
                    elif name in plan.batch_static and not layer.stateful:
                        args.append(self._static(name, steps))
                    else:
                        args.append(self.env_static[name])
                program.append(_Call(index, layer, layer.forward, args, net.node_outputs[index],
                                     plan.free_after[position], layer.stateful, scan,
                                     layer.stateful and layer.neuron))
            self._programs[steps] = cached = (constants, program)
        return cached[1]

    def block(self, steps: int) -> torch.Tensor:
        """Advance ``steps`` timesteps; the output node's value per step, ``[steps, N, ...]``."""
        net = self.net
        program = self._program(steps, cast_constants(net))
        measure = steps not in self._measured  # memory is measured once per block length
        env: dict[str, torch.Tensor] = {}
        live = peak = 0
        for call in program:
            args = [env[a] if a.__class__ is str else a for a in call.args]
            out = self._stateful(call, args, steps) if call.stateful else call.forward(*args)
            if out.__class__ is tuple:
                env.update(zip(call.outputs, out))
            else:
                env[call.outputs[0]] = out
            if measure:
                for value in out if out.__class__ is tuple else (out,):
                    live += _nbytes(value)
                peak = max(peak, live)
                for name in call.free:
                    live -= _nbytes(env.pop(name, None))
            else:
                for name in call.free:
                    env.pop(name, None)
        if measure:
            self._measured.add(steps)
            per_step = -(-peak // steps)
            self.step_bytes = per_step if self.step_bytes is None else max(self.step_bytes, per_step)
        result = env[net.output_name]
        return result.reshape(steps, self.batch, *result.shape[1:])

    def _stateful(self, call: _Call, args: list, steps: int) -> torch.Tensor:
        """A neuron (one scan over the block) or another stateful op (stepped)."""
        index, layer, precision = call.index, call.layer, self.net.precision
        if call.scan and steps == 1:  # a streaming step: no time axis to add and drop
            out, self.states[index] = layer.step(self.states.get(index), args[0], out_dtype=precision)
        else:
            currents = args[0]
            if call.args[0].__class__ is str:  # a tensor of the block, [steps * N, ...]
                currents = currents.view(steps, self.batch, *currents.shape[1:])
            if call.scan:
                out, self.states[index] = layer.scan(self.states.get(index), currents, out_dtype=precision)
            else:
                steps_out = []
                if currents.is_floating_point():
                    currents = currents.to(precision)
                for t in range(steps):
                    y, self.states[index] = layer.step(self.states.get(index), currents[t], *args[1:])
                    steps_out.append(y)
                out = torch.stack(steps_out)
            out = out[0] if steps == 1 else out.flatten(0, 1)
        if self.count_spikes and call.neuron:
            self.counts[index] += layer.spike_events(out)
            self.sizes[index] = out[0].numel()
        return fast_layout(out) if out.ndim == 4 else out


def _map_tensors(fn, value):
    if isinstance(value, torch.Tensor):
        return fn(value)
    if isinstance(value, tuple):
        return tuple(_map_tensors(fn, v) for v in value)
    if isinstance(value, dict):
        return {k: _map_tensors(fn, v) for k, v in value.items()}
    return value


class Stream:
    """The state behind ``SpikingNetwork.step``: one run advanced a timestep at a time."""

    def __init__(self):
        self.run: Run | None = None
        self.last_input: torch.Tensor | None = None

    def step(self, net, x: torch.Tensor) -> torch.Tensor:
        if self.run is None:
            self.run = Run(net, fast_layout(x))
        elif x.shape != self.last_input.shape:
            raise ValueError(f"the stream's input changed shape from {list(self.last_input.shape)} to "
                             f"{list(x.shape)}; call reset() to start a new stream")
        elif torch.equal(x, self.last_input):  # the same frame: the static part stands
            return self.run.block(1)[0]
        else:  # a new frame: recompute the static part
            self.run.set_input(fast_layout(x))
        self.last_input = x.clone()
        return self.run.block(1)[0]

    def apply(self, fn) -> Stream:
        """Follow the module to another device or dtype (``nn.Module._apply``)."""
        if self.run is not None:
            self.run.states = _map_tensors(fn, self.run.states)
            self.run.env_static = _map_tensors(fn, self.run.env_static)
            self.run._repeated = {}
            self.run._programs = {}
            self.last_input = fn(self.last_input)
        return self


def keep_freed_memory() -> bool:
    """Ask glibc to keep freed memory for reuse instead of returning it to the OS.

    Each block allocates tensors of several MB; by default glibc serves them with fresh mmap
    pages (or trims the heap), so every block pays page faults that can cost as much as the
    arithmetic. This is process-wide, so the library never calls it on its own: the command
    line (evaluate) and the benchmark do. Peak memory is unchanged; it is just not given back.
    Returns whether the setting took effect (glibc on Linux only).
    """
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    largest_mmap_threshold = 32 * 1024**2  # glibc's ceiling on 64-bit; larger tensors still use mmap
    return bool(libc.mallopt(m_trim_threshold, 1 << 30)) and bool(libc.mallopt(m_mmap_threshold,
                                                                                 largest_mmap_threshold))
