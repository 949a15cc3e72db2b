"""The prepared dataset on disk and in training.

A prepared dataset is a folder with `images.npy` (uint8, N x H x W x C, memory-mapped, C = 3 or 4)
and `dataset.json` (format marker, size, channels, count, options, the source of every row).
Training draws minibatches by index gathers from the memory map: no file decoding per step.
Optional: `holdout/images.npy` (the held-out evaluation split) and `pairs_a.npy` (the A side of
aligned pairs for image-to-image models, row i pairs with row i of images.npy). See docs/data.md.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ganplug.errors import DataError

FORMAT = "ganplug-dataset"
ARRAY_NAME = "images.npy"
META_NAME = "dataset.json"
PAIRS_NAME = "pairs_a.npy"
SPLITS = ("train", "holdout")


def is_prepared_dataset(path: Path) -> bool:
    path = Path(path)
    try:
        if not (path / META_NAME).is_file() or not (path / ARRAY_NAME).is_file():
            return False
        return json.loads((path / META_NAME).read_text()).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):  # unreadable, not JSON, or JSON that is not an object
        return False


@dataclass
class ImageDataset:
    """Images as a uint8 array (N, H, W, C); `meta` is dataset.json."""

    images: np.ndarray
    meta: dict[str, Any]
    path: Path | None = None
    pairs_a: np.ndarray | None = None  # (N, H, W, 3) A side of aligned pairs, when prepared with --pairs

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def size(self) -> int:
        return int(self.images.shape[1])

    @property
    def channels(self) -> int:
        return int(self.images.shape[3])

    def batch(self, indices: np.ndarray) -> torch.Tensor:
        """uint8 NCHW tensor of the given rows (sorted gather keeps memmap reads sequential)."""
        idx = np.asarray(indices)
        order = np.argsort(idx, kind="stable")
        gathered = np.empty((len(idx),) + self.images.shape[1:], dtype=np.uint8)
        gathered[order] = self.images[idx[order]]
        return torch.from_numpy(gathered).permute(0, 3, 1, 2)

    def batch_pairs(self, indices: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """(A, B) uint8 NCHW tensors of aligned pairs: A is the input (sketch), B the image."""
        if self.pairs_a is None:
            raise DataError(f"{self.path} has no pairs; prepare it with `ganplug prep --pairs edges` or A_DIR,B_DIR.")
        a = ImageDataset(self.pairs_a, self.meta, self.path)
        return a.batch(indices), self.batch(indices)


def _load_array(arr_path: Path, channels: tuple[int, ...]) -> np.ndarray:
    try:
        images = np.load(arr_path, mmap_mode="r")
    except (OSError, ValueError) as e:
        raise DataError(f"{arr_path} is damaged ({e}); prepare the dataset again with `ganplug prep --force`.") from e
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[3] not in channels:
        raise DataError(f"{arr_path} holds {images.dtype} {images.shape}; expected uint8 N x H x W x 3|4.")
    if images.shape[0] == 0:
        raise DataError(f"{arr_path} holds no images; prepare the dataset again with `ganplug prep --force`.")
    return images


def open_dataset(path: Path, split: str = "train") -> ImageDataset:
    """Open a prepared dataset folder, memory-mapped. `split` is "train" or "holdout"."""
    path = Path(path)
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
    if not is_prepared_dataset(path):
        raise DataError(f"{path} is not a ganplug dataset (no {META_NAME}/{ARRAY_NAME}); make one with `ganplug prep`.")
    meta = json.loads((path / META_NAME).read_text())
    root = path if split == "train" else path / split
    arr_path = root / ARRAY_NAME
    if not arr_path.is_file():
        raise DataError(
            f"{path} has no {split!r} split ({arr_path} is missing); prepare it with `ganplug prep --holdout 0.2`."
        )
    images = _load_array(arr_path, (3, 4))
    pairs_a = _load_array(root / PAIRS_NAME, (3,)) if (root / PAIRS_NAME).is_file() else None
    if pairs_a is not None and pairs_a.shape[:3] != images.shape[:3]:
        raise DataError(f"{root / PAIRS_NAME} does not match {arr_path}; prepare the dataset again with --force.")
    if split != "train":
        meta = dict(meta, split=split, count=int(images.shape[0]), rows=meta.get(split, {}).get("rows", []))
    return ImageDataset(images=images, meta=meta, path=path, pairs_a=pairs_a)
