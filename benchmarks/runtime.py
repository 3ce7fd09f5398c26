"""Runtime benchmark (issue 13): the SNN against T passes of its ANN, against the peer simulators,
at batch 1, and peak memory against T. Every figure comes from one run, on the same batch of
test images, thread count and device; rounds are interleaved and the minimum is reported (the
machine is shared and noisy).

    python benchmarks/runtime.py [--batch 100] [--threads 1] [--rounds 3] [--json OUT.json]
        [--snn SNN.onnx]   # default: convert the shared ResNet-20 with percentile:99.9, 64 images

- ANN time: the faster of onnxruntime and torch with BatchNorm folded (the SNN's own graph with
  every neuron as its ReLU: ``SpikingNetwork.analog``), float32. ``ann_torch_bf16_s`` is the same
  torch ANN in bfloat16, for the precision-matched ratio.
- SNN time at T=32 and T=64 in float32 and in bfloat16 (synaptic ops only; spikes are exact), each
  also with the neurons fused (``+fused``: ``SpikingNetwork.fuse_neurons``, a torch.compile kernel,
  the same results); ``ratio_T64`` uses the fastest of the variants that --precision allows.
- Peers (only when installed through the ``bench`` extra): SpikingJelly ann2snn (single- and
  multi-step) and Sinabs ``from_model``, on a torch ResNet-20 built from the same ONNX weights.
- Peak RSS at T=32 and T=256 (streaming: blocks of timesteps), each in its own process.
- ``ratio_T{t}_vs_ann_x{T}``: the same ratio against onnxruntime timed over T passes in a row (as long
  as the SNN run, so equally exposed to a shared machine's load; on an idle machine both agree).
- Batch 1: ms per timestep of ``simulate`` and of the streaming ``step`` (64 steps) against the
  ANN's latency (64 calls in a row), minima over at least 5 rounds; ``--batch1-only`` times just these.
- With ``--accuracy EVAL.json`` (what ``onnx2snn evaluate --json`` wrote for the same network, ideally
  on all 10,000 test images): the lowest T whose accuracy is within 0.5 points of the ANN, and the
  images/s at that T (timed here, float32: the precision the accuracy was measured in). The peers'
  figure, beside ours on one test subset: benchmarks/peer_accuracy.py.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

MEAN, STD = "0.485,0.456,0.406", "0.229,0.224,0.225"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ann", default=str(ROOT.parent / "shared" / "models" / "resnet20_cifar10.onnx"))
    p.add_argument("--snn", help="spiking ONNX file (default: converted here with percentile:99.9)")
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "cifar10"))
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--timesteps", default="32,64")
    p.add_argument("--precision", default="float32,bfloat16,float32+fused,bfloat16+fused",
                   help="SNN variants to time: a dtype, '+fused' for SpikingNetwork.fuse_neurons (torch.compile)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-peers", action="store_true")
    p.add_argument("--no-memory", action="store_true")
    p.add_argument("--json", help="write the results here")
    p.add_argument("--batch1-only", action="store_true", help="only the batch-1 figures (seconds, not minutes)")
    p.add_argument("--accuracy", help="evaluate --json output of --snn: report images/s at the lowest T "
                                      "within 0.5 points of the ANN")
    p.add_argument("--rss-child", type=int, help=argparse.SUPPRESS)  # internal: one memory measurement
    return p.parse_args(argv)


def best_of(times: dict, name: str, seconds: float) -> None:
    times[name] = min(times.get(name, float("inf")), seconds)


def timed(fn) -> float:
    import torch
    start = time.perf_counter()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start


def load_batch(args, n: int):
    from onnx2snn.data import load_split, parse_floats, to_tensor
    images = load_split(args.data, "test", limit=n)
    return to_tensor(images.images, parse_floats(MEAN, "mean"), parse_floats(STD, "std"))


def ensure_snn(args) -> str:
    if args.snn:
        return args.snn
    out = Path(tempfile.gettempdir()) / "onnx2snn_bench" / "resnet20_p999.onnx"
    if not out.is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "onnx2snn", "convert", args.ann, "-o", str(out), "--data", args.data,
                        "--mean", MEAN, "--std", STD, "--threshold", "percentile:99.9", "--calib", "64"],
                       check=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    return str(out)


def _reset_peak_rss() -> None:
    """ru_maxrss survives fork+exec (a child would report its parent's peak): reset VmHWM."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def _peak_rss_mib() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_child(args) -> None:
    """One simulation to T in this fresh process; print the process's peak RSS in MiB."""
    _reset_peak_rss()
    import torch

    from onnx2snn.runtime import keep_freed_memory, load
    torch.set_num_threads(args.threads)
    keep_freed_memory()
    x = load_batch(args, args.batch)
    net = load(args.snn).eval()
    net.simulate(x, args.rss_child)
    print(_peak_rss_mib())


def peak_rss(args, snn: str, timesteps: int) -> float:
    cmd = [sys.executable, __file__, "--snn", snn, "--data", args.data, "--batch", str(args.batch),
           "--threads", str(args.threads), "--rss-child", str(timesteps)]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    return float(out.strip().splitlines()[-1])


ACCURACY_GAP = 0.005  # "within 0.5 points of the ANN"
B1_ROUNDS = 5  # batch-1 rounds are short: more of them for stabler minima


def sha256(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def first_t_within(accuracy: dict[int, float], ann: float, gap: float = ACCURACY_GAP) -> int | None:
    """The lowest T whose accuracy (a fraction) is at least ``ann - gap``; None when no T is."""
    close = sorted(t for t, a in accuracy.items() if a >= ann - gap - 1e-9)  # 1e-9: fractions of counts
    return close[0] if close else None


def lowest_t(path: str) -> dict:
    """The lowest evaluated T whose accuracy is within 0.5 points of the ANN, from evaluate's JSON."""
    report = json.loads(Path(path).read_text())
    ann = float(report["ann_accuracy"])
    accuracy = {int(t): float(a) for t, a in report["snn_accuracy"].items()}
    t = first_t_within(accuracy, ann)
    return {"source": os.path.basename(path), "images": report.get("n"), "model_sha256": report.get("model_sha256"),
            "method": report.get("threshold_method") or report.get("method"), "ann_accuracy": round(100 * ann, 2),
            "T": t, "snn_accuracy": round(100 * accuracy[t], 2) if t else None, "evaluated_T": sorted(accuracy)}


def batch1_latency(args, net, ann_call, x1, precisions: list[str]) -> dict:
    """Per-timestep latency at batch 1 of ``simulate`` (blocks) and of the streaming ``step``,
    against the ANN's (onnxruntime and torch, the faster counts), minima of interleaved rounds."""
    ann1 = {"ann_onnxruntime_b1_ms": ann_call, "ann_torch_b1_ms": lambda: net.analog(x1)}
    b1: dict[str, float] = {}
    net.set_precision("float32")
    for _ in range(max(args.rounds, B1_ROUNDS)):
        for name, fn in ann1.items():  # 64 calls in a row, like the 64 steps below: the same exposure to load
            best_of(b1, name, timed(lambda fn=fn: [fn() for _ in range(64)]) / 64 * 1e3)
        best_of(b1, "snn_simulate_b1_ms_per_step", timed(lambda: net.simulate(x1, 64)) / 64 * 1e3)
        if "bfloat16" in precisions:
            net.set_precision("bfloat16")
            best_of(b1, "snn_simulate_b1_bf16_ms_per_step", timed(lambda: net.simulate(x1, 64)) / 64 * 1e3)
            net.set_precision("float32")

        def stream():
            net.reset()
            for _ in range(64):
                net.step(x1)
        best_of(b1, "snn_step_b1_ms_per_step", timed(stream) / 64 * 1e3)
        if "bfloat16" in precisions:
            net.set_precision("bfloat16")
            best_of(b1, "snn_step_b1_bf16_ms_per_step", timed(stream) / 64 * 1e3)
            net.set_precision("float32")
    result = {"batch1": {k: round(v, 3) for k, v in b1.items()}}
    ann_b1 = min(b1["ann_onnxruntime_b1_ms"], b1["ann_torch_b1_ms"])
    result["batch1_step_over_ann"] = round(b1["snn_step_b1_ms_per_step"] / ann_b1, 2)
    result["batch1_simulate_over_ann"] = round(b1["snn_simulate_b1_ms_per_step"] / ann_b1, 2)
    if "snn_simulate_b1_bf16_ms_per_step" in b1:
        result["batch1_simulate_bf16_over_ann"] = round(b1["snn_simulate_b1_bf16_ms_per_step"] / ann_b1, 2)
        result["batch1_step_bf16_over_ann"] = round(b1["snn_step_b1_bf16_ms_per_step"] / ann_b1, 2)
    return result


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.rss_child:
        return rss_child(args)
    import onnxruntime as ort
    import torch

    from onnx2snn.runtime import fast_layout, keep_freed_memory, load

    torch.set_num_threads(args.threads)
    keep_freed_memory()
    snn_path = ensure_snn(args)
    timesteps = [int(t) for t in args.timesteps.split(",")]
    t_peer = min(timesteps)  # the peers and speedup_vs_best_peer use the lowest requested T
    lowest = lowest_t(args.accuracy) if args.accuracy else None
    if lowest and lowest["T"] and lowest["T"] not in timesteps:
        timesteps = sorted(timesteps + [lowest["T"]])
    precisions = [p for p in args.precision.split(",") if p]
    if args.batch1_only:  # batch 1 runs unfused
        precisions = [p for p in precisions if "+" not in p]
    device = torch.device(args.device)
    x = load_batch(args, args.batch)
    xd = fast_layout(x.to(device))
    net = load(snn_path).eval().to(device)
    net.to(memory_format=torch.channels_last)
    ann_bf16 = load(snn_path).eval().to(device).to(torch.bfloat16).to(memory_format=torch.channels_last)

    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(args.ann, options, providers=["CPUExecutionProvider"])
    feed = session.get_inputs()[0].name
    xn = x.numpy()

    if args.batch1_only:
        session.run(None, {feed: xn[:1]})  # warm-up, as below
        for precision in precisions:
            net.set_precision(precision)
            net.simulate(xd[:1], 4)
        result = {"model": os.path.basename(args.ann), "snn": os.path.basename(snn_path), "threads": args.threads,
                  "device": str(device), "torch": torch.__version__,
                  **batch1_latency(args, net, lambda: session.run(None, {feed: xn[:1]}), xd[:1], precisions)}
        print(json.dumps(result, indent=2))
        if args.json:
            Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
        return result

    t_max = max(timesteps)
    runs = {
        "ann_onnxruntime_s": lambda: session.run(None, {feed: xn}),
        # T passes in a row take as long as the SNN at T, so both see the same share of a shared
        # machine's load; the single-pass minimum above is the stricter reference
        f"ann_onnxruntime_x{t_max}_s": lambda: [session.run(None, {feed: xn}) for _ in range(t_max)],
        "ann_torch_s": lambda: net.analog(xd),
        "ann_torch_bf16_s": lambda: ann_bf16.analog(xd.to(torch.bfloat16)),
    }

    def use(variant: str) -> None:  # "bfloat16" or "bfloat16+fused"
        net.set_precision(variant.split("+")[0]).fuse_neurons(variant.endswith("+fused"))

    def snn_run(precision, t):
        def run():
            use(precision)
            return net.simulate(xd, t)
        return run
    for precision in precisions:
        for t in timesteps:
            runs[f"snn_{precision}_T{t}_s"] = snn_run(precision, t)

    peers = {}
    if not args.no_peers and device.type == "cpu":
        import peers as peer_lib
        peers = peer_lib.available()
        if peers:
            torch_ann = peer_lib.resnet20_from_onnx(args.ann)
            calibration = load_batch(args, 64)  # test images only time the peers; thresholds don't matter here
            if "spikingjelly" in peers:
                single = peer_lib.spikingjelly_runner(torch_ann, calibration, multi_step=False)
                multi = peer_lib.spikingjelly_runner(torch_ann, calibration, multi_step=True)
                runs[f"spikingjelly_single_T{t_peer}_s"] = lambda: single(x, t_peer)
                runs[f"spikingjelly_multi_T{t_peer}_s"] = lambda: multi(x, t_peer)
            if "sinabs" in peers:
                sinabs = peer_lib.sinabs_runner(torch_ann, args.batch, t_peer)
                runs[f"sinabs_T{t_peer}_s"] = lambda: sinabs(x, t_peer)
    if not peers:
        print("peers: not installed (pip install -e '.[bench]'); their figures are skipped", flush=True)

    for name, fn in runs.items():  # warm-up: first-call allocations and oneDNN kernel selection
        if not name.startswith("snn_"):
            fn()
    for precision in precisions:  # warm-up; the fused variants compile their kernel here
        use(precision)
        net.simulate(xd, 4)
    times: dict[str, float] = {}
    for round_index in range(args.rounds):
        for name, fn in runs.items():
            best_of(times, name, timed(fn))
        print(f"round {round_index + 1}/{args.rounds}: " + ", ".join(f"{k}={v:.3f}" for k, v in times.items()),
              flush=True)

    net.fuse_neurons(False)  # batch 1: the fused kernel does not pay on one image's small tensors
    batch1 = batch1_latency(args, net, lambda: session.run(None, {feed: xn[:1]}), xd[:1],
                            [p for p in precisions if "+" not in p])
    times[f"ann_onnxruntime_x{t_max}_s"] /= t_max  # per pass
    ann = min(times["ann_onnxruntime_s"], times["ann_torch_s"])
    result = {
        "model": os.path.basename(args.ann), "snn": os.path.basename(snn_path), "batch": args.batch,
        "threads": args.threads, "device": str(device), "rounds": args.rounds,
        "cpu": platform.processor() or platform.machine(), "torch": torch.__version__,
        "peers": peers, "times_s": {k: round(v, 4) for k, v in times.items()},
        "ann_s": round(ann, 4),
    }
    for t in timesteps:
        per_precision = {p: times[f"snn_{p}_T{t}_s"] for p in precisions}
        best_precision = min(per_precision, key=per_precision.get)
        result[f"ratio_T{t}"] = round(per_precision[best_precision] / (t * ann), 3)
        result[f"ratio_T{t}_precision"] = best_precision
        for p, s in per_precision.items():
            result[f"ratio_T{t}_{p}"] = round(s / (t * ann), 3)
        result[f"ratio_T{t}_vs_ann_x{t_max}"] = round(per_precision[best_precision] / (
            t * times[f"ann_onnxruntime_x{t_max}_s"]), 3)
        if "bfloat16" in per_precision:
            result[f"ratio_T{t}_bfloat16_vs_torch_bf16_ann"] = round(
                per_precision["bfloat16"] / (t * times["ann_torch_bf16_s"]), 3)
    if lowest:
        if lowest["T"]:
            precision = "float32" if "float32" in precisions else precisions[0]
            lowest["images_per_s"] = round(args.batch / times[f"snn_{precision}_T{lowest['T']}_s"], 1)
            lowest["precision"] = precision
        lowest["timed_model_is_the_evaluated_one"] = lowest["model_sha256"] == sha256(snn_path)
        lowest["peers"] = "see benchmarks/peer_accuracy.py (the same figure for the peers, on a test subset)"
        result["lowest_T_within_0.5_points"] = lowest
    peer_times = {k: v for k, v in times.items() if k.startswith(("spikingjelly", "sinabs"))}
    ours = min(times[f"snn_{p}_T{t_peer}_s"] for p in precisions)
    result[f"images_per_s_T{t_peer}"] = round(args.batch / ours, 1)
    if peer_times:
        fastest = min(peer_times, key=peer_times.get)
        result["fastest_peer"] = fastest
        result["speedup_vs_best_peer"] = round(peer_times[fastest] / ours, 2)
        result["speedup_vs_best_peer_float32"] = round(peer_times[fastest] / times[f"snn_float32_T{t_peer}_s"], 2)
    else:
        result["speedup_vs_best_peer"] = None
    result.update(batch1)
    if not args.no_memory and device.type == "cpu":
        rss32, rss256 = peak_rss(args, snn_path, 32), peak_rss(args, snn_path, 256)
        result.update(peak_rss_T32_mib=round(rss32, 1), peak_rss_T256_mib=round(rss256, 1),
                      rss_ratio_T256_T32=round(rss256 / rss32, 3))
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
