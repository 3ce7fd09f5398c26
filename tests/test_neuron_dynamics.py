"""Every entry point to the IF neuron dynamics against ONE reference step written here, on random
currents: the kernel (neuron_scan), its step wrappers, the IF op (alone and inside a spiking model
run by the runtime), the calibration's candidate simulation and SpikeNorm.

Currents, thresholds, biases and initial potentials are multiples of 1/16 (thresholds of 1/2), so
float32 arithmetic is exact in any order and every comparison is exact: a changed reset, a
dropped bias or v_init, an off-by-one in the spike condition or in the burst/signed rules fails.
"""
from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from onnx2snn.converter.methods.candidates import Candidates, simulate_candidates
from onnx2snn.converter.methods.spikenorm import spikenorm_thresholds
from onnx2snn.ops import NodeInfo
from onnx2snn.ops.neurons import IF, if_step, neuron_scan, signed_burst_step
from onnx2snn.runtime.network import SpikingNetwork

T = 24

# (reset, signed, burst): the neuron variants the code supports
VARIANTS = [("subtract", False, 1), ("zero", False, 1), ("subtract", True, 1), ("subtract", False, 3),
            ("subtract", True, 2)]
VARIANT_IDS = ["soft", "hard", "signed", "burst3", "signed+burst2"]


def reference_step(v, count, x, theta, reset="subtract", bias=0.0, signed=False, burst=1):
    """One IF step as the docs define it (numpy, float32); returns (k, v, count), k the spike count."""
    v = v + x
    v = v + bias
    if signed or burst > 1:
        k = np.clip(np.floor(v / theta), 0, burst)
        if signed:
            undo = np.minimum(np.clip(np.ceil(-v / theta), 0, burst), count)
            k = np.where(v < 0, -undo, k)
            count = count + k
        v = v - k * theta
    else:
        k = (v >= theta).astype(np.float32)
        v = v - k * theta if reset == "subtract" else v * (1 - k)
    return k.astype(np.float32), v.astype(np.float32), count


def reference_run(currents, theta, v_init, reset="subtract", bias=0.0, signed=False, burst=1):
    """Spike counts ``[T, ...]`` and the final potential for ``currents[T, ...]``."""
    v = np.zeros(currents.shape[1:], np.float32) + v_init
    count = np.zeros_like(v)
    ks = []
    for x in currents:
        k, v, count = reference_step(v, count, x, theta, reset, bias, signed, burst)
        ks.append(k)
    return np.stack(ks), v


def dyadic(rng, shape, low=-12, high=28, unit=16):
    return (rng.integers(low, high, shape) / unit).astype(np.float32)


@pytest.fixture
def case(rng):
    """Currents [T, N=2, C=3, 2, 2] and per-channel threshold, v_init and bias."""
    currents = dyadic(rng, (T, 2, 3, 2, 2))
    theta = np.array([0.5, 1.0, 1.5], np.float32).reshape(3, 1, 1)
    v_init = np.array([0.0, 0.5, 0.75], np.float32).reshape(3, 1, 1)
    bias = np.array([0.0625, -0.125, 0.25], np.float32).reshape(3, 1, 1)
    return currents, theta, v_init, bias


def per_channel(values: np.ndarray) -> list[float]:
    return [float(v) for v in values.reshape(-1)]


@pytest.mark.parametrize("reset, signed, burst", VARIANTS, ids=VARIANT_IDS)
@pytest.mark.parametrize("with_bias", [False, True], ids=["", "bias"])
def test_neuron_scan_matches_the_reference(case, reset, signed, burst, with_bias):
    currents, theta, v_init, bias = case
    bias = bias if with_bias else 0.0
    expected, v_end = reference_run(currents, theta, v_init, reset, bias, signed, burst)
    v = torch.zeros(currents.shape[1:]) + torch.from_numpy(v_init)
    spikes, v, _ = neuron_scan(torch.from_numpy(currents), v, torch.from_numpy(theta), reset=reset,
                               bias=torch.from_numpy(np.asarray(bias, np.float32)) if with_bias else None,
                               signed=signed, burst=burst)
    np.testing.assert_array_equal(spikes.numpy(), expected)
    np.testing.assert_array_equal(v.numpy(), v_end)


@pytest.mark.parametrize("reset, signed, burst", VARIANTS, ids=VARIANT_IDS)
def test_step_wrappers_match_the_reference(case, reset, signed, burst):
    currents, theta, v_init, _ = case
    expected, _ = reference_run(currents, theta, v_init, reset, 0.0, signed, burst)
    v = torch.zeros(currents.shape[1:]) + torch.from_numpy(v_init)
    count = torch.zeros_like(v)
    for t, x in enumerate(torch.from_numpy(currents)):
        if signed or burst > 1:
            k, v, count = signed_burst_step(x, v, count, torch.from_numpy(theta), signed, burst)
        else:
            k, v = if_step(x, v, torch.from_numpy(theta), reset)
        np.testing.assert_array_equal(k.numpy(), expected[t], err_msg=f"step {t}")


