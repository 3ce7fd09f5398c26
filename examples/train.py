"""Train a reference ANN (small CNN, VGG5, VGG16) on CIFAR-10 and export it to ONNX for onnx2snn.

    python examples/train.py small_cnn --data ../shared/data/cifar10 --epochs 10 --out runs/small_cnn

Recipe: SGD with Nesterov momentum under a one-cycle learning rate (computed from the step
index, so a resumed run continues the same schedule), label smoothing, random crop (pad 4) and
horizontal flip. After every epoch the run is checkpointed atomically to ``OUT/checkpoint.pt``; a
rerun with the same OUT resumes from it (``--fresh`` starts over). ``--chunk K`` stops after K
epochs, for machines where a long run must be split. Every run ends by exporting
``OUT/<model>.onnx`` (opset 13, dynamic batch) with the input normalization in its metadata.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import math
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from models import MODELS, build, parameter_count  # noqa: E402

from onnx2snn import METADATA, load_split, save_model, to_tensor  # noqa: E402
from onnx2snn.atomic import atomic_open, atomic_write_bytes, atomic_write_text  # noqa: E402
from onnx2snn.data import cache_dir  # noqa: E402

# CIFAR-10's per-channel statistics of the train split; stored in the exported model.
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)


# ----------------------------------------------------------------------------- data
def _source_files(root: Path, split: str) -> list[Path]:
    """The files a split is read from (image folder tree or python batches): the cache key."""
    if (root / split).is_dir():
        return sorted(p for p in (root / split).rglob("*") if p.is_file())
    return sorted(p for p in root.rglob("*") if p.is_file() and ("batch" in p.name or p.name.endswith(".meta")))


def cached_split(root: str | os.PathLike, split: str, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """uint8 NHWC images and labels, decoded once and kept as .npy in the user cache folder.

    Decoding 50k JPEGs takes ~15 s; the cache is keyed by a hash of the file list (path, size,
    mtime), so a changed data set is decoded again. Never written next to the data.
    """
    root = Path(root).resolve()
    digest = hashlib.sha256(f"{split}|{limit}".encode())
    for path in _source_files(root, split):
        stat = path.stat()
        digest.update(f"{path.relative_to(root)}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    folder = cache_dir() / "decoded" / digest.hexdigest()[:24]
    images_path, labels_path = folder / "images.npy", folder / "labels.npy"
    if images_path.is_file() and labels_path.is_file():
        try:
            return np.load(images_path, allow_pickle=False), np.load(labels_path, allow_pickle=False)
        except (ValueError, OSError):
            pass  # a damaged cache is decoded again
    data = load_split(root, split, limit=limit)
    for path, array in ((images_path, data.images), (labels_path, data.labels)):
        with atomic_open(path, "wb") as handle:
            np.save(handle, array, allow_pickle=False)
    return data.images, data.labels


def augment(images: np.ndarray, generator: torch.Generator) -> torch.Tensor:
    """Random 32x32 crop of the 4-pixel zero-padded image, and a random horizontal flip."""
    x = to_tensor(images, MEAN, STD)
    n, _, h, w = x.shape
    padded = nn.functional.pad(x, (4, 4, 4, 4))
    dy = torch.randint(0, 9, (n,), generator=generator)
    dx = torch.randint(0, 9, (n,), generator=generator)
    flip = torch.rand(n, generator=generator) < 0.5
    out = torch.empty_like(x)
    for i in range(n):
        crop = padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w]
        out[i] = crop.flip(-1) if flip[i] else crop
    return out


# ----------------------------------------------------------------------------- schedule
def one_cycle_lr(step: int, total: int, peak: float, warmup: float = 0.25) -> float:
    """Linear ramp from peak/10 to peak over the first ``warmup`` of training, then cosine to ~0."""
    rise = max(1, int(total * warmup))
    if step < rise:
        return peak * (0.1 + 0.9 * step / rise)
    progress = (step - rise) / max(1, total - rise)
    return peak * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


# ----------------------------------------------------------------------------- checkpoint
def save_checkpoint(path: Path, model: nn.Module, optimizer, epoch: int, seconds: float, config: dict) -> None:
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch,
                "seconds": seconds, "config": config}, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(path: Path, model: nn.Module, optimizer, config: dict) -> tuple[int, float]:
    """Restore a run; returns (epochs done, train seconds so far). Only plain tensors are read."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("config") != config:
        raise SystemExit(f"{path} was made with other settings ({state.get('config')}); "
                         "use another --out or --fresh")
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    return int(state["epoch"]), float(state["seconds"])


