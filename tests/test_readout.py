"""The readout, exactly: a hand-built network whose spike trains and outputs are computed by hand.

A scale error (dividing by the wrong number of steps) leaves the argmax, and so the accuracy,
unchanged; only exact values can see it.
"""
from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from onnx2snn.runtime.network import SpikingNetwork


def one_neuron_network(reset: str = "subtract") -> onnx.ModelProto:
    """x[N, 1] -> IF(threshold 1) -> Gemm(W = [[2], [-1]], b = [0.5, 0.25]) -> y[N, 2]."""
    nodes = [helper.make_node("IF", ["x"], ["s"], name="neuron", domain="onnx2snn", threshold=[1.0], reset=reset),
             helper.make_node("Gemm", ["s", "w", "b"], ["y"], transB=1)]
    init = [numpy_helper.from_array(np.array([[2.0], [-1.0]], np.float32), "w"),
            numpy_helper.from_array(np.array([0.5, 0.25], np.float32), "b")]
    graph = helper.make_graph(nodes, "readout", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])], initializer=init)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid("onnx2snn", 1)])
    model.ir_version = 8
    return model


# Image 0: current 0.25 -> v = .25, .5, .75, 1 -> spike at steps 4, 8, ...: n(T) = T // 4 spikes.
# Image 1: current 0.5  -> spike at steps 2, 4, 6, ...:                   n(T) = T // 2 spikes.
# Each step the Gemm outputs [2 s + 0.5, -s + 0.25]; the readout is the sum over T steps / T:
#   [(2 n + 0.5 T) / T, (-n + 0.25 T) / T]
BY_HAND = {
    1: [[0.5, 0.25], [0.5, 0.25]],                  # no spike yet
    3: [[0.5, 0.25], [3.5 / 3, -0.25 / 3]],         # n = 0 and 1
    4: [[1.0, 0.0], [1.5, -0.25]],                  # n = 1 and 2
    6: [[5 / 6, 1 / 12], [1.5, -0.25]],             # n = 1 and 3
    8: [[1.0, 0.0], [1.5, -0.25]],                  # n = 2 and 4
}


def test_readout_is_the_accumulated_output_over_t_by_hand():
    network = SpikingNetwork(one_neuron_network())
    x = torch.tensor([[0.25], [0.5]])
    simulation = network.simulate(x, list(BY_HAND))
    assert sorted(simulation.outputs) == sorted(BY_HAND)
    for t, expected in BY_HAND.items():
        np.testing.assert_allclose(simulation.outputs[t].numpy(), expected, rtol=1e-6, atol=1e-7, err_msg=f"T={t}")
    # one run to T_max gives every T: the same as separate runs
    for t, expected in BY_HAND.items():
        np.testing.assert_allclose(network.simulate(x, t).outputs[t].numpy(), expected, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(network(x, timesteps=6).numpy(), BY_HAND[6], rtol=1e-6, atol=1e-7)


def test_spike_counts_by_hand():
    network = SpikingNetwork(one_neuron_network())
    simulation = network.simulate(torch.tensor([[0.25], [0.5]]), 8, count_spikes=True)
    assert simulation.spikes == {"neuron": 2 + 4}  # summed over the batch, over all 8 steps
    assert simulation.neurons == {"neuron": 1}


def test_analog_readout_is_the_ann():
    network = SpikingNetwork(one_neuron_network())
    out = network.analog(torch.tensor([[0.25], [-1.0]]))
    np.testing.assert_allclose(out.numpy(), [[1.0, 0.0], [0.5, 0.25]], rtol=1e-6)


@pytest.mark.parametrize("reset, spikes_at_8", [("subtract", 3), ("zero", 2)])
def test_hard_reset_readout_by_hand(reset, spikes_at_8):
    # current 0.375: soft v = .375 .75 1.125* .5 .875 1.25* .625 1.0*  -> 3 spikes in 8 steps
    #                hard v = .375 .75 1.125* 0 .375 .75 1.125* 0       -> 2 spikes
    network = SpikingNetwork(one_neuron_network(reset))
    out = network.simulate(torch.tensor([[0.375]]), 8).outputs[8]
    np.testing.assert_allclose(out.numpy(), [[(2 * spikes_at_8 + 4) / 8, (-spikes_at_8 + 2) / 8]], rtol=1e-6)
