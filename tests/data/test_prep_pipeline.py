"""prepare_dataset end to end on messy synthetic folders: counts, pixels, files, re-runs."""

from __future__ import annotations

import json
import os
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from prep_assets import design, distinct_designs, pixel, side_by_side

from ganplug.data import PrepOptions, is_prepared_dataset, open_dataset, prepare_dataset
from ganplug.data.npy_stream import NpyRowWriter


def messy_folder(root: Path) -> Path:
    """RGBA, grayscale, a side-by-side sheet, a duplicate, broken files, a subfolder, a text file."""
    root.mkdir()
    design((200, 0, 0), "circle", bg=None).save(root / "alpha.png")  # transparent background
    Image.new("L", (64, 48), 90).save(root / "gray.png")
    side_by_side(design((0, 150, 0), "circle"), design((0, 0, 200), "square")).save(root / "sheet.png")
    sub = root / "more" / "deeper"
    sub.mkdir(parents=True)
    design((220, 180, 20), "triangle").save(sub / "yellow.jpg", quality=95)
    design((220, 180, 20), "triangle").save(sub / "yellow_again.png")  # near duplicate of yellow.jpg
    (root / "fake.png").write_text("not an image")
    Image.new("RGB", (64, 64)).save(root / "cut.png")
    (root / "cut.png").write_bytes((root / "cut.png").read_bytes()[:60])
    (root / "concept.psd").write_bytes(b"8BPS")
    (root / "LICENSE.txt").write_text("CC-BY 4.0")  # a companion file: ignored, not reported
    (root / ".DS_Store").write_bytes(b"\0\0")
    return root


def test_messy_folder(tmp_path: Path) -> None:
    src = messy_folder(tmp_path / "src")
    out = tmp_path / "out"
    res = prepare_dataset(src, out, PrepOptions(size=32, seed=1), workers=2)
    c = res.counts
    assert (c["files"], c["read"]) == (7, 5)
    assert c["skipped"] == 3  # fake.png, cut.png, concept.psd (.DS_Store and LICENSE.txt are ignored)
    assert (c["sheets_split"], c["parts_from_sheets"]) == (1, 1)
    assert c["duplicates"] == 1 and c["train"] == 5  # alpha, gray, 2 halves, yellow

    ds = open_dataset(out)
    assert ds.images.shape == (5, 32, 32, 3) and isinstance(ds.images, np.memmap)
    report = json.loads((out / "report.json").read_text())
    reasons = {s["file"]: s["reason"] for s in report["skipped"]}
    assert set(reasons) == {"fake.png", "cut.png", "concept.psd"}
    assert "not a valid PNG" in reasons["fake.png"]
    assert "corrupt" in reasons["cut.png"]
    assert "not an image file type (.psd)" in reasons["concept.psd"]
    [dup] = report["duplicates"]
    assert (dup["file"], dup["duplicate_of"]) == ("more/deeper/yellow_again.png", "more/deeper/yellow.jpg")
    assert report["split_sheets"] == [{"file": "sheet.png", "parts": 2}]

    # every row says where it came from; check pixels at known places
    rows = {(ds.meta["files"][f], part): i for i, (f, part, _copy) in enumerate(ds.meta["rows"])}
    alpha = ds.images[rows[("alpha.png", 0)]]
    assert pixel(alpha, 0, 0) == (255, 255, 255)  # transparent corner -> white background
    assert pixel(alpha, 16, 16) == (200, 0, 0)
    assert pixel(ds.images[rows[("gray.png", 0)]], 16, 16) == (90, 90, 90)
    left, right = ds.images[rows[("sheet.png", 0)]], ds.images[rows[("sheet.png", 1)]]
    assert pixel(left, 16, 16) == (0, 150, 0)  # the split pair's halves are the two designs
    assert pixel(right, 16, 16) == (0, 0, 200)
    blue = (left[..., 2] > 150) & (left[..., 0] < 100) & (left[..., 1] < 100)
    green = (right[..., 1] > 100) & (right[..., 0] < 100) & (right[..., 2] < 100)
    assert not blue.any() and not green.any()  # neither half holds any of the other design

    preview = Image.open(out / "preview.png")
    assert preview.size[0] > 32 * 5 and preview.mode == "RGB"
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["format"] == "ganplug-dataset" and meta["size"] == 32 and meta["count"] == 5
    assert meta["source"]["hash_method"] == "stat" and len(meta["source"]["hash"]) == 64
    assert meta["options"]["fit"] == "pad" and meta["options"]["seed"] == 1
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]  # no temp folders left


