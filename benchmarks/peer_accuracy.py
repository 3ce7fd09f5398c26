"""The figure a user cares about (issue 13), for us and the peers: the lowest T whose accuracy is within
0.5 points of the ANN, and the images/s at that T, measured side by side.

    python benchmarks/peer_accuracy.py --snn AUTO.onnx [--limit 500] [--calib 1000] [--json OUT.json]
        [--resume] [--no-timing]

- Accuracy: one class-balanced subset of the test split (``--limit``: the images ``onnx2snn evaluate
  --limit`` takes) for everyone. Ours: ``onnx2snn evaluate SNN --ann ANN -T ...`` on that subset (a
  subprocess, so this is the CLI's own figure). The peers convert the torch ResNet-20 built from the same
  ONNX weights (benchmarks/peers.py) the way their docs recommend, with data-based normalization from
  ``--calib`` TRAIN images: SpikingJelly ``Converter(RateCodingRecipe(mode))`` for each ``--sj-modes``,
  Sinabs ``normalize_weights`` (``--sinabs-percentile``) then ``from_model``. Each peer is simulated once
  to the largest T; the accuracy at every smaller T comes from the output summed over the first T steps.
- Lowest T: the first evaluated T within 0.5 points of the ANN's accuracy on the same subset (``None``
  when none is: then the best accuracy and the images/s at the largest T, a lower bound on what the
  peer would need).
- Images/s at each one's lowest T: the first ``--time-batch`` images of the subset, ``--threads``
  threads, interleaved rounds, minima (runtime.py's machinery); ours in float32 (the precision the
  accuracy was measured in) and bfloat16.

The JSON is rewritten after every method; ``--resume`` skips the methods already in it.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import runtime as bench  # noqa: E402  (benchmarks/runtime.py: MEAN/STD, timing helpers, lowest-T rule)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ann", default=str(ROOT.parent / "shared" / "models" / "resnet20_cifar10.onnx"))
    p.add_argument("--snn", required=True, help="our spiking ONNX file (e.g. converted with --threshold auto)")
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "cifar10"))
    p.add_argument("--limit", type=int, default=500, help="class-balanced test subset size")
    p.add_argument("--calib", type=int, default=1000, help="TRAIN images for the peers' normalization")
    p.add_argument("--calib-batch", type=int, default=100, help="SpikingJelly's calibration batch")
    p.add_argument("-T", "--timesteps", default="8,16,32,64,128,256")
    p.add_argument("--sj-modes", default="99.9%,max", help="SpikingJelly RateCodingRecipe modes ('' for none)")
    p.add_argument("--sinabs-percentile", default="99.99", help="'' to skip Sinabs")
    p.add_argument("--batch", type=int, default=50, help="images per peer simulation batch (accuracy)")
    p.add_argument("--block", type=int, default=32, help="Sinabs: timesteps folded into one call")
    p.add_argument("--time-batch", type=int, default=100)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--json", help="write the results here (rewritten after every method)")
    p.add_argument("--resume", action="store_true", help="reuse the methods already in --json")
    p.add_argument("--no-timing", action="store_true")
    return p.parse_args(argv)


def summarize(accuracy: dict[int, float], ann: float) -> dict:
    """Lowest T within 0.5 points of ``ann`` (fractions in, percents out), or the best accuracy reached."""
    t = bench.first_t_within(accuracy, ann)
    best_t = max(accuracy, key=lambda k: (accuracy[k], -k))
    return {"accuracy": {str(k): round(100 * a, 2) for k, a in sorted(accuracy.items())},
            "lowest_T_within_0.5": t, "accuracy_at_lowest_T": round(100 * accuracy[t], 2) if t else None,
            "best_accuracy": round(100 * accuracy[best_t], 2), "best_T": best_t,
            "reached": t is not None}


def our_accuracy(args, timesteps: list[int]) -> dict:
    """``onnx2snn evaluate`` on the same subset: our accuracy over T and the ANN's (onnxruntime)."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "eval.json"
        cmd = [sys.executable, "-m", "onnx2snn", "evaluate", args.snn, "--data", args.data, "--limit",
               str(args.limit), "-T", ",".join(map(str, timesteps)), "--ann", args.ann, "--json", str(out),
               "--mean", bench.MEAN, "--std", bench.STD, "-q"]
        env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(args.threads)}
        start = time.perf_counter()
        subprocess.run(cmd, check=True, cwd=ROOT, env=env)
        report = json.loads(out.read_text())
    report["seconds_here"] = round(time.perf_counter() - start, 1)
    report["command"] = "python -m onnx2snn " + " ".join(cmd[3:])
    return report


