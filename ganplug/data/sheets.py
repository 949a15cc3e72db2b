"""Cutting sheets into single designs: two designs side by side, or a sprite grid.

`auto` splits only what clearly is a pair: an image near 2:1 whose middle band holds a column of
near-uniform colour (the gap between the two designs). A wide single design runs through the
middle and so is left whole.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ganplug.errors import UserError

Box = tuple[int, int, int, int]  # left, top, right, bottom

AUTO_RATIO = (1.8, 2.25)  # width / height that counts as "two squares side by side"
AUTO_BAND = 0.12  # the separator must lie within this fraction of the width around the centre
UNIFORM_TOL = 10  # max distance (0-255) from the column's median colour that still counts as uniform
UNIFORM_SHARE = 0.99  # share of a column's pixels within tolerance


@dataclass(frozen=True)
class SplitSpec:
    mode: str  # "none" | "auto" | "halves" | "grid"
    rows: int = 1
    cols: int = 1

    def __str__(self) -> str:
        return f"grid {self.rows}x{self.cols}" if self.mode == "grid" else self.mode

    @property
    def max_parts_per_side(self) -> int:
        return max(self.rows, self.cols) if self.mode == "grid" else (2 if self.mode in ("auto", "halves") else 1)


def parse_split(text: str) -> SplitSpec:
    """'none' | 'auto' | 'halves' | 'grid RxC' (also 'grid:RxC', 'RxC')."""
    t = text.strip().lower().replace(":", " ")
    if t in ("none", "auto", "halves"):
        return SplitSpec(t)
    if t.startswith("grid"):
        t = t[4:].strip()
    parts = t.split("x")
    if len(parts) == 2 and all(p.strip().isdigit() for p in parts):
        r, c = int(parts[0]), int(parts[1])
        if r >= 1 and c >= 1 and r * c >= 1:
            return SplitSpec("grid", r, c)
    raise UserError(f"--split {text!r} is not understood; use auto, halves, none or grid RxC (e.g. 'grid 4x4').")


def _uniform_columns(arr: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """Bool per column in [lo, hi): is the column (nearly) one colour?"""
    band = arr[:, lo:hi].astype(np.int16)
    if band.shape[2] == 4:  # transparent pixels count by what they show: premultiply
        a = band[..., 3:4]
        band = np.concatenate([(band[..., :3] * a + 127) // 255, a], axis=2)
    med = np.median(band, axis=0).astype(np.int16)  # (cols, C)
    close = np.abs(band - med[None]).max(axis=2) <= UNIFORM_TOL  # (H, cols)
    return close.mean(axis=0) >= UNIFORM_SHARE


def pair_shaped(width: int, height: int) -> bool:
    """Near 2:1, the only shape `auto` looks into (cheap: no pixels needed)."""
    return AUTO_RATIO[0] <= width / height <= AUTO_RATIO[1]


def find_separator(arr: np.ndarray) -> int | None:
    """Column index that separates two side-by-side designs, or None. `arr` is H x W x C uint8."""
    h, w = arr.shape[:2]
    if not pair_shaped(w, h):
        return None
    half = w / 2
    lo, hi = int(half - AUTO_BAND * w / 2), int(half + AUTO_BAND * w / 2) + 1
    uniform = _uniform_columns(arr, lo, hi)
    if not uniform.any():
        return None
    # Both sides must hold something: a blank image is not two designs.
    left_blank = _uniform_columns(arr, 0, lo).all()
    right_blank = _uniform_columns(arr, hi, w).all()
    if left_blank or right_blank:
        return None
    # The uniform run closest to the centre; cut through its middle.
    idx = np.flatnonzero(uniform) + lo
    runs = np.split(idx, np.flatnonzero(np.diff(idx) > 1) + 1)
    best = min(runs, key=lambda r: abs((r[0] + r[-1]) / 2 - half))
    return int(round((best[0] + best[-1] + 1) / 2))


def split_boxes(arr: np.ndarray, spec: SplitSpec) -> list[Box]:
    """The boxes to cut from an H x W x C image; one full box when it is not a sheet."""
    h, w = arr.shape[:2]
    if spec.mode == "none":
        return [(0, 0, w, h)]
    if spec.mode == "auto":
        x = find_separator(arr)
        return [(0, 0, w, h)] if x is None else [(0, 0, x, h), (x, 0, w, h)]
    if spec.mode == "halves":
        if w >= h:
            return [(0, 0, w // 2, h), (w // 2, 0, w, h)]
        return [(0, 0, w, h // 2), (0, h // 2, w, h)]
    if spec.rows > h or spec.cols > w:
        return [(0, 0, w, h)]
    ys = [round(i * h / spec.rows) for i in range(spec.rows + 1)]
    xs = [round(j * w / spec.cols) for j in range(spec.cols + 1)]
    return [(xs[j], ys[i], xs[j + 1], ys[i + 1]) for i in range(spec.rows) for j in range(spec.cols)]
