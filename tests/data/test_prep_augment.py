"""Offline augmentation: what each option does to the stored copies, and seeding."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from prep_assets import distinct_designs

from ganplug.data import PrepOptions, open_dataset, prepare_dataset
from ganplug.data.augment_offline import scale_brightness, scale_saturation
from ganplug.data.geometry import fit_square
from ganplug.errors import UserError


def rows_by_copy(ds) -> dict[tuple[int, int], np.ndarray]:
    return {(f, copy): ds.images[i] for i, (f, _part, copy) in enumerate(ds.meta["rows"])}


def asymmetric(folder: Path, n: int = 3) -> None:
    """Images whose mirror image differs from them (a gradient plus a mark on the left)."""
    folder.mkdir()
    for i in range(n):
        a = np.zeros((40, 40, 3), np.uint8)
        a[..., 0] = np.linspace(0, 255, 40, dtype=np.uint8)[None, :]
        a[..., 1] = 60 * i
        a[5:15, 2:8] = (0, 0, 255)
        Image.fromarray(a).save(folder / f"g{i}.png")


def test_mirror_adds_the_mirror_image_of_each(tmp_path: Path) -> None:
    asymmetric(tmp_path / "src")
    res = prepare_dataset(tmp_path / "src", tmp_path / "out", PrepOptions(size=40, mirror=True, seed=0))
    assert res.counts["train"] == 6 and res.counts["augmented"] == 3
    rows = rows_by_copy(open_dataset(tmp_path / "out"))
    for f in range(3):
        np.testing.assert_array_equal(rows[(f, 1)], rows[(f, 0)][:, ::-1])
        assert not np.array_equal(rows[(f, 1)], rows[(f, 0)])


def test_copies_multiply_and_alternate_mirroring(tmp_path: Path) -> None:
    asymmetric(tmp_path / "src", 2)
    res = prepare_dataset(tmp_path / "src", tmp_path / "out", PrepOptions(size=40, mirror=True, copies=3, seed=0))
    assert res.counts["train"] == 2 * 4
    rows = rows_by_copy(open_dataset(tmp_path / "out"))
    np.testing.assert_array_equal(rows[(0, 2)], rows[(0, 0)])  # even copies are not mirrored
    np.testing.assert_array_equal(rows[(0, 3)], rows[(0, 0)][:, ::-1])


def test_brightness_factors_lie_in_the_range(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    Image.new("RGB", (16, 16), (100, 100, 100)).save(src / "gray.png")
    res = prepare_dataset(src, tmp_path / "out", PrepOptions(size=16, brightness="0.7,1.2", copies=20, seed=0))
    rows = rows_by_copy(open_dataset(res.path))
    factors = np.array([rows[(0, k)].astype(float).mean() / 100 for k in range(1, 21)])
    assert factors.min() >= 0.7 - 0.01 and factors.max() <= 1.2 + 0.01
    assert factors.max() - factors.min() > 0.2  # actually spread over the range
    assert rows[(0, 0)].mean() == 100  # the original is stored unchanged


def test_color_scales_saturation_around_luma(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    Image.new("RGB", (8, 8), (200, 100, 50)).save(src / "c.png")
    res = prepare_dataset(src, tmp_path / "out", PrepOptions(size=8, color="0.5,0.5", seed=0))
    r, g, b = rows_by_copy(open_dataset(res.path))[(0, 1)][0, 0].astype(float)
    luma = 0.299 * 200 + 0.587 * 100 + 0.114 * 50  # independent reference
    expected = [luma + 0.5 * (v - luma) for v in (200, 100, 50)]
    assert np.allclose([r, g, b], expected, atol=1)


def test_photometric_changes_leave_alpha_alone() -> None:
    a = np.zeros((2, 2, 4), np.uint8)
    a[...] = (100, 50, 20, 128)
    assert scale_brightness(a, 2.0)[0, 0].tolist() == [200, 100, 40, 128]
    assert scale_saturation(a, 0.0)[0, 0, 3] == 128


def test_jitter_is_a_random_crop_of_the_upscaled_image(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    rng = np.random.default_rng(1)
    art = Image.fromarray(rng.integers(0, 256, (30, 30, 3), dtype=np.uint8))
    art.save(src / "noise.png")
    res = prepare_dataset(src, tmp_path / "out", PrepOptions(size=32, jitter=40, copies=6, seed=0))
    big = np.asarray(fit_square(art, 40))  # independent: fit at the jitter size
    rows = rows_by_copy(open_dataset(res.path))
    offsets = set()
    for k in range(1, 7):
        row = rows[(0, k)]
        found = [(y, x) for y in range(9) for x in range(9) if np.array_equal(big[y : y + 32, x : x + 32], row)]
        assert len(found) == 1, f"copy {k} is not a 32x32 window of the 40x40 image"
        offsets.add(found[0])
    assert len(offsets) > 1


def test_seeded_augmentation_is_reproducible_and_differs_without(tmp_path: Path) -> None:
    distinct_designs(tmp_path / "src", 4)

    def run(name: str, seed: int | None) -> tuple[np.ndarray, int]:
        opts = PrepOptions(size=24, brightness="0.6,1.4", color="0.3,1.5", jitter=30, copies=2, seed=seed)
        res = prepare_dataset(tmp_path / "src", tmp_path / name, opts, workers=2)
        return np.array(open_dataset(res.path).images), res.meta["options"]["seed"]

    a, _ = run("a", 7)
    b, _ = run("b", 7)
    c, _ = run("c", 8)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    d, seed_d = run("d", None)
    e, seed_e = run("e", None)
    assert seed_d != seed_e and not np.array_equal(d, e)  # unseeded runs differ ...
    f, _ = run("f", seed_d)
    np.testing.assert_array_equal(d, f)  # ... and the recorded seed reproduces one


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"brightness": "1.2,0.7"}, "--brightness"),
        ({"color": "abc"}, "--color"),
        ({"jitter": 20, "size": 32}, "--jitter"),
        ({"copies": -1}, "--copies"),
        ({"holdout": 1.0}, "--holdout"),
        ({"fit": "zoom"}, "--fit"),
        ({"size": 2}, "--size"),
        ({"background": "mauve-ish"}, "background"),
    ],
)
def test_bad_options_are_user_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(UserError, match=message):
        PrepOptions(**kwargs)
