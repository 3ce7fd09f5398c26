"""``onnx2snn demo``: convert the default model, then compare ANN and SNN accuracy over T."""
from __future__ import annotations

import json
from pathlib import Path

from .._atomic import atomic_write_text
from ..converter.convert import ConversionOptions, convert
from ..errors import DataError
from ..evaluate import evaluate
from ..report import markdown_table, plot_accuracy
from .shared_assets import cifar10_dir, shared_dir

# Until the project ships its own trained model, the demo converts the shared ResNet-20.
DEFAULT_MODEL = ("models/resnet20_cifar10.onnx", (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def default_model() -> tuple[Path, tuple, tuple]:
    relative, mean, std = DEFAULT_MODEL
    shared = shared_dir()
    if shared is None or not (shared / relative).is_file():
        raise DataError(f"the demo's default model ../shared/{relative} was not found")
    return shared / relative, mean, std


def run_demo(limit: int, timesteps: list[int], out_dir: Path, device: str = "cpu",
             threshold: str = "percentile:99.9") -> dict:
    ann, mean, std = default_model()
    data = cifar10_dir()
    print(f"model: {ann}\ndata:  {data} (test split, class-balanced {limit} images; calibration: 256 train images)")
    curves, ann_accuracy = {}, None
    for reset, label in (("subtract", "soft reset"), ("zero", "hard reset")):
        snn = out_dir / f"snn_{reset}.onnx"
        convert(ann, snn, data, mean, std, calibration_images=256,
                options=ConversionOptions(threshold=threshold, reset=reset), device=device)
        result = evaluate(snn, data, timesteps=timesteps, limit=limit, device=device,
                          ann_path=ann if ann_accuracy is None else None)
        ann_accuracy = result.ann_accuracy if ann_accuracy is None else ann_accuracy
        curves[f"SNN {label} ({threshold})"] = result.snn_accuracy
    table = markdown_table(curves, ann_accuracy)
    print(table)
    plot_accuracy(curves, ann_accuracy, out_dir / "accuracy.png", title=f"{ann.name}: ANN vs SNN")
    report = {"model": ann.name, "n": limit, "ann_accuracy": ann_accuracy,
              "snn_accuracy": {k: {str(t): a for t, a in v.items()} for k, v in curves.items()}}
    atomic_write_text(out_dir / "demo.json", json.dumps(report, indent=2) + "\n")
    print(f"wrote {out_dir / 'accuracy.png'} and {out_dir / 'demo.json'}")
    return report
