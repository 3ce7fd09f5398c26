"""The conversion grid on the shared ResNet-20: reset mode x threshold method, accuracy vs T.

Each configuration is converted (calibrated on train images only) and evaluated on the
class-balanced test subset; results go to docs/results/resnet20/<reset>_<method>.json. The run
is resumable: finished configurations are skipped, an interrupted evaluation continues from its
checkpoint. Afterwards ``--full`` evaluates one configuration on all 10,000 test images.

    python benchmarks/resnet20_grid.py [--limit 2000] [--full subtract:percentile:99.9]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from onnx2snn import (
    ConversionOptions,
    SpikingNetwork,
    ann_predictions,
    convert,
    evaluate,
    load_model,
    load_split,
    normalize,
    to_tensor,
)
from onnx2snn.atomic import atomic_write_text
from onnx2snn.data import cifar10_dir, shared_dir
from onnx2snn.report import markdown_table, plot_accuracy

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
METHODS = ["percentile:99.9", "max", "spikenorm"]
RESETS = ["subtract", "zero"]
TIMESTEPS = [16, 32, 64, 128, 256]
OUT = Path(__file__).resolve().parents[1] / "docs" / "results" / "resnet20"


def run(reset: str, method: str, limit: int | None, tag: str) -> dict:
    result_path = OUT / f"{tag}{reset}_{method.replace(':', '')}.json"
    if result_path.is_file():
        return json.loads(result_path.read_text())
    ann = shared_dir() / "models" / "resnet20_cifar10.onnx"
    snn = OUT / "models" / f"{reset}_{method.replace(':', '')}.onnx"
    if not snn.is_file():
        convert(ann, snn, cifar10_dir(), MEAN, STD, calibration_images=512,
                options=ConversionOptions(threshold=method, reset=reset, calibration_timesteps=64))
    result = evaluate(snn, cifar10_dir(), timesteps=TIMESTEPS, limit=limit, ann_path=ann,
                      checkpoint=str(result_path) + ".partial", progress=True)
    report = result.to_json()
    atomic_write_text(result_path, json.dumps(report, indent=2) + "\n")
    Path(str(result_path) + ".partial").unlink(missing_ok=True)
    print(f"{reset} {method}: ANN {report['ann_accuracy']} SNN {report['snn_accuracy']}", flush=True)
    return report


def ann_full_test() -> dict:
    """The ANN alone (onnxruntime) on the whole test split: the figure the SNN is compared with."""
    path = OUT / "ann_full_test.json"
    if path.is_file():
        return json.loads(path.read_text())
    ann = shared_dir() / "models" / "resnet20_cifar10.onnx"
    images = load_split(cifar10_dir(), "test")
    x = to_tensor(images.images, MEAN, STD)
    predictions = ann_predictions(ann, x.numpy())
    # The canonical graph (every IF acting as its ReLU) run by the torch runtime must agree.
    network = SpikingNetwork(normalize(load_model(ann)).model)
    canonical = torch.cat([network.analog(batch).argmax(1) for batch in x.split(500)]).numpy()
    report = {"n": len(images), "ann_accuracy": float((predictions == images.labels).mean()),
              "canonical_graph_accuracy": float((canonical == images.labels).mean()),
              "prediction_agreement": float((canonical == predictions).mean()),
              "runtime": "onnxruntime (ANN), onnx2snn runtime in analog mode (canonical graph)"}
    atomic_write_text(path, json.dumps(report, indent=2) + "\n")
    print(f"ANN on the full test split: {report}", flush=True)
    return report


def summarize(limit: int) -> None:
    curves, ann = {}, None
    for reset in RESETS:
        for method in METHODS:
            path = OUT / f"{reset}_{method.replace(':', '')}.json"
            if path.is_file():
                report = json.loads(path.read_text())
                ann = report["ann_accuracy"]
                label = f"{'soft' if reset == 'subtract' else 'hard'} reset, {method}"
                curves[label] = {int(t): a for t, a in report["snn_accuracy"].items()}
    if curves:
        atomic_write_text(OUT / "grid.md", markdown_table(curves, ann))
        plot_accuracy(curves, ann, OUT / "grid.png", title=f"ResNet-20, {limit} test images")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=2000)
    parser.add_argument("--full", help="RESET:METHOD to evaluate on the full test set after the grid")
    parser.add_argument("--only-full", action="store_true")
    parser.add_argument("--ann-only", action="store_true", help="only measure the ANN on the full test split")
    parser.add_argument("--methods", default=",".join(METHODS), help="a subset of the grid's methods")
    parser.add_argument("--resets", default=",".join(RESETS), help="a subset of the grid's reset modes")
    args = parser.parse_args()
    ann_full_test()
    if args.ann_only:
        return 0
    if not args.only_full:
        for method in args.methods.split(","):
            for reset in args.resets.split(","):
                run(reset, method, args.limit, tag="")
                summarize(args.limit)
    if args.full:
        reset, method = args.full.split(":", 1)
        run(reset, method, None, tag="full10k_")
    return 0


if __name__ == "__main__":
    sys.exit(main())
