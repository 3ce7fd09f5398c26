"""SpikeNorm (Sengupta et al. 2019), in time linear in depth.

Layer by layer in topological order, each neuron's threshold becomes the largest input current
it receives over all calibration images and timesteps, with every earlier layer already spiking
at its own SpikeNorm threshold.

Rerunning the whole network for each layer would cost O(depth^2). Instead each layer's spike
trains are stored (binary trains 8 steps to a byte) and the next layer's inputs are computed from
them through the nodes between the two, so the cost is O(depth). A layer's spike trains are freed
as soon as the last layer that reads them is done. Stateless nodes run on several timesteps at
once, by folding time into the batch dimension.

Each layer's currents are computed about once, not once for the maximum and again for the spike
trains: image groups are visited one at a time, a group's currents over all T steps are computed
and the running maximum updated, and the groups wait in memory (up to KEPT_CURRENT_BYTES) until the
room is needed; the oldest is then simulated at the running maximum. When a layer's currents all fit,
that is at the final maximum. Otherwise, at the end, the groups simulated below the final maximum have their currents
computed again and are simulated again at it, so the result is exactly that of two passes. The
groups likely to hold the maximum go first (``group_order``), so that few are simulated twice.
"""
from __future__ import annotations

import collections
import logging

import numpy as np
import torch

from ...runtime.distributed import SINGLE, World
from ...runtime.network import SpikingNetwork
from .. import progress as progress_report
from .common import MIN_THRESHOLD, batches
from .layerwise import LayerwiseRun, is_neuron

log = logging.getLogger(__name__)

# Currents kept in memory until the groups they belong to are simulated (at the largest current so far);
# with 128 images at T=32 every layer's currents fit, so every layer is simulated once at its maximum.
KEPT_CURRENT_BYTES = 256 * 1024**2
# Steps at the end of T whose currents rank the image groups: the largest current mostly comes late
# (measured on ResNet-20, docs/conversion_speed.md), and these few steps cost PREDICTOR_STEPS / T of a pass.
PREDICTOR_STEPS = 4


@torch.inference_mode()
def spikenorm_thresholds(network: SpikingNetwork, images: torch.Tensor, timesteps: int,
                         batch_size: int = 128, world: World = SINGLE) -> dict[str, np.ndarray]:
    chunks = list(batches(images, batch_size))
    run = LayerwiseRun(network, chunks[world.shard(len(chunks))], timesteps)  # torchrun: this process's batches
    run.track_ann = False
    thresholds: dict[str, np.ndarray] = {}
    progress = progress_report.current()
    progress.start(len(run.order), "calibrating (spikenorm)")
    for node in run.order:
        layer = network.layers[node]
        if not is_neuron(layer):
            run.pass_through(node)  # e.g. a spiking max-pool gate: stepped through time, nothing to set
            progress.advance(network.node_names[node])
            continue
        if run.uses[node]:
            threshold, trains_per_chunk = thresholds_and_trains(run, node, world)
        else:  # nothing reads the layer's spikes: its maximum is all that is needed
            threshold, trains_per_chunk = layer_threshold(layer, world.max(largest_current(run, node))), None
        layer.set_threshold([threshold])
        thresholds[network.node_names[node]] = np.array([threshold], dtype=np.float32)
        run.record(node, [], trains_per_chunk)
        log.info("calibrated %s: threshold %.4g (the largest input current)", network.node_names[node], threshold)
        progress.advance(network.node_names[node])
    return thresholds


def layer_threshold(layer, peak: float) -> float:
    """SpikeNorm's threshold for the largest current ``peak``: at least MIN_THRESHOLD, at most the clip."""
    threshold = max(peak, MIN_THRESHOLD)
    if layer.clip_max is not None:
        threshold = min(threshold, layer.clip_max)
    return threshold


def largest_current(run: LayerwiseRun, node: int) -> float:
    """The layer's largest input current over all images and steps. (``amax``, not ``max``: a full
    ``max()`` of a channels-last current takes a slow path, 10-20x slower on this CPU.)"""
    peak = 0.0
    for chunk in range(len(run.chunks)):
        for t0, t1, group in run.units(node, chunk):
            peak = max(peak, float(run.currents(node, chunk, t0, t1, group).amax()))
    return peak