# ----------------------------------------------------------------------------- export
def export_onnx(model: nn.Module, path: Path, metadata: dict[str, str]) -> None:
    """opset 13, dynamic batch, the TorchScript exporter; normalization in metadata_props."""
    model.eval()
    buffer = io.BytesIO()
    dummy = torch.zeros(1, 3, 32, 32)
    with warnings.catch_warnings():  # the TorchScript exporter warns that it is legacy; it is what we want
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(model, (dummy,), buffer, dynamo=False, opset_version=13, input_names=["input"],
                          output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    exported = onnx.load_from_string(buffer.getvalue())
    onnx.helper.set_model_props(exported, {
        METADATA.input_mean: ",".join(f"{v:g}" for v in MEAN),
        METADATA.input_std: ",".join(f"{v:g}" for v in STD),
        **metadata})
    save_model(exported, path)


@torch.inference_mode()
def accuracy(model: nn.Module, images: np.ndarray, labels: np.ndarray, batch: int = 500) -> float:
    model.eval()
    correct = 0
    for start in range(0, len(labels), batch):
        logits = model(to_tensor(images[start:start + batch], MEAN, STD))
        correct += int((logits.argmax(1).numpy() == labels[start:start + batch]).sum())
    return correct / len(labels)


# ----------------------------------------------------------------------------- main
def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", choices=sorted(MODELS))
    p.add_argument("--data", required=True, help="CIFAR-10 image folder (train/<class>/*.jpg) or python batches")
    p.add_argument("--epochs", type=int, default=10, help="length of the whole one-cycle schedule")
    p.add_argument("--out", required=True, help="folder for checkpoint.pt, <model>.onnx and train.json")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=None, help="peak learning rate (default: per model)")
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--label-smoothing", type=float, default=0.1)
    p.add_argument("--width", type=int, default=None, help="VGG5 only: FC width (paper: 4096)")
    p.add_argument("--limit", type=int, default=None, help="train on a class-balanced subset (smoke tests)")
    p.add_argument("--max-batches", type=int, default=None, help="stop each epoch after N batches (smoke tests)")
    p.add_argument("--chunk", type=int, default=None, help="stop after this many epochs; rerun to resume")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fresh", action="store_true", help="ignore an existing checkpoint")
    p.add_argument("--no-test", action="store_true", help="skip the final test-split accuracy")
    return p.parse_args(argv)


DEFAULT_LR = {"small_cnn": 0.2, "vgg5": 0.05, "vgg7_maxpool": 0.1, "vgg16": 0.1}


