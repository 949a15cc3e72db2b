"""Sliced Wasserstein distance on Laplacian-pyramid patches (Karras et al. 2018, ProGAN), x 1e3.

Per pyramid level (full resolution down to 16 px): 128 random 7x7x3 patches per image, each set
normalised per colour channel by its own mean and std, then the mean over 4 x 128 random unit
directions of the 1-D Wasserstein-1 distance between the sorted projections. Reported per level and
averaged, multiplied by 1e3 as in the paper. Patch positions and directions come from `seed`.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ganplug.errors import DataError

NHOOD_SIZE = 7
NHOODS_PER_IMAGE = 128
DIR_REPEATS = 4
DIRS_PER_REPEAT = 128
MIN_RESOLUTION = 16
_G = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0], dtype=torch.float64)
GAUSS5 = torch.outer(_G, _G) / 256.0


def _blur(x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    c = x.shape[1]
    k = (GAUSS5 * scale).to(x.dtype)[None, None].repeat(c, 1, 1, 1)
    return F.conv2d(F.pad(x, (2, 2, 2, 2), mode="reflect"), k, groups=c)


def pyr_down(x: torch.Tensor) -> torch.Tensor:
    return _blur(x)[:, :, ::2, ::2]


def pyr_up(x: torch.Tensor) -> torch.Tensor:
    n, c, h, w = x.shape
    up = torch.zeros(n, c, h * 2, w * 2, dtype=x.dtype)
    up[:, :, ::2, ::2] = x
    return _blur(up, 4.0)


def laplacian_pyramid(images: torch.Tensor, levels: int) -> list[torch.Tensor]:
    pyramid = [images.to(torch.float64)]
    for _ in range(1, levels):
        pyramid.append(pyr_down(pyramid[-1]))
        pyramid[-2] = pyramid[-2] - pyr_up(pyramid[-1])
    return pyramid


def resolutions(size: int) -> list[int]:
    out = []
    while size >= MIN_RESOLUTION:
        out.append(size)
        size //= 2
    return out


def patch_descriptors(level: torch.Tensor, rng: np.random.RandomState) -> np.ndarray:
    """[N * 128, 3, 7, 7] random neighbourhoods of one pyramid level (float32)."""
    n, c, h, w = level.shape
    half = NHOOD_SIZE // 2
    count = n * NHOODS_PER_IMAGE
    img = np.repeat(np.arange(n), NHOODS_PER_IMAGE)
    xs = rng.randint(half, w - half, size=count)
    ys = rng.randint(half, h - half, size=count)
    offs = np.arange(-half, half + 1)
    arr = level.numpy()
    rows = (ys[:, None] + offs[None, :])[:, :, None]  # [count, 7, 1]
    cols = (xs[:, None] + offs[None, :])[:, None, :]  # [count, 1, 7]
    patches = arr[img[:, None, None], :, rows, cols]  # [count, 7, 7, C]
    return np.ascontiguousarray(patches.transpose(0, 3, 1, 2)).astype(np.float32)


class SWDDescriptors:
    """Streams image batches (uint8 NCHW, one size) into per-level patch descriptors."""

    def __init__(self, size: int, seed: int = 0) -> None:
        if size < MIN_RESOLUTION:
            raise DataError(f"SWD needs images of at least {MIN_RESOLUTION} px; these are {size} px.")
        self.levels = resolutions(size)
        self.rng = np.random.RandomState(seed)
        self.parts: list[list[np.ndarray]] = [[] for _ in self.levels]

    def update(self, images: torch.Tensor) -> None:
        for i, level in enumerate(laplacian_pyramid(images, len(self.levels))):
            self.parts[i].append(patch_descriptors(level, self.rng))

    def finalize(self) -> list[np.ndarray]:
        out = []
        for parts in self.parts:
            d = np.concatenate(parts).astype(np.float64)
            d -= d.mean(axis=(0, 2, 3), keepdims=True)
            d /= d.std(axis=(0, 2, 3), keepdims=True)
            out.append(d.reshape(len(d), -1).astype(np.float32))
        return out


def sliced_wasserstein(a: np.ndarray, b: np.ndarray, rng: np.random.RandomState) -> float:
    n = min(len(a), len(b))
    a, b = a[:n], b[:n]
    results = []
    for _ in range(DIR_REPEATS):
        dirs = rng.randn(a.shape[1], DIRS_PER_REPEAT)
        dirs /= np.sqrt(np.square(dirs).sum(axis=0, keepdims=True))
        dirs = dirs.astype(np.float32)
        pa, pb = np.sort(a @ dirs, axis=0), np.sort(b @ dirs, axis=0)
        results.append(np.abs(pa - pb).mean())
    return float(np.mean(results))


def swd(real_desc: list[np.ndarray], fake_desc: list[np.ndarray], levels: list[int], seed: int = 0) -> dict:
    rng = np.random.RandomState(seed + 1)
    per_level = {str(res): sliced_wasserstein(r, f, rng) * 1e3
                 for res, r, f in zip(levels, real_desc, fake_desc, strict=True)}
    return {"value": float(np.mean(list(per_level.values()))), "per_level": per_level}
