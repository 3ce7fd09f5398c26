"""Train a reference ANN (small CNN, VGG5, VGG16) on CIFAR-10 and export it to ONNX for onnx2snn.

    python examples/train.py small_cnn --data ../shared/data/cifar10 --epochs 10 --out runs/small_cnn

Recipe: SGD with Nesterov momentum under a one-cycle learning rate (computed from the step
index, so a resumed run continues the same schedule), label smoothing, random crop (pad 4) and
horizontal flip. The run is checkpointed atomically to ``OUT/checkpoint.pt`` after every epoch
(and every ``--save-every`` steps); a rerun with the same OUT resumes from it, mid-epoch too
(``--fresh`` starts over). ``--chunk K`` stops after K epochs and ``--time-budget S`` before S
seconds of wall time, for machines where a long run must be split. Every run ends by exporting
``OUT/<model>.onnx`` (opset 13, dynamic batch) with the input normalization in its metadata.

GPU: ``--device cuda --gpu-resident --amp bf16 --channels-last [--compile]`` decodes the data once,
keeps it on the device as uint8 and augments each batch there (``scripts/gpu_train.sh``).
``--width-mult M`` (vgg5, vgg16, resnet32) narrows every layer and keeps the structure, for CPU budgets.
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


def epoch_plan(seed: int, epoch: int, n: int) -> tuple[np.ndarray, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The order of the images and each position's crop offsets and flip, for one epoch.

    Drawn from (seed, epoch) alone, so a run resumed in the middle of an epoch sees the same batches.
    """
    order = np.random.default_rng([seed, epoch]).permutation(n)
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    dy = torch.randint(0, 9, (n,), generator=generator)
    dx = torch.randint(0, 9, (n,), generator=generator)
    flip = torch.rand(n, generator=generator) < 0.5
    return order, dy, dx, flip


def crop_flip(padded: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, flip: torch.Tensor, size: int = 32):
    """Per-image crop of ``size`` x ``size`` at (dy, dx) from padded NCHW images, flipped where asked.

    One gather for the whole batch (no Python loop), so it runs on the GPU as well as on the CPU.
    """
    steps = torch.arange(size, device=padded.device)
    rows = dy.to(padded.device)[:, None] + steps                          # (B, size)
    cols = dx.to(padded.device)[:, None] + steps
    cols = torch.where(flip.to(padded.device)[:, None], cols.flip(1), cols)
    batch = torch.arange(len(padded), device=padded.device)[:, None, None, None]
    channel = torch.arange(padded.shape[1], device=padded.device)[None, :, None, None]
    return padded[batch, channel, rows[:, None, :, None], cols[:, None, None, :]]


