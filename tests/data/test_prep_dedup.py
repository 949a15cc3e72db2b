"""De-duplication: re-saved, resized and re-coloured copies go; different designs stay."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from prep_assets import design, distinct_designs

from ganplug.data import PrepOptions, prepare_dataset
from ganplug.data.dedup import DuplicateIndex, difference, fingerprint


def face(mouth: str) -> Image.Image:
    """A yellow face; only the mouth differs between variants (a few percent of the pixels)."""
    im = Image.new("RGB", (128, 128), "white")
    d = ImageDraw.Draw(im)
    d.ellipse((8, 8, 120, 120), fill=(250, 200, 40))
    d.ellipse((40, 40, 52, 56), fill=(60, 40, 20))
    d.ellipse((76, 40, 88, 56), fill=(60, 40, 20))
    if mouth == "smile":
        d.arc((36, 60, 92, 100), 20, 160, fill=(60, 40, 20), width=6)
    else:
        d.arc((36, 84, 92, 124), 200, 340, fill=(60, 40, 20), width=6)
    return im


def test_near_duplicates_are_dropped_and_reported(tmp_path: Path) -> None:
    src = tmp_path / "src"
    distinct_designs(src, 6)
    original = Image.open(src / "d000.png").convert("RGB")
    shutil.copy(src / "d000.png", src / "z_exact_copy.png")
    original.save(src / "z_resaved.jpg", quality=80)
    original.resize((80, 80), Image.Resampling.BILINEAR).save(src / "z_smaller.png")
    bright = np.clip(np.asarray(original).astype(float) * 1.04, 0, 255).astype(np.uint8)
    Image.fromarray(bright).save(src / "z_brighter.png")
    res = prepare_dataset(src, tmp_path / "out", PrepOptions(size=32, seed=0), workers=2)
    assert res.counts["read"] == 10
    assert res.counts["duplicates"] == 4 and res.counts["train"] == 6
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    dups = {d["file"]: d for d in report["duplicates"]}
    assert set(dups) == {"z_exact_copy.png", "z_resaved.jpg", "z_smaller.png", "z_brighter.png"}
    assert all(d["duplicate_of"] == "d000.png" for d in dups.values())
    assert dups["z_exact_copy.png"]["distance"] == 0
    # the kept rows are exactly the six designs
    meta = json.loads((tmp_path / "out" / "dataset.json").read_text())
    assert sorted(meta["files"][r[0]] for r in meta["rows"]) == [f"d{i:03d}.png" for i in range(6)]


def test_different_designs_that_look_alike_are_kept(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    face("smile").save(src / "smile.png")
    face("frown").save(src / "frown.png")
    design((200, 30, 30), "circle").save(src / "red.png")
    design((30, 30, 200), "circle").save(src / "blue.png")  # same shape, another colourway
    res = prepare_dataset(src, tmp_path / "out", PrepOptions(size=64, seed=0), workers=1)
    assert res.counts["duplicates"] == 0 and res.counts["train"] == 4


def test_dedup_off_keeps_everything(tmp_path: Path) -> None:
    src = tmp_path / "src"
    distinct_designs(src, 3)
    shutil.copy(src / "d001.png", src / "copy.png")
    res = prepare_dataset(src, tmp_path / "out", PrepOptions(size=32, dedup=False, seed=0), workers=1)
    assert res.counts["duplicates"] == 0 and res.counts["train"] == 4


def test_index_finds_the_earliest_match_and_never_misses_within_threshold() -> None:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    idx = DuplicateIndex(threshold=12)
    idx.add(fingerprint(base), "base")
    for k in range(30):  # other images
        idx.add(fingerprint(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)), f"other{k}")
    noisy = np.clip(base.astype(int) + rng.integers(-6, 7, base.shape), 0, 255).astype(np.uint8)
    mean, local = difference(fingerprint(base), fingerprint(noisy))
    assert mean <= 12 and local == 0
    assert idx.match(fingerprint(noisy)) == ("base", round(mean, 2))
    # a strong local change (a new mark on 1% of the image) is another design
    marked = base.copy()
    marked[10:14, 10:13] = 255 - marked[10:14, 10:13]
    assert idx.match(fingerprint(marked)) is None


def test_transparent_variants_differ_when_alpha_differs() -> None:
    a = np.zeros((32, 32, 4), np.uint8)
    a[8:24, 8:24] = (255, 0, 0, 255)
    b = a.copy()
    b[..., 3] = 0  # same colours, fully transparent
    idx = DuplicateIndex()
    idx.add(fingerprint(a), "a")
    assert idx.match(fingerprint(b)) is None
