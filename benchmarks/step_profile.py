"""Where a streaming step goes at batch 1 (issue 13): ``SpikingNetwork.step`` against the ANN's
batch-1 latency in onnxruntime, measured call by call in one process (interleaved, so both see the
same load), then a cProfile of the steps split into torch kernels and Python.

    python benchmarks/step_profile.py [--snn SNN.onnx] [--calls 640] [--precision float32]

On a shared machine the per-call minimum and 10th percentile are what compare; the median moves
with the load. The profile's own overhead inflates the Python share (it times every call).
"""
from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

STEPS_PER_STREAM = 64  # a stream is reset every 64 steps, as in benchmarks/runtime.py


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ann", default=str(ROOT.parent / "shared" / "models" / "resnet20_cifar10.onnx"))
    p.add_argument("--snn", help="spiking ONNX file (default: converted by benchmarks/runtime.py)")
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "cifar10"))
    p.add_argument("--calls", type=int, default=640)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--precision", default="float32")
    p.add_argument("--top", type=int, default=12, help="rows of the profile to print")
    return p.parse_args(argv)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


def kernel_time(stats: pstats.Stats) -> tuple[float, dict[str, float]]:
    """Seconds spent inside torch's C++ entry points (built-in functions and tensor methods), by name."""
    by_name: dict[str, float] = {}
    for (_file, _line, name), (_cc, _nc, tottime, _cum, _callers) in stats.stats.items():
        if name.startswith(("<built-in method torch.", "<built-in method _C.", "<method '")) and (
                "TensorBase" in name or "torch" in name):
            key = name.split(" of ")[0].replace("<built-in method ", "").replace("<method ", "").strip("'<>")
            by_name[key] = by_name.get(key, 0.0) + tottime
    return sum(by_name.values()), by_name


def main(argv=None) -> None:
    args = parse_args(argv)
    import onnxruntime as ort
    import runtime as runtime_bench
    import torch

    from onnx2snn.runtime import fast_layout, load

    torch.set_num_threads(args.threads)
    bench_args = runtime_bench.parse_args(["--ann", args.ann, "--data", args.data] +
                                          (["--snn", args.snn] if args.snn else []))
    snn = runtime_bench.ensure_snn(bench_args)
    x = runtime_bench.load_batch(bench_args, 1)
    x1 = fast_layout(x)
    net = load(snn).eval().set_precision(args.precision)
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(args.ann, options, providers=["CPUExecutionProvider"])
    feed, xn = session.get_inputs()[0].name, x.numpy()

    ann, step = [], []
    for call in range(args.calls):
        if call % STEPS_PER_STREAM == 0:
            net.reset()
            net.step(x1)  # the stream's first step computes the static part
        start = time.perf_counter()
        session.run(None, {feed: xn})
        ann.append(time.perf_counter() - start)
        start = time.perf_counter()
        net.step(x1)
        step.append(time.perf_counter() - start)
    for q in (0, 10, 50):
        a, s = percentile(ann, q) * 1e3, percentile(step, q) * 1e3
        label = "min" if q == 0 else f"p{q}"
        print(f"{label:>4}: ANN onnxruntime {a:.3f} ms, step {s:.3f} ms, step / ANN {s / a:.2f}")

    profiler = cProfile.Profile()
    net.reset()
    net.step(x1)
    calls = min(args.calls, 200)
    profiler.enable()
    for _ in range(calls):
        net.step(x1)
    profiler.disable()
    stats = pstats.Stats(profiler)
    total = stats.total_tt
    kernels, by_name = kernel_time(stats)
    print(f"\ncProfile of {calls} steps: {total / calls * 1e3:.3f} ms per step under the profiler; "
          f"torch entry points {kernels / calls * 1e3:.3f} ms, Python {(total - kernels) / calls * 1e3:.3f} ms")
    for name, seconds in sorted(by_name.items(), key=lambda item: -item[1])[:args.top]:
        print(f"  {name:32s} {seconds / calls * 1e3:7.3f} ms per step")
    functions = {f"{Path(file).name}:{line} {name}": tottime
                 for (file, line, name), (_cc, _nc, tottime, _cum, _callers) in stats.stats.items()
                 if file.startswith(str(ROOT))}
    print("Python of onnx2snn (own time):")
    for name, seconds in sorted(functions.items(), key=lambda item: -item[1])[:args.top]:
        print(f"  {name:48s} {seconds / calls * 1e3:7.3f} ms per step")


if __name__ == "__main__":
    main()