def peer_accuracy(simulate, x, labels, timesteps: list[int], batch: int) -> dict[int, float]:
    """``simulate(chunk) -> {T: summed logits}`` over the subset in chunks; the accuracy per T."""
    correct = dict.fromkeys(timesteps, 0)
    for start in range(0, len(x), batch):
        sums = simulate(x[start:start + batch])
        for t in timesteps:
            correct[t] += int((sums[t].argmax(1) == labels[start:start + batch]).sum())
    return {t: c / len(x) for t, c in correct.items()}


def build_peers(args, torch_ann, calibration):
    """{method: {description, simulate(x, timesteps, block) -> {T: logits}[, rescaled_ann]}} per requested peer."""
    import peers as peer_lib

    available = peer_lib.available()
    built = {}
    for mode in [m for m in args.sj_modes.split(",") if m] if "spikingjelly" in available else []:
        snn = peer_lib.spikingjelly_snn(torch_ann, calibration, mode, batch=args.calib_batch)
        built[f"spikingjelly_{mode.rstrip('%').lower()}"] = {
            "description": f"SpikingJelly {available['spikingjelly']} Converter(RateCodingRecipe(mode='{mode}')), "
                           f"{len(calibration)} train images in batches of {args.calib_batch}, single-step",
            "simulate": lambda x, ts, block, snn=snn: peer_lib.spikingjelly_prefix_logits(snn, x, ts)}
    if args.sinabs_percentile and "sinabs" in available:
        percentile = float(args.sinabs_percentile)
        normalized = peer_lib.sinabs_normalized(torch_ann, calibration, percentile)
        cache = {}

        def simulate(x, ts, block, normalized=normalized):
            block = min(block, max(ts))  # from_model unfolds time with a fixed number of steps per call
            if block not in cache:
                cache[block] = peer_lib.sinabs_snn(normalized, block)
            return peer_lib.sinabs_prefix_logits(cache[block], x, ts, block)
        built[f"sinabs_p{args.sinabs_percentile}"] = {
            "description": f"Sinabs {available['sinabs']} normalize_weights(percentile={percentile}) on "
                           f"{len(calibration)} train images, then from_model (defaults: IAF, MultiSpike, "
                           "subtractive reset, membrane floor -1)",
            "simulate": simulate, "rescaled_ann": normalized,
            # the utility as is (bias scaled like the weights): what the bias fix in peers.py avoids
            "rescaled_ann_as_is": peer_lib.sinabs_normalized(torch_ann, calibration, percentile, bias_fix=False)}
    return built, available


def write(args, result: dict) -> None:
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


def measure_accuracy(args, result: dict, timesteps, x, labels, torch_ann, calibration) -> dict:
    import torch

    methods = result.setdefault("methods", {})
    if "onnx2snn_auto" not in methods:
        report = our_accuracy(args, timesteps)
        result["ann_accuracy"] = round(100 * float(report["ann_accuracy"]), 2)
        methods["onnx2snn_auto"] = {
            "description": f"onnx2snn {report.get('threshold_method') or report.get('method')} "
                           f"({os.path.basename(args.snn)}), onnx2snn evaluate",
            "command": report["command"], "seconds": report["seconds_here"],
            "model_sha256": report.get("model_sha256"),
            "raw": {int(t): float(a) for t, a in report["snn_accuracy"].items()}}
        write(args, result)
    ann = result["ann_accuracy"] / 100
    with torch.inference_mode():
        result["ann_torch_accuracy"] = round(100 * float((torch_ann(x).argmax(1) == labels).float().mean()), 2)
    built, available = build_peers(args, torch_ann, calibration)
    result["peers"] = available
    for name, entry in built.items():
        if name in methods:
            continue
        simulate = entry["simulate"]
        start = time.perf_counter()
        accuracy = peer_accuracy(lambda chunk, run=simulate: run(chunk, timesteps, args.block), x, labels, timesteps,
                                 args.batch)
        methods[name] = {"description": entry["description"], "seconds": round(time.perf_counter() - start, 1),
                         "raw": accuracy}
        if "rescaled_ann" in entry:  # must classify as the ANN does (ReLU nets are scale-equivariant)
            with torch.inference_mode():
                for key in ("rescaled_ann", "rescaled_ann_as_is"):
                    methods[name][f"{key}_accuracy"] = round(
                        100 * float((entry[key](x).argmax(1) == labels).float().mean()), 2)
        print(f"{name}: {methods[name]['seconds']} s, " + ", ".join(
            f"T={t}: {100 * a:.2f}" for t, a in accuracy.items()), flush=True)
        write(args, result)
    for entry in methods.values():
        raw = {int(t): float(a) for t, a in entry.pop("raw").items()} if "raw" in entry else None
        if raw is not None:
            entry.update(summarize(raw, ann))
    write(args, result)
    print(f"ANN {result['ann_accuracy']}%", flush=True)
    return built


