"""Soft against hard reset: sweep reset mode x threshold method x threshold scale x T for ANN->SNN conversion.

    python examples/reset_study.py onnx2snn/models/small_cnn_cifar10.onnx --name small_cnn \\
        --data ../shared/data/cifar10 --limit 1000 --out docs/results

For each (reset, method) the ANN is converted once (calibrated on train-split images); for each
threshold scale every IF threshold (and initial potential) is multiplied by the scale in the runtime, and the test
subset is simulated once to T_max (the runtime returns the readout at every T of the sweep from that one
run). Writes, under OUT/NAME/: ``study.json``, ``study.md`` and the plots ``accuracy_vs_T_<reset>.png``
and ``accuracy_vs_scale.png``, and ``soft_vs_hard.png`` (both resets, every method, scale 1, one
figure). Finished configurations are kept in ``study.json.partial``, so an interrupted sweep resumes
where it stopped; ``--max-configs N`` / ``--time-budget S`` stop a run after N configurations or S
seconds on purpose, so that the sweep can be done in pieces (rerun the same command).

    python examples/reset_study.py --combine docs/results/*/study.json --table docs/results/lowest_T.md

writes the one table across networks: the lowest T within 1% of the ANN, per method and reset.
A model trained narrower (``onnx2snn.width_mult`` in its metadata) is labelled with its multiplier.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import torch

from onnx2snn import (
    ConversionOptions,
    SpikingNetwork,
    ann_predictions,
    convert_model,
    input_normalization,
    load_model,
    load_split,
    to_tensor,
)
from onnx2snn.atomic import atomic_write_text
from onnx2snn.dialect import metadata, sha256_file
from onnx2snn.report import markdown_table, plot_accuracy, save_figure

RESET_LABELS = {"subtract": "soft", "zero": "hard"}
WITHIN = 0.01  # "near-lossless": within 1 percentage point of the ANN


def lowest_t_within(curve: dict[int, float], ann: float, margin: float = WITHIN) -> int | None:
    """The smallest T from which the accuracy stays within ``margin`` of the ANN at every larger T swept."""
    best = None
    for t in sorted(curve, reverse=True):
        if curve[t] < ann - margin:
            break
        best = t
    return best


def stored_normalization(model, mean, std) -> tuple[list[float], list[float]]:
    return input_normalization(metadata(model), mean or None, std or None)


def simulate(network: SpikingNetwork, x: torch.Tensor, labels: torch.Tensor, timesteps: list[int],
             batch_size: int) -> dict[int, float]:
    correct = {t: 0 for t in timesteps}
    for start in range(0, len(x), batch_size):
        sim = network.simulate(x[start:start + batch_size], timesteps)
        for t, out in sim.outputs.items():
            correct[t] += int((out.argmax(1) == labels[start:start + batch_size]).sum())
    return {t: c / len(x) for t, c in correct.items()}


def config_label(reset: str, method: str, scale: float) -> str:
    return f"{RESET_LABELS[reset]} reset, {method}, scale {scale:g}"


def network_label(name: str, width_mult: str | None) -> str:
    return name if width_mult in (None, "", "1") else f"{name} (width x{width_mult})"


def run_study(ann_path: Path, name: str, data: Path, out: Path, limit: int, calib: int,
              resets: list[str], methods: list[str], scales: list[float], timesteps: list[int],
              scale_methods: list[str] | None, mean=None, std=None, batch_size: int = 250,
              max_configs: int | None = None, time_budget: float | None = None, device: str = "cpu") -> dict | None:
    """Run (or resume) the sweep; returns the report, or None when stopped early on purpose."""
    wall_start = time.time()
    out.mkdir(parents=True, exist_ok=True)
    model = load_model(ann_path)
    mean, std = stored_normalization(model, mean, std)
    test = load_split(data, "test", limit=limit)
    x = to_tensor(test.images, mean, std)
    labels = torch.from_numpy(test.labels)
    calibration = to_tensor(load_split(data, "train", limit=calib, seed=0).images, mean, std)
    ann = float((ann_predictions(ann_path, x.numpy()) == test.labels).mean())
    print(f"{name}: ANN {100 * ann:.2f}% on {len(x)} class-balanced test images; calibration {calib} train images")

    settings = {"model": ann_path.name, "model_sha256": sha256_file(ann_path), "n": len(x), "calibration": calib,
                "timesteps": timesteps, "mean": mean, "std": std,
                "width_mult": metadata(model).get("onnx2snn.width_mult", "1")}
    partial = out / "study.json.partial"
    done: dict[str, dict] = {}
    if partial.is_file():
        saved = json.loads(partial.read_text())
        if saved.get("settings") == settings:
            done = saved["runs"]
            print(f"  resuming {partial}: {len(done)} configurations done")
    ran = 0

    def stop_now() -> bool:
        return ((max_configs is not None and ran >= max_configs)
                or (time_budget is not None and time.time() - wall_start > time_budget))

    for reset in resets:
        for method in methods:
            wanted = [s for s in scales if scale_methods is None or method in scale_methods or s == 1.0]
            if all(config_label(reset, method, s) in done for s in wanted):
                continue
            if stop_now():
                print(f"stopped after {ran} configurations this run ({len(done)} in all); rerun to continue")
                return None
            started = time.time()
            conversion = convert_model(load_model(ann_path), calibration,
                                       ConversionOptions(threshold=method, reset=reset))
            network = SpikingNetwork(conversion.model).eval().to(device)
            # v_init scales with the threshold so that methods with a non-zero initial potential
            # (e.g. +vhalf) keep it at the same fraction of the threshold.
            print(f"  converted ({RESET_LABELS[reset]} reset, {method}) in {time.time() - started:.0f} s")
            for scale in wanted:
                label = config_label(reset, method, scale)
                if label in done:
                    continue
                if stop_now():
                    print(f"stopped after {ran} configurations this run ({len(done)} in all); rerun to continue")
                    return None
                started = time.time()
                network.configure_neurons({
                    name: dataclasses.replace(values, threshold=values.threshold * scale, v_init=values.v_init * scale)
                    for name, values in conversion.neurons.items()})
                curve = simulate(network, x.to(device), labels.to(device), timesteps, batch_size)
                done[label] = {"reset": reset, "method": method, "scale": scale,
                               "accuracy": {str(t): a for t, a in curve.items()},
                               "seconds": round(time.time() - started, 1)}
                atomic_write_text(partial, json.dumps({"settings": settings, "runs": done}))
                ran += 1
                print(f"  {label}: " + ", ".join(f"T={t} {100 * a:.1f}" for t, a in curve.items())
                      + f" ({time.time() - started:.0f} s)", flush=True)

    report = summarize(name, ann, settings, done)
    write_report(out, name, report)
    partial.unlink(missing_ok=True)
    return report


def summarize(name: str, ann: float, settings: dict, runs: dict[str, dict]) -> dict:
    curves = {label: {int(t): a for t, a in run["accuracy"].items()} for label, run in runs.items()}
    lowest = {}
    for reset, word in RESET_LABELS.items():
        candidates = [(lowest_t_within(curves[label], ann), label) for label, run in runs.items()
                      if run["reset"] == reset]
        reached = [(t, label) for t, label in candidates if t is not None]
        at_one = {runs[label]["method"]: t for t, label in candidates if runs[label]["scale"] == 1.0}
        best = min(reached) if reached else (None, None)
        lowest[word] = {"lowest_T_within_1pct": best[0], "configuration": best[1], "per_method_scale_1": at_one}
    return {"name": name, "label": network_label(name, settings.get("width_mult")), "ann_accuracy": ann,
            **settings, "runs": runs, "lowest_T_within_1pct": lowest,
            "lowest_T_per_method": lowest_per_method(runs, ann)}


def lowest_per_method(runs: dict[str, dict], ann: float) -> dict:
    """method -> reset word -> {"scale_1": lowest T at scale 1, "best": over the scales, "best_scale"}."""
    per_method: dict[str, dict] = {}
    for run in runs.values():
        entry = per_method.setdefault(run["method"], {}).setdefault(
            RESET_LABELS[run["reset"]], {"scale_1": None, "best": None, "best_scale": None})
        t = lowest_t_within({int(k): a for k, a in run["accuracy"].items()}, ann)
        if run["scale"] == 1.0:
            entry["scale_1"] = t
        if t is not None and (entry["best"] is None or t < entry["best"]):
            entry["best"], entry["best_scale"] = t, run["scale"]
    return per_method


def _plot_scales(runs: dict[str, dict], ann: float, steps: list[int], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups: dict[tuple[str, str], list[tuple[float, dict]]] = {}
    for run in runs.values():
        groups.setdefault((run["reset"], run["method"]), []).append((run["scale"], run["accuracy"]))
    if all(len(points) < 2 for points in groups.values()):
        return  # one scale per configuration: nothing to plot against the scale
    figure, axes_row = plt.subplots(1, len(steps), figsize=(5 * len(steps), 4), dpi=110, squeeze=False)
    for axes, t in zip(axes_row[0], steps):
        for (reset, method), points in sorted(groups.items()):
            if len(points) < 2:
                continue
            points.sort()
            axes.plot([s for s, _ in points], [100 * acc[str(t)] for _, acc in points], marker="o",
                      linestyle="-" if reset == "subtract" else "--", label=f"{RESET_LABELS[reset]}, {method}")
        axes.axhline(100 * ann, color="black", linestyle=":", label=f"ANN {100 * ann:.2f}%")
        axes.set_xlabel("threshold scale")
        axes.set_ylabel("accuracy (%)")
        axes.set_title(f"{title}, T={t}")
        axes.grid(True, alpha=0.3)
        axes.legend(fontsize=7)
    figure.tight_layout()
    save_figure(figure, path)


def plot_soft_vs_hard(report: dict, path: Path) -> None:
    """Soft (solid) against hard (dashed) reset, one colour per method, threshold scale 1."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs, ann = report["runs"], report["ann_accuracy"]
    methods = sorted({run["method"] for run in runs.values()})
    colours = dict(zip(methods, plt.rcParams["axes.prop_cycle"].by_key()["color"] * 4, strict=False))
    figure, axes = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    for run in sorted(runs.values(), key=lambda r: (r["method"], r["reset"] != "subtract")):
        if run["scale"] != 1.0:
            continue
        curve = sorted((int(t), a) for t, a in run["accuracy"].items())
        soft = run["reset"] == "subtract"
        axes.plot([t for t, _ in curve], [100 * a for _, a in curve], color=colours[run["method"]],
                  marker="o" if soft else "s", fillstyle="full" if soft else "none",
                  linestyle="-" if soft else "--", label=f"{RESET_LABELS[run['reset']]}, {run['method']}")
    axes.axhline(100 * ann, color="black", linestyle=":", label=f"ANN {100 * ann:.2f}%")
    axes.set_xscale("log", base=2)
    axes.set_xticks(report["timesteps"], [str(t) for t in report["timesteps"]])
    axes.set_xlabel("timesteps T")
    axes.set_ylabel("accuracy (%)")
    axes.set_title(f"{report.get('label', report['name'])}: soft (solid) vs hard (dashed) reset, "
                   f"{report['n']} test images", fontsize=9)
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=7)
    figure.tight_layout()
    save_figure(figure, path)


