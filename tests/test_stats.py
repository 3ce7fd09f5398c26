"""Spike statistics against values worked out by hand on a tiny network."""
import numpy as np
import pytest
import torch
from onnx import helper, numpy_helper

from onnx2snn.runtime.network import SpikingNetwork
from onnx2snn.stats import (
    DEFAULT_COSTS,
    SpikeRecorder,
    graph_costs,
    load_costs,
    summarize,
)

from helpers import tensor


def tiny_spiking_model(reset="subtract"):
    """x[N,3] -> Gemm(I3) -> IF(theta=1) -> Flatten -> Gemm(4x3) -> y[N,4]."""
    nodes = [helper.make_node("Gemm", ["x", "w1"], ["c"], name="fc1"),
             helper.make_node("IF", ["c"], ["s"], domain="onnx2snn", name="if1", threshold=[1.0], v_init=[0.0],
                              reset=reset),
             helper.make_node("Flatten", ["s"], ["f"], name="flat"),
             helper.make_node("Gemm", ["f", "w2"], ["y"], transB=1, name="fc2")]
    inits = [numpy_helper.from_array(np.eye(3, dtype=np.float32), "w1"),
             numpy_helper.from_array(np.ones((4, 3), np.float32), "w2")]
    graph = helper.make_graph(nodes, "tiny", [tensor("x", ["N", 3])], [tensor("y", ["N", 4])], initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid("onnx2snn", 1)],
                             ir_version=8)


def test_fanout_macs_and_static_macs_by_hand():
    costs = graph_costs(tiny_spiking_model())
    assert costs.neurons == {"if1": 3}
    assert costs.fanout == {"if1": pytest.approx(4.0)}  # each neuron reaches the 4 outputs of fc2
    assert costs.ann_macs == 9 + 12
    assert costs.static_macs == 9  # fc1 reads only the analog input: once per image


def test_rates_sops_histogram_and_energy_by_hand():
    model = tiny_spiking_model()
    network = SpikingNetwork(model)
    recorder = SpikeRecorder(network)
    x = torch.tensor([[0.5, 1.0, 0.25], [0.5, 1.0, 0.25]])
    recorder.start_batch(2)
    network.simulate(x, [2, 4], on_step=recorder)
    stats = summarize(recorder, graph_costs(model), DEFAULT_COSTS, timesteps=[2, 4])
    # currents 0.5, 1.0, 0.25 with theta 1 and soft reset: 2, 4 and 1 spikes in 4 steps
    assert stats.spikes == pytest.approx(7.0)
    layer = stats.layers[0]
    assert layer.rate == pytest.approx(7 / 12)
    assert layer.sops == pytest.approx(28.0)  # 7 spikes x fan-out 4
    assert layer.ann_macs == pytest.approx(12.0)
    # by T=2: step 1 neuron 2 fires; step 2 neurons 1 and 2 fire -> 3 spikes, 12 synaptic operations
    assert stats.sops_by_t == {2: pytest.approx(12.0), 4: pytest.approx(28.0)}
    expected = [0] * 20
    expected[5] += 1  # rate 0.25 (both images fire alike: histograms count neurons)
    expected[10] += 1  # rate 0.5
    expected[19] += 1  # rate 1.0 falls in the last (closed) bin
    assert layer.histogram == expected
    energy = stats.energy_uj()
    assert energy["snn"] == pytest.approx((9 * 4.6 + 28 * 0.9) * 1e-6)
    assert energy["ann"] == pytest.approx(21 * 4.6 * 1e-6)


def test_membrane_trace_of_a_chosen_neuron():
    model = tiny_spiking_model()
    network = SpikingNetwork(model)
    recorder = SpikeRecorder(network, traces={"if1": [0]})
    recorder.start_batch(1)
    network.simulate(torch.tensor([[0.5, 1.0, 0.25]]), 4, on_step=recorder)
    trace = recorder.traces["if1"][0]
    assert trace["v"] == pytest.approx([0.5, 0.0, 0.5, 0.0])  # potential after each step's reset
    assert trace["spikes"] == [0.0, 1.0, 0.0, 1.0]
    assert trace["threshold"] == 1.0


def test_costs_from_a_config_file(tmp_path):
    path = tmp_path / "costs.toml"
    path.write_text("[energy]\naccumulate_pj = 0.03\n")
    assert load_costs(path) == {"accumulate_pj": 0.03, "mac_pj": 4.6}
    path.write_text("[energy]\nadd_pj = 1\n")
    with pytest.raises(Exception, match="unknown energy cost"):
        load_costs(path)


def test_fanout_through_an_average_pool_and_a_flatten_by_hand():
    """x[N,1,2,2] -> Conv 1x1 -> IF -> AveragePool 2x2 -> Flatten -> Gemm(3x1): a spike reaches the
    one pool output, which feeds 3 outputs: fan-out 3 (the pool is folded into the Gemm)."""
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
             helper.make_node("IF", ["c"], ["s"], domain="onnx2snn", name="if1", threshold=[1.0], v_init=[0.0],
                              reset="subtract"),
             helper.make_node("AveragePool", ["s"], ["p"], kernel_shape=[2, 2], name="pool"),
             helper.make_node("Flatten", ["p"], ["f"], name="flat"),
             helper.make_node("Gemm", ["f", "g"], ["y"], transB=1, name="fc")]
    inits = [numpy_helper.from_array(np.ones((1, 1, 1, 1), np.float32), "w"),
             numpy_helper.from_array(np.ones((3, 1), np.float32), "g")]
    graph = helper.make_graph(nodes, "pool", [tensor("x", ["N", 1, 2, 2])], [tensor("y", ["N", 3])], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid("onnx2snn", 1)],
                              ir_version=8)
    costs = graph_costs(model)
    assert costs.fanout == {"if1": pytest.approx(3.0)}
    assert costs.ann_macs == 4 + 4 + 3 and costs.static_macs == 4
    assert costs.reached_macs == {"if1": 4 + 3}  # the ANN's pool and Gemm that this layer feeds
    network = SpikingNetwork(model)
    recorder = SpikeRecorder(network)
    recorder.start_batch(1)
    network.simulate(torch.tensor([[[[1.0, 0.5], [0.0, 0.25]]]]), 4, on_step=recorder)
    stats = summarize(recorder, costs, DEFAULT_COSTS, timesteps=[4])
    assert stats.spikes == pytest.approx(4 + 2 + 0 + 1)
    assert stats.sops == pytest.approx(7 * 3)