def main(argv=None) -> dict:
    from tqdm import tqdm

    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    out = Path(args.out)
    lr = args.lr if args.lr is not None else DEFAULT_LR[args.model]
    kwargs = {"width": args.width} if args.model == "vgg5" and args.width else {}
    model = build(args.model, **kwargs).to(args.device)
    # Settings that define the run: resuming with other ones would silently mix two schedules.
    config = {"model": args.model, "epochs": args.epochs, "batch_size": args.batch_size, "lr": lr,
              "weight_decay": args.weight_decay, "label_smoothing": args.label_smoothing, "seed": args.seed,
              "limit": args.limit, "max_batches": args.max_batches, **kwargs}
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    optimizer = torch.optim.SGD([{"params": decay, "weight_decay": args.weight_decay},
                                 {"params": no_decay, "weight_decay": 0.0}], lr=lr, momentum=0.9, nesterov=True)
    checkpoint = out / "checkpoint.pt"
    done, seconds = 0, 0.0
    if checkpoint.is_file() and not args.fresh:
        done, seconds = load_checkpoint(checkpoint, model, optimizer, config)
        print(f"resuming {checkpoint}: {done}/{args.epochs} epochs done, {seconds:.0f} s so far")

    images, labels = cached_split(args.data, "train", args.limit)
    print(f"{args.model}: {parameter_count(model):,} parameters; {len(labels)} train images; "
          f"normalization mean={MEAN} std={STD}")
    per_epoch = -(-len(labels) // args.batch_size)
    if args.max_batches:
        per_epoch = min(per_epoch, args.max_batches)
    total_steps = per_epoch * args.epochs
    criterion = nn.CrossEntropyLoss(label_smoothing=args.label_smoothing)
    last = args.epochs if args.chunk is None else min(args.epochs, done + args.chunk)
    for epoch in range(done, last):
        started = time.time()
        model.train()
        order = np.random.default_rng([args.seed, epoch]).permutation(len(labels))
        generator = torch.Generator().manual_seed(args.seed * 100_003 + epoch)
        bar = tqdm(range(per_epoch), desc=f"epoch {epoch + 1}/{args.epochs}", unit="batch",
                   mininterval=1.0 if sys.stderr.isatty() else 30.0)
        seen = correct = 0
        loss_sum = 0.0
        for index in bar:
            step = epoch * per_epoch + index
            for group in optimizer.param_groups:
                group["lr"] = one_cycle_lr(step, total_steps, lr)
            pick = order[index * args.batch_size:(index + 1) * args.batch_size]
            x = augment(images[pick], generator).to(args.device)
            y = torch.from_numpy(labels[pick]).to(args.device)
            logits = model(x)
            loss = criterion(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            seen += len(y)
            correct += int((logits.argmax(1) == y).sum())
            loss_sum += loss.item() * len(y)
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}", refresh=False)
        bar.close()
        elapsed = time.time() - started
        seconds += elapsed
        save_checkpoint(checkpoint, model, optimizer, epoch + 1, seconds, config)
        print(f"epoch {epoch + 1}: train loss {loss_sum / seen:.3f}, train acc {correct / seen:.4f}, "
              f"{elapsed:.0f} s (total {seconds:.0f} s)", flush=True)
        done = epoch + 1

    model.cpu()
    summary = {"model": args.model, "parameters": parameter_count(model), "epochs_done": done,
               "epochs": args.epochs, "train_seconds": round(seconds, 1), "config": config,
               "input_mean": list(MEAN), "input_std": list(STD),
               "command": "python examples/train.py " + " ".join(sys.argv[1:] if argv is None else argv)}
    if not args.no_test and done == args.epochs:
        test_images, test_labels = cached_split(args.data, "test")
        summary["test_accuracy_torch"] = accuracy(model, test_images, test_labels)
        summary["test_images"] = len(test_labels)
        print(f"test accuracy ({len(test_labels)} images, torch): {100 * summary['test_accuracy_torch']:.2f}%")
    onnx_path = out / f"{args.model}.onnx"
    export_onnx(model, onnx_path, {"onnx2snn.train_epochs": f"{done}/{args.epochs}",
                                   "onnx2snn.train_seconds": f"{seconds:.0f}"})
    summary["onnx"] = str(onnx_path)
    atomic_write_text(out / "train.json", json.dumps(summary, indent=2) + "\n")
    print(f"train time {seconds:.0f} s over {done} epochs; wrote {onnx_path} "
          f"(input mean {','.join(map(str, MEAN))}, std {','.join(map(str, STD))})")
    return summary


if __name__ == "__main__":
    main()
