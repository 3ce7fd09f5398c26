"""End to end on real data: the shared pretrained ResNet-20 converted and run on real CIFAR-10
test images. Small enough for CI; the full-test-set figures live in docs/results/."""
import numpy as np
import pytest
from conftest import RESNET20_MEAN, RESNET20_STD

from onnx2snn.converter.convert import ConversionOptions, convert
from onnx2snn.data import load_split, to_tensor
from onnx2snn.evaluation import ann_predictions, evaluate
from onnx2snn.runtime import load

pytestmark = pytest.mark.slow  # minutes on 2 CPU cores; CI runs it in its own step (pytest -m slow)


@pytest.fixture(scope="module")
def converted(tmp_path_factory, resnet20, cifar10):
    path = tmp_path_factory.mktemp("resnet20") / "snn.onnx"
    convert(resnet20, path, cifar10, RESNET20_MEAN, RESNET20_STD, calibration_images=128,
            options=ConversionOptions(threshold="percentile:99.9", reset="subtract"))
    return path


def test_canonical_graph_matches_the_ann(converted, resnet20, cifar10):
    images = load_split(cifar10, "test", limit=20)
    x = to_tensor(images.images, RESNET20_MEAN, RESNET20_STD)
    network = load(converted)
    import onnxruntime as ort

    session = ort.InferenceSession(str(resnet20), providers=["CPUExecutionProvider"])
    reference = session.run(None, {"input": x.numpy()})[0]
    np.testing.assert_allclose(network.analog(x).numpy(), reference, rtol=1e-4, atol=1e-4)


def test_snn_accuracy_approaches_the_ann(converted, resnet20, cifar10):
    result = evaluate(converted, cifar10, timesteps=[16, 128], limit=200, ann_path=resnet20)
    assert result.n == 200
    assert result.ann_accuracy >= 0.7  # the ANN scores 81% on the full split
    snn = result.snn_accuracy
    assert snn[128] > snn[16]  # accuracy grows with latency
    assert snn[128] >= result.ann_accuracy - 0.08, (result.ann_accuracy, snn)


def test_ann_predictions_use_the_original_graph(resnet20, cifar10):
    images = load_split(cifar10, "test", limit=50)
    x = to_tensor(images.images, RESNET20_MEAN, RESNET20_STD).numpy()
    predictions = ann_predictions(resnet20, x, batch_size=16)
    assert predictions.shape == (50,)
    assert (predictions == images.labels).mean() > 0.6
