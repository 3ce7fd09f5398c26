"""The ``onnx2snn`` command line: a thin layer over the Python API (``onnx2snn.api``).

Exit status: 0 success; 2 bad input (one ``onnx2snn: error: ...`` line, also for usage errors);
130 interrupted; 141 output pipe closed; 1 a bug (with its traceback).

Each subcommand has one ``add_<command>`` function that declares its options and one
``cmd_<command>`` function that runs it; ``COMMANDS`` lists them in the order of ``--help``.
An error about an API parameter names it; ``FLAGS`` turns that name into the command line's flag.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import re
import sys
from pathlib import Path

from tqdm.contrib.logging import logging_redirect_tqdm

from .. import __version__
from ..api import ConversionOptions, convert, evaluate
from ..atomic import atomic_write_text
from ..config import CONFIG_KEY, load_config
from ..converter.progress import BarProgress, reporting
from ..data import parse_floats
from ..docs import ops_table
from ..errors import ConfigError, Onnx2SnnError
from ..export.cli import add_export, add_import
from ..logs import logger_level
from ..ops import registered
from ..report import evaluation_plots
from ..runtime.timesteps import timestep_list
from ..stats import load_costs, parse_traces
from .demo import run_demo
from .inspect import describe, describe_diff, table

# API parameter -> the flag that sets it
FLAGS = {
    "threshold": "--threshold", "reset": "--reset", "maxpool": "--maxpool", "calibration_images": "--calib",
    "calibration_timesteps": "--calib-timesteps", "batch_size": "--batch-size", "max_memory": "--max-memory",
    "mean": "--mean", "std": "--std", "timesteps": "-T", "device": "--device", "limit": "--limit", "layout": "--layout",
    "calibrate_weights": "--calibrate-weights",
}

EXIT_CODES = "exit status: 0 success, 2 bad input or usage, 130 interrupted, 1 internal error (a bug)"


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows each option's default (where there is one) and keeps the examples' line breaks."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False or action.default is argparse.SUPPRESS:
            return action.help
        return super()._get_help_string(action)


@contextlib.contextmanager
def calibration_progress(args: argparse.Namespace):
    """A bar over the calibrated layers (with an ETA) on a terminal or with ``--progress``; ``-v`` adds
    a line per layer (its log record, printed above the bar); ``--quiet`` shows neither."""
    if getattr(args, "quiet", False):
        with logger_level("onnx2snn", logging.WARNING):
            yield
        return
    if not (getattr(args, "progress", False) or sys.stderr.isatty()):
        yield
        return
    with logging_redirect_tqdm(), reporting(BarProgress()):
        yield


def error_line(error: Onnx2SnnError) -> str:
    """The error's message with the API parameter it names spelled as the CLI's flag."""
    message = str(error)
    flag = FLAGS.get(error.parameter or "")
    if flag is None:
        return message
    return re.sub(rf"(?<![\w-]){re.escape(error.parameter)}(?![\w-])", flag, message, count=1)


def _say(args: argparse.Namespace, text: str) -> None:
    """Human-readable output: stdout normally, stderr when stdout carries JSON, nothing with --quiet."""
    if args.quiet:
        return
    print(text, file=sys.stderr if getattr(args, "json", None) in (True, "-") else sys.stdout)


def _progress_wanted(args: argparse.Namespace) -> bool:
    """A progress bar on a terminal by default; elsewhere only with --progress; never with --quiet."""
    if args.quiet:
        return False
    return bool(args.progress) or sys.stderr.isatty()


# -- convert -----------------------------------------------------------------------------------

# Options that a config file may set, with their defaults (also the keys of the stored config).
CONVERT_DEFAULTS = {"threshold": "auto", "reset": "subtract", "maxpool": "spiking", "calib": 512,
                    "calib_timesteps": 64, "seed": 0, "batch_size": 128, "max_memory": "4GB", "device": "cpu",
                    "layout": "auto", "calibrate_weights": False}
CONVERT_REQUIRED = ("ann", "data", "mean", "std")


def _explicit_options(parser: argparse.ArgumentParser, argv: list[str]) -> set[str]:
    """The convert options given on the command line (not defaults)."""
    probe = argparse.ArgumentParser(add_help=False)
    for action in parser._actions:  # argparse offers no public copy of an action
        if isinstance(action, argparse._HelpAction):
            continue
        kwargs = {"dest": action.dest, "default": argparse.SUPPRESS}
        kwargs.update({"action": "store_true"} if action.nargs == 0 else {"nargs": action.nargs})
        if action.option_strings:
            probe.add_argument(*action.option_strings, **kwargs)
        else:
            probe.add_argument(action.dest, default=argparse.SUPPRESS, nargs="?")
    given, _ = probe.parse_known_args(argv)
    return set(vars(given))


def _effective_convert_config(args: argparse.Namespace) -> dict:
    """Defaults < config file < command line."""
    values = {key: getattr(args, key) for key in CONVERT_REQUIRED + tuple(CONVERT_DEFAULTS)}
    if args.config:
        stored = load_config(args.config)
        unknown = set(stored) - set(values)
        if unknown:
            raise ConfigError(f"{args.config}: unknown convert option(s) {', '.join(sorted(unknown))}; "
                              f"known: {', '.join(sorted(values))}")
        base = Path(args.config).resolve().parent
        for key, value in stored.items():
            if key not in args.explicit:
                if key in ("ann", "data") and isinstance(value, str):
                    value = os.fspath(base / value)  # paths in a config file are relative to that file
                values[key] = value
    missing = [key for key in CONVERT_REQUIRED if values.get(key) in (None, "")]
    if missing:
        raise ConfigError("convert needs " + ", ".join("ANN.onnx" if k == "ann" else f"--{k}" for k in missing) +
                          " (on the command line or in the --config file)")
    for key in ("mean", "std"):
        values[key] = parse_floats(values[key], key)
    values["ann"] = os.path.abspath(os.fspath(values["ann"]))  # reproducible from another folder
    values["data"] = os.path.abspath(os.fspath(values["data"]))
    for key in ("calib", "calib_timesteps", "seed", "batch_size"):
        if not isinstance(values[key], int) or isinstance(values[key], bool):
            raise ConfigError(f"{key} must be an integer, not {values[key]!r}")
    return dict(sorted(values.items()))


def cmd_convert(args: argparse.Namespace) -> int:
    config = _effective_convert_config(args)
    if not args.output:
        raise ConfigError("convert needs -o/--output SNN.onnx")
    options = ConversionOptions(threshold=config["threshold"], reset=config["reset"], maxpool=config["maxpool"],
                                calibration_timesteps=config["calib_timesteps"], batch_size=config["batch_size"],
                                max_memory=config["max_memory"], layout=config["layout"],
                                calibrate_weights=config["calibrate_weights"])
    with calibration_progress(args):
        conversion = convert(config["ann"], args.output, config["data"], config["mean"], config["std"],
                             calibration_images=config["calib"], options=options, seed=config["seed"],
                             device=config["device"],
                             # the effective configuration, so that `convert --config SNN.onnx` can repeat it
                             metadata={CONFIG_KEY: json.dumps(config, sort_keys=True)})
    if conversion.rank:  # torchrun: every rank holds the same conversion; rank 0 wrote it and reports it
        return 0
    if not args.quiet:
        for note in conversion.notes:
            print(f"note: {note}", file=sys.stderr)
    if args.json:
        print(json.dumps({"output": os.fspath(args.output), "spiking_layers": len(conversion.thresholds),
                          "config": config, "notes": conversion.notes}, indent=2))
    _say(args, f"wrote {args.output}: {len(conversion.thresholds)} spiking layers, threshold {config['threshold']}, "
               f"reset {config['reset']}")
    return 0


def add_convert(sub) -> None:
    p = sub.add_parser(
        "convert", help="convert an ANN ONNX file into a spiking ONNX file", formatter_class=HelpFormatter,
        description="Convert an ANN into a spiking ONNX file, calibrating thresholds on train images.",
        epilog="example:\n  onnx2snn convert resnet20.onnx -o snn.onnx --data ../shared/data/cifar10 \\\n"
               "      --mean 0.485,0.456,0.406 --std 0.229,0.224,0.225 --threshold percentile:99.9\n"
               "  onnx2snn convert --config conv.toml -o snn.onnx      # options from a TOML file\n"
               "  onnx2snn convert --config snn.onnx -o again.onnx     # repeat the conversion that made snn.onnx\n\n"
               + EXIT_CODES)
    p.add_argument("ann", nargs="?", help="the ANN .onnx file (or `ann` in the --config file)")
    p.add_argument("-o", "--output", help="where to write the spiking .onnx file (required)")
    p.add_argument("--config", help="TOML file of convert options (keys as the long option names), or a spiking "
                                    ".onnx file whose stored configuration to repeat; flags given here override it")
    p.add_argument("--data", help="data set folder, calibration uses its train split (required)")
    p.add_argument("--mean", help="per-channel input mean, e.g. 0.485,0.456,0.406 (required)")
    p.add_argument("--std", help="per-channel input std, e.g. 0.229,0.224,0.225 (required)")
    p.add_argument("--threshold", default=CONVERT_DEFAULTS["threshold"],
                   help="auto | max | percentile:P | robust | spikenorm, optionally with +modifiers: "
                        "channel, vhalf, vopt, biascorr, potcorr, scale, signed, burst:G "
                        "(e.g. percentile:99.9+channel+vhalf+biascorr; see docs/low_latency.md)")
    p.add_argument("--reset", default=CONVERT_DEFAULTS["reset"], help="subtract (soft reset) | zero (hard reset)")
    p.add_argument("--maxpool", default=CONVERT_DEFAULTS["maxpool"], choices=["spiking", "average"],
                   help="spiking: MaxPool runs as a spiking max-pool gate (faithful); average: replace it by "
                        "AveragePool, which changes the network (a warning says so)")
    p.add_argument("--calib", type=int, default=CONVERT_DEFAULTS["calib"],
                   help="calibration images from the train split")
    p.add_argument("--calib-timesteps", type=int, default=CONVERT_DEFAULTS["calib_timesteps"],
                   help="timesteps the calibration simulates: spikenorm's horizon, and the latency T that "
                        "auto and the calibrated methods target (auto scores T/4, T/2 and T)")
    p.add_argument("--seed", type=int, default=CONVERT_DEFAULTS["seed"], help="which calibration images are drawn")
    p.add_argument("--batch-size", type=int, default=CONVERT_DEFAULTS["batch_size"],
                   help="calibration images per batch (shrunk to fit --max-memory)")
    p.add_argument("--max-memory", default=CONVERT_DEFAULTS["max_memory"],
                   help="memory budget, e.g. 4GB: batches shrink to fit, or it fails before allocating")
    p.add_argument("--device", default=CONVERT_DEFAULTS["device"], help="torch device for calibration: cpu | cuda")
    p.add_argument("--layout", default=CONVERT_DEFAULTS["layout"], choices=["auto", "nchw", "nhwc"],
                   help="the model's input layout: auto reads it from the graph; nhwc for Keras/tf2onnx models")
    p.add_argument("--calibrate-weights", action=argparse.BooleanOptionalAction, default=False,
                   help="also fit each layer's Conv/Gemm weights and biases so that the SNN's rates match the "
                        "ANN on the calibration images (layer-wise reconstruction; soft reset only; slower; "
                        "see docs/low_latency.md)")
    p.add_argument("--json", action="store_true", help="print a JSON summary (output file, effective config) on stdout")
    p.add_argument("--progress", action="store_true",
                   help="show the bar over the calibrated layers even when stderr is not a terminal")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors (no bar, no per-layer lines)")
    p.set_defaults(run=cmd_convert, parser=p)


# -- evaluate ----------------------------------------------------------------------------------

def _run_label(result, path: str) -> str:
    reset = {"subtract": "soft reset", "zero": "hard reset"}.get(result.settings.get("reset"), "reset ?")
    return f"{Path(path).name} ({result.settings.get('threshold_method')}, {reset})"


def _print_stats(args, label: str, result) -> None:
    stats = result.statistics
    rows = []
    for layer in stats.layers:
        rows.append([layer.name, f"{layer.neurons:,}", f"{layer.rate:.4f}", f"{layer.spikes:,.0f}",
                     f"{layer.fanout:.1f}", f"{layer.sops:,.0f}", f"{layer.ann_macs:,.0f}",
                     f"{layer.sops / layer.ann_macs:.2f}" if layer.ann_macs else "-"])
    energy = stats.energy_uj()
    lines = [f"spike statistics of {label}: {stats.images} images, T={stats.timesteps} (per image)"]
    lines += table(["neuron layer", "neurons", "rate", "spikes", "fan-out", "SOPs", "ANN MACs", "SOPs/MACs"], rows,
                   right=set(range(1, 8)))
    lines.append(f"total: firing rate {stats.rate:.4f} spikes/neuron/step, {stats.spikes:,.0f} spikes, "
                 f"{stats.sops:,.0f} synaptic ops + {stats.static_macs:,} MACs of the analog first layer(s); "
                 f"ANN {stats.ann_macs:,} MACs")
    lines.append(f"energy per image: SNN {energy['snn']:.2f} µJ vs ANN {energy['ann']:.2f} µJ "
                 f"({stats.costs['accumulate_pj']:g} pJ/accumulate, {stats.costs['mac_pj']:g} pJ/MAC; "
                 "Horowitz 2014, 45 nm)")
    lines.append("")
    lines += table(["T", "accuracy", "SOPs/image", "SOPs/ANN MACs", "energy µJ"],
                   [[str(t), f"{100 * result.snn_accuracy[t]:.2f}%", f"{sops:,.0f}", f"{sops / stats.ann_macs:.3f}",
                     f"{stats.energy_uj(t)['snn']:.2f}"] for t, sops in sorted(stats.sops_by_t.items())
                    if t in result.snn_accuracy], right={1, 2, 3, 4})
    _say(args, "\n".join(lines))


def cmd_evaluate(args: argparse.Namespace) -> int:
    costs = load_costs(args.costs)
    traces = parse_traces(args.trace or [])
    stats = args.stats or bool(args.plot) or bool(traces)
    to_file = args.json not in (None, "-")
    if to_file and len(args.snn) > 1:
        raise ConfigError("--json FILE takes one spiking model; with several, use --json (stdout) or --plot")
    results = []
    for path in args.snn:
        checkpoint = Path(str(args.json) + ".partial") if to_file else None
        result = evaluate(path, args.data, split=args.split, timesteps=timestep_list(args.T), limit=args.limit,
                          ann_path=args.ann, device=args.device, batch_size=args.batch_size, mean=args.mean,
                          std=args.std, checkpoint=checkpoint, count_spikes=args.spikes,
                          progress=_progress_wanted(args), max_memory=args.max_memory, stats=stats,
                          traces=traces, costs=costs, layout=args.layout, precision=args.precision,
                          fused=args.fuse_neurons)
        results.append((path, result))
        if result.rank:  # torchrun: every rank holds the summed result; rank 0 reports it
            continue
        ann = f"{100 * result.ann_accuracy:.2f}%" if result.ann_accuracy is not None else "n/a"
        lines = ([""] if len(results) > 1 else []) + [f"{path}: images: {result.n}   ANN: {ann}"]
        lines += [f"T={t:<5d} SNN: {100 * accuracy:.2f}%" for t, accuracy in sorted(result.snn_accuracy.items())]
        if result.spikes_per_image is not None:
            lines.append(f"spikes per image over T={max(result.snn_accuracy)}: {result.spikes_per_image:.0f}")
        _say(args, "\n".join(lines))
        if args.stats:
            _print_stats(args, _run_label(result, path), result)
    if results[0][1].rank:
        return 0
    written = []
    if to_file:
        atomic_write_text(args.json, json.dumps(results[0][1].to_json(), indent=2) + "\n")
        Path(str(args.json) + ".partial").unlink(missing_ok=True)
        written.append(args.json)
    if args.plot:
        written += evaluation_plots([(_run_label(r, p), r) for p, r in results], Path(args.plot))
    if args.json == "-":
        reports = [r.to_json() for _, r in results]
        print(json.dumps(reports[0] if len(reports) == 1 else {"runs": reports}, indent=2))
    if written:
        _say(args, "wrote " + ", ".join(map(str, written)))
    return 0


def add_evaluate(sub) -> None:
    p = sub.add_parser(
        "evaluate", help="accuracy of a spiking model against timesteps (and spike statistics)",
        formatter_class=HelpFormatter,
        description="Accuracy of spiking models against timesteps, next to the ANN; --stats adds firing rates,\n"
                    "synaptic operations and an energy estimate (docs/tools.md).",
        epilog="examples:\n  onnx2snn evaluate snn.onnx --data ../shared/data/cifar10 -T 16,32,64 --limit 200 "
               "--ann ann.onnx\n"
               "  onnx2snn evaluate snn.onnx --data DIR -T 8,16,32 --limit 100 --stats --plot runs/plots \\\n"
               "      --trace /Relu:0,5\n"
               "  onnx2snn evaluate soft.onnx hard.onnx --data DIR --plot runs/plots   # soft vs hard reset\n\n"
               + EXIT_CODES)
    p.add_argument("snn", nargs="+", help="the spiking .onnx file(s) (several: compared in --plot)")
    p.add_argument("--data", required=True,
                   help="data set folder: DIR/{train,test}/<class>/*.png|jpg or CIFAR-10 batches")
    p.add_argument("--split", default="test", choices=["train", "test"], help="which split to evaluate on")
    p.add_argument("-T", default="16,32,64,128,256", help="timesteps, e.g. 16,32,64 (one simulation to the largest)")
    p.add_argument("--limit", type=int, help="a class-balanced subset of N images (default: the whole split)")
    p.add_argument("--ann", help="the source ANN, measured with onnxruntime on the same images")
    p.add_argument("--device", default="cpu", help="torch device: cpu | cuda")
    p.add_argument("--json", nargs="?", const="-", metavar="FILE",
                   help="write the results as JSON to FILE (resumes from FILE.partial if present), or to stdout "
                        "when FILE is left out")
    p.add_argument("--mean", help="override the stored input mean")
    p.add_argument("--std", help="override the stored input std")
    p.add_argument("--batch-size", type=int, default=250,
                   help="images per simulation batch (shrunk to fit --max-memory)")
    p.add_argument("--max-memory", default="4GB",
                   help="memory budget, e.g. 4GB: batches shrink to fit, or it fails before allocating")
    p.add_argument("--precision", default="float32", choices=["float32", "bfloat16", "float16"],
                   help="dtype of the synaptic ops (spikes are exact in each; bfloat16 is ~1.6x faster on CPU, "
                        "docs/runtime.md)")
    p.add_argument("--fuse-neurons", action="store_true",
                   help="run each neuron step as one kernel compiled by torch.compile: the same results, ~1.8x "
                        "faster in bfloat16 at batch 100 on CPU; compiles for some seconds first and needs a C++ "
                        "compiler (without one it warns and runs unfused)")
    p.add_argument("--spikes", action="store_true", help="also count spikes per image")
    p.add_argument("--stats", action="store_true",
                   help="per-layer firing rates, synaptic operations, energy and accuracy against SOPs over T "
                        "(such a run starts from the beginning: per-neuron counts are not checkpointed)")
    p.add_argument("--costs", help="TOML file with accumulate_pj / mac_pj energy costs (defaults: 0.9 / 4.6 pJ)")
    p.add_argument("--plot", metavar="DIR", help="write accuracy, firing-rate and trace plots (PNG + JSON data) here")
    p.add_argument("--trace", action="append", metavar="LAYER:I,J",
                   help="record the membrane potential of neurons I, J (flat indices) of LAYER for the first image; "
                        "repeatable")
    p.add_argument("--layout", choices=["nchw", "nhwc"], help="override the input layout stored in the model")
    p.add_argument("--progress", action="store_true", help="show a progress bar even when stderr is not a terminal")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar and no text output (errors only)")
    p.set_defaults(run=cmd_evaluate)


# -- inspect, ops, demo --------------------------------------------------------------------------

def cmd_inspect(args: argparse.Namespace) -> int:
    if args.diff:
        text = describe_diff(*args.diff, as_json=args.json)
    elif args.model:
        text = describe(args.model, as_json=args.json)
    else:
        raise ConfigError("inspect needs MODEL.onnx, or --diff ANN.onnx SNN.onnx")
    if args.json or not args.quiet:
        print(text)
    return 0


def add_inspect(sub) -> None:
    p = sub.add_parser(
        "inspect", help="one row per layer of an ANN or spiking ONNX graph", formatter_class=HelpFormatter,
        description="Per layer: op, output shape, parameters, MACs; the neuron of a spiking file; for an ANN\n"
                    "what normalization does to each node and why an op is unsupported.",
        epilog="examples:\n  onnx2snn inspect resnet20.onnx\n  onnx2snn inspect --diff resnet20.onnx snn.onnx\n\n"
               + EXIT_CODES)
    p.add_argument("model", nargs="?", help="the ANN or spiking .onnx file")
    p.add_argument("--diff", nargs=2, metavar=("ANN", "SNN"), help="line an ANN and its spiking file up")
    p.add_argument("--json", action="store_true", help="the same data as JSON")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing (the exit status says whether it loads)")
    p.set_defaults(run=cmd_inspect)


def cmd_ops(args: argparse.Namespace) -> int:
    if args.json:
        print(json.dumps([{"domain": c.domain or "ai.onnx", "op": c.op_type, "since": c.since, "notes": c.notes}
                          for c in registered()], indent=2))
    elif not args.quiet:
        print(ops_table(), end="")
    return 0


def add_ops(sub) -> None:
    p = sub.add_parser("ops", help="print the table of supported ONNX ops", formatter_class=HelpFormatter,
                       epilog="example:\n  onnx2snn ops > docs/ops.md\n\n" + EXIT_CODES)
    p.add_argument("--json", action="store_true", help="the op list as JSON")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing")
    p.set_defaults(run=cmd_ops)


def cmd_demo(args: argparse.Namespace) -> int:
    report = run_demo(limit=args.limit, timesteps=timestep_list(args.T), out_dir=Path(args.out), device=args.device,
                      model=args.model, say=lambda text: _say(args, text), progress=_progress_wanted(args))
    if args.json:
        print(json.dumps(report, indent=2))
    return 0


def add_demo(sub) -> None:
    p = sub.add_parser("demo", help="convert the default model and compare ANN and SNN accuracy",
                       formatter_class=HelpFormatter,
                       epilog="examples:\n  onnx2snn demo\n  onnx2snn demo --model resnet20 --limit 100 -T 32,64\n\n"
                              + EXIT_CODES)
    p.add_argument("--limit", type=int, default=200, help="class-balanced test images (200: about 1 min of CPU time)")
    p.add_argument("-T", default="16,32,64,128", help="timesteps to report")
    p.add_argument("--out", default="runs/demo", help="folder for the spiking models, the plot and the JSON report")
    p.add_argument("--device", default="cpu", help="torch device: cpu | cuda")
    p.add_argument("--model", default="small_cnn",
                   help="small_cnn (built in) | resnet20 (../shared) | path to an ANN .onnx with stored mean/std")
    p.add_argument("--json", action="store_true", help="print the report as JSON on stdout (text goes to stderr)")
    p.add_argument("--progress", action="store_true", help="show progress bars even when stderr is not a terminal")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars and no text output")
    p.set_defaults(run=cmd_demo)


COMMANDS = [add_convert, add_evaluate, add_inspect, add_ops, add_demo, add_export, add_import]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # usage errors: one line, exit status 2 like every other bad input
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="onnx2snn", description="Convert ONNX ANNs into spiking networks.",
                     formatter_class=HelpFormatter,
                     epilog="example:\n  onnx2snn demo\n  onnx2snn <command> --help\n\n" + EXIT_CODES)
    parser.add_argument("--version", action="version", version=f"onnx2snn {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what the converter does")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    if getattr(args, "parser", None) is not None:  # convert: which options the command line set
        args.explicit = _explicit_options(args.parser, argv[argv.index(args.command) + 1:])
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    try:
        return args.run(args)
    except Onnx2SnnError as error:
        print(f"onnx2snn: error: {error_line(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("onnx2snn: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and the like: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