def lowest_t_table(reports: list[dict]) -> str:
    """The one table across networks: lowest T within 1% of the ANN, per method and reset.

    Each cell: at threshold scale 1, then the best over the swept scales when that is lower.
    """
    def cell(entry: dict, steps: list[int]) -> str:
        if entry is None:
            return "-"
        text = str(entry["scale_1"]) if entry["scale_1"] is not None else f"> {max(steps)}"
        if entry["best"] is not None and (entry["scale_1"] is None or entry["best"] < entry["scale_1"]):
            text += f" ({entry['best']} at scale {entry['best_scale']:g})"
        return text

    lines = ["| network | ANN | method | soft reset | hard reset |", "|---|---:|---|---:|---:|"]
    for report in reports:
        # studies written before this table existed hold only the runs: derive it from them
        per_method = report.get("lowest_T_per_method") or lowest_per_method(report["runs"], report["ann_accuracy"])
        for method, entries in sorted(per_method.items()):
            lines.append(f"| {report.get('label', report['name'])} | {100 * report['ann_accuracy']:.2f}% "
                         f"({report['n']} images) | {method} | {cell(entries.get('soft'), report['timesteps'])} | "
                         f"{cell(entries.get('hard'), report['timesteps'])} |")
    return "\n".join(lines) + "\n"


