"""Aligned pairs for image-to-image models (sketch -> render).

Either two folders matched by file name (`A_DIR,B_DIR`: `a/ship.png` pairs with `b/ship.jpg`), or
`edges`: the A side is a line-art sketch derived from each image, so any asset folder can train a
sketch-to-render model. B is always the real image; A is the conditioning input.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from ganplug.errors import UserError


@dataclass(frozen=True)
class PairSpec:
    mode: str  # "edges" | "dirs"
    a_dir: str = ""
    b_dir: str = ""

    def __str__(self) -> str:
        return "edges" if self.mode == "edges" else f"{self.a_dir},{self.b_dir}"


def parse_pairs(text: str | None) -> PairSpec | None:
    if text is None or text.strip().lower() in ("", "none"):
        return None
    t = text.strip()
    if t.lower() == "edges":
        return PairSpec("edges")
    parts = [p.strip() for p in t.split(",")]
    if len(parts) != 2 or not all(parts):
        raise UserError(f"--pairs {text!r} is not understood; use 'edges' or 'A_DIR,B_DIR' (two folders, comma).")
    return PairSpec("dirs", parts[0], parts[1])


def resolve_pair_dirs(src: Path, spec: PairSpec) -> tuple[Path, Path]:
    """A_DIR and B_DIR, relative to SRC unless absolute; both must be folders."""
    dirs = []
    for name, d in (("A", spec.a_dir), ("B", spec.b_dir)):
        p = Path(d) if Path(d).is_absolute() else src / d
        if not p.is_dir():
            raise UserError(f"--pairs: the {name} folder {p} does not exist (give it relative to SRC, or absolute).")
        dirs.append(p)
    return dirs[0], dirs[1]


def pair_key(rel: str) -> str:
    """Match key: relative path without extension ('ships/a1.png' and 'ships/a1.jpg' pair)."""
    p = Path(rel)
    return str(p.with_suffix("")) if p.suffix else rel


def match_pairs(a_rels: list[str], b_rels: list[str]) -> tuple[list[tuple[str, str]], list[str], list[str]]:
    """Pairs (a_rel, b_rel) in B order, plus the unmatched A and B names."""
    a_by_key: dict[str, str] = {}
    for r in a_rels:
        a_by_key.setdefault(pair_key(r), r)
    pairs, lone_b, used = [], [], set()
    for r in b_rels:
        k = pair_key(r)
        if k in a_by_key and k not in used:
            pairs.append((a_by_key[k], r))
            used.add(k)
        else:
            lone_b.append(r)
    lone_a = [r for k, r in a_by_key.items() if k not in used]
    return pairs, lone_a, lone_b


def edge_sketch(arr: np.ndarray) -> np.ndarray:
    """H x W x 3|4 uint8 -> H x W x 3 uint8 line art: dark lines on white where the image has edges.

    Sobel gradient magnitude of the lightly blurred luminance, normalised by its 98th percentile so
    faint and strong art both give visible lines, then thresholded softly.
    """
    rgb = arr[..., :3]
    if arr.shape[2] == 4:  # transparent areas are background: show them as white
        a = arr[..., 3:4].astype(np.float32) / 255.0
        rgb = (rgb * a + 255.0 * (1 - a)).astype(np.uint8)
    gray = Image.fromarray(np.ascontiguousarray(rgb)).convert("L").filter(ImageFilter.GaussianBlur(0.8))
    g = np.asarray(gray, dtype=np.float32)
    p = np.pad(g, 1, mode="edge")
    gx = (p[:-2, 2:] + 2 * p[1:-1, 2:] + p[2:, 2:]) - (p[:-2, :-2] + 2 * p[1:-1, :-2] + p[2:, :-2])
    gy = (p[2:, :-2] + 2 * p[2:, 1:-1] + p[2:, 2:]) - (p[:-2, :-2] + 2 * p[:-2, 1:-1] + p[:-2, 2:])
    mag = np.hypot(gx, gy)
    ref = float(np.percentile(mag, 98))
    if ref < 8.0:  # a flat image has no lines
        return np.full(arr.shape[:2] + (3,), 255, dtype=np.uint8)
    strength = np.clip((mag / ref - 0.15) / 0.5, 0.0, 1.0)
    line = (255.0 * (1.0 - strength) + 0.5).astype(np.uint8)
    return np.repeat(line[..., None], 3, axis=2)
