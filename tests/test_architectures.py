"""Exporter x architecture matrix: each exported graph normalizes to a canonical graph that
matches onnxruntime on the original, and the calibrated SNN converges to the ANN as T grows."""
from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

from onnx2snn.converter.convert import ConversionOptions, convert_model
from onnx2snn.converter.methods.spec import ThresholdMethod
from onnx2snn.converter.normalize import normalize
from onnx2snn.converter.thresholds import compute_thresholds
from onnx2snn.dialect import save_model
from onnx2snn.ops.neurons import channel_view
from onnx2snn.runtime import load
from onnx2snn.runtime.network import SpikingNetwork

from helpers import run_onnxruntime
from torch_models import ARCHITECTURES, EXPORTERS, build, export


@functools.cache
def exported(arch: str, exporter: str):
    return export(build(arch), exporter)


@functools.cache
def canonical(arch: str, exporter: str):
    return normalize(exported(arch, exporter)).model


def images(count: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 1, (count, 3, 32, 32)).astype(np.float32)


def reference(model, x: np.ndarray) -> np.ndarray:
    """onnxruntime on the original export, one image at a time where the batch is fixed."""
    dim = model.graph.input[0].type.tensor_type.shape.dim[0]
    if dim.HasField("dim_value"):
        size = dim.dim_value
        return np.concatenate([run_onnxruntime(model, x[i:i + size]) for i in range(0, len(x), size)])
    return run_onnxruntime(model, x)


def op_sequence(model) -> list[str]:
    return [n.op_type for n in model.graph.node if n.op_type not in ("Flatten", "Reshape", "ReduceMean",
                                                                       "GlobalAveragePool")]


@pytest.mark.parametrize("exporter", list(EXPORTERS))
@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_canonical_graph_matches_onnxruntime(arch, exporter):
    x = images(4, seed=1)
    expected = reference(exported(arch, exporter), x)
    got = SpikingNetwork(canonical(arch, exporter)).analog(torch.from_numpy(x)).numpy()
    scale = np.abs(expected).max()
    np.testing.assert_allclose(got / scale, expected / scale, rtol=0, atol=1e-4)
    ops = {n.op_type for n in canonical(arch, exporter).graph.node}
    assert not ops & {"BatchNormalization", "Shape", "Gather", "Unsqueeze", "Identity", "Dropout"}, ops


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_every_exporter_gives_the_same_layers(arch):
    """Up to how global pooling and flattening are spelled, all exporters agree."""
    sequences = {exporter: op_sequence(canonical(arch, exporter)) for exporter in EXPORTERS}
    first = next(iter(sequences.values()))
    assert all(sequence == first for sequence in sequences.values()), sequences


def quantized_ann(network: SpikingNetwork, x: torch.Tensor, timesteps: int) -> np.ndarray:
    """The ANN with every neuron's activation rounded down to a multiple of threshold / T and capped
    at the threshold: all that a rate code of T steps can represent (soft reset, constant input:
    floor(T a / threshold) spikes). Its error is the quantization error the test sets up."""
    for layer in network.neurons().values():
        def rate_coded(a, layer=layer):
            theta = channel_view(layer.threshold, a.ndim)
            return torch.floor(torch.clamp(a, min=0) * timesteps / theta).clamp(max=timesteps) * theta / timesteps
        layer.analog = rate_coded
    try:
        return network.analog(x).numpy()
    finally:
        for layer in network.neurons().values():
            del layer.analog


# How far above the rate-code quantization error the SNN may be. Measured: 0.8-1.75x for networks
# of plain neurons (the spike trains' phase errors roughly cancel between layers), 1.2-5.1x with a
# spiking max-pool gate, which passes the wrong window member until it has found the leader.
QUANTIZATION_SLACK = {"maxpool": 6.0}


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_snn_error_falls_with_timesteps(arch):
    network = SpikingNetwork(canonical(arch, "torchscript-13-nofold"))
    network.configure_neurons(compute_thresholds(network, torch.from_numpy(images(8, seed=2)),
                                                 ThresholdMethod.parse("max"), timesteps=32))
    x = images(2, seed=3)
    ann = reference(exported(arch, "torchscript-13-nofold"), x)
    simulation = network.simulate(torch.from_numpy(x), [8, 32, 128])
    scale = np.abs(ann).mean()
    errors = [np.abs(simulation.outputs[t].numpy() - ann).mean() / scale for t in (8, 32, 128)]
    assert errors[0] > errors[1] > errors[2], errors
    for t, error in zip((8, 32, 128), errors):
        quantization = np.abs(quantized_ann(network, torch.from_numpy(x), t) - ann).mean() / scale
        assert error <= QUANTIZATION_SLACK.get(arch, 2.0) * quantization, (t, error, quantization)


@pytest.mark.parametrize("exporter", list(EXPORTERS))
@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_converted_file_in_analog_mode_matches_onnxruntime(arch, exporter, tmp_path):
    """The final spiking file (thresholds written, saved, loaded back) still computes the ANN when
    every neuron acts as its ReLU: no conversion step changed the network."""
    calibration = torch.from_numpy(images(4, seed=5))
    conversion = convert_model(exported(arch, exporter), calibration, ConversionOptions(threshold="max"))
    path = tmp_path / "snn.onnx"
    save_model(conversion.model, path)
    x = images(4, seed=1)
    expected = reference(exported(arch, exporter), x)
    got = load(path).analog(torch.from_numpy(x)).numpy()
    scale = np.abs(expected).max()
    np.testing.assert_allclose(got / scale, expected / scale, rtol=0, atol=1e-4)
