"""load_training_data: prepared datasets open as they are; raw folders are prepared once and cached."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from prep_assets import distinct_designs, huge_png, pixel

from ganplug.data import PrepOptions, load_training_data, prepare_dataset
from ganplug.data import prep as prep_module
from ganplug.data.cache import default_cache_root
from ganplug.errors import DataError


def test_prepared_dataset_opens_memory_mapped(tmp_path: Path) -> None:
    distinct_designs(tmp_path / "src", 3)
    prepare_dataset(tmp_path / "src", tmp_path / "ds", PrepOptions(size=16, seed=0))
    ds = load_training_data(tmp_path / "ds", size=16, progress=False)
    assert len(ds) == 3 and isinstance(ds.images, np.memmap)
    with pytest.raises(DataError, match=r"prepared at 16 px.*--size 32 --force.*--size 16"):
        load_training_data(tmp_path / "ds", size=32, progress=False)
    with pytest.raises(DataError, match="--alpha --force"):
        load_training_data(tmp_path / "ds", size=16, keep_alpha=True, progress=False)
    prepare_dataset(tmp_path / "src", tmp_path / "rgba", PrepOptions(size=16, seed=0, keep_alpha=True))
    assert load_training_data(tmp_path / "rgba", size=16, progress=False).channels == 4
    with pytest.raises(DataError, match="stores RGBA.*--no-alpha --force"):
        load_training_data(tmp_path / "rgba", size=16, keep_alpha=False, progress=False)


def test_raw_folder_is_prepared_once_then_read_from_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "art"
    distinct_designs(src / "nested", 4)
    cache = tmp_path / "cache"
    first = load_training_data(src, size=32, cache_dir=cache, progress=False)
    assert len(first) == 4 and first.path.parent == cache
    assert first.meta["options"]["holdout"] == 0 and first.meta["options"]["copies"] == 0

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again although nothing changed")

    monkeypatch.setattr(prep_module, "open_image", no_decoding)
    second = load_training_data(src, size=32, cache_dir=cache, progress=False)
    assert second.path == first.path
    np.testing.assert_array_equal(second.images, first.images)

    # other options or changed files give another cache entry (and do decode)
    monkeypatch.undo()
    black = load_training_data(src, size=32, background="black", cache_dir=cache, progress=False)
    assert black.path != first.path
    Image.new("RGB", (20, 20), (1, 2, 3)).save(src / "new.png")
    grown = load_training_data(src, size=32, cache_dir=cache, progress=False)
    assert len(grown) == 5 and grown.path != first.path


def test_cache_root_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GANPLUG_CACHE", str(tmp_path / "envcache"))
    assert default_cache_root() == tmp_path / "envcache"
    distinct_designs(tmp_path / "src", 2)
    ds = load_training_data(tmp_path / "src", size=16, progress=False)
    assert ds.path.parent == tmp_path / "envcache"
    monkeypatch.delenv("GANPLUG_CACHE")
    assert default_cache_root() == Path.home() / ".cache" / "ganplug" / "datasets"


def test_foundation_conversions_on_the_raw_path(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    rgba = Image.new("RGBA", (40, 20), (0, 0, 0, 0))
    rgba.paste((0, 0, 255, 255), (10, 5, 30, 15))
    rgba.save(src / "a.png")
    Image.new("P", (10, 10), 0).save(src / "b.gif")
    Image.new("L", (10, 30), 60).save(src / "c.webp", lossless=True)
    Image.new("RGB", (12, 12), (0, 200, 0)).save(src / "d.bmp")
    Image.new("RGB", (12, 12), (200, 0, 0)).save(src / "e.jpg", quality=100)
    ds = load_training_data(src, size=20, cache_dir=tmp_path / "c", progress=False)
    rows = {ds.meta["files"][f]: ds.images[i] for i, (f, _p, _c) in enumerate(ds.meta["rows"])}
    assert set(rows) == {"a.png", "b.gif", "c.webp", "d.bmp", "e.jpg"}
    a = rows["a.png"]  # padded to square, never cropped: 40x20 -> 20x10 centred
    assert pixel(a, 0, 10) == (255, 255, 255)
    assert np.abs(a[10, 10].astype(int) - (0, 0, 255)).max() <= 8  # Lanczos rings a little at 10 px
    assert pixel(a, 10, 1) == (255, 255, 255)  # transparent -> white
    assert pixel(rows["c.webp"], 10, 10) == (60, 60, 60)


def test_bad_raw_folders(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match="does not exist"):
        load_training_data(tmp_path / "missing", size=16, cache_dir=cache)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no image files"):
        load_training_data(tmp_path / "empty", size=16, cache_dir=cache)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.png").write_text("no")
    (bad / "y.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    with pytest.raises(DataError, match="no usable image"):
        load_training_data(bad, size=16, cache_dir=cache, progress=False)
    bomb = tmp_path / "bomb"
    bomb.mkdir()
    huge_png(bomb / "big.png")
    with pytest.raises(DataError, match="too large"):
        load_training_data(bomb, size=16, cache_dir=cache, progress=False)
    assert not any(cache.iterdir()) if cache.exists() else True


def test_corrupt_files_are_skipped_and_reported(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    src = tmp_path / "src"
    distinct_designs(src, 3)
    (src / "broken.png").write_bytes((src / "d000.png").read_bytes()[:100])
    (src / "fake.jpg").write_text("text")
    ds = load_training_data(src, size=16, cache_dir=tmp_path / "c", progress=False)
    assert len(ds) == 3
    assert sorted(s["file"] for s in ds.meta["skipped"]) == ["broken.png", "fake.jpg"]
    err = capsys.readouterr().err
    assert "skipped 2 file(s)" in err and "broken.png" in err and "report.json" in err


def test_twemoji_subset_matches_an_independent_composite(twemoji_subset: Path, tmp_path: Path) -> None:
    ds = load_training_data(twemoji_subset, size=32, cache_dir=tmp_path / "c", progress=False, keep_alpha=False)
    assert len(ds) == 50 and ds.images.shape == (50, 32, 32, 3)
    f = ds.meta["files"][ds.meta["rows"][7][0]]
    src = np.asarray(Image.open(twemoji_subset / f).convert("RGBA")).astype(np.float64)
    a = src[..., 3:] / 255.0
    composite = (src[..., :3] * a + 255.0 * (1 - a)).round().astype(np.uint8)  # over white, by hand
    ref = np.asarray(Image.fromarray(composite).resize((32, 32), Image.Resampling.LANCZOS)).astype(int)
    assert np.abs(ref - ds.images[7].astype(int)).max() <= 2
    assert os.path.exists(ds.path / "preview.png")
