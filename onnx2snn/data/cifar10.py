"""CIFAR-10 in its two on-disk forms: torchvision's python batches and an image-folder tree.

Both give an ``ImageSet`` of uint8 HWC images and int64 labels. Subsets are class-balanced
and deterministic (see ``balanced_order``), so ``--limit N`` names the same images everywhere.
"""
from __future__ import annotations

import dataclasses
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import DataError
from .pickle_safe import load_batch

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp"}
SPLITS = ("train", "test")
MAX_IMAGE_PIXELS = 4096 * 4096
PY_BATCH_FILES = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}


@dataclasses.dataclass
class ImageSet:
    images: np.ndarray  # uint8 [N, H, W, C]
    labels: np.ndarray  # int64 [N]
    classes: list[str]
    source: str

    def __len__(self) -> int:
        return len(self.labels)


def balanced_order(per_class: list[list], limit: int | None) -> list[tuple[int, object]]:
    """Round-robin over the classes: class 0 item 0, class 1 item 0, ..., class 0 item 1, ...

    Returns ``(class_index, item)`` pairs, the first ``limit`` of them.
    """
    order = []
    depth = max((len(items) for items in per_class), default=0)
    for position in range(depth):
        for label, items in enumerate(per_class):
            if position < len(items):
                order.append((label, items[position]))
                if limit is not None and len(order) >= limit:
                    return order
    return order


def _python_batch_dir(root: Path) -> Path | None:
    for candidate in (root, root / "cifar-10-batches-py"):
        if (candidate / "test_batch").is_file() or (candidate / "data_batch_1").is_file():
            return candidate
    return None


def _check_labels(labels: np.ndarray, classes: int, where: str) -> None:
    if labels.size and (labels.min() < 0 or labels.max() >= classes):
        raise DataError(f"{where}: labels must lie in [0, {classes - 1}], found {labels.min()}..{labels.max()}")


def _read_python_batches(folder: Path, split: str, limit: int | None, seed: int | None) -> ImageSet:
    datas, labels = [], []
    for name in PY_BATCH_FILES[split]:
        path = folder / name
        if not path.is_file():
            raise DataError(f"{folder}: the {split} split needs {name}, which is missing")
        batch = load_batch(path)
        data = batch.get("data")
        batch_labels = batch.get("labels", batch.get("fine_labels"))
        if not isinstance(data, np.ndarray) or data.ndim != 2 or data.shape[1] != 3072 or batch_labels is None:
            raise DataError(f"{path}: expected 'data' as an [N, 3072] array and 'labels'")
        if data.dtype != np.uint8:
            raise DataError(f"{path}: 'data' must hold uint8 pixels, not {data.dtype}")
        try:
            batch_labels = np.asarray(batch_labels).reshape(-1)
            if batch_labels.size and batch_labels.dtype.kind not in "iu":
                raise TypeError(f"labels of type {batch_labels.dtype}")
            batch_labels = batch_labels.astype(np.int64)
        except (TypeError, ValueError) as error:
            raise DataError(f"{path}: 'labels' must be a list of integers ({error})") from error
        if len(batch_labels) != len(data):
            raise DataError(f"{path}: {len(data)} images but {len(batch_labels)} labels")
        datas.append(data.astype(np.uint8, copy=False))
        labels.append(batch_labels)
    images = np.concatenate(datas).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    all_labels = np.concatenate(labels)
    if len(all_labels) == 0:
        raise DataError(f"{folder}: the {split} split holds no images")
    classes = CIFAR10_CLASSES
    meta = folder / "batches.meta"
    if meta.is_file():
        names = load_batch(meta).get("label_names")
        if isinstance(names, list) and names:
            classes = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
    _check_labels(all_labels, len(classes), str(folder))
    index = np.arange(len(all_labels))
    if seed is not None:
        index = np.random.default_rng(seed).permutation(index)
    if limit is not None:
        index = index[:limit]
    return ImageSet(np.ascontiguousarray(images[index]), all_labels[index], classes, f"{folder} ({split})")


def _decode(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as image:
            # the header's size is checked before decoding: a tiny file can claim a huge image
            if image.width * image.height > MAX_IMAGE_PIXELS:
                raise DataError(f"{path}: {image.width}x{image.height} pixels is too large for this data set")
            return np.asarray(image.convert("RGB"))
    except DataError:
        raise
    except Exception as error:  # PIL reports corrupt files as OSError, SyntaxError, ValueError, EOFError...
        raise DataError(f"{path}: cannot decode image ({type(error).__name__}: {error})") from error


def _read_image_folder(split_dir: Path, limit: int | None, seed: int | None) -> ImageSet:
    classes = sorted(p.name for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(f"{split_dir}: expected one folder per class inside, found none")
    per_class = []
    for name in classes:
        files = sorted(p for p in (split_dir / name).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if seed is not None:
            files = [files[i] for i in np.random.default_rng([seed, len(per_class)]).permutation(len(files))]
        per_class.append(files)
    order = balanced_order(per_class, limit)
    if not order:
        raise DataError(f"{split_dir}: the class folders hold no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        decoded = list(pool.map(_decode, [path for _, path in order]))
    shapes = {image.shape for image in decoded}
    if len(shapes) != 1:
        raise DataError(f"{split_dir}: images differ in size ({', '.join(map(str, sorted(shapes)[:4]))}); "
                        "resize them to one size first")
    labels = np.array([label for label, _ in order], dtype=np.int64)
    return ImageSet(np.stack(decoded), labels, classes, str(split_dir))


def load_split(root: str | os.PathLike, split: str = "test", limit: int | None = None,
               seed: int | None = None) -> ImageSet:
    """Read ``split`` of a CIFAR-style data set at ``root``.

    ``limit`` keeps a class-balanced (image folder) or leading (python batches) subset.
    ``seed`` shuffles before selecting, for calibration samples; None keeps file order.
    """
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; expected one of {SPLITS}")
    if limit is not None and limit < 1:
        raise DataError(f"limit must be positive, not {limit}", parameter="limit")
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: data folder not found")
    batches = _python_batch_dir(root)
    if batches is not None:
        return _read_python_batches(batches, split, limit, seed)
    if (root / split).is_dir():
        return _read_image_folder(root / split, limit, seed)
    raise DataError(f"{root}: expected {root}/{split}/<class>/*.png|jpg or CIFAR-10 python batches "
                    "(data_batch_1..5, test_batch)")
