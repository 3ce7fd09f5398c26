"""The ``onnx2snn`` command line: a thin layer over the Python API.

Input errors (``Onnx2SnnError``) print one line and exit with status 2; anything else is a
bug and keeps its traceback.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
from pathlib import Path

from .. import __version__
from .._atomic import atomic_write_text
from ..errors import ConfigError, Onnx2SnnError


def _timesteps(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"-T must be comma-separated integers, not {text!r}") from None
    if not values or min(values) < 1:
        raise ConfigError(f"-T must list positive integers, not {text!r}")
    return values


@contextlib.contextmanager
def calibration_progress(args: argparse.Namespace):
    """A bar over the calibrated layers (with an ETA) on a terminal or with ``--progress``; ``-v`` adds
    a line per layer (its log record, printed above the bar); ``--quiet`` shows neither."""
    from ..converter.progress import BarProgress, reporting

    if getattr(args, "quiet", False):
        logger = logging.getLogger("onnx2snn")
        level = logger.level
        logger.setLevel(logging.WARNING)
        try:
            yield
        finally:
            logger.setLevel(level)
        return
    if not (getattr(args, "progress", False) or sys.stderr.isatty()):
        yield
        return
    from tqdm.contrib.logging import logging_redirect_tqdm

    with logging_redirect_tqdm(), reporting(BarProgress()):
        yield


def cmd_convert(args: argparse.Namespace) -> int:
    from ..converter.convert import ConversionOptions, convert
    from ..data import parse_floats

    options = ConversionOptions(threshold=args.threshold, reset=args.reset, maxpool=args.maxpool,
                                calibration_timesteps=args.calib_timesteps, batch_size=args.batch_size,
                                max_memory=args.max_memory)
    with calibration_progress(args):
        conversion = convert(args.ann, args.output, args.data, parse_floats(args.mean, "--mean"),
                             parse_floats(args.std, "--std"), calibration_images=args.calib, options=options,
                             seed=args.seed, device=args.device)
    for note in conversion.notes:
        print(f"note: {note}", file=sys.stderr)
    print(f"wrote {args.output}: {len(conversion.thresholds)} spiking layers, threshold {args.threshold}, "
          f"reset {args.reset}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from ..evaluate import evaluate

    checkpoint = Path(str(args.json) + ".partial") if args.json else None
    result = evaluate(args.snn, args.data, split=args.split, timesteps=_timesteps(args.T), limit=args.limit,
                      ann_path=args.ann, device=args.device, batch_size=args.batch_size, mean=args.mean,
                      std=args.std, checkpoint=checkpoint, count_spikes=args.spikes, progress=args.progress,
                      max_memory=args.max_memory)
    report = result.to_json()
    if args.json:
        atomic_write_text(args.json, json.dumps(report, indent=2) + "\n")
        checkpoint.unlink(missing_ok=True)
    ann = f"{100 * result.ann_accuracy:.2f}%" if result.ann_accuracy is not None else "n/a"
    print(f"images: {result.n}   ANN: {ann}")
    for t, accuracy in sorted(result.snn_accuracy.items()):
        print(f"T={t:<5d} SNN: {100 * accuracy:.2f}%")
    if result.spikes_per_image is not None:
        print(f"spikes per image over T={max(result.snn_accuracy)}: {result.spikes_per_image:.0f}")
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    from .inspect import describe

    print(describe(args.model, as_json=args.json))
    return 0


def cmd_ops(args: argparse.Namespace) -> int:
    from ..docs import ops_table

    print(ops_table(), end="")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(limit=args.limit, timesteps=_timesteps(args.T), out_dir=Path(args.out), device=args.device,
             model=args.model)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="onnx2snn", description="Convert ONNX ANNs into spiking networks.")
    parser.add_argument("--version", action="version", version=f"onnx2snn {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what the converter does")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("convert", help="convert an ANN ONNX file into a spiking ONNX file")
    p.add_argument("ann", help="the ANN .onnx file")
    p.add_argument("-o", "--output", required=True, help="where to write the spiking .onnx file")
    p.add_argument("--data", required=True, help="data set folder (calibration uses its train split)")
    p.add_argument("--mean", required=True, help="per-channel input mean, e.g. 0.485,0.456,0.406")
    p.add_argument("--std", required=True, help="per-channel input std, e.g. 0.229,0.224,0.225")
    p.add_argument("--threshold", default="auto",
                   help="auto (default) | max | percentile:P | robust | spikenorm, optionally with +modifiers: "
                        "channel, vhalf, vopt, biascorr, potcorr, scale, signed, burst:G "
                        "(e.g. percentile:99.9+channel+vhalf+biascorr; see docs/low_latency.md)")
    p.add_argument("--reset", default="subtract", help="subtract (soft reset) | zero (hard reset)")
    p.add_argument("--maxpool", default="spiking", choices=["spiking", "average"],
                   help="spiking: MaxPool runs as a spiking max-pool gate (faithful); average: replace it by "
                        "AveragePool, which changes the network (a warning says so)")
    p.add_argument("--calib", type=int, default=512, help="calibration images from the train split")
    p.add_argument("--calib-timesteps", type=int, default=64,
                   help="timesteps the calibration simulates: spikenorm's horizon, and the latency T that "
                        "auto and the calibrated methods target (auto scores T/4, T/2 and T)")
    p.add_argument("--seed", type=int, default=0, help="which calibration images are drawn")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--max-memory", default="4GB",
                   help="memory budget, e.g. 4GB: batches shrink to fit, or it fails before allocating")
    p.add_argument("--device", default="cpu")
    p.add_argument("--progress", action="store_true",
                   help="show the bar over the calibrated layers even when stderr is not a terminal")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar and no per-layer lines")
    p.set_defaults(run=cmd_convert)

    p = sub.add_parser("evaluate", help="accuracy of a spiking model against timesteps")
    p.add_argument("snn", help="the spiking .onnx file")
    p.add_argument("--data", required=True)
    p.add_argument("--split", default="test", choices=["train", "test"])
    p.add_argument("-T", default="16,32,64,128,256", help="timesteps, e.g. 16,32,64")
    p.add_argument("--limit", type=int, help="a class-balanced subset of N images")
    p.add_argument("--ann", help="the source ANN, measured with onnxruntime on the same images")
    p.add_argument("--device", default="cpu", help="cpu | cuda")
    p.add_argument("--json", help="write the results here (resumes from JSON.partial if present)")
    p.add_argument("--mean", help="override the stored input mean")
    p.add_argument("--std", help="override the stored input std")
    p.add_argument("--batch-size", type=int, default=250)
    p.add_argument("--max-memory", default="4GB",
                   help="memory budget, e.g. 4GB: batches shrink to fit, or it fails before allocating")
    p.add_argument("--spikes", action="store_true", help="also count spikes per image")
    p.add_argument("--progress", action="store_true", help="show a progress bar")
    p.set_defaults(run=cmd_evaluate)

    p = sub.add_parser("inspect", help="summarize an ANN or spiking ONNX graph")
    p.add_argument("model")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(run=cmd_inspect)

    p = sub.add_parser("ops", help="print the table of supported ONNX ops")
    p.set_defaults(run=cmd_ops)

    p = sub.add_parser("demo", help="convert the default model and compare ANN and SNN accuracy")
    p.add_argument("--limit", type=int, default=200, help="class-balanced test images (200: about 1 min of CPU time, measured 53 s with one thread)")
    p.add_argument("-T", default="16,32,64,128")
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--device", default="cpu")
    p.add_argument("--model", default="small_cnn",
                   help="small_cnn (built in, default) | resnet20 (../shared) | path to an ANN .onnx with stored mean/std")
    p.set_defaults(run=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    try:
        return args.run(args)
    except Onnx2SnnError as error:
        print(f"onnx2snn: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("onnx2snn: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and the like: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
