"""Weight calibration's second stage: every Conv/Gemm weight and bias fitted at once so that the SNN's
readout matches the ANN's output, with the exact spiking forward pass (docs/low_latency.md).

The layer-wise stage (``weights.py``) fits each layer to its own ANN activation, one layer at a time.
It can't see how the errors of many layers add up at the output, and its stand-in neuron (a rate
quantizer) ignores what a spike train does over time: a deep layer's input starts late and varies, so
its spike count misses the stand-in's. This stage closes both gaps, as network-wise reconstruction
does in post-training quantization (PD-Quant, Liu et al. 2023, fits against the prediction
difference) and as tandem learning trains SNNs (Wu et al. 2021: the spiking forward pass, the rate
network's gradient):

- forward: each neuron layer's output is its *exact* spike rate over the first t steps, from a
  simulation of the whole network with the present weights;
- backward: the gradient of the stand-in neuron (``weights.rate_stand_in``), straight through to
  the layer's input current, then through the Conv/Gemm nodes to their weights;
- loss: KL divergence of the SNN's readout at each t in ``readouts`` from the ANN's output (the ANN
  is the teacher: no labels, the calibration images only);
- Adam from the layer-wise stage's weights; the exact simulation's divergence on the held-out quarter
  of the calibration images is measured every ``check_every`` steps, and the best weights seen are
  kept only if they beat the starting point.
"""
from __future__ import annotations

import math

import torch
from torch.nn import functional

from ...runtime.network import SpikingNetwork
from .. import progress as progress_report
from ..weight_files import TUNED_OPS
from .weights import WeightSettings, rate_stand_in


def ann_outputs(network: SpikingNetwork, images: torch.Tensor, batch_size: int) -> torch.Tensor:
    """The ANN's output for every image (a normal tensor, usable as a training target)."""
    with torch.inference_mode():
        outputs = [network.analog(images[s:s + batch_size]) for s in range(0, len(images), batch_size)]
    return torch.cat(outputs).clone()


def fitted_constants(network: SpikingNetwork) -> list[str]:
    """The Conv/Gemm weights and biases that the network reads from constants (each name once)."""
    constants, names = network.constant_env(), []
    for index, layer in enumerate(network.layers):
        if getattr(layer, "op_type", "") in TUNED_OPS and network.node_inputs[index][0] not in constants:
            names += [n for n in network.node_inputs[index][1:3] if n in constants and n not in names]
    return names


def exact_rates(network: SpikingNetwork, x: torch.Tensor,
                readouts: tuple[int, ...]) -> dict[int, dict[int, torch.Tensor]]:
    """Each neuron layer's output averaged over the first t steps of the exact simulation, for each t."""
    outputs = {network.node_outputs[i][0]: i for i in network.neuron_nodes}
    sums: dict[int, torch.Tensor] = {}
    rates: dict[int, dict[int, torch.Tensor]] = {t: {} for t in readouts}

    def record(step: int, env: dict, states: dict) -> None:
        for name, index in outputs.items():
            value = env[name].float()
            sums[index] = value.clone() if index not in sums else sums[index].add_(value)
            if step in rates:
                rates[step][index] = sums[index] / step

    with torch.inference_mode():
        network.simulate(x, max(readouts), on_step=record)
    return {t: {i: r.clone() for i, r in layer_rates.items()} for t, layer_rates in rates.items()}


def neuron_constants(network: SpikingNetwork) -> dict[int, tuple]:
    """Each neuron's (threshold, v_init, bias or None, burst) as normal tensors (the calibration set them
    in inference mode, which autograd refuses to save)."""
    return {i: (layer.threshold.clone(), layer.v_init.clone(), layer.bias.clone() if layer.has_bias else None,
                layer.burst)
            for i, layer in ((i, network.layers[i]) for i in network.neuron_nodes)}


