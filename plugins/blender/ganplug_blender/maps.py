"""Normal and roughness maps derived from a base colour: pixel maths only (no bpy, standard library only).

Blender's Python may have no numpy (Debian's Blender has none), so this runs on flat sequences of floats,
row by row, keeping whole images in `array` buffers (a 2048 px texture's maps take a few seconds).

Conventions, all of them Blender's:
- An image is a flat sequence of floats in [0, 1], `channels` per pixel, rows from the BOTTOM up (the order of
  `bpy.types.Image.pixels`, OpenGL's). Row index grows with +V, i.e. +Y points up the texture.
- Luminance is Rec. 709 (0.2126 R + 0.7152 G + 0.0722 B) of the stored (sRGB-encoded) values.
- Height = luminance (bright is raised); `invert` makes it 1 - luminance (dark is raised).
- Gradients are the 3x3 Sobel filter divided by 8, so they are slopes in height per pixel: a ramp
  h = k * x gives dh/dx = k exactly. Borders wrap around when the texture is tileable (its opposite edges
  continue each other, so the maps tile too); otherwise the edge pixels repeat (scipy's mode="nearest").
- The normal is tangent-space, OpenGL style (+Y green, what Blender's Normal Map node expects):
  n = normalise(-strength * dh/dx, -strength * dh/dy, 1), stored as RGB = 0.5 + 0.5 * n, alpha 1.
  A surface rising towards the top of the texture faces down: green below 0.5.
- Roughness = low + (high - low) * (1 - luminance): bright (polished) areas are smoother. Stored grey, alpha 1.
"""

from __future__ import annotations

import array
import math
from collections.abc import Sequence

LUMA = (0.2126, 0.7152, 0.0722)
ROUGHNESS_RANGE = (0.3, 0.9)


def luminance(pixels: Sequence[float], width: int, height: int, channels: int = 4) -> array.array:
    """Per-pixel luminance (grey images: their first channel), bottom-up like the input."""
    n = width * height
    if len(pixels) != n * channels or channels not in (1, 2, 3, 4):
        raise ValueError(f"expected {width}x{height} pixels of 1-4 channels, got {len(pixels)} values "
                         f"for {channels} channel(s).")
    if channels < 3:
        return array.array("d", pixels[0::channels])
    kr, kg, kb = LUMA
    return array.array("d", [kr * r + kg * g + kb * b
                             for r, g, b in zip(pixels[0::channels], pixels[1::channels], pixels[2::channels],
                                                strict=True)])


def _shifted(row, wrap: bool):
    """(row[x + 1], row[x - 1]) for every x, wrapping around or repeating the edge pixel."""
    if wrap:
        return row[1:] + row[:1], row[-1:] + row[:-1]
    return row[1:] + row[-1:], row[:1] + row[:-1]


def _sobel_rows(values: Sequence[float], width: int, height: int, wrap: bool):
    """(dh/dx, dh/dy) row by row, bottom-up: Sobel / 8, x along a row (+U), y up the rows (+V)."""
    if len(values) != width * height or width < 1 or height < 1:
        raise ValueError(f"expected {width}x{height} values, got {len(values)}.")
    diff, smooth = [], []  # [-1, 0, 1] and [1, 2, 1] along each row (doubles: 8 bytes a value, not 32)
    for y in range(height):
        row = array.array("d", values[y * width:(y + 1) * width])
        right, left = _shifted(row, wrap)
        diff.append(array.array("d", [r - le for r, le in zip(right, left, strict=True)]))
        smooth.append(array.array("d", [le + 2.0 * c + r for le, c, r in zip(left, row, right, strict=True)]))
    last = height - 1
    for y in range(height):
        up = (y + 1) % height if wrap else min(y + 1, last)
        down = (y - 1) % height if wrap else max(y - 1, 0)
        yield ([(a + 2.0 * b + c) * 0.125 for a, b, c in zip(diff[down], diff[y], diff[up], strict=True)],
               [(a - b) * 0.125 for a, b in zip(smooth[up], smooth[down], strict=True)])


def sobel(values: Sequence[float], width: int, height: int, wrap: bool = True) -> tuple[list[float], list[float]]:
    """(dh/dx, dh/dy) per pixel: Sobel / 8, x along a row (+U), y up the rows (+V); flat, bottom-up."""
    gx: list[float] = []
    gy: list[float] = []
    for row_x, row_y in _sobel_rows(values, width, height, wrap):
        gx.extend(row_x)
        gy.extend(row_y)
    return gx, gy


def normal_map(heights: Sequence[float], width: int, height: int, strength: float = 1.0,
               wrap: bool = True) -> array.array:
    """Tangent-space normal map (flat RGBA doubles, bottom-up) of a height field; see the module's conventions."""
    s = float(strength)
    out = array.array("d", bytes(8 * 4 * width * height))
    for y, (row_x, row_y) in enumerate(_sobel_rows(heights, width, height, wrap)):
        ks = [0.5 / math.sqrt(s * s * (dx * dx + dy * dy) + 1.0) for dx, dy in zip(row_x, row_y, strict=True)]
        base = 4 * width * y
        out[base:base + 4 * width:4] = array.array("d", [0.5 - s * dx * k for dx, k in zip(row_x, ks, strict=True)])
        out[base + 1:base + 4 * width:4] = array.array("d", [0.5 - s * dy * k for dy, k in zip(row_y, ks, strict=True)])
        out[base + 2:base + 4 * width:4] = array.array("d", [0.5 + k for k in ks])
    out[3::4] = array.array("d", [1.0]) * (width * height)
    return out


def roughness_map(lum: Sequence[float], low: float = ROUGHNESS_RANGE[0],
                  high: float = ROUGHNESS_RANGE[1]) -> array.array:
    """Grey roughness (flat RGBA doubles): `low` where the base colour is white, `high` where it is black."""
    span = float(high) - float(low)
    grey = array.array("d", [float(low) + span * (1.0 - v) for v in lum])
    out = array.array("d", [1.0]) * (4 * len(grey))
    out[0::4] = out[1::4] = out[2::4] = grey
    return out


def derive(pixels: Sequence[float], width: int, height: int, channels: int = 4, *, strength: float = 1.0,
           invert: bool = False, wrap: bool = True) -> tuple[array.array, array.array]:
    """(normal map, roughness map) of a base colour image, both flat RGBA in the input's bottom-up order."""
    lum = luminance(pixels, width, height, channels)
    heights = array.array("d", [1.0 - v for v in lum]) if invert else lum
    return normal_map(heights, width, height, strength, wrap), roughness_map(lum)
