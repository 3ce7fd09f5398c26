"""Weight calibration: each layer's Conv/Gemm weights and biases fitted so that the SNN's rate code
matches the ANN activation, with every earlier layer already spiking (docs/low_latency.md).

This is layer-wise reconstruction as post-training quantization does it (AdaRound, Nagel et al.
2020; BRECQ, Li et al. 2021; QDrop, Wei et al. 2022), with the IF neuron's rate code as the
quantizer, as in the "advanced" pipeline of Li et al. 2021 ("A free lunch from ANN"). For one
neuron layer:

- inputs: the earlier layers' actual spike trains, averaged over the first t steps into rates
  (times their thresholds, as the runtime feeds them), for every readout t;
- the stand-in for the neuron: over t steps a soft-reset IF neuron with a constant input current I
  fires ``clamp(floor((t * (I + bias) + v_init) / threshold), 0, burst * t)`` times; the floor
  takes a straight-through gradient. Since every segment is affine, the mean current of the
  spike trains is the segment applied to their rates, so the stand-in is exact except for
  temporal effects (a membrane that dips below zero);
- loss: squared error of the readouts' rates against the ANN activation, weighted as the
  threshold choice weights them (``candidates.simulate_candidates``);
- Adam from the original weights; the result is kept only if the exact simulation's error on
  the held-out calibration images went down.

The network's constant buffers are updated in place, so the layer's final spike trains (and every
later layer) come from the exact simulation with the new weights. The output (logits) segment is
fitted the same way without a neuron (the readout is exactly affine in the rates).
"""
from __future__ import annotations

import dataclasses
import logging
import math

import torch

from ...ops.neurons import channel_view
from ...runtime.network import SpikingNetwork
from ..weight_files import TUNED_OPS
from .layerwise import BitTrains, LayerwiseRun, fast_layout, is_neuron

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class WeightSettings:
    """Hyperparameters of the weight calibration (chosen on held-out train images; docs/low_latency.md)."""

    iterations: int = 200
    learning_rate: float = 1e-3  # Adam's step, relative to each tensor's root mean square
    batch_images: int = 32
    seed: int = 0
    accept: str = "held_out"  # keep fitted weights: "held_out" (only if the held-out error fell) | "always"


@dataclasses.dataclass
class TuningSegment:
    """The nodes from the previous stateful outputs (and the network input) to one tensor."""

    target: str
    nodes: list[int]
    reads: list[int]  # stateful nodes whose outputs it reads
    tuned: list[str]  # constant names (Conv/Gemm weights and biases) that it may change
    static: bool  # whether it recomputes part of the network's static (input-only) computation


def tuning_segment(network: SpikingNetwork, target: str, owners: dict[str, int]) -> TuningSegment:
    """Walk back from ``target`` through stateless nodes, static ones included (so the first layer's
    convolution, computed once per input, can be tuned too)."""
    producer = {name: i for i, outs in enumerate(network.node_outputs) for name in outs}
    constants = set(network.constant_env())
    static_nodes = set(network.static_nodes)
    nodes, reads, pending = set(), set(), [target]
    while pending:
        name = pending.pop()
        index = producer.get(name)
        if name in constants or index is None or index in nodes:
            continue
        if network.layers[index].stateful:
            reads.add(index)
            continue
        nodes.add(index)
        pending.extend(n for n in network.node_inputs[index] if n)
    tuned = []
    for index in sorted(nodes):
        layer, inputs = network.layers[index], network.node_inputs[index]
        if getattr(layer, "op_type", "") not in TUNED_OPS or inputs[0] in constants:
            continue
        for name in inputs[1:3]:
            if name and name in constants and owners.get(name) == 1 and name not in tuned:
                tuned.append(name)
    return TuningSegment(target, sorted(nodes), sorted(reads), tuned, bool(nodes & static_nodes))


def constant_owners(network: SpikingNetwork) -> dict[str, int]:
    """How many node inputs read each constant: only a constant read once is tuned, so that no other
    consumer sees it change (the converter gives shared Conv/Gemm weights one copy per node first)."""
    counts: dict[str, int] = {}
    for inputs in network.node_inputs:
        for name in inputs:
            counts[name] = counts.get(name, 0) + 1
    return counts


def prefix_rates(run: LayerwiseRun, source: int, chunk: int, steps: tuple[int, ...]) -> dict[int, torch.Tensor]:
    """The output of a stateful node averaged over its first t steps, for each readout t, as the
    next layer receives it (spike counts times the threshold)."""
    stored = run.trains[source][chunk]
    layer = run.network.layers[source]
    total, rates, done = None, {}, 0
    last = max(steps)
    while done < last:
        span = min(8, last - done)
        if isinstance(stored, BitTrains):
            shape = stored.bits.shape[1:]
            piece = torch.empty((span, *shape), dtype=torch.uint8, device=stored.bits.device)
            stored.read_into(done, slice(None), piece)
        else:
            piece = stored[done:done + span]
        for step in piece:
            # a copy: a float32 train (a spiking max-pool's output) would otherwise be summed into in place
            total = step.to(torch.float32, copy=True) if total is None else total.add_(step.float())
            done += 1
            if done in steps:
                rates[done] = total / done
    if is_neuron(layer):
        rates = {t: r * channel_view(layer.threshold, r.ndim) for t, r in rates.items()}
    return {t: fast_layout(r) for t, r in rates.items()}