def write_report(out: Path, name: str, report: dict) -> None:
    runs, ann = report["runs"], report["ann_accuracy"]
    steps = report["timesteps"]
    atomic_write_text(out / "study.json", json.dumps(report, indent=2) + "\n")
    lines = [f"# {report.get('label', name)}: soft vs hard reset", "",
             f"ANN {100 * ann:.2f}% on {report['n']} class-balanced test images (calibration: "
             f"{report['calibration']} train images). Accuracy in percent.", "",
             "## Lowest T within 1% of the ANN", "",
             "| reset | lowest T (best configuration) | configuration | " +
             " | ".join(f"{m} (scale 1)" for m in sorted({r['method'] for r in runs.values()})) + " |",
             "|---|---:|---|" + "---:|" * len({r['method'] for r in runs.values()})]
    for word, entry in report["lowest_T_within_1pct"].items():
        per = entry["per_method_scale_1"]
        cells = [str(per.get(m)) if per.get(m) is not None else f"> {max(steps)}"
                 for m in sorted({r['method'] for r in runs.values()})]
        best = entry["lowest_T_within_1pct"]
        lines.append(f"| {word} | {best if best is not None else f'> {max(steps)}'} | "
                     f"{entry['configuration'] or '-'} | " + " | ".join(cells) + " |")
    lines += ["", "## Lowest T within 1% of the ANN, per method (scale 1; best scale in brackets)", "",
              lowest_t_table([report]), "## Every configuration", ""]
    curves = {label: {int(t): a for t, a in run["accuracy"].items()}
              for label, run in sorted(runs.items(), key=lambda kv: (kv[1]["reset"] != "subtract",
                                                                     kv[1]["method"], -kv[1]["scale"]))}
    lines.append(markdown_table(curves, ann))
    atomic_write_text(out / "study.md", "\n".join(lines))
    for reset, word in RESET_LABELS.items():
        chosen = {f"{run['method']}, scale {run['scale']:g}": curves[label] for label, run in runs.items()
                  if run["reset"] == reset and (run["scale"] == 1.0 or label == report["lowest_T_within_1pct"]
                                                [word]["configuration"])}
        if chosen:
            plot_accuracy(chosen, ann, out / f"accuracy_vs_T_{word}.png", title=f"{name}: {word} reset")
    plot_soft_vs_hard(report, out / "soft_vs_hard.png")
    scale_steps = [t for t in (16, 64) if t in steps] or steps[:1]
    _plot_scales(runs, ann, scale_steps, out / "accuracy_vs_scale.png", name)
    print("\n".join(lines[:lines.index("## Every configuration")]))
    print(f"wrote {out}/study.json, study.md and plots")


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", type=Path, nargs="?",
                   help="the ANN .onnx file (stores its input mean/std, or give --mean/--std)")
    p.add_argument("--name", help="results go to OUT/NAME (default: the file's stem)")
    p.add_argument("--data", type=Path)
    p.add_argument("--out", type=Path, default=Path("runs/reset_study"))
    p.add_argument("--limit", type=int, default=1000, help="class-balanced test images")
    p.add_argument("--calib", type=int, default=256, help="calibration images from the train split")
    p.add_argument("--resets", default="subtract,zero")
    p.add_argument("--methods", default="spikenorm,percentile:99.9,auto")
    p.add_argument("--scales", default="0.6,0.7,0.8,0.9,1.0")
    p.add_argument("--scale-methods", default=None,
                   help="sweep scales only for these methods (others run at scale 1); default: all")
    p.add_argument("-T", default="8,16,32,64,128,256")
    p.add_argument("--mean")
    p.add_argument("--std")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=250)
    p.add_argument("--device", default="cpu", help="where the SNN is simulated (calibration stays on the CPU)")
    p.add_argument("--max-configs", type=int, default=None, help="stop after N configurations; rerun to continue")
    p.add_argument("--time-budget", type=float, default=None,
                   help="start no configuration after this many seconds; rerun to continue")
    p.add_argument("--combine", type=Path, nargs="+", metavar="STUDY_JSON",
                   help="instead of a sweep: the table of lowest T across these networks' study.json")
    p.add_argument("--table", type=Path, help="with --combine: write the table here (else print it)")
    args = p.parse_args(argv)
    if args.combine:
        table = lowest_t_table([json.loads(path.read_text()) for path in args.combine])
        if args.table:
            atomic_write_text(args.table, table)
        print(table, end="")
        return {"table": table}
    if args.model is None or args.data is None:
        p.error("a model and --data are needed (or --combine)")
    torch.set_num_threads(args.threads)
    timesteps = sorted({int(t) for t in args.T.split(",")})
    scales = sorted({float(s) for s in args.scales.split(",")}, reverse=True)
    report = run_study(args.model, args.name or args.model.stem, args.data, args.out / (args.name or args.model.stem),
                       args.limit, args.calib, args.resets.split(","), args.methods.split(","), scales, timesteps,
                       args.scale_methods.split(",") if args.scale_methods else None, args.mean, args.std,
                       args.batch_size, args.max_configs, args.time_budget, args.device)
    return report if report is not None else {"stopped": True}


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
