"""What every threshold method shares: limits, the calibration batches and the time chunks.

The bottom of the methods package: it imports none of the methods, so they never import each other
in a loop.
"""
from __future__ import annotations

import dataclasses

import torch

# A layer that never activates during calibration still needs a positive threshold.
MIN_THRESHOLD = 1e-6
# Positive activations kept per layer for the percentile method (a seeded subsample beyond that).
MAX_PERCENTILE_SAMPLES = 1 << 23
# Positive activations kept per channel (or pooled layer) for the calibrated methods' percentile table.
MAX_CHANNEL_SAMPLES = 1 << 22
# Timesteps of the layer-by-layer methods (SpikeNorm, calibration) computed at once.
TIME_CHUNK = 16


def batches(x: torch.Tensor, size: int):
    for start in range(0, len(x), size):
        yield x[start:start + size]


@dataclasses.dataclass
class Segment:
    """The stateless nodes that compute one stateful node's input current from earlier outputs."""

    nodes: list[int]
    neuron_reads: list[int]  # stateful nodes (neurons, spiking max-pool gates) whose outputs the segment reads
    batch_reads: list[str]  # static tensors with a batch dimension that the segment reads