def thresholds_and_trains(run: LayerwiseRun, node: int, world: World = SINGLE) -> tuple[float, list]:
    """The layer's threshold (its largest current) and its spike trains at that threshold, per chunk,
    exactly as computing the maximum first and then simulating would give them. Under torchrun the
    final maximum is over every process's batches; groups simulated below it are simulated again."""
    layer = run.network.layers[node]
    groups = [(chunk, images, times) for chunk in range(len(run.chunks))
              for images, times in run.unit_groups(node, chunk)]
    trains: list = [None] * len(run.chunks)
    peak, pending, pending_bytes, simulated_at = 0.0, collections.deque(), 0, {}

    def simulate_oldest() -> None:  # at the largest current so far
        nonlocal pending_bytes
        index, currents, size = pending.popleft()
        chunk, images, _ = groups[index]
        simulated_at[index] = layer_threshold(layer, peak)
        layer.set_threshold([simulated_at[index]])
        trains[chunk] = run.group_trains(node, chunk, images, _computed(run, node, groups[index], currents),
                                         trains[chunk])
        pending_bytes -= size

    for index in group_order(run, node, groups):
        chunk, images, times = groups[index]
        while pending and pending_bytes + _group_bytes(run, node, groups[index]) > KEPT_CURRENT_BYTES:
            simulate_oldest()
        currents, size = [], 0
        for t0, t1 in times:  # all steps first: the group's own maximum may raise the threshold
            current = run.currents(node, chunk, t0, t1, images)
            peak = max(peak, float(current.amax()))
            if pending_bytes + size + current.numel() * current.element_size() > KEPT_CURRENT_BYTES:
                current = None  # beyond the memory kept (a group of a very large T): computed again later
            else:
                size += current.numel() * current.element_size()
            currents.append(current)
        pending.append((index, currents, size))
        pending_bytes += size
    while pending:
        simulate_oldest()
    final = layer_threshold(layer, world.max(peak))
    layer.set_threshold([final])
    redone = [index for index, threshold in simulated_at.items() if threshold != final]
    for index in redone:  # simulated below the final maximum: again, at it
        chunk, images, times = groups[index]
        run.group_trains(node, chunk, images, _computed(run, node, groups[index], [None] * len(times)),
                         trains[chunk])
    log.debug("spikenorm %s: %d of %d image groups simulated again", run.network.node_names[node], len(redone),
              len(groups))
    return final, trains


def _group_bytes(run: LayerwiseRun, node: int, group: tuple) -> int:
    """Bytes of a group's currents over all steps (float32)."""
    return 4 * run.elements(node) * len(run.chunks[group[0]][group[1]]) * run.timesteps


def _computed(run: LayerwiseRun, node: int, group: tuple, currents: list):
    """The group's currents in step order: the kept ones, and the others computed again."""
    chunk, images, times = group
    for (t0, t1), current in zip(times, currents):
        yield run.currents(node, chunk, t0, t1, images) if current is None else current


def group_order(run: LayerwiseRun, node: int, groups: list) -> list[int]:
    """The groups' indices, the likely holders of the layer's largest current first (any order gives
    the same result; a good one spares simulating groups twice). When all the layer's currents fit in
    the memory kept, no group is simulated before the maximum is known and the order does not matter;
    otherwise the groups are ranked by their largest current over the last few steps, which costs at
    most a 16th of the layer's currents."""
    steps = min(PREDICTOR_STEPS, run.timesteps // 16)
    if steps == 0 or sum(_group_bytes(run, node, group) for group in groups) <= KEPT_CURRENT_BYTES:
        return list(range(len(groups)))
    t0 = run.timesteps - steps
    scores = [float(run.currents(node, chunk, t0, run.timesteps, images).amax()) for chunk, images, _ in groups]
    return sorted(range(len(groups)), key=lambda index: -scores[index])
