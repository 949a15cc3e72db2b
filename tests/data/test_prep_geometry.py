"""fit_square and sheet splitting: where each pixel of the design ends up."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from prep_assets import design, pixel, side_by_side

from ganplug.data.geometry import fit_square
from ganplug.data.sheets import find_separator, parse_split, split_boxes
from ganplug.errors import UserError


def striped(w: int = 100, h: int = 50) -> Image.Image:
    """Left quarter blue, middle red, right quarter green."""
    a = np.zeros((h, w, 3), np.uint8)
    a[:] = (255, 0, 0)
    a[:, : w // 4] = (0, 0, 255)
    a[:, w - w // 4 :] = (0, 255, 0)
    return Image.fromarray(a)


def test_pad_keeps_the_whole_design_and_centres_it() -> None:
    out = np.asarray(fit_square(striped(), 32, fit="pad", fill=(255, 255, 255)))
    assert out.shape == (32, 32, 3)
    assert pixel(out, 0, 16) == (255, 255, 255) and pixel(out, 31, 16) == (255, 255, 255)  # padding rows
    assert pixel(out, 16, 0) == (0, 0, 255)  # left edge of the design still there
    assert pixel(out, 16, 31) == (0, 255, 0)  # and the right edge
    assert pixel(out, 16, 16) == (255, 0, 0)
    rows = np.flatnonzero((out != 255).any(axis=(1, 2)))
    assert rows[0] == 8 and rows[-1] == 23  # 16 rows of content, centred


def test_crop_cuts_the_centre_and_stretch_distorts() -> None:
    crop = np.asarray(fit_square(striped(), 32, fit="crop"))
    # only the red middle remains (the filter's support reaches a little past the crop edge)
    assert (np.abs(crop.astype(int) - (255, 0, 0)).max(axis=2) < 16).all()
    stretch = np.asarray(fit_square(striped(), 32, fit="stretch"))
    assert pixel(stretch, 0, 0) == (0, 0, 255) and pixel(stretch, 31, 31) == (0, 255, 0)
    assert pixel(stretch, 0, 16) == (255, 0, 0)


def test_pad_of_rgba_is_transparent() -> None:
    im = Image.new("RGBA", (40, 20), (10, 200, 10, 255))
    out = np.asarray(fit_square(im, 20, fill=(255, 255, 255)))
    assert out.shape == (20, 20, 4)
    assert out[0, 10, 3] == 0 and out[10, 10, 3] == 255


@pytest.mark.parametrize("resample", ["lanczos", "box"])
def test_downscaling_is_antialiased(resample: str) -> None:
    # a one-pixel checkerboard must average to gray, not alias into stripes or solid colour
    yy, xx = np.mgrid[0:256, 0:256]
    board = (((yy + xx) % 2) * 255).astype(np.uint8)
    out = np.asarray(fit_square(Image.fromarray(board).convert("RGB"), 32, resample=resample)).astype(int)
    assert abs(out.mean() - 127.5) < 3 and out.std() < 4


def test_upscaling_small_art_works() -> None:
    out = np.asarray(fit_square(Image.new("RGB", (8, 4), (9, 9, 9)), 64))
    assert pixel(out, 32, 32) == (9, 9, 9) and pixel(out, 0, 0) == (255, 255, 255)


def test_auto_split_finds_the_gap_between_two_designs() -> None:
    sheet = side_by_side(design((200, 0, 0), "circle"), design((0, 0, 200), "square"), gap=8)
    arr = np.asarray(sheet)
    x = find_separator(arr)
    assert x is not None and 96 <= x <= 104  # inside the gap
    left, right = split_boxes(arr, parse_split("auto"))
    assert left == (0, 0, x, 96) and right == (x, 0, 200, 96)


def test_auto_split_leaves_single_designs_alone() -> None:
    wide = np.asarray(design((0, 120, 0), "bar", size=(192, 96)))  # one design through the middle
    assert find_separator(wide) is None
    square = np.asarray(side_by_side(design(), design(), gap=0).resize((96, 96)))  # not 2:1
    assert find_separator(square) is None
    blank = np.full((96, 192, 3), 255, np.uint8)
    assert find_separator(blank) is None
    assert len(split_boxes(wide, parse_split("auto"))) == 1


def test_auto_split_sees_a_transparent_gap_in_rgba() -> None:
    a, b = design((200, 0, 0), bg=None), design((0, 0, 200), "square", bg=None)
    sheet = Image.new("RGBA", (200, 96), (0, 0, 0, 0))
    sheet.paste(a, (0, 0))
    sheet.paste(b, (104, 0))
    arr = np.asarray(sheet).copy()
    arr[..., :3][arr[..., 3] == 0] = np.random.default_rng(0).integers(0, 255, 3)  # hidden colour noise
    assert find_separator(arr) is not None


def test_halves_and_grid() -> None:
    arr = np.zeros((60, 90, 3), np.uint8)
    assert split_boxes(arr, parse_split("halves")) == [(0, 0, 45, 60), (45, 0, 90, 60)]
    tall = np.zeros((90, 60, 3), np.uint8)
    assert split_boxes(tall, parse_split("halves")) == [(0, 0, 60, 45), (0, 45, 60, 90)]
    boxes = split_boxes(arr, parse_split("grid 2x3"))
    assert len(boxes) == 6
    assert boxes[0] == (0, 0, 30, 30) and boxes[-1] == (60, 30, 90, 60)
    assert sum((r - l) * (b - t) for l, t, r, b in boxes) == 60 * 90  # cells tile the sheet exactly  # noqa: E741
    assert parse_split("grid:4x4").rows == 4 and parse_split("2x5").cols == 5
    assert split_boxes(arr, parse_split("none")) == [(0, 0, 90, 60)]


@pytest.mark.parametrize("bad", ["diagonal", "grid 0x2", "grid 2", "gridx"])
def test_bad_split_values(bad: str) -> None:
    with pytest.raises(UserError, match="--split"):
        parse_split(bad)
