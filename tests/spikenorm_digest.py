"""SpikeNorm's thresholds and a digest of every stored layer's spike trains, for comparing revisions.

Runs SpikeNorm on the shared ResNet-20 with train images (as ``convert`` draws them) and prints one
JSON object: the threshold of every layer, the sha256 of the spike trains SpikeNorm stores for the
next layers (packed bits exactly as stored), and the CPU time. Run it with each tree on PYTHONPATH
and compare the outputs (docs/conversion_speed.md, "SpikeNorm in one pass"):

    OMP_NUM_THREADS=1 PYTHONPATH=OLD_TREE python tests/spikenorm_digest.py --calib 512 -T 64 > old.json
    OMP_NUM_THREADS=1 PYTHONPATH=NEW_TREE python tests/spikenorm_digest.py --calib 512 -T 64 > new.json
    diff <(jq -S 'del(.cpu_s)' old.json) <(jq -S 'del(.cpu_s)' new.json)
"""
from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path

import onnx

from onnx2snn.converter.convert import ConversionOptions, convert_model
from onnx2snn.converter.methods import layerwise
from onnx2snn.data import load_split, to_tensor

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(SHARED / "models" / "resnet20_cifar10.onnx"))
    parser.add_argument("--data", default=str(SHARED / "data" / "cifar10"))
    parser.add_argument("--calib", type=int, default=512)
    parser.add_argument("-T", "--timesteps", type=int, default=64)
    args = parser.parse_args()
    images = to_tensor(load_split(args.data, "train", limit=args.calib, seed=0).images, MEAN, STD)
    digests: dict[str, str] = {}
    record = layerwise.LayerwiseRun.record

    def digesting(run, node, ann, trains):
        if trains is not None:
            digest = hashlib.sha256()
            for chunk in trains:
                stored = chunk.bits if isinstance(chunk, layerwise.BitTrains) else chunk
                digest.update(stored.contiguous().numpy().tobytes())
            digests[run.network.node_names[node]] = digest.hexdigest()
        record(run, node, ann, trains)

    layerwise.LayerwiseRun.record = digesting
    started = time.process_time()
    conversion = convert_model(onnx.load(args.model), images,
                               ConversionOptions(threshold="spikenorm", calibration_timesteps=args.timesteps))
    cpu = time.process_time() - started
    print(json.dumps({"calib": args.calib, "timesteps": args.timesteps, "cpu_s": round(cpu, 2),
                      "thresholds": {k: v.tolist() for k, v in conversion.thresholds.items()},
                      "train_sha256": digests}, indent=1))


if __name__ == "__main__":
    main()
