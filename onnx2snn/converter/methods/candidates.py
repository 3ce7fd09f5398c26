"""Candidate neuron parameters of one layer and the calibration loss of each.

A layer's candidates are evaluated together: the neuron is simulated with K parameter sets at
once on the same stored input currents, and each candidate's error against the ANN activation is
summed per channel, so a choice can be made per channel or for the whole layer from one pass.
"""
from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np
import torch

from ...ops.neurons import neuron_scan
from ...runtime.distributed import SINGLE, World
from .common import MAX_CHANNEL_SAMPLES as MAX_SAMPLES

# Elements of the spike buffer that candidate neurons write (a few steps of K x positions x C, float).
BUFFER_ELEMENTS = 1 << 23


def percentile_table(targets: list[torch.Tensor], percentiles: list[float], channel: bool,
                     seed: int = 0, world: World = SINGLE) -> np.ndarray:
    """``[len(percentiles), C]``: percentiles of the positive ANN activations, per channel or (all
    channels pooled, then repeated) per layer. Under torchrun ``targets`` are this process's; every
    process's are gathered in batch order first, so the seeded subsample is the single-process one."""
    values = torch.cat([t.transpose(0, 1).reshape(t.shape[1], -1) for t in targets], dim=1) if targets else None
    values = world.gather(values, dim=1).cpu()  # [C, M]
    rng = np.random.default_rng(seed)
    groups = [values[c] for c in range(values.shape[0])] if channel else [values.reshape(-1)]
    table = np.zeros((len(percentiles), len(groups)), np.float32)
    for g, group in enumerate(groups):
        positive = group[group > 0].numpy()
        if positive.size > MAX_SAMPLES:
            positive = rng.choice(positive, MAX_SAMPLES, replace=False)
        if positive.size:
            table[:, g] = np.percentile(positive, percentiles)
    if not channel:
        table = np.repeat(table, values.shape[0], axis=1)
    return table


@dataclasses.dataclass
class Candidates:
    """K parameter sets for one layer of C channels (all ``[K, C]``); ``vfrac`` is v_init / threshold."""

    theta: torch.Tensor
    vfrac: torch.Tensor
    bias: torch.Tensor

    @property
    def k(self) -> int:
        return self.theta.shape[0]

    def pick(self, index: torch.Tensor) -> Candidates:
        """One candidate per channel: ``index`` is ``[C]``."""
        channels = torch.arange(self.theta.shape[1])
        return Candidates(*(value[index, channels].unsqueeze(0) for value in (self.theta, self.vfrac, self.bias)))


@dataclasses.dataclass
class Errors:
    """Per candidate and channel: summed squared error, summed (SNN - ANN) error, positions seen,
    and how many positions the ANN activates."""

    squared: torch.Tensor
    signed: torch.Tensor
    positions: int
    active: torch.Tensor

    def choose(self, per_channel: bool) -> torch.Tensor:
        """The best candidate for each channel (``[C]``), or the best for the whole layer."""
        if per_channel:
            return self.squared.argmin(0)
        return self.squared.sum(1).argmin().repeat(self.squared.shape[1])


def _view(values: torch.Tensor, ndim: int) -> torch.Tensor:
    """``[K, C]`` as ``[K, 1, C, 1, ...]`` for neuron states of shape ``[K, n, C, ...]``."""
    return values.reshape(values.shape[0], 1, values.shape[1], *[1] * (ndim - 3))


def _readout_cuts(t0: int, t1: int, steps: set[int], span: int) -> list[tuple[int, int]]:
    """``[t0, t1)`` split into pieces of at most ``span`` steps, so that every readout step (a step count)
    ends a piece."""
    cuts = sorted({t0, t1} | {s for s in steps if t0 < s < t1} | set(range(t0, t1, span)))
    return list(itertools.pairwise(cuts))


def simulate_candidates(layer, candidates: Candidates, current_chunks, target: torch.Tensor, timesteps: int,
                        trains: torch.Tensor | None = None, score_steps: tuple[int, ...] = ()
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Run K candidate neurons on one image chunk's currents (an iterable of ``(t0, [span, n, ...])``).

    Returns per-candidate, per-channel sums of squared rate error against ``target`` (the ANN
    activation), summed over the readouts at ``score_steps`` (default: the last step; each weighted
    by (t / T)^2 so that every readout counts about alike), the signed
    rate error at ``timesteps``, and the ANN's active positions per channel. Fills ``trains``
    (``[T, n, ...]``, int8 signed spike counts) when given. The K neurons are stepped together by
    the one neuron kernel (``neuron_scan``), writing int8 spike counts into a reused buffer.
    """
    ndim, device = target.ndim + 1, target.device
    theta, bias = _view(candidates.theta.to(device), ndim), _view(candidates.bias.to(device), ndim)
    dims = [1] + list(range(3, ndim))
    shape = (candidates.k, *target.shape)
    v = torch.zeros(shape, device=device) + theta * _view(candidates.vfrac.to(device), ndim)
    count = torch.zeros(shape, device=device) if layer.signed else None
    total = torch.zeros(shape, device=device)
    steps = set(score_steps or (timesteps,))
    squared = 0
    has_bias = bool(candidates.bias.abs().max() > 0)
    # float 0/1 spikes of a few steps at a time: neuron_scan writes them without a copy, and they add to
    # the totals fastest; int8 only where trains are kept
    span = max(1, min(timesteps, BUFFER_ELEMENTS // math.prod(shape)))
    buffer = torch.empty((span, *shape), device=device)
    for t0, current in current_chunks:
        for a, b in _readout_cuts(t0, t0 + current.shape[0], steps, span):
            out = buffer[:b - a]
            neuron_scan(current[a - t0:b - t0], v, theta, reset=layer.reset, bias=bias if has_bias else None,
                        signed=layer.signed, burst=layer.burst, count=count, out=out)
            for step in out:
                total.add_(step)
            if trains is not None:
                trains[a:b] = out[:, 0]
            if b in steps:
                # weighted by (t / T)^2, since rate errors shrink about as 1/t: each readout counts alike
                error = total * theta / timesteps - target.unsqueeze(0) * (b / timesteps)
                squared = squared + (error * error).sum(dims)
    error = total * theta / timesteps - target.unsqueeze(0)
    return squared, error.sum(dims), (target > 0).sum([0] + list(range(2, target.ndim)))
