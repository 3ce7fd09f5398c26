"""The entry to the threshold methods: every neuron layer's parameters from calibration images.

Each method lives in ``methods/`` (``spec`` parses its name; ``activation``: max and percentile;
``spikenorm``; ``calibrate``: the layer-by-layer low-latency methods) and returns its results as
data, one ``NeuronParameters`` per layer, which the converter writes into the graph. The
network passed in is the methods' workspace: the methods that simulate layer by layer leave
their choices in its neurons, the others do not touch them; apply the returned parameters with
``network.configure_neurons`` to simulate them.

A Clip(0, a)/ReLU6 neuron's threshold is capped at ``a``, so its rate can never exceed the
ANN's ceiling.
"""
from __future__ import annotations

import numpy as np
import torch

from ..dialect import NeuronParameters
from ..runtime.distributed import SINGLE, World
from ..runtime.network import SpikingNetwork
from .methods.activation import activation_thresholds
from .methods.calibrate import calibrate
from .methods.spec import ThresholdMethod
from .methods.spikenorm import spikenorm_thresholds
from .methods.weights import WeightSettings


def compute_thresholds(network: SpikingNetwork, images: torch.Tensor, method: ThresholdMethod,
                       timesteps: int, batch_size: int = 128, seed: int = 0,
                       world: World = SINGLE, weights: WeightSettings | None = None) -> dict[str, NeuronParameters]:
    """Every neuron's parameters (threshold, initial potential, bias, spike mode), keyed by node name.
    Under torchrun (``world``), every process passes all the images, works on its share of the batches,
    and gets the same parameters (runtime/distributed.py).

    With ``weights``, each layer's Conv/Gemm weights are calibrated too (``methods/weights.py``): they
    end up in ``network``'s constants, which the converter writes into the file. Weight calibration
    runs in one process only (the converter refuses it under torchrun)."""
    if method.kind == "spikenorm":
        thresholds = spikenorm_thresholds(network, images, timesteps, batch_size, world)
    elif method.kind in ("max", "percentile") and method == ThresholdMethod(method.kind, method.percentile):
        thresholds = activation_thresholds(network, images, method, batch_size, seed, world)
    else:
        return calibrate(network, images, method, timesteps, batch_size, seed, world, weights=weights)
    parameters = {name: NeuronParameters(np.asarray(values, np.float32)) for name, values in thresholds.items()}
    if weights is None:
        return parameters
    return calibrate(network, images, method, timesteps, batch_size, seed, world, weights=weights, fixed=parameters)
