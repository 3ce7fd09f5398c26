"""Layer-by-layer calibration for low latency: thresholds, initial potentials and bias currents.

For each neuron layer in topological order (see ``layerwise.py``), with every earlier layer
already spiking at its calibrated parameters:

1. threshold candidates: percentiles of the layer's ANN activations (per channel or per layer),
   times a scale grid when ``scale`` is on; the one with the least mean squared error between
   the SNN's rate-coded output at T steps and the ANN activation wins (per channel or per layer);
2. ``vopt``: the initial potential (a fraction of the threshold) is searched the same way;
3. ``biascorr``: the mean per-channel error of the SNN output is measured and a constant input
   current that cancels it is added (Li et al. 2021's bias correction), scaled by the step that
   lowers the loss;
4. with weight calibration (``weights.py``), the layer's Conv/Gemm weights are fitted to the ANN
   activation and the correction is measured again; kept only if the held-out error falls;
5. the layer is simulated once more with its final parameters and its spike trains stored.

Fitted statistics (percentiles, the mean error) come from the *fit* images, and every choice
is made on the *selection* images; ``auto`` keeps these apart by holding out part of the
(train-split) calibration images. The cost is linear in depth.
"""
from __future__ import annotations

import logging

import numpy as np
import torch

from ...dialect import NeuronParameters
from ...runtime.distributed import SINGLE, World
from .. import progress as progress_report
from .candidates import Candidates, Errors, percentile_table, simulate_candidates
from .common import MIN_THRESHOLD, batches
from .layerwise import LayerwiseRun, is_neuron
from .spec import ThresholdMethod
from .weights import (
    SegmentFit,
    WeightSettings,
    constant_owners,
    fit_segment,
    tuning_segment,
)

log = logging.getLogger(__name__)

