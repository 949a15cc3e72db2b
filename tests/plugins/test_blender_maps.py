"""The Blender add-on's pixel maths (maps.py) against independent references: scipy's Sobel, numpy, and
hand-computed cases. maps.py runs in Blender's Python without numpy, so it is loaded here by path."""

from __future__ import annotations

import importlib.util
import io
import math

import numpy as np
import pytest
from host_helpers import PLUGINS
from PIL import Image

scipy_ndimage = pytest.importorskip("scipy.ndimage")


def _load(name: str):
    path = PLUGINS / "blender" / "ganplug_blender" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"ganplug_blender_{name}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


maps = _load("maps")
bstate = _load("state")


def _flat(a: np.ndarray) -> list[float]:
    return a.astype(np.float64).ravel().tolist()


def _normals(out: list[float], h: int, w: int) -> np.ndarray:
    return np.asarray(out).reshape(h, w, 4)


def _reference_normals(height: np.ndarray, strength: float, mode: str) -> np.ndarray:
    """RGB of normalise(-s dh/dx, -s dh/dy, 1) with scipy's Sobel (rows bottom-up, so axis 0 is +Y)."""
    gx = scipy_ndimage.sobel(height, axis=1, mode=mode) / 8.0
    gy = scipy_ndimage.sobel(height, axis=0, mode=mode) / 8.0
    n = np.stack([-strength * gx, -strength * gy, np.ones_like(gx)], axis=-1)
    return 0.5 + 0.5 * n / np.linalg.norm(n, axis=-1, keepdims=True)


@pytest.mark.parametrize("wrap, mode", [(True, "wrap"), (False, "nearest")])
def test_sobel_matches_scipy(wrap, mode):
    rng = np.random.default_rng(0)
    h = rng.random((9, 13))  # not square: rows and columns must not be mixed up
    gx, gy = maps.sobel(_flat(h), 13, 9, wrap=wrap)
    np.testing.assert_allclose(np.reshape(gx, (9, 13)), scipy_ndimage.sobel(h, axis=1, mode=mode) / 8, atol=1e-12)
    np.testing.assert_allclose(np.reshape(gy, (9, 13)), scipy_ndimage.sobel(h, axis=0, mode=mode) / 8, atol=1e-12)


@pytest.mark.parametrize("strength, invert, wrap", [(1.0, False, True), (3.5, True, True), (0.7, False, False)])
def test_maps_of_an_rgba_image_match_an_independent_reference(strength, invert, wrap):
    rng = np.random.default_rng(1)
    rgba = rng.random((11, 7, 4))
    normal, rough = maps.derive(_flat(rgba), 7, 11, 4, strength=strength, invert=invert, wrap=wrap)
    lum = rgba[..., 0] * 0.2126 + rgba[..., 1] * 0.7152 + rgba[..., 2] * 0.0722
    height = 1 - lum if invert else lum
    got = _normals(normal, 11, 7)
    np.testing.assert_allclose(got[..., :3], _reference_normals(height, strength, "wrap" if wrap else "nearest"),
                               atol=1e-12)
    assert np.all(got[..., 3] == 1.0)
    r = _normals(rough, 11, 7)
    np.testing.assert_allclose(r[..., 0], 0.3 + 0.6 * (1 - lum), atol=1e-12)
    assert np.all(r[..., 0] == r[..., 1]) and np.all(r[..., 1] == r[..., 2]) and np.all(r[..., 3] == 1.0)


def test_a_linear_ramp_has_its_hand_computed_constant_normal():
    # h = 0.1 x (columns, +U): slope 0.1 per pixel; strength 2 -> n = (-0.2, 0, 1) / sqrt(1.04)
    w, h = 8, 5
    ramp_x = [0.1 * x for _ in range(h) for x in range(w)]
    n = _normals(maps.normal_map(ramp_x, w, h, strength=2.0, wrap=False), h, w)
    inner = n[:, 1:-1]  # the edge columns see a repeated pixel: half the slope
    np.testing.assert_allclose(inner[..., 0], 0.5 - 0.1 / math.sqrt(1.04), atol=1e-12)  # 0.40194...
    np.testing.assert_allclose(inner[..., 1], 0.5, atol=1e-12)
    np.testing.assert_allclose(inner[..., 2], 0.5 + 0.5 / math.sqrt(1.04), atol=1e-12)  # 0.99029...
    assert abs(inner[0, 0, 0] - 0.401942) < 1e-6 and abs(inner[0, 0, 2] - 0.990290) < 1e-6
    # OpenGL +Y: rows are bottom-up, so height rising up the texture faces down: green below 0.5
    ramp_y = [0.1 * y for y in range(h) for _ in range(w)]
    n = _normals(maps.normal_map(ramp_y, w, h, strength=2.0, wrap=False), h, w)[1:-1]
    np.testing.assert_allclose(n[..., 1], 0.5 - 0.1 / math.sqrt(1.04), atol=1e-12)
    np.testing.assert_allclose(n[..., 0], 0.5, atol=1e-12)


def test_flat_and_extreme_images():
    white = [1.0] * (4 * 6 * 4)
    normal, rough = maps.derive(white, 6, 4, 4, strength=5.0)
    assert list(normal) == [0.5, 0.5, 1.0, 1.0] * 24  # no slope: straight up
    assert list(rough[:4]) == [0.3, 0.3, 0.3, 1.0]  # polished where white
    _, rough = maps.derive([0.0, 1.0] * 24, 6, 4, 2)  # grey + alpha: black
    assert list(rough[:4]) == pytest.approx([0.9, 0.9, 0.9, 1.0], abs=1e-12)
    with pytest.raises(ValueError, match="6x4 pixels"):
        maps.derive([0.0] * 10, 6, 4, 4)


def test_tileable_textures_give_tileable_maps():
    rng = np.random.default_rng(2)
    tile = rng.random((6, 10, 3))
    normal, _ = maps.derive(_flat(tile), 10, 6, 3, strength=4.0, wrap=True)
    one = _normals(normal, 6, 10)
    # the same tile repeated 3 x 3, filtered without wrap-around: its middle tile is the wrapped result,
    # so laid side by side the maps continue across the seams exactly as the texture does
    big = np.tile(tile, (3, 3, 1))
    normal_big, _ = maps.derive(_flat(big), 30, 18, 3, strength=4.0, wrap=False)
    np.testing.assert_allclose(_normals(normal_big, 18, 30)[6:12, 10:20], one, atol=1e-12)
    # and shifting the texture shifts the maps (no border is special)
    shifted, _ = maps.derive(_flat(np.roll(tile, (2, 3), axis=(0, 1))), 10, 6, 3, strength=4.0, wrap=True)
    np.testing.assert_allclose(_normals(shifted, 6, 10), np.roll(one, (2, 3), axis=(0, 1)), atol=1e-12)


def _png(mode: str, **save) -> bytes:
    buf = io.BytesIO()
    Image.new(mode, (4, 4)).save(buf, format="PNG", **save)
    return buf.getvalue()


def test_png_alpha_detection():
    assert bstate.png_has_alpha(_png("RGBA")) and bstate.png_has_alpha(_png("LA"))
    assert not bstate.png_has_alpha(_png("RGB")) and not bstate.png_has_alpha(_png("L"))
    assert bstate.png_has_alpha(_png("P", transparency=0))  # palette with a tRNS chunk
    with pytest.raises(ValueError, match="not a PNG"):
        bstate.png_has_alpha(b"GIF89a" + bytes(40))