def readout(network: SpikingNetwork, x: torch.Tensor, weights: dict[str, torch.Tensor], t: int,
            rates: dict[int, torch.Tensor], neurons: dict[int, tuple]) -> torch.Tensor:
    """The SNN's readout at step t as a function of ``weights``: the exact rates forward, the stand-in's
    gradient backward."""
    env = network.constant_env()
    env.update(weights)
    env[network.input_name] = x
    for index in network.static_nodes + network.dynamic_nodes:  # static nodes never read dynamic ones
        layer = network.layers[index]
        args = [env[name] if name else None for name in network.node_inputs[index]]
        while args and args[-1] is None:
            args.pop()
        if index in rates:
            stand_in = rate_stand_in(args[0], t, *neurons[index])
            out = stand_in + (rates[index] - stand_in).detach()
        elif layer.stateful:
            out = layer.analog(*args)
        else:
            out = layer(*args)
        if isinstance(out, tuple):
            env.update(zip(network.node_outputs[index], out))
        else:
            env[network.node_outputs[index][0]] = out
    return env[network.output_name]


def divergence(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """KL(teacher || student) of the two outputs' softmax, averaged over the images."""
    return functional.kl_div(torch.log_softmax(student, 1), torch.log_softmax(teacher, 1), log_target=True,
                             reduction="batchmean")


def held_out_divergence(network: SpikingNetwork, images: torch.Tensor, teacher: torch.Tensor, timesteps: int,
                        batch_size: int) -> float:
    """The exact simulation's divergence from the ANN at ``timesteps``, over ``images``."""
    total = 0.0
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            out = network.simulate(images[start:start + batch_size], timesteps).outputs[timesteps]
            total += float(divergence(out, teacher[start:start + batch_size])) * len(out)
    return total / len(images)


def fit_network(network: SpikingNetwork, fit_images: torch.Tensor, fit_teacher: torch.Tensor,
                held_images: torch.Tensor, held_teacher: torch.Tensor, timesteps: int, settings: WeightSettings,
                batch_size: int) -> str:
    """Fit every Conv/Gemm weight of ``network`` in place (see the module's text); returns what happened."""
    names = fitted_constants(network)
    if not names or settings.network_iterations == 0:
        return "network stage skipped"
    readouts = tuple(sorted({max(1, timesteps // 2), timesteps}))
    constants = network.constant_env()
    start = {name: constants[name].detach().clone() for name in names}
    best, best_score = start, held_out_divergence(network, held_images, held_teacher, timesteps, batch_size)
    first_score = best_score
    generator = torch.Generator().manual_seed(settings.seed)
    progress = progress_report.current()
    progress.start(settings.network_iterations, "fitting all weights to the ANN's output", unit="step")
    with torch.inference_mode(False), torch.enable_grad():
        neurons = neuron_constants(network)
        params = {name: value.clone().requires_grad_(True) for name, value in start.items()}
        groups = [{"params": [p], "lr": settings.network_learning_rate * float(p.detach().pow(2).mean().sqrt().clamp(
            min=1e-8))} for p in params.values()]
        optimizer = torch.optim.Adam(groups)
        initial = [group["lr"] for group in groups]
        for iteration in range(settings.network_iterations):
            pick = torch.randint(len(fit_images), (min(settings.batch_images, len(fit_images)),), generator=generator)
            x, teacher = fit_images[pick], fit_teacher[pick]
            network.set_constants({name: p.detach() for name, p in params.items()})
            rates = exact_rates(network, x, readouts)
            for group, lr in zip(groups, initial):  # cosine decay to zero
                group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * iteration / settings.network_iterations))
            optimizer.zero_grad(set_to_none=True)
            loss = sum(divergence(readout(network, x, params, t, rates[t], neurons), teacher) for t in readouts)
            loss.backward()
            optimizer.step()
            done = iteration + 1
            if done % settings.check_every == 0 or done == settings.network_iterations:
                network.set_constants({name: p.detach() for name, p in params.items()})
                score = held_out_divergence(network, held_images, held_teacher, timesteps, batch_size)
                if score < best_score:
                    best, best_score = {name: p.detach().clone() for name, p in params.items()}, score
            progress.advance(f"held-out divergence {best_score:.4g}")
    network.set_constants(best)
    if best is start:
        return f"network stage: weights kept (held-out divergence {first_score:.4g}, none better)"
    return f"network stage: weights fitted (held-out divergence {first_score:.4g} -> {best_score:.4g})"
