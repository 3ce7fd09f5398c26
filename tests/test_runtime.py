"""The time-blocked runtime and the streaming API against a plain one-timestep-at-a-time
reference (``run_nodes`` with per-node ``step``), on residual, max-pool and plain CNNs."""
from __future__ import annotations

import copy
import functools

import numpy as np
import pytest
import torch

from onnx2snn.converter.normalize import normalize
from onnx2snn.converter.thresholds import ThresholdMethod, compute_thresholds
from onnx2snn.runtime.network import SpikingNetwork

from helpers import small_cnn
from torch_models import build, export


@functools.cache
def network(arch: str) -> SpikingNetwork:
    """A calibrated spiking network: ``small`` (8x8 input) or a tests/torch_models architecture."""
    if arch == "small":
        net = SpikingNetwork(normalize(small_cnn(np.random.default_rng(3))).model)
        calibration = torch.rand(8, 3, 8, 8)
    else:
        net = SpikingNetwork(normalize(export(build(arch), "torchscript-13-nofold")).model)
        calibration = torch.rand(8, 3, 32, 32)
    compute_thresholds(net, calibration, ThresholdMethod.parse("max"), timesteps=16)
    return net


def inputs(arch: str, count: int, seed: int) -> torch.Tensor:
    size = 8 if arch == "small" else 32
    return torch.from_numpy(np.random.default_rng(seed).uniform(0, 1, (count, 3, size, size)).astype(np.float32))


def stepwise(net: SpikingNetwork, frames: list[torch.Tensor]) -> tuple[list[torch.Tensor], dict[str, float]]:
    """Reference: every node executed once per timestep, the static part recomputed per frame."""
    states: dict = {}
    outputs, counts = [], {net.node_names[i]: 0.0 for i in net.neuron_nodes}
    with torch.inference_mode():
        for frame in frames:
            env = net.static_env(frame)
            net.run_nodes(env, net.dynamic_nodes, states)
            outputs.append(env[net.output_name].clone())
            for i in net.neuron_nodes:
                counts[net.node_names[i]] += net.layers[i].spike_events(env[net.node_outputs[i][0]])
    return outputs, counts


def running_mean(outputs: list[torch.Tensor], t: int) -> torch.Tensor:
    total = outputs[0].clone()
    for out in outputs[1:t]:
        total.add_(out)
    return total / t


ARCHS = ["small", "resnet18", "maxpool"]


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("block", [1, 3, None])
def test_blocks_match_the_stepwise_reference(arch, block):
    net = network(arch)
    x = inputs(arch, 3, seed=1)
    reference, counts = stepwise(net, [x] * 10)
    sim = net.simulate(x, [4, 10], count_spikes=True, block=block)
    for t in (4, 10):
        torch.testing.assert_close(sim.outputs[t], running_mean(reference, t), rtol=1e-5, atol=1e-6)
    assert sum(counts.values()) > 0
    assert sim.spikes == pytest.approx(counts, rel=1e-6)


@pytest.mark.parametrize("arch", ["small", "maxpool"])
def test_streaming_follows_a_changing_input(arch):
    net = network(arch)
    frames = [inputs(arch, 2, seed=s) for s in (1, 2, 2, 3, 1, 1, 4, 5)]
    reference, _ = stepwise(net, frames)
    net.reset()
    got = [net.step(frame).clone() for frame in frames]
    for expected, out in zip(reference, got):
        torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)
    net.reset()  # a new stream starts from the initial state
    torch.testing.assert_close(net.step(frames[0]), reference[0], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="reset"):
        net.step(inputs(arch, 3, seed=0))
    net.reset()


@pytest.mark.parametrize("arch", ["small", "resnet18"])
def test_streaming_matches_the_batched_simulation_for_a_constant_input(arch):
    # Not bit-exact on every CPU: a convolution over a block of steps (time folded into the batch) may
    # take another kernel than over one step, and round differently; a flipped spike would be far larger.
    net = network(arch)
    x = inputs(arch, 2, seed=7)
    sim = net.simulate(x, [5, 12])
    net.reset()
    outputs = [net.step(x).clone() for _ in range(12)]
    net.reset()
    for t in (5, 12):
        torch.testing.assert_close(running_mean(outputs, t), sim.outputs[t], rtol=1e-5, atol=1e-6)


def test_forward_stays_batched_and_block_memory_bounds_the_block():
    net = network("small")
    x = inputs("small", 4, seed=3)
    expected = net.simulate(x, 16, block=1).outputs[16]
    # the block length changes the convolutions' batch, which some CPUs' kernels round differently
    torch.testing.assert_close(net(x, timesteps=16), expected, rtol=1e-5, atol=1e-6)
    saved = net.block_memory
    try:
        net.block_memory = 1  # smaller than one step: one timestep per block, same result
        assert torch.equal(net.simulate(x, 16).outputs[16], expected)
    finally:
        net.block_memory = saved


