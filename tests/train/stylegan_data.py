"""Synthetic training images for StyleGAN tests: orientation is the one thing that matters."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def write_vertical_gradients(folder: Path, n: int = 64, size: int = 32, seed: int = 0) -> Path:
    """n RGB images that are dark at the top and bright at the bottom, each in its own colours."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    t = np.linspace(0.0, 1.0, size)[:, None, None]
    for i in range(n):
        top, bottom = rng.uniform(0.0, 0.3, 3), rng.uniform(0.7, 1.0, 3)
        arr = (top + (bottom - top) * t) * np.ones((size, size, 3))
        Image.fromarray((arr * 255).round().astype(np.uint8)).save(folder / f"grad_{i:03d}.png")
    return folder