def test_identical_rerun_is_a_noop_and_changes_are_refused(tmp_path: Path) -> None:
    src = tmp_path / "src"
    distinct_designs(src, 4)
    out = tmp_path / "out"
    first = prepare_dataset(src, out, PrepOptions(size=16), workers=1)
    assert not first.noop
    stamp = (out / "images.npy").stat().st_mtime_ns
    again = prepare_dataset(src, out, PrepOptions(size=16), workers=1)  # no seed: the recorded one is reused
    assert again.noop and (out / "images.npy").stat().st_mtime_ns == stamp
    assert again.counts == first.counts

    os.utime(src / "d000.png", ns=(1, 1))  # a source changed
    with pytest.raises(Exception, match="has changed since"):
        prepare_dataset(src, out, PrepOptions(size=16), workers=1)
    assert (out / "images.npy").stat().st_mtime_ns == stamp
    rebuilt = prepare_dataset(src, out, PrepOptions(size=16), workers=1, force=True)
    assert not rebuilt.noop and is_prepared_dataset(out)


def test_content_hash_ignores_mtime(tmp_path: Path) -> None:
    src = tmp_path / "src"
    distinct_designs(src, 3)
    out = tmp_path / "out"
    prepare_dataset(src, out, PrepOptions(size=16, hash="contents", seed=0), workers=1)
    os.utime(src / "d000.png", ns=(1, 1))  # touched, same bytes
    assert prepare_dataset(src, out, PrepOptions(size=16, hash="contents", seed=0), workers=1).noop
    assert json.loads((out / "dataset.json").read_text())["source"]["hash_method"] == "contents"


def test_holdout_split_by_source(tmp_path: Path) -> None:
    src = tmp_path / "src"
    distinct_designs(src, 10)
    out = tmp_path / "out"
    res = prepare_dataset(src, out, PrepOptions(size=16, holdout=0.2, mirror=True, seed=5), workers=2)
    assert res.counts["holdout"] == 2
    assert res.counts["train"] == 16  # 8 sources x (original + mirror copy)
    train, hold = open_dataset(out), open_dataset(out, split="holdout")
    assert len(hold) == 2 and hold.images.shape[1:] == (16, 16, 3)
    train_files = {train.meta["files"][r[0]] for r in train.meta["rows"]}
    hold_files = {hold.meta["files"][r[0]] for r in hold.meta["rows"]}
    assert not train_files & hold_files and len(train_files | hold_files) == 10
    assert all(r[2] == 0 for r in hold.meta["rows"])  # the evaluation reference is never augmented
    # the same seed holds out the same files
    res2 = prepare_dataset(src, tmp_path / "out2", PrepOptions(size=16, holdout=0.2, mirror=True, seed=5))
    hold2 = open_dataset(res2.path, split="holdout")
    assert {hold2.meta["files"][r[0]] for r in hold2.meta["rows"]} == hold_files


