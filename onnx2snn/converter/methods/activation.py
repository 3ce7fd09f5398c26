"""``max`` and ``percentile:P``: thresholds from one analog (ANN) pass over the calibration images."""
from __future__ import annotations

import numpy as np
import torch

from ...runtime.distributed import SINGLE, World
from ...runtime.network import SpikingNetwork
from .common import MAX_PERCENTILE_SAMPLES, MIN_THRESHOLD, batches
from .spec import ThresholdMethod


def cap_to_clip(network: SpikingNetwork, thresholds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    capped = {}
    for name, layer in network.neurons().items():
        value = np.maximum(thresholds[name], MIN_THRESHOLD)
        if layer.clip_max is not None:
            value = np.minimum(value, layer.clip_max)
        capped[name] = value.astype(np.float32)
    return capped


def activation_thresholds(network: SpikingNetwork, images: torch.Tensor, method: ThresholdMethod,
                          batch_size: int = 128, seed: int = 0, world: World = SINGLE) -> dict[str, np.ndarray]:
    """``max`` and ``percentile`` from one analog (ANN) pass over the calibration images (under
    torchrun, over this process's share of the batches; maxima and samples are then combined)."""
    names = {i: network.node_names[i] for i in network.neuron_nodes}
    maxima = {i: 0.0 for i in names}
    samples: dict[int, list[np.ndarray]] = {i: [] for i in names}
    per_batch_cap = MAX_PERCENTILE_SAMPLES // max(1, -(-len(images) // batch_size))
    rng = np.random.default_rng(seed)

    def probe(index: int, current: torch.Tensor) -> None:
        activation = network.layers[index].analog(current)
        maxima[index] = max(maxima[index], float(activation.amax()))
        if method.kind == "percentile":
            positive = activation[activation > 0].float().cpu().numpy()
            if positive.size > per_batch_cap:
                positive = rng.choice(positive, per_batch_cap, replace=False)
            samples[index].append(positive)

    chunks = list(batches(images, batch_size))
    for batch in chunks[world.shard(len(chunks))]:
        network.analog(batch, probe=probe)
    result = {}
    for index, name in names.items():
        if method.kind == "percentile":
            values = np.concatenate(samples[index]) if samples[index] else np.zeros(0, np.float32)
            if world.active:  # every process's samples (a percentile does not depend on their order)
                values = world.gather(torch.from_numpy(values)).numpy()
            result[name] = np.array([np.percentile(values, method.percentile) if values.size else 0.0])
        else:
            result[name] = np.array([world.max(maxima[index])])
    return cap_to_clip(network, result)
