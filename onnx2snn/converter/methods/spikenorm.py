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

import logging

import numpy as np
import torch

from ...runtime.distributed import SINGLE, World
from ...runtime.network import SpikingNetwork
from .. import progress as progress_report
from .common import MIN_THRESHOLD, batches
from .layerwise import LayerwiseRun, is_neuron

log = logging.getLogger(__name__)

# The first pass (the maximum) keeps up to this many bytes of currents for the second (the spike trains),
# which then computes only the rest again: with 128 images at T=32 most layers are computed once.
KEPT_CURRENT_BYTES = 256 * 1024**2


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
        peak, cached, room = 0.0, {}, KEPT_CURRENT_BYTES if run.uses[node] else 0
        for chunk in range(len(run.chunks)):
            for t0, t1, group in run.units(node, chunk):
                current = run.currents(node, chunk, t0, t1, group)
                peak = max(peak, float(current.max()))
                if current.numel() * current.element_size() <= room:  # reused by the second pass
                    cached[(chunk, t0, group.start)] = current
                    room -= current.numel() * current.element_size()
        threshold = max(world.max(peak), MIN_THRESHOLD)  # the peak over every process's batches
        if layer.clip_max is not None:
            threshold = min(threshold, layer.clip_max)
        layer.set_threshold([threshold])
        thresholds[network.node_names[node]] = np.array([threshold], dtype=np.float32)
        trains_per_chunk = None
        if run.uses[node]:
            trains_per_chunk = [run.neuron_trains(node, chunk, cached) for chunk in range(len(run.chunks))]
        run.record(node, [], trains_per_chunk)
        log.info("calibrated %s: threshold %.4g (the largest input current)", network.node_names[node], threshold)
        progress.advance(network.node_names[node])
    return thresholds