def if_attributes(theta, v_init, bias, reset, signed, burst) -> dict:
    attrs = {"threshold": per_channel(theta), "v_init": per_channel(v_init), "reset": reset}
    if bias is not None:
        attrs["bias"] = per_channel(bias)
    if signed:
        attrs["signed"] = 1
    if burst > 1:
        attrs["burst"] = burst
    return attrs


@pytest.mark.parametrize("reset, signed, burst", VARIANTS, ids=VARIANT_IDS)
@pytest.mark.parametrize("entry", ["step", "scan"])
def test_if_op_matches_the_reference(case, reset, signed, burst, entry):
    currents, theta, v_init, bias = case
    attrs = if_attributes(theta, v_init, bias, reset, signed, burst)
    attrs["reset"] = reset.encode()
    layer = IF(NodeInfo("n", "IF", "onnx2snn", 1, attrs, ["x"], ["y"], {}))
    expected, _ = reference_run(currents, theta, v_init, reset, bias, signed, burst)
    x = torch.from_numpy(currents)
    if entry == "scan":  # two chunks, to carry the state across calls
        first, state = layer.scan(None, x[:T // 3])
        second, _ = layer.scan(state, x[T // 3:])
        out = torch.cat([first, second])
    else:
        state, outs = None, []
        for current in x:
            o, state = layer.step(state, current)
            outs.append(o)
        out = torch.stack(outs)
    np.testing.assert_array_equal(out.numpy(), expected * theta)  # the output carries the threshold


def spiking_model(layers: list[dict], channels: int = 3) -> onnx.ModelProto:
    """``x -> IF -> IF -> ... -> y``, spiking neurons only: the runtime feeds x as a constant current,
    so every layer after the first sees a time-varying one."""
    nodes, source = [], "x"
    for index, attrs in enumerate(layers):
        out = "y" if index == len(layers) - 1 else f"s{index}"
        nodes.append(helper.make_node("IF", [source], [out], name=f"if{index}", domain="onnx2snn", **attrs))
        source = out
    graph = helper.make_graph(nodes, "if_chain",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", channels, 2, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", channels, 2, 2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid("onnx2snn", 1)])
    model.ir_version = 8
    return model


@pytest.mark.parametrize("reset, signed, burst", VARIANTS, ids=VARIANT_IDS)
def test_if_op_in_a_spiking_model_run_by_the_runtime(case, reset, signed, burst):
    """Hard reset, v_init and bias through the graph: the readout at every T is the reference's
    output potential summed over the first T steps, divided by T."""
    currents, theta, v_init, bias = case
    x = currents[0] * 2  # a constant input current
    second_theta = np.array([1.0, 0.5, 2.0], np.float32).reshape(3, 1, 1)
    model = spiking_model([if_attributes(theta, v_init, bias, reset, signed, burst),
                           if_attributes(second_theta, v_init[::-1].copy(), -bias, reset, signed, burst)])
    first, _ = reference_run(np.repeat(x[None], T, 0), theta, v_init, reset, bias, signed, burst)
    second, _ = reference_run(first * theta, second_theta, v_init[::-1], reset, -bias, signed, burst)
    outputs = SpikingNetwork(model).simulate(torch.from_numpy(x), list(range(1, T + 1))).outputs
    cumulative = np.cumsum(second * second_theta, axis=0)
    for t in range(1, T + 1):
        np.testing.assert_allclose(outputs[t].numpy(), cumulative[t - 1] / t, rtol=1e-6, atol=0, err_msg=f"T={t}")


class CandidateLayer:
    """What simulate_candidates reads from a neuron layer."""

    def __init__(self, reset, signed, burst):
        self.reset, self.signed, self.burst = reset, signed, burst
        self.extended = signed or burst > 1


@pytest.mark.parametrize("reset, signed, burst", VARIANTS, ids=VARIANT_IDS)
def test_calibration_candidates_match_the_reference(case, reset, signed, burst):
    """The calibration's K-candidate simulation: each candidate's spike train and rate error equal the
    reference's, whether it runs alone or beside others, with the currents split into time chunks."""
    currents, _, _, _ = case
    target = np.abs(dyadic(np.random.default_rng(5), currents.shape[1:]))
    thetas = np.array([[0.5, 1.0, 1.5], [1.0, 0.5, 2.0], [2.0, 1.5, 0.5]], np.float32)
    vfracs = np.array([[0.0, 0.5, 0.25], [0.5, 0.0, 0.75], [0.25, 0.25, 0.0]], np.float32)
    biases = np.array([[0.0625, -0.125, 0.25], [0.0, 0.0, 0.0], [-0.25, 0.125, 0.0625]], np.float32)
    layer = CandidateLayer(reset, signed, burst)
    chunks = [(0, torch.from_numpy(currents[:10])), (10, torch.from_numpy(currents[10:]))]
    together = simulate_candidates(layer, Candidates(*map(torch.from_numpy, (thetas, vfracs, biases))),
                                   chunks, torch.from_numpy(target), T)
    for k in range(3):
        theta, vfrac, bias = (a[k].reshape(3, 1, 1) for a in (thetas, vfracs, biases))
        expected, _ = reference_run(currents, theta, vfrac * theta, reset, bias, signed, burst)
        trains = torch.zeros((T, *currents.shape[1:]), dtype=torch.int8)
        alone = simulate_candidates(layer,
                                    Candidates(*(torch.from_numpy(a[k:k + 1]) for a in (thetas, vfracs, biases))),
                                    chunks, torch.from_numpy(target), T, trains=trains)
        np.testing.assert_array_equal(trains.numpy(), expected.astype(np.int8), err_msg=f"candidate {k}")
        error = (expected.sum(0) * theta / T - target).sum((0, 2, 3))
        np.testing.assert_allclose(alone[1][0].numpy(), error, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(together[1][k].numpy(), error, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(together[0][k].numpy(), alone[0][0].numpy(), rtol=1e-6)


def gemm_chain(weights: list[np.ndarray], reset: str) -> onnx.ModelProto:
    """x[N, 4] -> (Gemm -> IF) per weight -> y, thresholds set later."""
    nodes, init, source = [], [], "x"
    for index, w in enumerate(weights):
        init.append(onnx.numpy_helper.from_array(w, f"w{index}"))
        nodes.append(helper.make_node("Gemm", [source, f"w{index}"], [f"g{index}"], transB=1))
        out = "y" if index == len(weights) - 1 else f"s{index}"
        nodes.append(helper.make_node("IF", [f"g{index}"], [out], name=f"if{index}", domain="onnx2snn",
                                      threshold=[1.0], reset=reset))
        source = out
    graph = helper.make_graph(nodes, "gemm_chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", weights[-1].shape[0]])],
                              initializer=init)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid("onnx2snn", 1)])
    model.ir_version = 8
    return model


