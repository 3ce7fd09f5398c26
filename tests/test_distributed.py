"""``torchrun --nproc_per_node 2 -m onnx2snn evaluate`` (gloo, CPU) gives the single-process result."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

MEAN, STD = "0.5,0.5,0.5", "0.25,0.25,0.25"


def run(args, env=None):
    return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, timeout=600, check=False,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})


@pytest.fixture(scope="module")
def snn(tmp_path_factory, small_cnn_file, tiny_images):
    path = tmp_path_factory.mktemp("dist") / "snn.onnx"
    result = run(["-m", "onnx2snn", "convert", small_cnn_file, "-o", path, "--data", tiny_images, "--mean", MEAN,
                  "--std", STD, "--threshold", "max", "--calib", 20])
    assert result.returncode == 0, result.stderr
    return path


def test_two_gloo_processes_match_one(tmp_path, snn, small_cnn_file, tiny_images):
    common = ["evaluate", snn, "--data", tiny_images, "-T", "2,4,8", "--limit", 17, "--ann", small_cnn_file,
              "--spikes", "--batch-size", 4]
    single = run(["-m", "onnx2snn", *common, "--json", tmp_path / "one.json"])
    assert single.returncode == 0, single.stderr
    pair = run(["-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
                "-m", "onnx2snn", *common, "--json", tmp_path / "two.json"])
    assert pair.returncode == 0, pair.stderr
    one, two = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("one", "two"))
    assert two["world_size"] == 2 and "world_size" not in one
    for key in ("n", "ann_accuracy", "snn_accuracy"):
        assert two[key] == one[key], key
    assert two["spikes_per_image"] == pytest.approx(one["spikes_per_image"], rel=1e-9)
    assert pair.stdout.count("images: 17") == 1  # one result, printed by rank 0
    assert not list(tmp_path.glob("*.partial*"))


# Each threshold method at a batch size that gives 2 processes several batches, plus runs where one process
# has no selection batch (auto@16: 2 fit batches, 1 selection batch) or no batch at all (spikenorm@64).
CONVERSIONS = ["max@4", "percentile:99.9@4", "spikenorm@4", "spikenorm@64", "auto@4", "auto@16"]


def test_two_gloo_processes_convert_like_one(tmp_path, small_cnn_file, tiny_images):
    """Calibration under torchrun: every statistic is combined across processes in batch order, so each
    method's spiking file equals the single-process one byte for byte (thresholds, v_init, bias, metadata)."""
    tests = Path(__file__).resolve().parent
    env = {"PYTHONPATH": os.pathsep.join([str(tests.parent), os.environ.get("PYTHONPATH", "")])}  # this tree
    for name in ("one", "two"):
        (tmp_path / name).mkdir()
    args = [tests / "distributed_convert.py", small_cnn_file, tiny_images]
    single = run([*args, tmp_path / "one", *CONVERSIONS], env)
    assert single.returncode == 0, single.stderr
    pair = run(["-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29518",
                *args, tmp_path / "two", *CONVERSIONS], env)
    assert pair.returncode == 0, pair.stderr
    for conversion in CONVERSIONS:
        one, two = (tmp_path / name / f"{conversion}.onnx" for name in ("one", "two"))
        assert two.read_bytes() == one.read_bytes(), f"{conversion}: 2 processes wrote another file than 1"
    assert pair.stdout.count("wrote ") == len(CONVERSIONS)  # rank 0 alone reports
    assert not [p for p in (tmp_path / "two").iterdir() if p.suffix != ".onnx"]  # no temporary files left
