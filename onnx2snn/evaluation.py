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
import onnxruntime as ort
import torch
from tqdm import tqdm

from .atomic import atomic_write_text
from .data import input_normalization, load_split, to_tensor
from .data.layout import resolve_layout, to_layout
from .devices import resolve_device
from .dialect import METADATA, read_spiking, sha256_file
from .errors import InvalidModelError
from .resources import evaluation_batch_size
from .runtime import SpikingNetwork, fast_layout
from .runtime.blocks import keep_freed_memory
from .runtime.distributed import setup as setup_distributed
from .runtime.timesteps import timestep_list
from .sizes import parse_size
from .stats import SpikeRecorder, graph_costs, summarize

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
    statistics: object | None = None  # stats.SpikeStatistics when asked for
    rank: int = 0  # under torchrun: this process's rank (every rank holds the same summed result)

    def to_json(self) -> dict:
        return {
            "n": self.n,
            "ann_accuracy": self.ann_accuracy,
            "snn_accuracy": {str(t): a for t, a in sorted(self.snn_accuracy.items())},
            "spikes_per_image": self.spikes_per_image,
            "seconds": round(self.seconds, 1),
            **self.settings,
            **({"statistics": self.statistics.to_json()} if self.statistics is not None else {}),
        }


def ann_predictions(ann_path: str | os.PathLike, x: np.ndarray, batch_size: int = 500) -> np.ndarray:
    """Class predictions of the original ANN with onnxruntime."""
    try:
        session = ort.InferenceSession(os.fspath(ann_path), providers=ort.get_available_providers())
    except Exception as error:  # onnxruntime raises its own exception types
        raise InvalidModelError(f"{ann_path}: onnxruntime cannot load the ANN ({error})") from error
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


def resume_key(settings: dict, **options) -> str:
    """Everything that changes the results: a checkpoint resumes only a run with an equal key."""
    return json.dumps({**{k: v for k, v in settings.items() if k != "device"}, **options}, sort_keys=True)


