"""Aligned pairs: A/B folders matched by name, derived edge sketches, identical augmentation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from prep_assets import design

from ganplug.data import PrepOptions, open_dataset, prepare_dataset
from ganplug.data.pairs import edge_sketch, match_pairs
from ganplug.errors import UserError


def test_edges_give_dark_lines_at_the_design_outline() -> None:
    arr = np.asarray(design((200, 30, 30), "square", (64, 64)))  # square from 12.8 to 51.2
    sketch = edge_sketch(arr)
    assert sketch.shape == (64, 64, 3) and (sketch[..., 0] == sketch[..., 1]).all()
    assert sketch[32, 10:15].min() < 100  # across the left edge of the square (x = 12)
    assert sketch[32, 32].min() == 255 and sketch[2, 2].min() == 255  # flat inside and outside
    assert (edge_sketch(np.full((16, 16, 3), 90, np.uint8)) == 255).all()


def test_pairs_edges_dataset(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for i, shape in enumerate(["square", "circle", "triangle"]):
        design((40 * i, 100, 200), shape, (64, 64)).save(src / f"{shape}.png")
    res = prepare_dataset(src, tmp_path / "out", PrepOptions(size=32, pairs="edges", mirror=True, seed=0))
    ds = open_dataset(tmp_path / "out")
    assert ds.pairs_a is not None and ds.pairs_a.shape == (6, 32, 32, 3)
    assert res.meta["pairs"]["mode"] == "edges"
    a, b = ds.batch_pairs(np.array([0, 1]))
    assert a.shape == b.shape == (2, 3, 32, 32)
    for i in range(len(ds)):  # A is the sketch of B, row by row (mirrored copies included)
        np.testing.assert_array_equal(ds.pairs_a[i], edge_sketch(np.asarray(ds.images[i])))


def test_pairs_from_two_folders_share_their_augmentation(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "sketch").mkdir(parents=True)
    (src / "render").mkdir()
    rng = np.random.default_rng(0)
    for name in ["ship", "tower", "mech"]:
        b = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
        Image.fromarray(b).save(src / "render" / f"{name}.png")
        Image.fromarray(255 - b).save(src / "sketch" / f"{name}.png")  # A = the negative of B
    Image.new("RGB", (8, 8)).save(src / "render" / "lonely.png")
    opts = PrepOptions(size=32, pairs="sketch,render", jitter=40, mirror=True, copies=3, seed=2, dedup=False)
    res = prepare_dataset(src, tmp_path / "out", opts)
    ds = open_dataset(tmp_path / "out")
    assert len(ds) == 3 * 4
    # identical crops and flips on both sides: A stays the negative of B in every row
    np.testing.assert_array_equal(ds.pairs_a[:].astype(int), 255 - ds.images[:].astype(int))
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["unpaired"] == {"a": [], "b": ["render/lonely.png"]}
    assert res.meta["pairs"]["a_files"] == ["sketch/mech.png", "sketch/ship.png", "sketch/tower.png"]


def test_match_pairs_by_stem() -> None:
    pairs, lone_a, lone_b = match_pairs(["x/a.png", "b.jpg", "c.png"], ["x/a.jpg", "b.png", "d.png"])
    assert pairs == [("x/a.png", "x/a.jpg"), ("b.jpg", "b.png")]
    assert lone_a == ["c.png"] and lone_b == ["d.png"]


def test_pair_option_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="--pairs"):
        PrepOptions(pairs="a,b,c")
    with pytest.raises(UserError, match="--pairs"):
        PrepOptions(pairs="edges", split="halves")
    (tmp_path / "src").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "src" / "x.png")
    with pytest.raises(UserError, match="does not exist"):
        prepare_dataset(tmp_path / "src", tmp_path / "out", PrepOptions(pairs="nope,src"))


def test_unpaired_dataset_has_no_pairs(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    design().save(tmp_path / "src" / "x.png")
    prepare_dataset(tmp_path / "src", tmp_path / "out", PrepOptions(size=16, seed=0))
    ds = open_dataset(tmp_path / "out")
    assert ds.pairs_a is None
    with pytest.raises(UserError, match="no pairs"):
        ds.batch_pairs(np.array([0]))
