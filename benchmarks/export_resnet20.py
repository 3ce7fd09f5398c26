"""Accuracy and speed of a spiking model in the PyTorch runtime, in onnxruntime on the plain-ONNX
exports (unrolled and Loop), and after a NIR round trip (our importer, and a reader that follows the
NIR spec); with --ablate, what each NIR difference costs on its own.

    OMP_NUM_THREADS=1 python benchmarks/export_resnet20.py /tmp/r20.onnx --data ../shared/data/cifar10 \
        --limit 1000 -T 32 --json docs/results/export/resnet20_percentile.json

Everything runs on one thread (torch and onnxruntime). Speed: rounds interleaved across the
methods on the first --speed-images images, the minimum of each method reported.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from onnx2snn import load_model
from onnx2snn.data import load_split, to_tensor
from onnx2snn.export import export_nir, export_unrolled, import_nir, read_nir, write_nir
from onnx2snn.runtime import SpikingNetwork


def runtime_method(model: onnx.ModelProto, timesteps: int):
    network = SpikingNetwork(model).eval()

    def run(x: np.ndarray):
        sim = network.simulate(torch.from_numpy(x), timesteps, count_spikes=True)
        return sim.outputs[timesteps].numpy(), sim.spikes
    return run


def ort_method(model: onnx.ModelProto):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    started = time.perf_counter()
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    setup = time.perf_counter() - started
    names = [o.name for o in session.get_outputs()]
    input_name = session.get_inputs()[0].name

    def run(x: np.ndarray):
        results = session.run(None, {input_name: x})
        return results[0], {n.split("/", 1)[1]: float(r.sum()) for n, r in zip(names[1:], results[1:])}
    return run, setup


def predict(run, x: np.ndarray, batch: int):
    outputs, spikes, started = [], {}, time.perf_counter()
    for start in range(0, len(x), batch):
        out, counts = run(x[start:start + batch])
        outputs.append(out)
        for k, v in counts.items():
            spikes[k] = spikes.get(k, 0.0) + v
    return np.concatenate(outputs), spikes, time.perf_counter() - started


def _set_if(model: onnx.ModelProto, **values) -> onnx.ModelProto:
    """A copy with the given IF attributes replaced (an ablation: one NIR difference applied)."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    for node in copy.graph.node:
        if node.op_type != "IF":
            continue
        for name, value in values.items():
            kept = [a for a in node.attribute if a.name != name]
            del node.attribute[:]
            node.attribute.extend(kept)
            if value is not None:
                node.attribute.append(onnx.helper.make_attribute(name, value))
    return copy


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("snn")
    parser.add_argument("--data", required=True)
    parser.add_argument("--limit", type=int, default=1000)
    parser.add_argument("-T", type=int, default=32)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--speed-images", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--loop-speed-only", action="store_true",
                        help="run the Loop export only in the speed rounds, not on all images")
    parser.add_argument("--ablate", action="store_true", help="measure each NIR difference on its own")
    parser.add_argument("--methods", help="comma-separated subset of the methods to run on all images")
    parser.add_argument("--json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    report: dict = {"model": os.path.basename(args.snn), "T": args.T, "images": args.limit, "threads": 1}

    model = load_model(args.snn)
    meta = {p.key: p.value for p in model.metadata_props}
    mean = [float(v) for v in meta["onnx2snn.input_mean"].split(",")]
    std = [float(v) for v in meta["onnx2snn.input_std"].split(",")]
    images = load_split(args.data, "test", limit=args.limit)
    x = to_tensor(images.images, mean, std).numpy()
    labels = images.labels

    started = time.perf_counter()
    unrolled = export_unrolled(model, args.T, "unroll")
    report["export_unrolled_s"] = time.perf_counter() - started
    started = time.perf_counter()
    looped = export_unrolled(model, args.T, "loop")
    report["export_loop_s"] = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as scratch:
        for name, m in (("unrolled", unrolled), ("loop", looped)):
            path = Path(scratch) / f"{name}.onnx"
            onnx.save(m, path)
            report[f"{name}_bytes"], report[f"{name}_nodes"] = path.stat().st_size, len(m.graph.node)
        nir_path = Path(scratch) / "model.nir"
        exported = export_nir(model)
        write_nir(exported, nir_path)
        report["nir_bytes"] = nir_path.stat().st_size
        report["nir_warnings"] = exported.warnings
        graph = read_nir(nir_path)
        round_trip, spec_reading = import_nir(graph), import_nir(graph, use_metadata=False)

    methods = {"runtime": runtime_method(model, args.T)}
    methods["onnxruntime_unrolled"], report["ort_session_unrolled_s"] = ort_method(unrolled)
    methods["onnxruntime_loop"], report["ort_session_loop_s"] = ort_method(looped)
    methods["nir_round_trip"] = runtime_method(round_trip, args.T)
    methods["nir_spec_reading"] = runtime_method(spec_reading, args.T)
    if args.ablate:
        spec = {}
        for node in model.graph.node:
            if node.op_type == "IF":
                spec.update({a.name: onnx.helper.get_attribute_value(a) for a in node.attribute})
        if any(n.op_type == "IF" and any(a.name == "v_init" and any(a.floats) for a in n.attribute)
               for n in model.graph.node):
            methods["ablate_v_init"] = runtime_method(_set_if(model, v_init=None), args.T)
        if "burst" in spec:
            methods["ablate_burst"] = runtime_method(_set_if(model, burst=None), args.T)
        if "signed" in spec:
            methods["ablate_signed"] = runtime_method(_set_if(model, signed=None), args.T)
        if "signed" not in spec and "burst" not in spec:
            methods["ablate_soft_reset"] = runtime_method(_set_if(model, reset="zero"), args.T)

    results = {}
    for name, run in methods.items():
        if (args.loop_speed_only and name == "onnxruntime_loop") or (
                args.methods and name != "runtime" and name not in args.methods.split(",")):
            continue
        out, spikes, seconds = predict(run, x, args.batch)
        results[name] = (out, spikes)
        report[name] = {"accuracy": float((out.argmax(1) == labels).mean()), "seconds": seconds,
                        "spikes_per_image": sum(spikes.values()) / len(x)}
        print(name, report[name], flush=True)
    reference, ref_spikes = results["runtime"]
    for name in ("onnxruntime_unrolled", "onnxruntime_loop", "nir_round_trip", "nir_spec_reading"):
        if name in results:
            out, spikes = results[name]
            report[name]["max_abs_output_diff"] = float(np.abs(out - reference).max())
            report[name]["prediction_agreement"] = float((out.argmax(1) == reference.argmax(1)).mean())
            # layers in graph order (the NIR round trip renames them)
            report[name]["max_rel_spike_count_diff"] = max(
                abs(a - b) / max(b, 1.0) for a, b in zip(spikes.values(), ref_spikes.values()))

    speed = {name: [] for name in methods if name in ("runtime", "onnxruntime_unrolled", "onnxruntime_loop")
             and args.rounds > 0}
    sample = x[:args.speed_images]
    for _ in range(args.rounds):
        for name, times in speed.items():
            times.append(predict(methods[name], sample, args.batch)[2])
    if not speed:
        speed = {"runtime": [float("nan")]}
    report["speed_min_s"] = {name: min(times) for name, times in speed.items()}
    report["speed_images"] = len(sample)
    report["speed_ratio_vs_runtime"] = {name: min(times) / min(speed["runtime"]) for name, times in speed.items()}
    print(json.dumps({k: v for k, v in report.items() if k.startswith("speed") or k.endswith(("_s", "bytes",
                                                                                              "nodes"))}, indent=1))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
