"""Same model, data, options and seed: byte-identical spiking ONNX and identical accuracies."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import onnx
import pytest

from onnx2snn.converter.convert import ConversionOptions, convert
from onnx2snn.evaluation import evaluate

from hostile_cases import MEAN, STD, cnn, make_image_folder, single_thread  # noqa: F401 (autouse fixture)

ROOT = Path(__file__).resolve().parent.parent
METHODS = ["max", "percentile:99.9", "spikenorm"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("determinism")
    data = make_image_folder(root / "data", per_class=4)
    model = root / "ann.onnx"
    model.write_bytes(cnn().SerializeToString())
    return root, model, data


def _convert(model: Path, out: Path, data: Path, method: str, seed: int = 3) -> bytes:
    convert(model, out, data, [0.5] * 3, [0.25] * 3, calibration_images=24, seed=seed,
            options=ConversionOptions(threshold=method, calibration_timesteps=8, batch_size=7))
    return out.read_bytes()


@pytest.mark.parametrize("method", METHODS)
def test_convert_twice_gives_identical_bytes(setup, method):
    root, model, data = setup
    first = _convert(model, root / f"a_{method}.onnx", data, method)
    second = _convert(model, root / f"b_{method}.onnx", data, method)
    assert first == second
    # and the seed matters: another draw of calibration images gives another file
    assert _convert(model, root / f"c_{method}.onnx", data, method, seed=4) != first


def test_another_process_with_another_hash_seed_gives_identical_bytes(setup):
    """Set iteration order changes with PYTHONHASHSEED; the output must not."""
    root, model, data = setup
    expected = _convert(model, root / "in_process.onnx", data, "spikenorm")
    out = root / "subprocess.onnx"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONHASHSEED": "12345", "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-m", "onnx2snn", "convert", str(model), "-o", str(out), "--data", str(data),
                    "--mean", MEAN, "--std", STD, "--calib", "24", "--seed", "3", "--threshold", "spikenorm",
                    "--calib-timesteps", "8", "--batch-size", "7"], env=env, check=True, timeout=300,
                   capture_output=True)
    # The command line also records its effective configuration; without it the bytes must agree.
    made = onnx.load(str(out))
    kept = [(p.key, p.value) for p in made.metadata_props if p.key != "onnx2snn.config"]
    assert len(kept) == len(made.metadata_props) - 1
    del made.metadata_props[:]
    for key, value in kept:
        entry = made.metadata_props.add()
        entry.key, entry.value = key, value
    assert made.SerializeToString(deterministic=True) == expected


def test_evaluate_twice_gives_identical_accuracies(setup):
    root, model, data = setup
    snn = root / "eval.onnx"
    _convert(model, snn, data, "max")
    runs = [evaluate(snn, data, split="test", timesteps=[4, 16], batch_size=9, count_spikes=True)
            for _ in range(2)]
    assert runs[0].snn_accuracy == runs[1].snn_accuracy
    assert runs[0].spikes_per_image == runs[1].spikes_per_image
