"""preview.png: a contact sheet of a prepared set, to check prep at a glance."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image

CELL_MAX = 128


def _checkerboard(h: int, w: int, square: int = 8) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    light = ((yy // square + xx // square) % 2 == 0)[..., None]
    return np.where(light, 230, 190).astype(np.float32)


def contact_sheet(images: np.ndarray, *, max_images: int = 64, columns: int = 8, gap: int = 2) -> Image.Image:
    """Evenly spaced rows of an N x H x W x C uint8 array on a grid; RGBA shown over a checkerboard."""
    n = len(images)
    if n == 0:
        raise ValueError("no images to preview")
    idx = np.unique(np.linspace(0, n - 1, min(n, max_images)).round().astype(int))
    size = images.shape[1]
    cell = min(size, CELL_MAX)
    cols = min(columns, len(idx))
    rows = math.ceil(len(idx) / cols)
    sheet = Image.new("RGB", (cols * cell + (cols + 1) * gap, rows * cell + (rows + 1) * gap), (40, 40, 40))
    board = _checkerboard(size, size)
    for k, i in enumerate(idx):
        arr = np.asarray(images[i])
        if arr.shape[2] == 4:
            a = arr[..., 3:4].astype(np.float32) / 255.0
            arr = (arr[..., :3] * a + board * (1 - a) + 0.5).astype(np.uint8)
        tile = Image.fromarray(arr, "RGB")
        if cell != size:
            tile = tile.resize((cell, cell), Image.Resampling.BOX)
        r, c = divmod(k, cols)
        sheet.paste(tile, (gap + c * (cell + gap), gap + r * (cell + gap)))
    return sheet


def write_preview(images: np.ndarray, path: Path) -> None:
    contact_sheet(images).save(path, "PNG")
