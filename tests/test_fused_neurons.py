"""SpikingNetwork.fuse_neurons: the binary neuron's step as one torch.compile kernel gives the same bits as
the unfused passes (neuron_scan), and without a compiler it warns once and runs unfused."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from test_runtime import inputs, network

from onnx2snn.ops import neurons
from onnx2snn.ops.neurons import neuron_scan, stacked_like

needs_compiler = pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None,
                                    reason="torch.compile needs a C++ compiler on CPU")


def scan(currents, v, threshold, bias, reset, dtype, fused):
    out = stacked_like(v, len(currents), dtype)
    spikes, v, _ = neuron_scan(currents.to(dtype), v.clone(), threshold, reset=reset, bias=bias, out=out,
                               weighted=True, fused=fused)
    return spikes, v


@needs_compiler
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("reset", ["subtract", "zero"])
@pytest.mark.parametrize("with_bias", [False, True])
def test_the_fused_step_gives_the_same_bits(dtype, reset, with_bias):
    rng = np.random.default_rng(0)
    currents = torch.from_numpy(rng.normal(0.2, 0.6, (12, 5, 6, 4, 4)).astype(np.float32))
    threshold = torch.from_numpy(rng.uniform(0.5, 1.5, (1, 6, 1, 1)).astype(np.float32))
    bias = torch.full((1, 6, 1, 1), 0.05) if with_bias else None
    v = torch.full((5, 6, 4, 4), 0.3)
    plain = scan(currents, v, threshold, bias, reset, dtype, fused=False)
    fused = scan(currents, v, threshold, bias, reset, dtype, fused=True)
    assert neurons._compiled.get("step") is not None  # the compiled kernel ran, not the fallback
    assert torch.equal(plain[0], fused[0]) and torch.equal(plain[1], fused[1])
    assert plain[0].abs().sum() > 0


@needs_compiler
@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_a_fused_network_simulates_the_same(precision):
    net = network("resnet18")
    x = inputs("resnet18", 3, seed=11)
    try:
        net.set_precision(precision)
        expected = net.simulate(x, [4, 12], count_spikes=True)
        got = net.fuse_neurons(True).simulate(x, [4, 12], count_spikes=True)
    finally:
        net.fuse_neurons(False).set_precision("float32")
    assert all(torch.equal(expected.outputs[t], got.outputs[t]) for t in (4, 12))
    assert expected.spikes == got.spikes


def test_without_a_compiler_it_warns_once_and_runs_unfused(monkeypatch):
    def broken_compile(fn, **kwargs):
        def call(*args):
            raise RuntimeError("no C++ compiler found")
        return call

    monkeypatch.setattr(neurons, "_compiled", {})
    monkeypatch.setattr(torch, "compile", broken_compile)
    currents = torch.rand(6, 2, 3, 4, 4)
    threshold = torch.full((1, 3, 1, 1), 0.7)
    v = torch.zeros(2, 3, 4, 4)
    with pytest.warns(RuntimeWarning, match="could not be compiled.*same results"):
        fused = scan(currents, v, threshold, None, "subtract", torch.float32, fused=True)
    plain = scan(currents, v, threshold, None, "subtract", torch.float32, fused=False)
    assert torch.equal(plain[0], fused[0]) and torch.equal(plain[1], fused[1])
    assert neurons._compiled["step"] is None
    scan(currents, v, threshold, None, "subtract", torch.float32, fused=True)  # no second warning, no retry