def test_grid_sheet_drops_blank_cells(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    sheet = Image.new("RGB", (96 * 3, 96 * 2), "white")
    colours = [(200, 0, 0), (0, 150, 0), (0, 0, 200), (200, 200, 0), (0, 180, 180)]  # the 6th cell is empty
    for k, col in enumerate(colours):
        sheet.paste(design(col, "square"), ((k % 3) * 96, (k // 3) * 96))
    sheet.save(src / "sprites.png")
    res = prepare_dataset(src, tmp_path / "out", PrepOptions(size=32, split="grid 2x3", seed=0), workers=1)
    assert res.counts["train"] == 5 and res.counts["blank_cells"] == 1
    ds = open_dataset(tmp_path / "out")
    assert [pixel(ds.images[i], 16, 16) for i in range(5)] == colours


def test_halves_and_no_split(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    side_by_side(design((200, 0, 0)), design((0, 0, 200)), gap=0).save(src / "pair.png")
    halves = prepare_dataset(src, tmp_path / "h", PrepOptions(size=16, split="halves", seed=0))
    assert halves.counts["train"] == 2
    whole = prepare_dataset(src, tmp_path / "n", PrepOptions(size=16, split="none", seed=0))
    assert whole.counts["train"] == 1


def test_keep_alpha_stores_rgba(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    design((200, 0, 0), "circle", bg=None).save(src / "a.png")
    Image.new("RGB", (40, 40), (0, 0, 255)).save(src / "opaque.png")
    prepare_dataset(src, tmp_path / "out", PrepOptions(size=32, keep_alpha=True, seed=0))
    ds = open_dataset(tmp_path / "out")
    assert ds.channels == 4
    a = ds.images[ds.meta["files"].index("a.png")]
    assert a[0, 0, 3] == 0 and pixel(a, 16, 16) == (200, 0, 0, 255)
    assert ds.images[ds.meta["files"].index("opaque.png")][..., 3].min() == 255
    assert ds.batch(np.array([1, 0])).shape == (2, 4, 32, 32)


def _cutouts_and_opaque(src: Path, cutouts: int, opaque: int, opaque_rgba: int = 0) -> Path:
    src.mkdir()
    for i in range(cutouts):
        design((200, 10 * i, 0), "circle", bg=None).save(src / f"cut{i}.png")
    for i in range(opaque):
        design((0, 10 * i, 200), "square").save(src / f"opaque{i}.png")
    for i in range(opaque_rgba):  # an RGBA file whose alpha is 255 everywhere is opaque art
        design((0, 200, 10 * i), "triangle", mode="RGBA").save(src / f"rgba{i}.png")
    return src


def test_alpha_is_kept_when_most_images_are_cutouts_and_says_so(tmp_path: Path) -> None:
    src = _cutouts_and_opaque(tmp_path / "src", cutouts=5, opaque=2)
    result = prepare_dataset(src, tmp_path / "out", PrepOptions(size=16, seed=0, dedup=False))
    assert result.meta["channels"] == 4
    assert result.meta["alpha"] == {"requested": "auto", "kept": True, "transparent": 5, "checked": 7}
    assert json.loads((tmp_path / "out" / "report.json").read_text())["alpha"]["kept"] is True
    assert open_dataset(tmp_path / "out").images[..., 3].min() == 0  # real transparency stored


def test_alpha_is_composited_when_most_images_are_opaque(tmp_path: Path) -> None:
    src = _cutouts_and_opaque(tmp_path / "src", cutouts=2, opaque=2, opaque_rgba=3)
    result = prepare_dataset(src, tmp_path / "out", PrepOptions(size=16, seed=0, dedup=False))
    assert result.meta["channels"] == 3
    assert result.meta["alpha"]["transparent"] == 2 and result.meta["alpha"]["checked"] == 7
    again = prepare_dataset(src, tmp_path / "out", PrepOptions(size=16, seed=0, dedup=False, keep_alpha=False))
    assert again.noop  # auto resolved to "off" is the same dataset as asking for it


def test_an_explicit_choice_wins_over_the_images(tmp_path: Path) -> None:
    src = _cutouts_and_opaque(tmp_path / "src", cutouts=5, opaque=0)
    result = prepare_dataset(src, tmp_path / "out", PrepOptions(size=16, seed=0, keep_alpha=False, dedup=False))
    assert result.meta["channels"] == 3 and result.meta["alpha"] == {"requested": "off", "kept": False}


def test_workers_do_not_change_the_output(tmp_path: Path) -> None:
    src = tmp_path / "src"
    distinct_designs(src, 12)
    opts = dict(size=24, mirror=True, brightness="0.8,1.2", jitter=28, copies=2, seed=3)
    one = prepare_dataset(src, tmp_path / "w1", PrepOptions(**opts), workers=1)
    three = prepare_dataset(src, tmp_path / "w3", PrepOptions(**opts), workers=3)
    np.testing.assert_array_equal(open_dataset(one.path).images, open_dataset(three.path).images)
    assert one.meta["rows"] == three.meta["rows"]


def test_prep_streams_instead_of_holding_the_set(tmp_path: Path) -> None:
    """Peak Python-heap memory during prep stays far below the array's size (numpy buffers are traced)."""
    src = tmp_path / "src"
    src.mkdir()
    rng = np.random.default_rng(0)
    for i in range(300):
        Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(src / f"n{i:03d}.png")
    tracemalloc.start()
    try:
        res = prepare_dataset(src, tmp_path / "out", PrepOptions(size=128, dedup=False, seed=0), workers=2)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    array_bytes = res.counts["train"] * 128 * 128 * 3
    assert array_bytes > 14_000_000
    assert peak < array_bytes / 3, f"peak {peak / 1e6:.1f} MB for a {array_bytes / 1e6:.1f} MB array"


def test_npy_stream_writer_matches_numpy(tmp_path: Path) -> None:
    rows = np.random.default_rng(0).integers(0, 256, (7, 5, 6, 3), dtype=np.uint8)
    w = NpyRowWriter(tmp_path / "a.npy", (5, 6, 3))
    for r in rows:
        w.append(r)
    w.close()
    loaded = np.load(tmp_path / "a.npy", mmap_mode="r")
    np.testing.assert_array_equal(loaded, rows)
    assert loaded.offset % 64 == 0  # data aligned like numpy's own files
    with open(tmp_path / "a.npy", "rb") as f:
        version = np.lib.format.read_magic(f)
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(f) if version == (1, 0) else (None,) * 3
    assert shape == (7, 5, 6, 3) and not fortran and dtype == np.uint8
    with pytest.raises(ValueError):
        NpyRowWriter(tmp_path / "b.npy", (2, 2, 3)).append(np.zeros((2, 2, 4), np.uint8))
