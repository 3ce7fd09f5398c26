"""Threshold methods: max, percentile and SpikeNorm (the linear-time version against the
textbook one that reruns the network for every layer)."""
import numpy as np
import onnx
import pytest
import torch

from onnx2snn.converter.methods.spec import ThresholdMethod
from onnx2snn.converter.normalize import normalize
from onnx2snn.converter.thresholds import compute_thresholds
from onnx2snn.errors import ConfigError
from onnx2snn.runtime.network import SpikingNetwork

from helpers import run_onnxruntime, small_cnn


def relu_outputs(model: onnx.ModelProto, x: np.ndarray) -> dict[str, np.ndarray]:
    """Every ReLU's output, measured with onnxruntime on the original ANN."""
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    relus = [n for n in probe.graph.node if n.op_type == "Relu"]
    for node in relus:
        probe.graph.output.append(onnx.helper.make_tensor_value_info(node.output[0], onnx.TensorProto.FLOAT, None))
    import onnxruntime as ort

    session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    values = session.run([n.output[0] for n in relus], {"x": x})
    return {n.name: v for n, v in zip(relus, values)}


@pytest.fixture
def model_and_data(rng):
    model = small_cnn(rng)
    x = rng.normal(0, 1, (16, 3, 8, 8)).astype(np.float32)
    return model, x


def thresholds_for(model, x, method, timesteps=16):
    network = SpikingNetwork(normalize(model).model)
    parameters = compute_thresholds(network, torch.from_numpy(x), ThresholdMethod.parse(method), timesteps,
                                    batch_size=5)
    return {name: values.threshold for name, values in parameters.items()}


def test_max_is_the_largest_ann_activation(model_and_data):
    model, x = model_and_data
    thresholds = thresholds_for(model, x, "max")
    expected = relu_outputs(model, x)
    assert set(thresholds) == set(expected)
    for name, values in expected.items():
        assert thresholds[name][0] == pytest.approx(values.max(), rel=1e-5)


def test_percentile_of_positive_activations(model_and_data):
    model, x = model_and_data
    thresholds = thresholds_for(model, x, "percentile:99")
    for name, values in relu_outputs(model, x).items():
        positive = values[values > 0]
        assert thresholds[name][0] == pytest.approx(np.percentile(positive, 99), rel=1e-5)
        assert thresholds[name][0] < values.max()


def naive_spikenorm(model, x, timesteps):
    """Sengupta et al.'s algorithm as written: for each layer in turn, simulate the whole network
    from the input (earlier layers at their final thresholds) and take the layer's largest input."""
    network = SpikingNetwork(normalize(model).model)
    result = {}
    for neuron in network.neuron_nodes:
        name = network.node_names[neuron]
        peak = [0.0]

        def probe(index, current, neuron=neuron, peak=peak):
            if index == neuron:
                peak[0] = max(peak[0], float(current.max()))

        env_static = network.static_env(torch.from_numpy(x))
        states = {}
        with torch.inference_mode():
            for _ in range(timesteps):
                env = dict(env_static)
                network.run_nodes(env, network.dynamic_nodes, states, probe=probe)
        network.layers[neuron].set_threshold([peak[0]])
        result[name] = peak[0]
    return result


def test_spikenorm_matches_the_layer_by_layer_definition(model_and_data):
    model, x = model_and_data
    fast = thresholds_for(model, x, "spikenorm", timesteps=24)
    slow = naive_spikenorm(model, x, timesteps=24)
    assert set(fast) == set(slow)
    for name in slow:
        assert fast[name][0] == pytest.approx(slow[name], rel=1e-5)


def test_spikenorm_first_layer_equals_max_for_constant_input(model_and_data):
    model, x = model_and_data
    spikenorm = thresholds_for(model, x, "spikenorm", timesteps=8)
    maximum = thresholds_for(model, x, "max")
    assert spikenorm["relu1"][0] == pytest.approx(maximum["relu1"][0], rel=1e-6)


@pytest.mark.parametrize("text", ["", "mean", "percentile:", "percentile:0", "percentile:101", "percentile:abc"])
def test_bad_method_names_are_config_errors(text):
    with pytest.raises(ConfigError):
        ThresholdMethod.parse(text)


def test_clip_caps_the_threshold(rng):
    from onnx import helper

    from helpers import make_model, tensor

    w = rng.normal(0, 2, (4, 3, 1, 1)).astype(np.float32)
    model = make_model(
        [helper.make_node("Conv", ["x", "w"], ["c"]),
         helper.make_node("Clip", ["c", "lo", "hi"], ["r"], name="relu6"),
         helper.make_node("GlobalAveragePool", ["r"], ["g"]), helper.make_node("Flatten", ["g"], ["y"])],
        [tensor("x", ["N", 3, 4, 4])], [tensor("y", ["N", 4])],
        {"w": w, "lo": np.array(0, np.float32), "hi": np.array(0.5, np.float32)})
    x = rng.normal(0, 3, (8, 3, 4, 4)).astype(np.float32)
    assert thresholds_for(model, x, "max")["relu6"][0] == pytest.approx(0.5)
    network = SpikingNetwork(normalize(model).model)
    np.testing.assert_allclose(network.analog(torch.from_numpy(x)).numpy(), run_onnxruntime(model, x),
                               rtol=1e-5, atol=1e-6)
