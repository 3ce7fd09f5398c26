"""Accuracy against timesteps for each conversion method, next to the ANN (issue 4).

Every method is converted once (calibrated on train-split images only) and evaluated at
T = 4, 8, 16, 32, 64, 128, 256 on the class-balanced test subset (``--limit``, default 2000);
``--full M1,M2`` adds those methods (bare ``--full``: ``auto``) on all 10,000 test images at T <= 64. A method
``SPEC@weights`` is ``SPEC`` with weight calibration (``--calibrate-weights``). Each report records the
conversion's wall time (``calibration_seconds``). Results go to
docs/results/low_latency/: one JSON per run, summary.json, table.md and accuracy.png. Runs resume:
finished results are skipped, an interrupted evaluation continues from its checkpoint.

    python benchmarks/accuracy.py [--limit 2000] [--full] [--methods auto,percentile:99.9]
    python benchmarks/accuracy.py --model other.onnx --out runs/other   # any CIFAR-10 ONNX CNN
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from onnx2snn import ConversionOptions, SpikingNetwork, convert, convert_model, evaluate
from onnx2snn.atomic import atomic_write_text
from onnx2snn.data import cifar10_dir, parse_floats, shared_dir
from onnx2snn.report import markdown_table, plot_accuracy

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
METHODS = ["percentile:99.9", "percentile:99.9+channel+vhalf", "percentile:99.9+channel+vhalf+biascorr",
           "robust+channel+vhalf+scale+potcorr", "auto", "auto+signed", "auto+burst:2", "auto@weights"]
WEIGHTS = "@weights"  # method suffix: calibrate the weights too
TIMESTEPS = [4, 8, 16, 32, 64, 128, 256]
FULL_TIMESTEPS = [4, 8, 16, 32, 64]
OUT = Path(__file__).resolve().parents[1] / "docs" / "results" / "low_latency"


def slug(method: str) -> str:
    return method.replace(":", "").replace("+", "_").replace("@", "_")


def conversion_options(method: str, calibration_timesteps: int) -> ConversionOptions:
    return ConversionOptions(threshold=method.removesuffix(WEIGHTS), calibration_timesteps=calibration_timesteps,
                             calibrate_weights=method.endswith(WEIGHTS))


def run(method: str, args, limit: int | None, timesteps: list[int], tag: str) -> dict:
    out = Path(args.out)
    result_path = out / f"{tag}{slug(method)}.json"
    if result_path.is_file():
        return json.loads(result_path.read_text())
    snn = Path(args.models) / f"{slug(method)}.onnx"
    timing = snn.with_suffix(".seconds.json")
    if not snn.is_file():
        start = time.perf_counter()
        convert(args.model, snn, args.data, args.mean, args.std, calibration_images=args.calib,
                options=conversion_options(method, args.calib_timesteps))
        atomic_write_text(timing, json.dumps({"calibration_seconds": round(time.perf_counter() - start, 1)}) + "\n")
    seconds = json.loads(timing.read_text())["calibration_seconds"] if timing.is_file() else None
    result = evaluate(snn, args.data, timesteps=timesteps, limit=limit, ann_path=args.model,
                      checkpoint=str(result_path) + ".partial", count_spikes=True)
    report = {**result.to_json(), "method": method, "calibration_images": args.calib,
              "calibration_timesteps": args.calib_timesteps, "calibration_seconds": seconds}
    atomic_write_text(result_path, json.dumps(report, indent=2) + "\n")
    Path(str(result_path) + ".partial").unlink(missing_ok=True)
    print(f"{tag}{method}: ANN {report['ann_accuracy']} SNN {report['snn_accuracy']}", flush=True)
    return report


def summarize(args, methods: list[str]) -> None:
    """Table, plot and summary.json of every finished result in --out (this run's methods and earlier ones)."""
    methods = list(dict.fromkeys(METHODS + methods))
    out, curves, ann, rows = Path(args.out), {}, None, {}
    for tag, label in (("", "{method}"), ("full10k_", "{method}, all 10,000 test images")):
        for method in methods:
            path = out / f"{tag}{slug(method)}.json"
            if path.is_file():
                report = json.loads(path.read_text())
                if not tag:
                    ann = report["ann_accuracy"]
                name = label.format(method=method)
                if report.get("calibration_seconds") is not None:
                    name += f" [{report['calibration_seconds']:.0f} s conversion]"
                curves[name] = {int(t): a for t, a in report["snn_accuracy"].items()}
                rows[name] = {"n": report["n"], "ann_accuracy": report["ann_accuracy"],
                              "snn_accuracy": report["snn_accuracy"],
                              "spikes_per_image": report.get("spikes_per_image"),
                              "calibration_seconds": report.get("calibration_seconds")}
    if not curves:
        return
    atomic_write_text(out / "summary.json", json.dumps(rows, indent=2) + "\n")
    table = markdown_table({k: v for k, v in curves.items() if "10,000" not in k}, ann)
    full = {k: v for k, v in curves.items() if "10,000" in k}
    if full:
        full_ann = next(rows[k]["ann_accuracy"] for k in full)
        table += "\nAll 10,000 test images:\n\n" + markdown_table(full, full_ann)
    atomic_write_text(out / "table.md", table)
    plot_accuracy({k: v for k, v in curves.items() if "10,000" not in k}, ann, out / "accuracy.png",
                  title=f"{Path(args.model).stem}: accuracy against T ({args.limit} test images)")
    print(table, flush=True)


def random_nets(args, methods: list[str]) -> None:
    """The same methods on randomly initialized networks nobody tuned for (tests/torch_models.py:
    VGG-11-BN, ResNet-18, MobileNetV2, DenseNet, a max-pooling net), on random images: how often the
    SNN's class matches the ANN's, and the output error relative to the ANN output's variance."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from torch_models import ARCHITECTURES, build, export

    steps = [int(t) for t in args.timesteps.split(",")]
    generator = torch.Generator().manual_seed(0)
    calibration = torch.rand(args.calib, 3, 32, 32, generator=generator) * 2 - 1
    held_out = torch.rand(64, 3, 32, 32, generator=generator) * 2 - 1
    results = {}
    path = Path(args.out) / "random_nets.json"
    if path.is_file():
        results = json.loads(path.read_text())
    for arch in ARCHITECTURES:
        model = export(build(arch), "torchscript-17")
        for method in methods:
            key = f"{arch} {method}"
            if key in results:
                continue
            options = conversion_options(method, args.calib_timesteps)
            options.batch_size = 32
            network = SpikingNetwork(convert_model(model, calibration, options).model)
            ann = network.analog(held_out)
            outputs = network.simulate(held_out, steps).outputs
            results[key] = {
                "agreement": {str(t): float((o.argmax(1) == ann.argmax(1)).float().mean()) for t, o in outputs.items()},
                "relative_mse": {str(t): float(((o - ann) ** 2).mean() / ann.var()) for t, o in outputs.items()}}
            print(key, results[key], flush=True)
            atomic_write_text(path, json.dumps(results, indent=2) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="ANN .onnx (default: the shared ResNet-20)")
    parser.add_argument("--data", help="CIFAR-10 folder (default: the shared one)")
    parser.add_argument("--out", default=str(OUT))
    parser.add_argument("--models", help="where converted models go (default: runs/low_latency/<model>)")
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated method specs")
    parser.add_argument("--limit", type=int, default=2000, help="class-balanced test subset")
    parser.add_argument("--calib", type=int, default=512)
    parser.add_argument("--calib-timesteps", type=int, default=ConversionOptions.calibration_timesteps)
    parser.add_argument("--full", nargs="?", const="auto", default="",
                        help="also these methods (comma-separated; bare --full: auto) on all 10,000 test images "
                             "at T <= 64")
    parser.add_argument("--mean", default=",".join(map(str, MEAN)), help="input normalization mean")
    parser.add_argument("--std", default=",".join(map(str, STD)), help="input normalization std")
    parser.add_argument("--timesteps", default=",".join(map(str, TIMESTEPS)))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--random-nets", action="store_true",
                        help="instead: the methods on random VGG/ResNet-18/MobileNet/DenseNet/max-pool nets")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.mean, args.std = parse_floats(args.mean, "--mean"), parse_floats(args.std, "--std")
    timesteps = [int(t) for t in args.timesteps.split(",")]
    args.model = args.model or str(shared_dir() / "models" / "resnet20_cifar10.onnx")
    args.data = args.data or str(cifar10_dir())
    repo = Path(__file__).resolve().parents[1]
    args.models = args.models or str(repo / "runs" / "low_latency" / Path(args.model).stem)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if args.random_nets:
        random_nets(args, methods)
        return 0
    full = [m.strip() for m in args.full.split(",") if m.strip()]
    methods += [m for m in full if m not in methods]  # a --full method is also run on the subset
    ordered = (["auto"] if "auto" in methods else []) + [m for m in methods if m != "auto"]
    for method in ordered:
        run(method, args, args.limit, timesteps, tag="")
        summarize(args, methods)
        if method in full:
            run(method, args, None, FULL_TIMESTEPS, tag="full10k_")
            summarize(args, methods)
    return 0


if __name__ == "__main__":
    sys.exit(main())
