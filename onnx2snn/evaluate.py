"""Accuracy of a spiking model against timesteps, next to its ANN's, on a CIFAR-style data set.

Long runs are resumable: progress is checkpointed after every batch (atomically) beside the
JSON output, and a rerun with the same settings continues where the last one stopped.
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ._atomic import atomic_write_text
from .data import load_split, parse_floats, to_tensor
from .data.layout import resolve_layout, to_layout
from .devices import resolve_device
from .errors import ConfigError, InvalidModelError
from .onnx_io import load_model, sha256_file
from .resources import evaluation_batch_size
from .runtime import load

DEFAULT_TIMESTEPS = (16, 32, 64, 128, 256)
# onnxruntime's input type names and the numpy dtypes fed to them
_ORT_FLOAT_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64}


@dataclasses.dataclass
class Evaluation:
    n: int
    ann_accuracy: float | None
    snn_accuracy: dict[int, float]
    spikes_per_image: float | None
    settings: dict
    seconds: float

    def to_json(self) -> dict:
        return {
            "n": self.n,
            "ann_accuracy": self.ann_accuracy,
            "snn_accuracy": {str(t): a for t, a in sorted(self.snn_accuracy.items())},
            "spikes_per_image": self.spikes_per_image,
            "seconds": round(self.seconds, 1),
            **self.settings,
        }


def ann_predictions(ann_path: str | os.PathLike, x: np.ndarray, batch_size: int = 500) -> np.ndarray:
    """Class predictions of the original ANN with onnxruntime."""
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(os.fspath(ann_path), providers=ort.get_available_providers())
    except Exception as error:  # onnxruntime raises its own exception types
        raise InvalidModelError(f"{ann_path}: onnxruntime cannot load the ANN ({error})") from None
    feed = session.get_inputs()[0]
    dtype = _ORT_FLOAT_TYPES.get(feed.type)
    if dtype is None:
        raise InvalidModelError(f"{ann_path}: the ANN's input {feed.name!r} is {feed.type}; "
                                "images can be fed as float, float16 or double only")
    x = np.asarray(x, dtype=dtype)  # the type the ANN declares (a float16 model takes float16)
    fixed = feed.shape[0] if isinstance(feed.shape[0], int) and feed.shape[0] > 0 else None
    size = fixed or batch_size
    predictions = []
    for start in range(0, len(x), size):
        chunk = x[start:start + size]
        if fixed and len(chunk) < fixed:  # a fixed-batch export: pad the last batch
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], fixed - len(chunk), axis=0)])
        try:
            logits = session.run(None, {feed.name: chunk})[0]
        except Exception as error:  # onnxruntime raises its own exception types
            first = (str(error).strip().splitlines() or [type(error).__name__])[0]
            raise InvalidModelError(f"{ann_path}: onnxruntime cannot run the ANN on the images ({first})") from None
        predictions.append(np.asarray(logits).reshape(len(chunk), -1).argmax(1)[:len(x[start:start + size])])
    return np.concatenate(predictions)


def _normalization(network_metadata: dict, mean, std) -> tuple[list[float], list[float]]:
    mean = parse_floats(mean, "--mean") if mean is not None else None
    std = parse_floats(std, "--std") if std is not None else None
    mean = mean or parse_floats(network_metadata.get("onnx2snn.input_mean", ""), "stored mean")
    std = std or parse_floats(network_metadata.get("onnx2snn.input_std", ""), "stored std")
    if not mean or not std:
        raise ConfigError("the model stores no input normalization; give --mean and --std")
    return mean, std


def _channels_last(tensor: torch.Tensor) -> torch.Tensor:
    """``channels_last`` for rank-4 tensors only (the format exists for rank 4; 3-D convs use rank 5)."""
    return tensor.contiguous(memory_format=torch.channels_last) if tensor.ndim == 4 else tensor


def resume_key(settings: dict, **options) -> str:
    """Everything that changes the results: a checkpoint resumes only a run with an equal key."""
    return json.dumps({**{k: v for k, v in settings.items() if k != "device"}, **options}, sort_keys=True)


def evaluate(snn_path: str | os.PathLike, data: str | os.PathLike, split: str = "test",
             timesteps: Sequence[int] = DEFAULT_TIMESTEPS, limit: int | None = None,
             ann_path: str | os.PathLike | None = None, device: str = "cpu", batch_size: int = 250,
             mean=None, std=None, checkpoint: str | os.PathLike | None = None,
             count_spikes: bool = False, progress: bool = False,
             max_memory: int | str | None = None, layout: str | None = None) -> Evaluation:
    """Evaluate a spiking ONNX model; one simulation to max(timesteps) per batch.

    ``layout`` (``nchw`` | ``nhwc``) overrides the input layout stored in the model."""
    timesteps = sorted({int(t) for t in timesteps})
    if not timesteps or timesteps[0] < 1:
        raise ConfigError("-T needs positive timesteps")
    device = str(resolve_device(device))
    started = time.time()
    network = load(snn_path).to(device).eval()
    # channels_last: ~15% faster convolutions on CPU for spike tensors (rank-4 weights only)
    network._apply(_channels_last)
    mean, std = _normalization(network.metadata, mean, std)
    model = load_model(snn_path)
    layout = resolve_layout(model, layout or network.metadata.get("onnx2snn.input_layout"))
    images = load_split(data, split, limit=limit)
    x = to_layout(to_tensor(images.images, mean, std), layout)
    labels = torch.from_numpy(images.labels)
    batch_size = evaluation_batch_size(model, network, x, batch_size, max_memory,
                                       classes=len(images.classes))  # memory budget, trial run
    settings = {"model": os.path.basename(os.fspath(snn_path)), "model_sha256": sha256_file(snn_path),
                "data": images.source, "split": split, "limit": limit, "timesteps": timesteps,
                "batch_size": batch_size, "device": device,
                "threshold_method": network.metadata.get("onnx2snn.threshold_method"),
                "reset": network.metadata.get("onnx2snn.reset"), "input_layout": layout}

    state = {"done": 0, "correct": {str(t): 0 for t in timesteps}, "spikes": 0.0}
    key = resume_key(settings, mean=mean, std=std, count_spikes=bool(count_spikes))
    if checkpoint and Path(checkpoint).is_file():
        try:
            saved = json.loads(Path(checkpoint).read_text())
            if saved.get("key") == key:
                state = saved["state"]
        except (ValueError, KeyError, TypeError):
            pass  # an unreadable checkpoint is ignored, never trusted
    iterator = range(state["done"], len(x), batch_size)
    if progress:
        from tqdm import tqdm
        iterator = tqdm(iterator, desc="SNN", unit="batch", initial=state["done"] // batch_size,
                        total=-(-len(x) // batch_size))
    for start in iterator:
        batch = x[start:start + batch_size].to(device)
        batch = _channels_last(batch) if layout == "nchw" else batch
        target = labels[start:start + batch_size].to(device)
        sim = network.simulate(batch, timesteps, count_spikes=count_spikes)
        for t, out in sim.outputs.items():
            state["correct"][str(t)] += int((out.argmax(1) == target).sum())
        state["spikes"] += sum(sim.spikes.values())
        state["done"] = start + len(batch)
        if checkpoint:
            atomic_write_text(checkpoint, json.dumps({"key": key, "state": state}))

    ann_accuracy = None
    if ann_path is not None:
        predictions = ann_predictions(ann_path, x.numpy())
        ann_accuracy = float((predictions == images.labels).mean())
        settings["ann_model"] = os.path.basename(os.fspath(ann_path))
    n = len(x)
    return Evaluation(
        n=n, ann_accuracy=ann_accuracy,
        snn_accuracy={t: state["correct"][str(t)] / n for t in timesteps},
        spikes_per_image=(state["spikes"] / n) if count_spikes else None,
        settings=settings, seconds=time.time() - started)
