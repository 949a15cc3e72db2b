"""Offline augmentation: extra stored copies of each image (mirror, brightness, saturation, jitter).

This multiplies the stored set the way the write-ups this project follows did by hand. Every copy's
randomness comes from its own generator seeded by (seed, source index, part, copy), so a copy is
the same whatever the worker count or processing order, and a different seed gives different copies.
Pairs (A sketch, B render) get the same geometric and colour changes on both sides.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


@dataclass(frozen=True)
class AugmentSpec:
    mirror: bool = False
    brightness: tuple[float, float] | None = None
    color: tuple[float, float] | None = None  # saturation factor range
    jitter: int | None = None  # fit to this size, then random-crop back to the output size
    copies: int = 0

    @property
    def active(self) -> bool:
        return self.copies > 0


def copy_rng(seed: int, source_index: int, part: int, copy: int) -> np.random.Generator:
    return np.random.default_rng([seed, source_index, part, copy])


def scale_brightness(arr: np.ndarray, factor: float) -> np.ndarray:
    """Multiply RGB by `factor` (alpha untouched)."""
    out = arr.copy()
    out[..., :3] = np.clip(arr[..., :3].astype(np.float32) * factor + 0.5, 0, 255).astype(np.uint8)
    return out


def scale_saturation(arr: np.ndarray, factor: float) -> np.ndarray:
    """Move RGB away from (factor > 1) or toward (factor < 1) its own luma gray (alpha untouched)."""
    rgb = arr[..., :3].astype(np.float32)
    gray = (rgb @ _LUMA)[..., None]
    out = arr.copy()
    out[..., :3] = np.clip(gray + factor * (rgb - gray) + 0.5, 0, 255).astype(np.uint8)
    return out


def augment_copy(
    small: np.ndarray,
    big: np.ndarray | None,
    spec: AugmentSpec,
    rng: np.random.Generator,
    copy: int,
    others: tuple[tuple[np.ndarray, np.ndarray | None], ...] = (),
) -> list[np.ndarray]:
    """One augmented copy of an image (and of its paired sides in `others`, identically).

    `small` is the image fitted at the output size; `big` the same fitted at `spec.jitter` (or None).
    Copy numbers start at 1; odd copies are mirrored when `spec.mirror`, so `--mirror --copies 1`
    stores each image and its mirror image. Returns [main, *others] arrays.
    """
    size = small.shape[0]
    sides = [(small, big)] + list(others)
    if spec.jitter and big is not None:
        span = big.shape[0] - size
        y, x = int(rng.integers(0, span + 1)), int(rng.integers(0, span + 1))
        outs = [b[y : y + size, x : x + size] for _, b in sides]
    else:
        outs = [s for s, _ in sides]
    if spec.mirror and copy % 2 == 1:
        outs = [o[:, ::-1] for o in outs]
    if spec.brightness:
        f = float(rng.uniform(*spec.brightness))
        outs = [scale_brightness(o, f) for o in outs]
    if spec.color:
        f = float(rng.uniform(*spec.color))
        outs = [scale_saturation(o, f) for o in outs]
    return [np.ascontiguousarray(o) for o in outs]
