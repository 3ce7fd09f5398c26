"""Conversion cost per threshold method, next to one SNN pass over the same images (docs/conversion_speed.md).

For each model (the shared ResNet-20 and a deeper CIFAR ResNet of the same block structure, random
weights, exported here with the TorchScript exporter like the shared file) and each method, one
``python -m onnx2snn convert`` runs in its own process; its wall time, CPU time (user + system) and
peak RSS come from ``os.wait4``. In the same run, and in its own process as well, one SNN pass
(``SpikingNetwork.simulate``) over the calibration images at the calibration T is timed on the
converted model. Rounds are interleaved and the minimum of each figure is kept (the machine is
shared and noisy); the ratios divide minima measured side by side.

    python benchmarks/conversion.py                          # 512 images, T=64, ResNet-20 and -32, 2 threads
    python benchmarks/conversion.py --calib 128 --calib-timesteps 32 --depths 20 --rounds 2
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

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
MEAN, STD = "0.485,0.456,0.406", "0.229,0.224,0.225"
METHODS = ("percentile:99.9", "spikenorm", "auto")


def cifar_resnet(depth: int):
    """He et al.'s CIFAR ResNet-(6n+2) with option-A (pad) shortcuts, BatchNorm, random weights."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    class Block(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.pad = (cout - cin) // 2 if stride != 1 or cin != cout else None

        def forward(self, x):
            out = F.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            shortcut = x if self.pad is None else F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))
            return F.relu(out + shortcut)

    blocks = (depth - 2) // 6
    layers, cin = [], 16
    for cout, stride in ((16, 1), (32, 2), (64, 2)):
        for index in range(blocks):
            layers.append(Block(cin, cout, stride if index == 0 else 1))
            cin = cout
    model = nn.Sequential(nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU(), *layers,
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10))
    generator = torch.Generator().manual_seed(depth)
    with torch.no_grad():
        for module in model.modules():  # random but sane statistics, so that every layer fires
            if isinstance(module, nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.0, generator=generator)
                module.bias.uniform_(-0.1, 0.2, generator=generator)
                module.running_var.uniform_(0.5, 2.0, generator=generator)
    return model.eval()


def export(depth: int, folder: Path) -> Path:
    import torch

    path = folder / f"resnet{depth}_random.onnx"
    torch.onnx.export(cifar_resnet(depth), torch.zeros(1, 3, 32, 32), str(path), input_names=["input"],
                      output_names=["logits"], opset_version=13, dynamo=False,
                      dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}})
    return path


