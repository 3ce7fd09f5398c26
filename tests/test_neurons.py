"""The IF neuron against hand-computed spike trains, for both reset modes."""
import numpy as np
import pytest
import torch

from onnx2snn.ops import NodeInfo
from onnx2snn.ops.neurons import IF, if_step


def run_steps(currents, threshold=1.0, reset="subtract", v0=0.0):
    v = torch.tensor([v0])
    spikes, potentials = [], []
    for current in currents:
        s, v = if_step(torch.tensor([current]), v, torch.tensor(threshold), reset)
        spikes.append(int(s.item()))
        potentials.append(round(float(v.item()), 6))
    return spikes, potentials


def test_soft_reset_keeps_the_residual_potential():
    spikes, potentials = run_steps([0.7] * 5, reset="subtract")
    # v: 0.7, 1.4 -> fire -> 0.4, 1.1 -> fire -> 0.1, 0.8, 1.5 -> fire -> 0.5
    assert spikes == [0, 1, 1, 0, 1]
    assert potentials == pytest.approx([0.7, 0.4, 0.1, 0.8, 0.5])


def test_hard_reset_discards_the_residual_potential():
    spikes, potentials = run_steps([0.7] * 5, reset="zero")
    # v: 0.7, 1.4 -> fire -> 0, 0.7, 1.4 -> fire -> 0, 0.7
    assert spikes == [0, 1, 0, 1, 0]
    assert potentials == pytest.approx([0.7, 0.0, 0.7, 0.0, 0.7])


def test_soft_reset_rate_tracks_the_input_hard_reset_falls_short():
    soft, _ = run_steps([0.3] * 100, reset="subtract")
    hard, _ = run_steps([0.3] * 100, reset="zero")
    assert sum(soft) == 30  # exact: rate x threshold = 0.3
    assert sum(hard) == 25  # every 4th step: 0.3, 0.6, 0.9, 1.2 -> fire, residual 0.2 lost


def test_negative_current_never_fires():
    spikes, potentials = run_steps([-0.5, -0.5, 1.9], reset="subtract")
    assert spikes == [0, 0, 0]  # -1.0 + 1.9 = 0.9 stays below the threshold
    assert potentials == pytest.approx([-0.5, -1.0, 0.9])


def test_threshold_is_reached_with_equality():
    spikes, potentials = run_steps([0.5, 0.5], reset="subtract")
    assert spikes == [0, 1]
    assert potentials == pytest.approx([0.5, 0.0])


def test_initial_potential_half_threshold():
    spikes, _ = run_steps([0.5, 0.5, 0.5], reset="subtract", v0=0.5)
    assert spikes == [1, 0, 1]


def if_node(threshold, reset="subtract", v_init=(0.0,)):
    return IF(NodeInfo("n", "IF", "onnx2snn", 1, {"threshold": list(threshold), "reset": reset.encode(),
                                                   "v_init": list(v_init)}, ["x"], ["y"], {}))


def test_if_op_outputs_spikes_times_threshold_per_channel():
    layer = if_node([1.0, 2.0])
    x = torch.full((1, 2, 1, 1), 1.5)
    out1, state = layer.step(None, x)
    out2, state = layer.step(state, x)
    # channel 0 (threshold 1): 1.5 -> fire (0.5 left), 2.0 -> fire; channel 1 (threshold 2): 1.5, 3.0 -> fire
    assert out1.flatten().tolist() == [1.0, 0.0]
    assert out2.flatten().tolist() == [1.0, 2.0]


def test_if_op_analog_is_relu_or_clip():
    layer = if_node([1.0])
    x = torch.tensor([-1.0, 0.5, 9.0])
    assert layer.analog(x).tolist() == [0.0, 0.5, 9.0]
    clipped = IF(NodeInfo("n", "IF", "onnx2snn", 1, {"clip_max": 6.0}, ["x"], ["y"], {}))
    assert clipped.analog(x).tolist() == [0.0, 0.5, 6.0]


@pytest.mark.parametrize("bad", [[0.0], [-1.0], [float("nan")], []])
def test_if_op_rejects_bad_thresholds(bad):
    from onnx2snn.errors import InvalidModelError

    with pytest.raises(InvalidModelError, match="threshold"):
        if_node(bad)


def test_rate_of_soft_reset_converges_to_activation():
    rng = np.random.default_rng(1)
    currents = rng.uniform(0, 1, 50)
    layer = if_node([1.0])
    x = torch.tensor(currents, dtype=torch.float32)
    state, total = None, torch.zeros_like(x)
    for _ in range(1000):
        out, state = layer.step(state, x)
        total += out
    assert np.allclose(total.numpy() / 1000, currents, atol=1e-3)


def test_spike_events_count_bursts_and_signed_spikes():
    layer = IF(NodeInfo("n", "IF", "onnx2snn", 1, {"threshold": [2.0], "burst": 3}, ["x"], ["y"], {}))
    out, _ = layer.step(None, torch.full((1, 4), 5.0))  # 5 / 2 -> a burst of 2 spikes per neuron
    assert out.flatten().tolist() == [4.0] * 4
    assert layer.spike_events(out) == 8
    plain = if_node([2.0])
    out, _ = plain.step(None, torch.tensor([[5.0, 0.0]]))
    assert plain.spike_events(out) == 1
