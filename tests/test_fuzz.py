"""Fuzzing: mutated models either convert or raise an Onnx2SnnError, in bounded time.

A bounded, derandomized hypothesis run for CI (440 cases); ``make fuzz`` runs scripts/fuzz.py for a
longer campaign with the same mutations (tests/fuzz_mutations.py).
"""
from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from onnx2snn.converter.convert import ConversionOptions, convert_model
from onnx2snn.dialect import model_from_bytes
from onnx2snn.errors import Onnx2SnnError

import fuzz_mutations
from fuzz_mutations import MUTATIONS, Hang, run_case
from helpers import small_cnn
from hostile_cases import single_thread  # noqa: F401 (autouse fixture)

PER_CASE_SECONDS = 10.0


@pytest.fixture(autouse=True, scope="module")
def quiet():
    import onnxruntime

    onnxruntime.set_default_logger_severity(4)  # graphsurgeon's constant folding logs every failure
    logging.disable(logging.WARNING)
    yield
    logging.disable(logging.NOTSET)


def _check(seed: int, kinds: list[str]) -> None:
    try:
        assert run_case(seed, kinds, PER_CASE_SECONDS) in ("ok", "typed")
    except Hang:
        pytest.fail(f"hang: seed={seed} kinds={kinds}")


@settings(max_examples=400, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1), kinds=st.lists(st.sampled_from(MUTATIONS), min_size=1, max_size=3))
def test_mutated_models_convert_or_raise_a_typed_error(seed, kinds):
    _check(seed, kinds)


@settings(max_examples=40, deadline=None, derandomize=True, database=None)
@given(data=st.binary(max_size=3000))
def test_random_bytes_are_refused_cleanly(data):
    try:
        model_from_bytes(data, "random bytes")
    except Onnx2SnnError:
        return
    # a few byte strings do parse as a (tiny) valid model; then the converter must cope
    try:
        convert_model(model_from_bytes(data), fuzz_mutations.CALIBRATION, ConversionOptions())
    except Onnx2SnnError:
        pass


@pytest.mark.parametrize("seed, kinds", [
    (22, ["change_op"]),  # a node turned into onnx2snn.IF with three inputs (TypeError in the runtime)
    (104, ["change_opset", "flip_bytes"]),  # a node name that is not UTF-8 (crashed onnx's helpers)
    (118, ["rewire"]),  # a pool on a 1-D tensor: torch's IndexError in the trial run
    (256, ["perturb_shape", "perturb_shape"]),  # BatchNorm parameters of different lengths
    (350, ["change_dtype", "change_op"]),  # Reshape with one input (graph not checked when in memory)
    (939, ["rewire", "rewire", "change_opset"]),  # output that does not depend on the input
    (44, ["rewire", "change_opset", "perturb_attribute"]),  # an empty `pads` list
])
def test_regressions_found_by_fuzzing(seed, kinds):
    _check(seed, kinds)


def test_spikenorm_with_maxpool():
    """Regression: SpikeNorm once read the spiking max-pool gate's output as a neuron's spike trains."""
    model = small_cnn(np.random.default_rng(0))
    for node in model.graph.node:
        if node.op_type == "AveragePool":
            node.op_type = "MaxPool"
    conversion = convert_model(model, torch.randn(4, 3, 8, 8),
                               ConversionOptions(threshold="spikenorm", calibration_timesteps=4))
    assert len(conversion.thresholds) == 2  # both ReLUs; the max-pool gate has no threshold
    assert all(float(v.min()) > 0 for v in conversion.thresholds.values())