def test_reduced_precision_keeps_spikes_exact_and_outputs_close():
    net = network("resnet18")
    x = inputs("resnet18", 4, seed=5)
    full = net.simulate(x, 32).outputs[32]
    try:
        half = net.set_precision("bfloat16").simulate(x, 32).outputs[32]
    finally:
        net.set_precision(torch.float32)
    assert half.dtype == torch.float32
    scale = full.abs().max()
    assert float((half - full).abs().max() / scale) < 0.1
    # the neuron itself: currents and a threshold exact in bfloat16 give exactly the float32 spikes
    layer = copy.deepcopy(next(iter(net.neurons().values())))
    layer.set_threshold([0.75])
    currents = torch.randint(-4, 9, (40, 3, 5)).float() * 0.25
    a, _ = layer.scan(None, currents)
    b, _ = layer.scan(None, currents.to(torch.bfloat16), out_dtype=torch.bfloat16)
    assert b.dtype == torch.bfloat16 and torch.equal(b.float(), a) and a.sum() > 0


def test_a_precision_change_reaches_the_next_simulation_and_a_running_stream():
    """The runtime compiles its calls with the weights of the current precision; a change must
    recompile them (a stale program would silently go on in float32)."""
    net = network("small")
    x = inputs("small", 2, seed=4)
    half = copy.deepcopy(net).set_precision("bfloat16")
    expected = half.simulate(x, 6, block=2).outputs[6]
    full = copy.deepcopy(net)
    full.reset()
    full_steps = [full.step(x).clone() for _ in range(4)]
    try:
        net.simulate(x, 6, block=2)  # compiled in float32
        assert torch.equal(net.set_precision("bfloat16").simulate(x, 6, block=2).outputs[6], expected)
        net.set_precision(torch.float32)
        net.reset()
        steps = [net.step(x).clone() for _ in range(2)]
        net.set_precision("bfloat16")
        steps += [net.step(x).clone() for _ in range(2)]
    finally:
        net.set_precision(torch.float32)
        net.reset()
    assert all(torch.equal(a, b) for a, b in zip(steps[:2], full_steps))
    assert not torch.equal(torch.stack(steps[2:]), torch.stack(full_steps[2:]))


def test_set_precision_rejects_other_types():
    with pytest.raises(ValueError, match="precision"):
        network("small").set_precision(torch.int8)


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


@pytest.mark.cuda
@cuda
@pytest.mark.parametrize("arch", ["small", "resnet18", "maxpool"])
def test_cuda_matches_cpu(arch):
    net = network(arch)
    x = inputs(arch, 4, seed=9)
    cpu = net.simulate(x, [8, 32], count_spikes=True)
    gpu_net = copy.deepcopy(net).to("cuda")
    gpu = gpu_net.simulate(x.to("cuda"), [8, 32], count_spikes=True)
    for t in (8, 32):
        scale = cpu.outputs[t].abs().max()
        assert float((gpu.outputs[t].cpu() - cpu.outputs[t]).abs().max() / scale) < 0.05
    total_cpu, total_gpu = sum(cpu.spikes.values()), sum(gpu.spikes.values())
    assert abs(total_gpu - total_cpu) <= 0.01 * total_cpu
    # the stream's state follows the module between devices
    gpu_net.reset()
    first = gpu_net.step(x.to("cuda"))
    gpu_net.to("cpu")
    second = gpu_net.step(x)
    assert first.device.type == "cuda" and second.device.type == "cpu"


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_evaluate_on_cuda_without_a_gpu_is_one_clean_error(tmp_path, small_cnn_file, tiny_images):
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "onnx2snn", "evaluate", small_cnn_file, "--data", tiny_images,
                             "-T", "2", "--device", "cuda"], capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "no CUDA device" in lines[0], result.stderr


def test_spike_counts_are_exact_for_reduced_precision_outputs():
    """A bfloat16 sum keeps 8 significant bits: counting must not sum in the output's dtype."""
    layer = copy.deepcopy(next(iter(network("small").neurons().values())))
    layer.set_threshold([0.75])
    fired = (torch.rand(8, 16, 64, 64, generator=torch.Generator().manual_seed(0)) < 0.3).float()
    expected = float(fired.sum())
    assert layer.spike_events(fired * 0.75) == expected
    assert layer.spike_events((fired * 0.75).to(torch.bfloat16)) == expected


def test_prepacked_bfloat16_convolutions_give_torch_s_bits():
    """A bfloat16 convolution of one image runs with its weight prepacked for oneDNN where torch
    itself picks oneDNN: the same primitive, so exactly F.conv2d's output and layout; an in-place
    change of the weight is seen, and the op can still be deep-copied."""
    net = network("resnet18")
    index = next(i for i in net.dynamic_nodes if type(net.layers[i]).__name__ == "Conv")
    conv, names = net.layers[index], net.node_inputs[index]
    constants = net.constant_env()
    weight = constants[names[1]].to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
    bias = constants[names[2]].to(torch.bfloat16) if len(names) > 2 and names[2] else None
    x = torch.rand(1, weight.shape[1] * conv.group, 16, 16).bfloat16().contiguous(memory_format=torch.channels_last)
    for _ in range(2):
        got = conv.forward(x, weight, bias)
        expected = torch.nn.functional.conv2d(x, weight, bias, conv.strides, conv._pads[1], conv.dilations, conv.group)
        assert torch.equal(got, expected) and got.stride() == expected.stride()
        with torch.no_grad():
            weight.mul_(2)
    twin = copy.deepcopy(conv)  # an opaque oneDNN tensor cannot be copied: the copy prepacks anew
    assert torch.equal(twin.forward(x, weight, bias), conv.forward(x, weight, bias))
    if conv._packed[3] is None:
        pytest.skip("torch does not run this bfloat16 convolution in oneDNN here: nothing was prepacked")