@pytest.mark.parametrize("reset", ["subtract", "zero"])
def test_spikenorm_matches_the_reference(rng, reset):
    """SpikeNorm layer by layer with the reference neuron: each threshold is the largest current the
    layer receives while the layers before it spike at their own (already chosen) thresholds."""
    weights = [dyadic(rng, (5, 4), -8, 9, 8), dyadic(rng, (6, 5), -8, 9, 8), dyadic(rng, (3, 6), -8, 9, 8)]
    x = np.abs(dyadic(rng, (7, 4), 0, 9, 8))
    timesteps = 20
    got = spikenorm_thresholds(SpikingNetwork(gemm_chain(weights, reset)), torch.from_numpy(x), timesteps, batch_size=3)
    trains = np.repeat(x[None], timesteps, 0)  # the input: a constant current
    for index, w in enumerate(weights):
        currents = trains @ w.T
        theta = max(float(currents.max()), 1e-6)
        assert got[f"if{index}"][0] == theta, (index, got[f"if{index}"][0], theta)
        spikes, _ = reference_run(currents, np.float32(theta), 0.0, reset)
        trains = spikes * np.float32(theta)


@pytest.mark.parametrize("reset, signed, burst", VARIANTS, ids=VARIANT_IDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["float32", "bfloat16"])
def test_if_op_with_one_threshold_and_reduced_precision_currents(case, reset, signed, burst, dtype):
    """A single threshold takes the scan's scalar path; bfloat16 currents are added to the float32
    potential as they are and the outputs written in bfloat16. Dyadic currents and thresholds are
    exact in bfloat16, so the spikes must equal the reference exactly; a new threshold must take
    effect at the next scan (the broadcast views are cached)."""
    currents, _, v_init, bias = case
    attrs = if_attributes(np.array([0.75], np.float32), v_init, bias, reset, signed, burst)
    attrs["reset"] = reset.encode()
    layer = IF(NodeInfo("n", "IF", "onnx2snn", 1, attrs, ["x"], ["y"], {}))
    x = torch.from_numpy(currents).to(dtype)
    for theta in (0.75, 1.25):
        layer.set_threshold([theta])
        expected, _ = reference_run(currents, np.float32(theta), v_init, reset, bias, signed, burst)
        first, state = layer.scan(None, x[:T // 3], out_dtype=dtype)
        second, _ = layer.scan(state, x[T // 3:], out_dtype=dtype)
        out = torch.cat([first, second])
        assert out.dtype == dtype
        np.testing.assert_array_equal(out.float().numpy(), expected * np.float32(theta))