def measured(command: list[str], threads: int) -> dict:
    """Run ``command`` in its own process: wall and CPU seconds, peak RSS in MB."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONPATH=str(ROOT))
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    out, err = process.stdout.read(), process.stderr.read()
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"failed ({process.returncode}): {' '.join(command)}\n{err[-2000:]}")
    return {"wall_s": round(wall, 2), "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
            "user_s": round(usage.ru_utime, 2), "sys_s": round(usage.ru_stime, 2),
            "peak_rss_mb": round(usage.ru_maxrss / 1024), "stdout": out.strip()[-500:]}


def snn_pass(snn: str, data: str, calib: int, timesteps: int, batch_size: int) -> None:
    """(child) One simulation of the calibration images at T steps, as the converter draws them."""
    import torch

    from onnx2snn import load_model
    from onnx2snn.data import load_split, to_tensor
    from onnx2snn.runtime import SpikingNetwork

    network = SpikingNetwork(load_model(snn)).to(memory_format=torch.channels_last)  # as evaluate runs it
    images = to_tensor(load_split(data, "train", limit=calib, seed=0).images,
                       [float(v) for v in MEAN.split(",")], [float(v) for v in STD.split(",")])
    started, cpu = time.perf_counter(), time.process_time()
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            network.simulate(images[start:start + batch_size].contiguous(memory_format=torch.channels_last),
                             timesteps)
    print(f"simulate {time.perf_counter() - started:.2f} {time.process_time() - cpu:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calib", type=int, default=512)
    parser.add_argument("--calib-timesteps", type=int, default=64)
    parser.add_argument("--depths", default="20,32", help="20 is the shared ResNet-20; others are built here")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--threads", type=int, default=2, help="OMP_NUM_THREADS of every measured process")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--data", default=str(SHARED / "data" / "cifar10"))
    parser.add_argument("--out", default="runs/benchmarks/conversion.json")
    parser.add_argument("--snn-pass", nargs=2, metavar=("SNN", "BATCH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.snn_pass:
        snn_pass(args.snn_pass[0], args.data, args.calib, args.calib_timesteps, int(args.snn_pass[1]))
        return

    methods = [m for m in args.methods.split(",") if m]
    folder = Path(tempfile.mkdtemp(prefix="onnx2snn_conversion_bench_"))
    models = {}
    for depth in (int(d) for d in args.depths.split(",")):
        models[f"resnet{depth}"] = ((SHARED / "models" / "resnet20_cifar10.onnx") if depth == 20
                                    else export(depth, folder))
    best: dict[tuple[str, str], dict] = {}
    for round_index in range(args.rounds):
        for name, path in models.items():
            for method in methods:
                snn = folder / f"{name}_{method.replace(':', '_')}.onnx"
                figures = measured([sys.executable, "-m", "onnx2snn", "convert", str(path), "-o", str(snn),
                                    "--data", args.data, "--mean", MEAN, "--std", STD, "--calib", str(args.calib),
                                    "--calib-timesteps", str(args.calib_timesteps), "--threshold", method],
                                   args.threads)
                keep(best, (name, method), figures)
                print(f"round {round_index + 1} {name} {method}: {summary(figures)}", flush=True)
            snn = folder / f"{name}_{methods[0].replace(':', '_')}.onnx"
            figures = measured([sys.executable, __file__, "--snn-pass", str(snn), "128", "--data", args.data,
                                "--calib", str(args.calib), "--calib-timesteps", str(args.calib_timesteps)],
                               args.threads)
            # the simulation alone (without the process's start-up, which the conversions do include)
            figures["simulate_wall_s"], figures["simulate_cpu_s"] = map(float, figures["stdout"].split()[-2:])
            keep(best, (name, "snn pass"), figures)
            print(f"round {round_index + 1} {name} one SNN pass: {summary(figures)}", flush=True)

    report = {"calib_images": args.calib, "calib_timesteps": args.calib_timesteps, "threads": args.threads,
              "rounds": args.rounds, "cpu": os.cpu_count(), "load_average": os.getloadavg(), "results": {}}
    print(f"\n{args.calib} images, T={args.calib_timesteps}, {args.threads} threads, minima of {args.rounds} "
          f"round(s); load average now {os.getloadavg()[0]:.1f}")
    print(f"{'model':10s} {'method':16s} {'wall s':>8s} {'CPU s':>8s} {'peak MB':>8s} {'x SNN pass (CPU)':>17s}")
    print("(x SNN pass: the process's CPU time over the CPU time of the simulation alone; 'snn pass' rows are "
          "whole processes, start-up included)")
    for name in models:
        base = {"cpu_s": best[(name, "snn pass")]["simulate_cpu_s"]}
        for method in [*methods, "snn pass"]:
            figures = dict(best[(name, method)])
            figures.pop("stdout", None)
            ratio = figures["cpu_s"] / base["cpu_s"]
            figures["cpu_vs_snn_pass"] = round(ratio, 2)
            if "percentile:99.9" in methods and method not in ("percentile:99.9", "snn pass"):
                # the calibration alone: less the cost of a percentile:99.9 conversion (start-up, data, I/O)
                extra = figures["cpu_s"] - best[(name, "percentile:99.9")]["cpu_s"]
                figures["calibration_cpu_vs_snn_pass"] = round(extra / base["cpu_s"], 2)
            report["results"].setdefault(name, {})[method] = figures
            extra = figures.get("calibration_cpu_vs_snn_pass")
            print(f"{name:10s} {method:16s} {figures['wall_s']:8.1f} {figures['cpu_s']:8.1f} "
                  f"{figures['peak_rss_mb']:8d} {ratio:17.2f}"
                  + (f"  (calibration alone: {extra:.2f})" if extra else ""))
    deep = [n for n in models if n != "resnet20"]
    if "resnet20" in models and deep and "auto" in methods:
        for name in deep:
            depth = int(name[len("resnet"):])
            ratio = best[(name, "auto")]["cpu_s"] / best[("resnet20", "auto")]["cpu_s"]
            report["results"][name]["auto_cpu_vs_resnet20"] = round(ratio, 2)
            print(f"auto {name} / resnet20 CPU time: {ratio:.2f} (depth ratio {depth / 20:.2f}, "
                  f"target <= {1.3 * depth / 20:.2f})")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


def keep(best: dict, key: tuple[str, str], figures: dict) -> None:
    if key not in best:
        best[key] = figures
        return
    for field in ("wall_s", "cpu_s", "user_s", "sys_s", "peak_rss_mb", "simulate_wall_s", "simulate_cpu_s"):
        if field in figures:
            best[key][field] = min(best[key][field], figures[field])


def summary(figures: dict) -> str:
    return (f"wall {figures['wall_s']:.1f} s, CPU {figures['cpu_s']:.1f} s "
            f"({figures['user_s']:.1f} user + {figures['sys_s']:.1f} sys), peak {figures['peak_rss_mb']} MB")


if __name__ == "__main__":
    main()