def evaluate(snn_path: str | os.PathLike, data: str | os.PathLike, split: str = "test",
             timesteps: Sequence[int] = DEFAULT_TIMESTEPS, limit: int | None = None,
             ann_path: str | os.PathLike | None = None, device: str = "cpu", batch_size: int = 250,
             mean=None, std=None, checkpoint: str | os.PathLike | None = None,
             count_spikes: bool = False, progress: bool = False,
             max_memory: int | str | None = None, stats: bool = False,
             traces: dict[str, list[int]] | None = None, costs: dict[str, float] | None = None,
             precision: str = "float32", layout: str | None = None, fused: bool = False) -> Evaluation:
    """Evaluate a spiking ONNX file; one simulation to max(timesteps) per batch.

    ``mean``/``std`` override the input normalization the file stores. An ANN file is refused
    (convert it first). ``stats`` (or ``traces``) records spike statistics (``onnx2snn.stats``);
    such a run starts from the beginning (per-neuron counts are not checkpointed). Under
    ``torchrun`` each process evaluates one shard of the images and the counts are summed (see
    runtime/distributed.py). ``precision`` is the synaptic ops' dtype (``SpikingNetwork.set_precision``).
    ``layout`` (``nchw`` | ``nhwc``) overrides the input layout stored in the model. ``fused`` runs each
    neuron step as one compiled kernel (``SpikingNetwork.fuse_neurons``; the same results).
    """
    timesteps = timestep_list(timesteps)
    device = str(resolve_device(device))
    world = setup_distributed(device)
    device = world.device(device)
    started = time.time()
    if not device.startswith("cuda"):
        keep_freed_memory()  # reuse freed blocks instead of page-faulting fresh ones (process-wide)
    model = read_spiking(snn_path)
    network = SpikingNetwork(model).to(device).eval().set_precision(precision).fuse_neurons(fused)
    network.block_memory = min(network.block_memory, parse_size(max_memory) // 8)  # timesteps run at once
    # channels_last: ~15% faster convolutions on CPU for spike tensors (rank-4 weights only)
    network._apply(fast_layout)
    mean, std = input_normalization(network.metadata, mean, std)
    layout = resolve_layout(model, layout or network.metadata.get(METADATA.input_layout))
    images = load_split(data, split, limit=limit)
    x = to_layout(to_tensor(images.images, mean, std), layout)
    labels = torch.from_numpy(images.labels)
    batch_size = evaluation_batch_size(model, network, x, batch_size, max_memory,
                                       classes=len(images.classes))  # memory budget, trial run
    settings = {"model": os.path.basename(os.fspath(snn_path)), "model_sha256": sha256_file(snn_path),
                "data": images.source, "split": split, "limit": limit, "timesteps": timesteps,
                "batch_size": batch_size, "device": device,
                "threshold_method": network.metadata.get(METADATA.threshold_method),
                "reset": network.metadata.get(METADATA.reset), "input_layout": layout}
    if world.active:
        settings["world_size"] = world.size
        checkpoint = f"{checkpoint}.rank{world.rank}" if checkpoint else None
    if precision != "float32":
        settings["precision"] = precision
    n = len(x)
    x, labels = x[world.shard(n)], labels[world.shard(n)]

    state = {"done": 0, "correct": {str(t): 0 for t in timesteps}, "spikes": 0.0}
    key = resume_key(settings, mean=mean, std=std, count_spikes=bool(count_spikes))
    recorder = graph = None
    if stats or traces:
        recorder, graph = SpikeRecorder(network, traces), graph_costs(model)
        checkpoint = None
    if checkpoint and Path(checkpoint).is_file():
        try:
            saved = json.loads(Path(checkpoint).read_text())
            if saved.get("key") == key:
                state = saved["state"]
        except (ValueError, KeyError, TypeError):
            pass  # an unreadable checkpoint is ignored, never trusted
    bar = None
    if progress:  # counted in images and advanced every timestep: a batch can take minutes
        bar = tqdm(desc=f"SNN T={timesteps[-1]}", unit="img", initial=state["done"], total=len(x),
                   bar_format="{l_bar}{bar}| {n:.0f}/{total_fmt} images [{elapsed}<{remaining}]")
    for start in range(state["done"], len(x), batch_size):
        batch = x[start:start + batch_size].to(device)
        batch = fast_layout(batch) if layout == "nchw" else batch
        target = labels[start:start + batch_size].to(device)
        if recorder is not None:
            recorder.start_batch(len(batch))

        step_share = len(batch) / timesteps[-1]
        sim = network.simulate(batch, timesteps, count_spikes=count_spikes,
                               on_step=recorder,  # None keeps the fast time-blocked path
                               progress=(lambda steps, share=step_share: bar.update(share * steps))
                               if bar is not None else None)
        for t, out in sim.outputs.items():
            state["correct"][str(t)] += int((out.argmax(1) == target).sum())
        state["spikes"] += sum(sim.spikes.values())
        state["done"] = start + len(batch)
        if checkpoint:
            atomic_write_text(checkpoint, json.dumps({"key": key, "state": state}))
        if bar is not None:  # whole images again, free of rounding
            bar.n = state["done"]
            bar.refresh()
    if bar is not None:
        bar.close()

    ann_accuracy = None
    ann_correct = 0.0
    if ann_path is not None:
        predictions = ann_predictions(ann_path, x.numpy())
        ann_correct = float((predictions == labels.numpy()).sum())
        settings["ann_model"] = os.path.basename(os.fspath(ann_path))
    totals = world.sum([state["correct"][str(t)] for t in timesteps] + [state["spikes"], ann_correct], device)
    correct = dict(zip(timesteps, totals))
    if world.active and checkpoint:  # the summed result is complete; rank files would go stale
        Path(checkpoint).unlink(missing_ok=True)
    if ann_path is not None:
        ann_accuracy = totals[-1] / n
    statistics = None
    if recorder is not None:
        statistics = summarize(recorder, graph, costs, timesteps)
    return Evaluation(
        n=n, ann_accuracy=ann_accuracy,
        snn_accuracy={t: correct[t] / n for t in timesteps},
        spikes_per_image=(totals[-2] / n) if count_spikes else None,
        settings=settings, seconds=time.time() - started, statistics=statistics, rank=world.rank)