def _floor_ste(x: torch.Tensor) -> torch.Tensor:
    return x + (torch.floor(x) - x).detach()


class SegmentFit:
    """The data and the loss of one segment: rates of its inputs per readout, the ANN target."""

    def __init__(self, run: LayerwiseRun, segment: TuningSegment, neuron: int | None, targets: list[torch.Tensor],
                 steps: tuple[int, ...], timesteps: int):
        self.run, self.segment, self.neuron, self.steps, self.timesteps = run, segment, neuron, steps, timesteps
        network = run.network
        self.network = network
        self.rates = [{source: prefix_rates(run, source, chunk, steps) for source in segment.reads}
                      for chunk in range(len(run.chunks))]
        self.inputs = [chunk.clone() for chunk in run.chunks] if segment.static else []
        self.targets = [t.clone() for t in targets]
        read = {name for i in segment.nodes for name in network.node_inputs[i]} - set(run.constants)
        self.statics = [{name: value.clone() for name, value in run.statics[c].items() if name in read}
                        for c in range(len(run.chunks))]
        self.layer = network.layers[neuron] if neuron is not None else None
        if self.layer is not None:  # normal tensors (the calibration sets them in inference mode)
            self.theta, self.v_init = self.layer.threshold.clone(), self.layer.v_init.clone()
            self.bias = self.layer.bias.clone() if self.layer.has_bias else None

    def _env(self, chunk: int, images: slice, t: int, weights: dict[str, torch.Tensor]) -> dict:
        env = dict(self.run.constants)
        if self.segment.static:
            env[self.network.input_name] = self.inputs[chunk][images]
        else:
            env.update({name: value[images] for name, value in self.statics[chunk].items()})
        for source in self.segment.reads:
            env[self.network.node_outputs[source][0]] = self.rates[chunk][source][t][images]
        env.update(weights)
        return env

    def outputs(self, chunk: int, images: slice, t: int, weights: dict[str, torch.Tensor]) -> torch.Tensor:
        """The layer's output rate at readout t (the stand-in neuron), or the segment's output (logits)."""
        env = self._env(chunk, images, t, weights)
        self.network.run_nodes(env, self.segment.nodes)
        current = env[self.segment.target]
        if self.layer is None:
            return current
        ndim = current.ndim
        theta = channel_view(self.theta, ndim)
        bias = channel_view(self.bias, ndim) if self.bias is not None else 0
        charge = t * (current + bias) + channel_view(self.v_init, ndim)
        count = torch.clamp(_floor_ste(charge / theta), 0, self.layer.burst * t)
        return count * theta / t

    def loss(self, chunk: int, images: slice, weights: dict[str, torch.Tensor]) -> torch.Tensor:
        """Squared rate error summed over readouts, each weighted by (t / T)^2 as in the threshold choice."""
        target = self.targets[chunk][images]
        total = 0
        for t in self.steps:
            error = self.outputs(chunk, images, t, weights) - target
            total = total + (t / self.timesteps) ** 2 * (error * error).mean()
        return total

    @torch.no_grad()
    def held_out_loss(self, chunks: list[int], weights: dict[str, torch.Tensor]) -> float:
        return sum(float(self.loss(c, slice(None), weights)) * len(self.targets[c]) for c in chunks) / sum(
            len(self.targets[c]) for c in chunks)


def fit_segment(fit: SegmentFit, chunks: list[int], settings: WeightSettings) -> dict[str, torch.Tensor]:
    """Adam on the segment's tuned constants from their current values: the fitted tensors."""
    constants = fit.run.constants
    params = {name: constants[name].detach().clone().requires_grad_(True) for name in fit.segment.tuned}
    groups = [{"params": [p], "lr": settings.learning_rate * float(p.detach().pow(2).mean().sqrt().clamp(min=1e-8))}
              for p in params.values()]
    optimizer = torch.optim.Adam(groups)
    for group in groups:
        group["initial_lr"] = group["lr"]
    generator = torch.Generator().manual_seed(settings.seed)
    pool = [(c, i) for c in chunks for i in range(len(fit.targets[c]))]
    for iteration in range(settings.iterations):
        pick = torch.randint(len(pool), (1,), generator=generator).item()
        chunk = pool[pick][0]
        size = len(fit.targets[chunk])
        start = torch.randint(max(1, size - settings.batch_images + 1), (1,), generator=generator).item()
        images = slice(start, min(size, start + settings.batch_images))
        for group in groups:  # cosine decay to zero
            group["lr"] = group["initial_lr"] * 0.5 * (1 + math.cos(math.pi * iteration / settings.iterations))
        optimizer.zero_grad(set_to_none=True)
        fit.loss(chunk, images, params).backward()
        optimizer.step()
    return {name: p.detach() for name, p in params.items()}