ROBUST_PERCENTILES = [99.0, 99.9, 99.99, 100.0]
AUTO_PERCENTILES = [99.9, 100.0]
SCALES = [0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
V_FRACTIONS = [0.0, 0.25, 0.5, 0.75]
BIAS_STEPS = [0.0, 0.5, 1.0, 1.5]
AUTO_HOLDOUT = 0.25  # share of the calibration images held out to make auto's choices
MIN_ACTIVE = 0.05  # the bias step divides by the active share of a channel; keep it bounded
SAMPLED_POSITIONS = 8192  # (image, pixel) positions per chunk on which candidates are scored


def _auto(method: ThresholdMethod) -> ThresholdMethod:
    return ThresholdMethod("robust", channel=True, v_init="opt", bias_correction=True, potential_correction=True,
                           scale_search=True, signed=method.signed, burst=method.burst)


def score_steps(timesteps: int, auto: bool) -> tuple[int, ...]:
    """Readouts the calibration loss sums over: the target T, and for auto also T/4 and T/2, so
    that one conversion serves a range of latencies."""
    if not auto:
        return (timesteps,)
    return tuple(sorted({max(1, timesteps // 4), max(1, timesteps // 2), timesteps}))


def _percentiles(method: ThresholdMethod, auto: bool) -> list[float]:
    if auto:
        return AUTO_PERCENTILES
    if method.kind == "robust":
        return ROBUST_PERCENTILES
    return [100.0] if method.kind == "max" else [method.percentile]


class LayerCalibration:
    """Evaluates candidate parameters of one layer on the fit or the selection images.

    Neurons at different positions do not interact, so candidates are scored on a seeded sample
    of at most SAMPLED_POSITIONS (image, pixel) positions per chunk and channel: the layer's
    input currents are computed in full, in work units of time-folded batches (the convolutions
    need every input), and only the sampled positions are kept. The selection images' samples
    are kept for the few passes one layer needs, so they are computed once.
    """

    def __init__(self, run: LayerwiseRun, neuron: int, targets: list[torch.Tensor], fit: list[int],
                 select: list[int], score_steps: tuple[int, ...] = (), seed: int = 0,
                 chunk_ids: list[int] | None = None, world: World = SINGLE):
        self.run, self.neuron, self.targets, self.fit, self.select = run, neuron, targets, fit, select
        self.score_steps, self.world = score_steps, world
        chunk_ids = chunk_ids or list(range(len(targets)))  # each chunk's index among all processes' chunks
        self.layer = run.network.layers[neuron]
        self.cache: dict[int, list] = {}
        self.sampled_targets: dict[int, torch.Tensor] = {}
        self.positions = {}
        for chunk, target in enumerate(targets):
            count = target.numel() // target.shape[1]
            if count > SAMPLED_POSITIONS:
                generator = torch.Generator().manual_seed(seed * 1_000_003 + neuron * 1009 + chunk_ids[chunk])
                self.positions[chunk] = torch.randperm(count, generator=generator)[:SAMPLED_POSITIONS].sort().values

    def _positions_of(self, chunk: int, images: slice, per_image: int) -> tuple[int, int, torch.Tensor | None]:
        """The sampled positions of ``images`` (a slice of the chunk): their range in the sample and
        their index among the images' own positions (None: all of them)."""
        start, stop, _ = images.indices(len(self.targets[chunk]))
        index = self.positions.get(chunk)
        if index is None:
            return start * per_image, stop * per_image, None
        p0, p1 = torch.searchsorted(index, torch.tensor([start * per_image, stop * per_image])).tolist()
        return p0, p1, index[p0:p1] - start * per_image

    def _sampled_target(self, chunk: int) -> torch.Tensor:
        """The ANN activation at the sampled positions: ``[positions, C]``."""
        if chunk not in self.sampled_targets:
            target = self.targets[chunk]
            flat = target.movedim(1, -1).reshape(-1, target.shape[1])
            index = self.positions.get(chunk)
            self.sampled_targets[chunk] = flat if index is None else flat[index.to(flat.device)]
        return self.sampled_targets[chunk]

    def _sampled_currents(self, chunk: int):
        """``(t0, [span, positions, C])`` pieces: the input currents at the sampled positions."""
        target = self._sampled_target(chunk)
        channels, per_image = target.shape[1], self.targets[chunk][0].numel() // target.shape[1]
        piece, piece_t0 = None, None
        for t0, t1, images in self.run.units(self.neuron, chunk, time_outer=True):
            if piece_t0 != t0:
                if piece is not None:
                    yield piece_t0, piece
                piece, piece_t0 = torch.empty((t1 - t0, len(target), channels), device=target.device), t0
            current = self.run.currents(self.neuron, chunk, t0, t1, images)
            flat = current.movedim(2, -1).reshape(t1 - t0, -1, channels)  # [span, image positions, C]
            p0, p1, index = self._positions_of(chunk, images, per_image)
            piece[:, p0:p1] = flat if index is None else flat[:, index.to(flat.device)]
        yield piece_t0, piece

    def _currents(self, chunk: int):
        if chunk in self.cache:
            return self.cache[chunk]
        pieces = self._sampled_currents(chunk)
        if chunk in self.select:
            self.cache[chunk] = list(pieces)
            return self.cache[chunk]
        return pieces

    def errors(self, candidates: Candidates, chunks: list[int]) -> Errors:
        parts = []
        for chunk in chunks:
            target = self._sampled_target(chunk)
            sq, sg, act = simulate_candidates(self.layer, candidates, self._currents(chunk), target,
                                              self.run.timesteps, score_steps=self.score_steps)
            parts.append((sq, sg, act, target.shape[0]))
        if self.world.active:
            parts = self._all_processes(parts)
        squared = signed = active = 0
        positions = 0
        for sq, sg, act, count in parts:  # summed chunk by chunk, in one fixed order
            squared, signed, active = squared + sq, signed + sg, active + act
            positions += count
        return Errors(squared.cpu(), signed.cpu(), positions, active.cpu())

    def _all_processes(self, parts: list[tuple]) -> list[tuple]:
        """torchrun: every process's per-chunk sums, in batch order (each process has a contiguous share),
        so that adding them up gives the single-process sums bit for bit."""
        columns = [torch.stack([part[i] for part in parts]) if parts else None for i in range(3)]
        columns.append(torch.tensor([part[3] for part in parts], dtype=torch.int64))
        squared, signed, active, counts = (self.world.gather(column) for column in columns)
        return list(zip(squared, signed, active, counts.tolist()))


def _grid(theta: torch.Tensor, vfrac: torch.Tensor, bias: torch.Tensor) -> Candidates:
    k = max(len(theta), len(vfrac), len(bias))
    channels = max(theta.shape[1], vfrac.shape[1], bias.shape[1])
    return Candidates(*(value.expand(k, channels).clone() for value in (theta, vfrac, bias)))


def _corrections(chosen: Candidates, measured: Errors, spec: ThresholdMethod, timesteps: int) -> Candidates:
    """Candidates that cancel the measured mean error of each channel: as a bias current (Li et al.
    2021's bias correction: error per step) and/or as initial potential (their potential
    correction: the error over all T steps), in steps of BIAS_STEPS (0 = no correction)."""
    mean_error = measured.signed[0] / measured.positions
    active = (measured.active.float() / measured.positions).clamp(min=MIN_ACTIVE)
    per_step = -(mean_error / active)  # the current that moves the active positions' mean rate by -error
    steps = torch.tensor(BIAS_STEPS).reshape(-1, 1)
    rows = [(chosen.vfrac, chosen.bias + steps * per_step)] if spec.bias_correction else []
    if spec.potential_correction:
        rows.append((chosen.vfrac + steps * per_step * timesteps / chosen.theta, chosen.bias.expand(len(steps), -1)))
    k = len(steps) * len(rows)
    return Candidates(chosen.theta.expand(k, -1).clone(),
                      torch.cat([vfrac.expand(len(steps), -1) for vfrac, _ in rows]),
                      torch.cat([bias for _, bias in rows]))


def _compress(values: torch.Tensor) -> np.ndarray:
    """One value per channel, or a single value when all channels agree."""
    values = values.reshape(-1).numpy().astype(np.float32)
    return values[:1] if np.all(values == values[0]) else values


def split_calibration(images: torch.Tensor, auto: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(fit, selection) images: auto holds out the last AUTO_HOLDOUT of the (already shuffled, train-split)
    calibration images to make its choices; the explicit methods fit and choose on all of them."""
    held = int(round(len(images) * AUTO_HOLDOUT)) if auto and len(images) >= 2 else 0
    if held == 0:
        return images, images
    return images[:len(images) - held], images[len(images) - held:]


def _layer_candidates(layer, channels: int) -> Candidates:
    """The layer's present parameters as one candidate."""
    theta = layer.threshold.cpu().reshape(1, -1).expand(1, channels)
    return Candidates(theta.clone(), (layer.v_init.cpu().reshape(1, -1) / theta).expand(1, channels).clone(),
                      layer.bias.cpu().reshape(1, -1).expand(1, channels).clone())


def _calibrate_weights(run: LayerwiseRun, neuron: int | None, targets: list[torch.Tensor], fit: list[int],
                       select: list[int], steps: tuple[int, ...], settings: WeightSettings,
                       owners: dict[str, int], seed: int, spec: ThresholdMethod | None = None) -> str:
    """Fit the Conv/Gemm weights feeding ``neuron`` (None: the output) to its ANN activation; kept only
    if the exact simulation's error on the held-out images went down. With ``spec``'s bias or potential
    correction, the correction is measured again with the new weights (the stand-in neuron sees the mean
    error only approximately). Returns what happened, for the log."""
    network = run.network
    target = network.output_name if neuron is None else network.node_inputs[neuron][0]
    segment = tuning_segment(network, target, owners)
    if not segment.tuned:
        return "no weights of its own"
    original = {name: run.constants[name].clone() for name in segment.tuned}
    layer = network.layers[neuron] if neuron is not None else None
    parameters = layer.neuron_parameters() if layer is not None else None
    channels = targets[0].shape[1]

    def held_out_error(correct: bool = False) -> float:
        if neuron is None:
            return SegmentFit(run, segment, None, targets, steps, run.timesteps).held_out_loss(select, {})
        calibration = LayerCalibration(run, neuron, targets, fit, select, steps, seed)
        present = _layer_candidates(layer, channels)
        if not correct:
            return float(calibration.errors(present, select).squared.sum())
        options = _corrections(present, calibration.errors(present, fit), spec, run.timesteps)
        errors = calibration.errors(options, select)
        index = errors.choose(True)
        chosen = options.pick(index)
        layer.configure(NeuronParameters(_compress(chosen.theta), _compress(chosen.vfrac * chosen.theta),
                                         _compress(chosen.bias), layer.signed, layer.burst))
        return float(errors.squared[index, torch.arange(channels)].sum())

    def use(constants: dict[str, torch.Tensor]) -> None:
        network.set_constants(constants)
        if segment.static:  # the first layer's input current is computed once per chunk: again
            run.statics = [network.static_env(chunk) for chunk in run.chunks]

    before = held_out_error()
    with torch.inference_mode(False):
        stand_in = SegmentFit(run, segment, neuron, targets, steps, run.timesteps)
        fitted = fit_segment(stand_in, fit, settings)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("stand-in loss: fit %.5g -> %.5g, held out %.5g -> %.5g",
                      stand_in.held_out_loss(fit, {}), stand_in.held_out_loss(fit, fitted),
                      stand_in.held_out_loss(select, {}), stand_in.held_out_loss(select, fitted))
    use(fitted)
    after = held_out_error(correct=spec is not None and (spec.bias_correction or spec.potential_correction))
    if after >= before and settings.accept != "always":
        use(original)
        if layer is not None:
            layer.configure(parameters)
        return f"weights kept (held-out error {before:.4g} -> {after:.4g})"
    return f"weights fitted (held-out error {before:.4g} -> {after:.4g})"


@torch.inference_mode()
def calibrate(network, images: torch.Tensor, method: ThresholdMethod, timesteps: int, batch_size: int = 128,
              seed: int = 0, world: World = SINGLE, weights: WeightSettings | None = None,
              fixed: dict[str, NeuronParameters] | None = None) -> dict[str, NeuronParameters]:
    """Every neuron's parameters by node name. Each layer is calibrated with the earlier layers
    spiking at their chosen parameters, so ``network``'s neurons end up holding them too. Under
    torchrun each process simulates its share of the fit and of the selection batches, and the
    statistics (activation percentiles, candidates' errors) combine all of them before each choice.

    ``weights``: also fit each layer's Conv/Gemm weights (``weights.py``), after its neuron parameters
    are chosen, and the output layer's at the end; the network's constants then hold them (one process
    only). ``fixed``: take these neuron parameters instead of choosing them (a method that does not
    simulate, with weight calibration)."""
    auto = method.kind == "auto"
    spec = _auto(method) if auto else method
    fit_images, select_images = split_calibration(images, auto or weights is not None)
    chunks = list(batches(fit_images, batch_size))
    fit = list(range(len(chunks)))
    if select_images is not fit_images:
        chunks += list(batches(select_images, batch_size))
    select = list(range(len(fit), len(chunks))) or fit
    # torchrun: this process's share of the fit and of the selection batches (all of them in one process)
    mine = sorted(set(fit[world.shard(len(fit))]) | set(select[world.shard(len(select))]))
    chunks = [chunks[c] for c in mine]
    fit, select = ([mine.index(c) for c in group if c in mine] for group in (fit, select))
    simulates = spec.simulates and fixed is None
    run = LayerwiseRun(network, chunks, timesteps, simulate=simulates or weights is not None)
    percentiles = _percentiles(spec, auto)
    scales = SCALES if spec.scale_search else [1.0]
    chosen_parameters = {}
    steps = score_steps(timesteps, auto)
    if weights is not None:
        owners = constant_owners(network)
        output_reads = tuning_segment(network, network.output_name, owners).reads
        for source in output_reads:  # kept until the output layer is fitted
            run.uses[source] += 1
    progress = progress_report.current()
    progress.start(len(run.order) + (weights is not None),
                   f"calibrating ({method}{', weights' if weights is not None else ''})")

    for neuron in run.order:
        layer = network.layers[neuron]
        if not is_neuron(layer):
            run.pass_through(neuron)
            progress.advance(network.node_names[neuron])
            continue
        name = network.node_names[neuron]
        burst = 1 if layer.clip_max is not None else spec.burst  # a burst could exceed the ANN's Clip ceiling
        layer.configure(NeuronParameters(layer.threshold.cpu().numpy(), signed=spec.signed, burst=burst))
        targets = [layer.analog(run.ann_input(neuron, c)) for c in range(len(chunks))]
        if fixed is not None:
            layer.configure(fixed[name])
            chosen_parameters[name] = fixed[name]
            if weights is not None:
                log.info("%s: %s", name, _calibrate_weights(run, neuron, targets, fit, select, steps, weights,
                                                            owners, seed))
            run.record(neuron, targets, run.layer_trains(neuron) if run.uses[neuron] else None)
            progress.advance(name)
            continue
        table = torch.from_numpy(percentile_table([targets[c].cpu() for c in fit], percentiles, spec.channel, seed,
                                                  world))
        theta = (table.unsqueeze(1) * torch.tensor(scales).reshape(1, -1, 1)).reshape(-1, table.shape[1])
        theta = theta.clamp(min=MIN_THRESHOLD)
        if layer.clip_max is not None:
            theta = theta.clamp(max=layer.clip_max)
        channels = theta.shape[1]
        vfrac = torch.full((1, channels), 0.5 if spec.v_init in ("half", "opt") else 0.0)
        bias = torch.zeros(1, channels)
        if not spec.simulates:
            chosen = _grid(theta, vfrac, bias)
        else:
            calibration = LayerCalibration(run, neuron, targets, fit, select, steps, seed, mine, world)
            chosen = _grid(theta, vfrac, bias)
            if chosen.k > 1:
                chosen = chosen.pick(calibration.errors(chosen, select).choose(spec.channel))
            if spec.v_init == "opt":
                options = _grid(chosen.theta, torch.tensor(V_FRACTIONS).reshape(-1, 1), chosen.bias)
                chosen = options.pick(calibration.errors(options, select).choose(spec.channel))
            if spec.bias_correction or spec.potential_correction:
                options = _corrections(chosen, calibration.errors(chosen, fit), spec, timesteps)
                chosen = options.pick(calibration.errors(options, select).choose(True))
        parameters = NeuronParameters(_compress(chosen.theta), _compress(chosen.vfrac * chosen.theta),
                                      _compress(chosen.bias), spec.signed, burst)
        layer.configure(parameters)  # the layers after it are calibrated against its spikes
        chosen_parameters[name] = parameters
        log.info("calibrated %s: threshold %.4g (mean), v_init/threshold %.2f (mean), |bias| %.3g (mean)",
                 name, float(chosen.theta.mean()), float(chosen.vfrac.mean()), float(chosen.bias.abs().mean()))
        if weights is not None:
            log.info("%s: %s", name, _calibrate_weights(run, neuron, targets, fit, select, steps, weights, owners,
                                                        seed, spec))
            parameters = layer.neuron_parameters()  # the correction may have been measured again
            chosen_parameters[name] = parameters
        run.record(neuron, targets, run.layer_trains(neuron) if run.simulate and run.uses[neuron] else None)
        progress.advance(name)
    if weights is not None:
        targets = _output_targets(run, tuning_segment(network, network.output_name, owners))
        log.info("output: %s", _calibrate_weights(run, None, targets, fit, select, steps, weights, owners, seed))
        progress.advance("output")
    return chosen_parameters


def _output_targets(run: LayerwiseRun, segment) -> list[torch.Tensor]:
    """The ANN's output for every chunk, from the stored ANN activations of the layers it reads."""
    network, targets = run.network, []
    for chunk in range(len(run.chunks)):
        env = dict(run.statics[chunk])
        for source in segment.reads:
            env[network.node_outputs[source][0]] = run.ann[source][chunk]
        network.run_nodes(env, segment.nodes)
        targets.append(env[network.output_name])
    return targets