def augment(images: np.ndarray, dy: torch.Tensor, dx: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """Random 32x32 crop of the 4-pixel zero-padded (normalized) image, and a random horizontal flip."""
    x = nn.functional.pad(to_tensor(images, MEAN, STD), (4, 4, 4, 4))
    return crop_flip(x, dy, dx, flip)


class ResidentData:
    """A split held on the device as padded uint8 NCHW (50k images: 240 MB); batches are cut there.

    The padding is the mean colour, which normalizes to ~0: the same as the CPU path's zero padding
    of normalized images.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, device: torch.device):
        x = torch.from_numpy(images).to(device).permute(0, 3, 1, 2)
        fill = torch.tensor([round(255 * m) for m in MEAN], dtype=torch.uint8, device=device)
        self.padded = fill[None, :, None, None].expand(len(x), 3, 40, 40).contiguous()
        self.padded[:, :, 4:36, 4:36] = x
        self.labels = torch.from_numpy(labels.astype(np.int64)).to(device)
        self.mean = torch.tensor(MEAN, device=device)[None, :, None, None] * 255
        self.std = torch.tensor(STD, device=device)[None, :, None, None] * 255

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x.float() - self.mean) / self.std

    def batch(self, pick: torch.Tensor, dy, dx, flip) -> tuple[torch.Tensor, torch.Tensor]:
        return self.normalize(crop_flip(self.padded[pick], dy, dx, flip)), self.labels[pick]

    def plain(self, start: int, stop: int) -> torch.Tensor:
        """Test-time images: the centre, unpadded, normalized."""
        return self.normalize(self.padded[start:stop, :, 4:36, 4:36])


# ----------------------------------------------------------------------------- schedule
def one_cycle_lr(step: int, total: int, peak: float, warmup: float = 0.25) -> float:
    """Linear ramp from peak/10 to peak over the first ``warmup`` of training, then cosine to ~0."""
    rise = max(1, int(total * warmup))
    if step < rise:
        return peak * (0.1 + 0.9 * step / rise)
    progress = (step - rise) / max(1, total - rise)
    return peak * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


# ----------------------------------------------------------------------------- checkpoint
def half(value):
    """float32 tensors (nested in dicts and lists) as float16: a compact checkpoint."""
    if torch.is_tensor(value):
        return value.half() if value.dtype == torch.float32 else value
    if isinstance(value, dict):
        return {key: half(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(half(item) for item in value)
    return value


def save_checkpoint(path: Path, model: nn.Module, optimizer, epoch: int, seconds: float, config: dict,
                    step: int | None = None, compact: bool = False) -> None:
    """``epoch``: epochs complete; ``step``: optimizer steps done (mid-epoch when not a multiple).

    ``compact`` stores weights and momentum as float16 (half the size, small enough to commit for a
    narrow model); loading casts them back to float32, so such a resume is close to, not identical
    with, an uninterrupted run.
    """
    buffer = io.BytesIO()
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict()}
    if compact:
        state = half(state)
    torch.save({**state, "epoch": epoch, "step": step, "seconds": seconds, "config": config}, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(path: Path, model: nn.Module, optimizer, config: dict,
                    per_epoch: int | None = None) -> tuple[int, float] | tuple[int, float, int]:
    """Restore a run; returns (epochs done, train seconds so far), and the steps done when
    ``per_epoch`` is given (older checkpoints hold whole epochs only). Only plain tensors are read."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("config") != config:
        raise SystemExit(f"{path} was made with other settings ({state.get('config')}); "
                         "use another --out or --fresh")
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    epoch, seconds = int(state["epoch"]), float(state["seconds"])
    if per_epoch is None:
        return epoch, seconds
    step = state.get("step")
    return epoch, seconds, int(step) if step is not None else epoch * per_epoch


# ----------------------------------------------------------------------------- export
def export_onnx(model: nn.Module, path: Path, metadata: dict[str, str], fp16: bool = False) -> None:
    """opset 13, dynamic batch, the TorchScript exporter; normalization in metadata_props.

    ``fp16`` stores every float weight as float16 followed by a Cast to float32 (half the file;
    the graph still computes in float32, and onnx2snn folds the casts when it converts).
    """
    model.eval()
    buffer = io.BytesIO()
    dummy = torch.zeros(1, 3, 32, 32, device=next(model.parameters()).device)
    with warnings.catch_warnings():  # the TorchScript exporter warns that it is legacy; it is what we want
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(model, (dummy,), buffer, dynamo=False, opset_version=13, input_names=["input"],
                          output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    exported = onnx.load_from_string(buffer.getvalue())
    if fp16:
        weights_to_fp16(exported)
    onnx.helper.set_model_props(exported, {
        METADATA.input_mean: ",".join(f"{v:g}" for v in MEAN),
        METADATA.input_std: ",".join(f"{v:g}" for v in STD),
        **metadata})
    save_model(exported, path)


def weights_to_fp16(model: onnx.ModelProto, min_elements: int = 16) -> None:
    """Store float32 initializers of at least ``min_elements`` values as float16 + Cast(to=float)."""
    from onnx import numpy_helper

    casts = []
    for tensor in model.graph.initializer:
        if tensor.data_type != onnx.TensorProto.FLOAT:
            continue
        values = numpy_helper.to_array(tensor)
        if values.size < min_elements:
            continue
        name = tensor.name
        tensor.CopyFrom(numpy_helper.from_array(values.astype(np.float16), name + "_fp16"))
        casts.append(onnx.helper.make_node("Cast", [name + "_fp16"], [name], to=onnx.TensorProto.FLOAT,
                                           name=name + "_cast"))
    nodes = list(model.graph.node)
    del model.graph.node[:]
    model.graph.node.extend(casts + nodes)


@torch.inference_mode()
def accuracy(model: nn.Module, images, labels, batch: int = 500, device: str = "cpu",
             channels_last: bool = False) -> float:
    """Top-1 accuracy in float32; ``images`` is uint8 NHWC (numpy) or a ResidentData."""
    model.eval()
    correct = 0
    for start in range(0, len(labels), batch):
        if isinstance(images, ResidentData):
            x = images.plain(start, start + batch)
        else:
            x = to_tensor(images[start:start + batch], MEAN, STD).to(device)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        predicted = model(x).argmax(1).cpu().numpy()
        truth = labels[start:start + batch]
        correct += int((predicted == (truth.cpu().numpy() if torch.is_tensor(truth) else truth)).sum())
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
    p.add_argument("--width-mult", type=float, default=1.0,
                   help="vgg5/vgg16/resnet32: multiply every layer's width, keeping the structure (labels the results)")
    p.add_argument("--limit", type=int, default=None, help="train on a class-balanced subset (smoke tests)")
    p.add_argument("--max-batches", type=int, default=None, help="stop each epoch after N batches (smoke tests)")
    p.add_argument("--chunk", type=int, default=None, help="stop after this many epochs; rerun to resume")
    p.add_argument("--max-steps", type=int, default=None,
                   help="stop after this many steps in this run; rerun to resume")
    p.add_argument("--time-budget", type=float, default=None,
                   help="stop training once this many seconds of wall time have passed since start "
                        "(checked before each step), checkpoint, export; rerun to resume")
    p.add_argument("--save-every", type=int, default=0, help="also checkpoint every N steps (0: epoch ends only)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--device", default="cpu")
    p.add_argument("--gpu-resident", action="store_true",
                   help="hold the decoded data on --device as uint8 and augment there (any device)")
    p.add_argument("--amp", choices=("none", "bf16"), default="none", help="autocast the training step")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--compile", action="store_true", help="torch.compile the training model")
    p.add_argument("--fp16-onnx", action="store_true", help="store the ONNX weights as float16 (+ Cast)")
    p.add_argument("--checkpoint", default=None, help="checkpoint file (default: OUT/checkpoint.pt)")
    p.add_argument("--compact-checkpoint", action="store_true",
                   help="store the checkpoint's weights and momentum as float16 (to commit a narrow model's)")
    p.add_argument("--probe", type=int, default=0, metavar="N",
                   help="time N steps (after N warm-up steps) on a throwaway copy, print one JSON line "
                        "(seconds_per_step, steps_per_epoch) and exit: for fitting --epochs to a budget")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fresh", action="store_true", help="ignore an existing checkpoint")
    p.add_argument("--no-test", action="store_true", help="skip the final test-split accuracy")
    return p.parse_args(argv)


def probe(args, model, optimizer, images, labels, device, memory_format, per_epoch: int) -> dict:
    """Seconds per training step as this run would take them (same data path, precision, layout)."""
    resident = ResidentData(images, labels, device) if args.gpu_resident else None
    train_model = torch.compile(model) if args.compile else model
    criterion = nn.CrossEntropyLoss(label_smoothing=args.label_smoothing)
    order, dy, dx, flip = epoch_plan(args.seed, 0, len(labels))
    model.train()

    def run(count: int) -> None:
        for index in range(count):
            positions = slice((index % per_epoch) * args.batch_size, (index % per_epoch + 1) * args.batch_size)
            if resident is not None:
                x, y = resident.batch(torch.from_numpy(order[positions]).to(device), dy[positions], dx[positions],
                                      flip[positions])
            else:
                x = augment(images[order[positions]], dy[positions], dx[positions], flip[positions]).to(device)
                y = torch.from_numpy(labels[order[positions]].astype(np.int64)).to(device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.amp == "bf16"):
                loss = criterion(train_model(x.contiguous(memory_format=memory_format)).float(), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()

    run(args.probe)  # warm-up: cudnn autotuning, compilation
    started = time.time()
    run(args.probe)
    result = {"model": args.model, "width_mult": args.width_mult,
              "seconds_per_step": (time.time() - started) / args.probe, "steps_per_epoch": per_epoch,
              "batch_size": args.batch_size}
    print(json.dumps(result))
    return result


DEFAULT_LR = {"small_cnn": 0.2, "vgg5": 0.05, "vgg7_maxpool": 0.1, "vgg16": 0.1, "resnet32": 0.1}


def main(argv=None) -> dict:
    from tqdm import tqdm

    wall_start = time.time()
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit("--device cuda: no CUDA device is available")
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    out = Path(args.out)
    lr = args.lr if args.lr is not None else DEFAULT_LR[args.model]
    kwargs = {"width": args.width} if args.model == "vgg5" and args.width else {}
    if args.width_mult != 1.0:
        if args.model not in ("vgg5", "vgg16", "resnet32"):
            raise SystemExit(f"--width-mult is for vgg5, vgg16 and resnet32, not {args.model}")
        kwargs["width_mult"] = args.width_mult
    model = build(args.model, **kwargs).to(device)
    memory_format = torch.channels_last if args.channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    # Settings that define the run: resuming with other ones would silently mix two schedules.
    config = {"model": args.model, "epochs": args.epochs, "batch_size": args.batch_size, "lr": lr,
              "weight_decay": args.weight_decay, "label_smoothing": args.label_smoothing, "seed": args.seed,
              "limit": args.limit, "max_batches": args.max_batches, **kwargs}
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    optimizer = torch.optim.SGD([{"params": decay, "weight_decay": args.weight_decay},
                                 {"params": no_decay, "weight_decay": 0.0}], lr=lr, momentum=0.9, nesterov=True)

    images, labels = cached_split(args.data, "train", args.limit)
    # A compiled model would recompile for the short last batch (tens of seconds): drop it then.
    per_epoch = len(labels) // args.batch_size if args.compile else -(-len(labels) // args.batch_size)
    if args.max_batches:
        per_epoch = min(per_epoch, args.max_batches)
    total_steps = per_epoch * args.epochs
    checkpoint = Path(args.checkpoint) if args.checkpoint else out / "checkpoint.pt"
    done, seconds, step = 0, 0.0, 0
    if args.probe:
        return probe(args, model, optimizer, images, labels, device, memory_format, per_epoch)
    if checkpoint.is_file() and not args.fresh:
        done, seconds, step = load_checkpoint(checkpoint, model, optimizer, config, per_epoch)
        print(f"resuming {checkpoint}: {done}/{args.epochs} epochs, step {step}/{total_steps} done, "
              f"{seconds:.0f} s so far")
    print(f"{args.model}: {parameter_count(model):,} parameters (width_mult {args.width_mult:g}); "
          f"{len(labels)} train images; normalization mean={MEAN} std={STD}")
    resident = ResidentData(images, labels, device) if args.gpu_resident else None
    train_model = torch.compile(model) if args.compile else model
    criterion = nn.CrossEntropyLoss(label_smoothing=args.label_smoothing)
    last_epoch = args.epochs if args.chunk is None else min(args.epochs, done + args.chunk)
    stop_step = total_steps if args.max_steps is None else min(total_steps, step + args.max_steps)
    stop_step = min(stop_step, last_epoch * per_epoch)
    stopped_by = None
    while step < stop_step:
        epoch, index = divmod(step, per_epoch)
        started = time.time()
        model.train()
        order, dy, dx, flip = epoch_plan(args.seed, epoch, len(labels))
        if resident is not None:
            order_dev, dy, dx, flip = (torch.from_numpy(order).to(device), dy.to(device), dx.to(device),
                                       flip.to(device))
        bar = tqdm(range(index, per_epoch), desc=f"epoch {epoch + 1}/{args.epochs}", unit="batch",
                   mininterval=1.0 if sys.stderr.isatty() else 30.0)
        seen = 0
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        for index in bar:
            if args.time_budget is not None and time.time() - wall_start > args.time_budget:
                stopped_by = f"time budget {args.time_budget:g} s"
                break
            if step >= stop_step:
                break
            for group in optimizer.param_groups:
                group["lr"] = one_cycle_lr(step, total_steps, lr)
            torch.manual_seed(args.seed * 1_000_003 + step)  # dropout: a resumed run repeats the same masks
            positions = slice(index * args.batch_size, (index + 1) * args.batch_size)
            if resident is not None:
                x, y = resident.batch(order_dev[positions], dy[positions], dx[positions], flip[positions])
            else:
                pick = order[positions]
                x = augment(images[pick], dy[positions], dx[positions], flip[positions]).to(device)
                y = torch.from_numpy(labels[pick].astype(np.int64)).to(device)
            x = x.contiguous(memory_format=memory_format)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.amp == "bf16"):
                logits = train_model(x)
                loss = criterion(logits.float(), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            seen += len(y)
            # kept on the device: a .item() per step would stall the GPU queue
            correct += (logits.argmax(1) == y).sum()
            loss_sum += loss.detach() * len(y)
            if args.save_every and step % args.save_every == 0 and step % per_epoch:
                save_checkpoint(checkpoint, model, optimizer, step // per_epoch, seconds + time.time() - started,
                                config, step, args.compact_checkpoint)
        bar.close()
        if device.type == "cuda":
            torch.cuda.synchronize()
        elapsed = time.time() - started
        seconds += elapsed
        done = step // per_epoch
        save_checkpoint(checkpoint, model, optimizer, done, seconds, config, step, args.compact_checkpoint)
        if seen:
            print(f"epoch {epoch + 1} ({'complete' if step % per_epoch == 0 else f'to step {step}'}): "
                  f"train loss {float(loss_sum) / seen:.3f}, train acc {int(correct) / seen:.4f}, "
                  f"{elapsed:.1f} s (total {seconds:.0f} s)", flush=True)
        if stopped_by:
            print(f"stopped by the {stopped_by} at step {step}/{total_steps}; rerun the same command to resume")
            break

    finished = step >= total_steps
    summary = {"model": args.model, "width_mult": args.width_mult, "parameters": parameter_count(model),
               "epochs_done": done, "steps_done": step, "steps": total_steps, "finished": finished,
               "epochs": args.epochs, "train_seconds": round(seconds, 1),
               "wall_seconds_this_run": None, "config": config,
               "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
               "setup": {"gpu_resident": args.gpu_resident, "amp": args.amp,
                         "channels_last": args.channels_last, "compile": args.compile},
               "input_mean": list(MEAN), "input_std": list(STD),
               "command": "python examples/train.py " + " ".join(sys.argv[1:] if argv is None else argv)}
    if not args.no_test and finished:
        test_images, test_labels = cached_split(args.data, "test")
        test_set = ResidentData(test_images, test_labels, device) if resident is not None else test_images
        test_truth = test_set.labels if resident is not None else test_labels
        summary["test_accuracy_torch"] = accuracy(model, test_set, test_truth, device=args.device,
                                                  channels_last=args.channels_last)
        summary["test_images"] = len(test_labels)
        print(f"test accuracy ({len(test_labels)} images, torch, float32): "
              f"{100 * summary['test_accuracy_torch']:.2f}%")
    onnx_path = out / f"{args.model}.onnx"
    model = model.float().to(memory_format=torch.contiguous_format)
    export_onnx(model, onnx_path, {"onnx2snn.train_epochs": f"{done}/{args.epochs}",
                                   "onnx2snn.train_seconds": f"{seconds:.0f}",
                                   "onnx2snn.width_mult": f"{args.width_mult:g}"}, fp16=args.fp16_onnx)
    summary["onnx"] = str(onnx_path)
    summary["onnx_bytes"] = onnx_path.stat().st_size
    summary["wall_seconds_this_run"] = round(time.time() - wall_start, 1)
    atomic_write_text(out / "train.json", json.dumps(summary, indent=2) + "\n")
    print(f"train time {seconds:.0f} s over {done} epochs ({step}/{total_steps} steps); wrote {onnx_path} "
          f"(input mean {','.join(map(str, MEAN))}, std {','.join(map(str, STD))})")
    return summary


if __name__ == "__main__":
    main()