def measure_speed(args, result: dict, x, built) -> None:
    """Images/s of each method at its lowest T (the largest T where it never gets there), side by side."""
    import onnxruntime as ort
    import torch

    from onnx2snn.runtime import fast_layout, load

    t_max = max(int(t) for t in args.timesteps.split(","))
    xb = x[:args.time_batch]
    xd = fast_layout(xb)
    net = load(args.snn).eval().to(memory_format=torch.channels_last)
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = args.threads, 1
    session = ort.InferenceSession(args.ann, options, providers=["CPUExecutionProvider"])
    feed, xn = session.get_inputs()[0].name, xb.numpy()

    def ours(precision, t):
        def run():
            net.set_precision(precision)
            return net.simulate(xd, t)
        return run

    runs, at_t = {"ann_onnxruntime": lambda: session.run(None, {feed: xn})}, {}
    for name, entry in result["methods"].items():
        t = entry["lowest_T_within_0.5"] or t_max
        at_t[name] = t
        if name == "onnx2snn_auto":
            runs[f"{name}_float32"] = ours("float32", t)
            runs[f"{name}_bfloat16"] = ours("bfloat16", t)
        elif name in built:
            simulate = built[name]["simulate"]
            runs[name] = lambda simulate=simulate, t=t: simulate(xb, [t], args.block)
    for name, fn in runs.items():  # warm-up on a few steps: first-call allocations, kernel selection
        if name.startswith("onnx2snn"):
            net.set_precision(name.rsplit("_", 1)[1])
            net.simulate(xd, 4)
        elif name == "ann_onnxruntime":
            fn()
        else:
            built[name]["simulate"](xb[:10], [8], 8)
    times: dict[str, float] = {}
    for round_index in range(args.rounds):
        for name, fn in runs.items():
            bench.best_of(times, name, bench.timed(fn))
        print(f"round {round_index + 1}/{args.rounds}: " + ", ".join(f"{k}={v:.2f}" for k, v in times.items()),
              flush=True)
    result["timing"] = {"batch": len(xb), "threads": args.threads, "rounds": args.rounds,
                        "load_average_after": os.getloadavg(), "seconds": {k: round(v, 3) for k, v in times.items()}}
    for name, entry in result["methods"].items():
        entry["timed_T"] = at_t[name]
        keys = [k for k in runs if k == name or k.startswith(name + "_")]
        for key in keys:
            suffix = key[len(name):].lstrip("_") or "images_per_s"
            label = "images_per_s" if suffix == "images_per_s" else f"images_per_s_{suffix}"
            entry[label] = round(len(xb) / times[key], 2)
    result["ann_images_per_s"] = round(len(xb) / times["ann_onnxruntime"], 1)


def main(argv=None) -> dict:
    args = parse_args(argv)
    import peers as peer_lib
    import torch

    from onnx2snn.data import load_split, parse_floats, to_tensor

    torch.set_num_threads(args.threads)
    timesteps = sorted(int(t) for t in args.timesteps.split(","))
    if max(timesteps) % min(args.block, max(timesteps)):
        raise SystemExit("--block must divide the largest T")
    mean, std = parse_floats(bench.MEAN, "mean"), parse_floats(bench.STD, "std")
    test = load_split(args.data, "test", limit=args.limit)
    x, labels = to_tensor(test.images, mean, std), torch.from_numpy(test.labels)
    calibration = to_tensor(load_split(args.data, "train", limit=args.calib, seed=0).images, mean, std)
    torch_ann = peer_lib.resnet20_from_onnx(args.ann)

    result = {}
    if args.resume and args.json and Path(args.json).is_file():
        result = json.loads(Path(args.json).read_text())
        for entry in result.get("methods", {}).values():  # re-summarize from the stored percentages
            if "raw" not in entry and "accuracy" in entry:
                entry["raw"] = {int(t): a / 100 for t, a in entry["accuracy"].items()}
    result.update({"model": os.path.basename(args.ann), "snn": os.path.basename(args.snn), "data": args.data,
                   "split": "test", "images": len(x), "class_counts": np.bincount(test.labels).tolist(),
                   "calibration": f"{len(calibration)} train images (class-balanced, seed 0)",
                   "timesteps": timesteps, "within": "0.5 points of the ANN on the same images",
                   "normalization": {"mean": bench.MEAN, "std": bench.STD}, "torch": torch.__version__})
    built = measure_accuracy(args, result, timesteps, x, labels, torch_ann, calibration)
    if not args.no_timing:
        measure_speed(args, result, x, built)
    write(args, result)
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
