"""BatchNormalization folding: the canonical graph has no BN and computes the same function."""
import numpy as np
import torch
from onnx import helper

from onnx2snn.converter.normalize import normalize
from onnx2snn.runtime.network import SpikingNetwork

from helpers import make_model, run_onnxruntime, small_cnn, tensor


def analog(model, x):
    return SpikingNetwork(normalize(model).model).analog(torch.from_numpy(x)).numpy()


def test_bn_after_conv_folds_into_the_conv(rng):
    model = small_cnn(rng, batchnorm=True)
    canonical = normalize(model).model
    assert "BatchNormalization" not in {n.op_type for n in canonical.graph.node}
    assert sum(n.op_type == "Conv" for n in canonical.graph.node) == 2
    x = rng.normal(0, 1, (4, 3, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(analog(model, x), run_onnxruntime(model, x), rtol=1e-4, atol=1e-5)


def test_bn_after_gemm_folds_into_the_gemm(rng):
    init = {"w": rng.normal(0, 1, (6, 5)).astype(np.float32), "b": rng.normal(0, 1, 6).astype(np.float32),
            "g": rng.uniform(0.5, 2, 6).astype(np.float32), "be": rng.normal(0, 1, 6).astype(np.float32),
            "m": rng.normal(0, 1, 6).astype(np.float32), "v": rng.uniform(0.5, 2, 6).astype(np.float32),
            "w2": rng.normal(0, 1, (6, 3)).astype(np.float32)}
    model = make_model(
        [helper.make_node("Gemm", ["x", "w", "b"], ["h"], transB=1, alpha=0.5, beta=2.0),
         helper.make_node("BatchNormalization", ["h", "g", "be", "m", "v"], ["bn"], epsilon=1e-3),
         helper.make_node("Relu", ["bn"], ["r"]), helper.make_node("MatMul", ["r", "w2"], ["y"])],
        [tensor("x", ["N", 5])], [tensor("y", ["N", 3])], init)
    canonical = normalize(model).model
    assert [n.op_type for n in canonical.graph.node] == ["Gemm", "IF", "MatMul"]
    x = rng.normal(0, 1, (7, 5)).astype(np.float32)
    np.testing.assert_allclose(analog(model, x), run_onnxruntime(model, x), rtol=1e-4, atol=1e-5)


def test_bn_with_no_layer_before_it_becomes_an_affine(rng):
    c = 3
    init = {"g": rng.uniform(0.5, 2, c).astype(np.float32), "be": rng.normal(0, 1, c).astype(np.float32),
            "m": rng.normal(0, 1, c).astype(np.float32), "v": rng.uniform(0.5, 2, c).astype(np.float32),
            "w": rng.normal(0, 1, (4, c, 3, 3)).astype(np.float32)}
    model = make_model(
        [helper.make_node("BatchNormalization", ["x", "g", "be", "m", "v"], ["bn"]),
         helper.make_node("Conv", ["bn", "w"], ["c"]), helper.make_node("Relu", ["c"], ["r"]),
         helper.make_node("GlobalAveragePool", ["r"], ["p"]), helper.make_node("Flatten", ["p"], ["y"])],
        [tensor("x", ["N", c, 6, 6])], [tensor("y", ["N", 4])], init)
    x = rng.normal(0, 1, (2, c, 6, 6)).astype(np.float32)
    assert "BatchNormalization" not in {n.op_type for n in normalize(model).model.graph.node}
    np.testing.assert_allclose(analog(model, x), run_onnxruntime(model, x), rtol=1e-4, atol=1e-5)
