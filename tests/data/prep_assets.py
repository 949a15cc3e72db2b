"""Synthetic assets for the prep tests: designs with known colours at known places."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

TWEMOJI = Path(__file__).resolve().parents[2] / ".." / "shared" / "datasets" / "twemoji-128"


def design(color=(200, 30, 30), shape="circle", size=(96, 96), bg=(255, 255, 255), mode="RGB") -> Image.Image:
    """A single design: a filled shape centred on a plain background (bg None: transparent)."""
    w, h = size
    if mode == "RGBA" or bg is None:
        im = Image.new("RGBA", size, (0, 0, 0, 0) if bg is None else bg + (255,))
    else:
        im = Image.new("RGB", size, bg)
    d = ImageDraw.Draw(im)
    box = (w * 0.2, h * 0.2, w * 0.8, h * 0.8)
    fill = color + ((255,) if im.mode == "RGBA" else ())
    if shape == "circle":
        d.ellipse(box, fill=fill)
    elif shape == "square":
        d.rectangle(box, fill=fill)
    elif shape == "triangle":
        d.polygon([(w * 0.5, h * 0.15), (w * 0.85, h * 0.85), (w * 0.15, h * 0.85)], fill=fill)
    elif shape == "bar":  # a wide design that runs through the middle
        d.rectangle((w * 0.05, h * 0.4, w * 0.95, h * 0.6), fill=fill)
    return im


def side_by_side(left: Image.Image, right: Image.Image, gap: int = 8, bg=(255, 255, 255)) -> Image.Image:
    w, h = left.size
    sheet = Image.new("RGB", (2 * w + gap, h), bg)
    sheet.paste(left, (0, 0))
    sheet.paste(right, (w + gap, 0))
    return sheet


def huge_png(path: Path, w: int = 20_000, h: int = 20_000) -> Path:
    """A valid 1-bit PNG of w x h built row by row: a few KB on disk, w*h pixels when decoded."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    row = b"\x00" + b"\xff" * ((w + 7) // 8)
    comp = zlib.compressobj(9)
    body = b"".join(comp.compress(row) for _ in range(h)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", w, h, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", body) + chunk(b"IEND", b""))
    return path


COLOURS = [(200, 30, 30), (30, 160, 40), (30, 60, 200), (220, 180, 20), (150, 40, 160), (20, 170, 170),
           (240, 120, 30), (90, 90, 90), (120, 60, 20), (250, 100, 160), (60, 200, 120), (10, 10, 80)]
SHAPES = ["circle", "square", "triangle"]


def distinct_designs(folder: Path, n: int, size=(96, 96), fmt="png") -> list[Path]:
    """n designs that differ clearly from each other (colour x shape), saved into folder."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        p = folder / f"d{i:03d}.{fmt}"
        design(COLOURS[i % len(COLOURS)], SHAPES[(i // len(COLOURS)) % len(SHAPES)], size).save(p)
        paths.append(p)
    return paths


def pixel(arr: np.ndarray, y: int, x: int) -> tuple[int, ...]:
    return tuple(int(v) for v in arr[y, x])


def png16_rgb(path: Path, rgb16: np.ndarray) -> Path:
    """A 16-bit-per-channel RGB PNG (Pillow cannot write one), built from an H x W x 3 uint16 array."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    h, w, _ = rgb16.shape
    raw = b"".join(b"\x00" + rgb16[y].astype(">u2").tobytes() for y in range(h))
    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    body = chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)
    return path
