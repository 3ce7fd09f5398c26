"""Launched by tests/test_distributed.py, once alone and once under torchrun: one ``convert`` per
``METHOD@BATCH`` argument, each written to ``OUT/METHOD@BATCH.onnx``.

The sample limits are lowered (in this process only) so that the small test network takes the
paths a real network takes: candidates scored on a seeded sample of positions per batch, and
per-channel percentiles of a seeded subsample of the activations.
"""
import sys

from onnx2snn.cli.main import main
from onnx2snn.converter.methods import calibrate, candidates

calibrate.SAMPLED_POSITIONS = 100  # of 256 (image, pixel) positions per batch of 4 in the first layer
candidates.MAX_SAMPLES = 50  # of about 1000 positive activations per channel of the first layer

ann, data, out, *runs = sys.argv[1:]
for run in runs:
    method, batch = run.split("@")
    code = main(["convert", ann, "-o", f"{out}/{run}.onnx", "--data", data, "--mean", "0.5,0.5,0.5",
                 "--std", "0.25,0.25,0.25", "--threshold", method, "--calib", "40", "--calib-timesteps", "8",
                 "--batch-size", batch])
    if code:
        sys.exit(code)
