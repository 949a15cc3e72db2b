"""Pretrained files other users could have written are never used (issue 12, security part).

`inception-2015-12-05.pt` is TorchScript: loading it runs code from the file. So the system temp folder
(where clean-fid caches it, writable by everyone) is never searched, and a file that is group- or
world-writable, owned by another user, or sits in a folder others can write to is refused by name.
The tests run as root, which owns everything it creates: the mode-bit checks are what they exercise,
plus the ownership checks through chown where the tests do run as root.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from evalkit import standin_dir
from PIL import Image

from ganplug.cli.app import main
from ganplug.eval.features import weights

INCEPTION = weights.INCEPTION.filename


@pytest.fixture
def home(home, tmp_path, monkeypatch):
    """conftest's private HOME, plus a private temp folder, so nothing real is searched."""
    standin_dir()  # made (in the real temp folder) before TMPDIR changes
    systmp = tmp_path / "systmp"
    systmp.mkdir()
    systmp.chmod(0o1777)  # like /tmp: world-writable with the sticky bit
    monkeypatch.setenv("TMPDIR", str(systmp))
    monkeypatch.setattr(tempfile, "tempdir", None)  # recomputed from TMPDIR; monkeypatch restores it
    assert Path(tempfile.gettempdir()) == systmp
    return home


def _place(folder: Path, mode: int = 0o644, folder_mode: int | None = 0o755) -> Path:
    """A copy of the stand-in Inception file in `folder` with exactly these modes."""
    folder.mkdir(parents=True, exist_ok=True)
    if folder_mode is not None:
        folder.chmod(folder_mode)
    target = folder / INCEPTION
    shutil.copyfile(standin_dir() / INCEPTION, target)
    target.chmod(mode)
    return target


def _rx(*parts) -> str:
    """A pattern matching `parts` in this order, each taken literally."""
    return ".*".join(re.escape(str(p)) for p in parts)


def _images(tmp_path: Path, n: int = 4) -> Path:
    d = tmp_path / "imgs"
    d.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3)).astype(np.uint8)).save(d / f"img_{i}.png")
    return d


def test_a_file_in_the_system_temp_folder_is_not_found_or_used(home, tmp_path, capsys):
    planted = _place(Path(tempfile.gettempdir()), folder_mode=None)
    searched = [Path(os.path.realpath(d)) for d in weights.search_dirs(weights.INCEPTION)]
    assert Path(os.path.realpath(tempfile.gettempdir())) not in searched
    assert Path(os.path.realpath("/tmp")) not in searched
    assert weights.locate("inception", allow_unverified=True) is None
    with pytest.raises(weights.WeightsError) as e:
        weights.require("inception", allow_unverified=True)
    assert f"{planted} was not used" in str(e.value) and "never searched" in str(e.value)
    # end to end: FID cannot run, exit 2, and the planted file is named as ignored
    imgs = _images(tmp_path)
    assert main(["eval", str(imgs), "--real", str(imgs), "--metrics", "fid", "--allow-unverified-weights"]) == 2
    err = capsys.readouterr().err
    assert "was not found" in err and str(planted) in err


@pytest.mark.parametrize("mode", [0o666, 0o664, 0o646], ids=oct)
def test_a_cache_file_writable_by_others_is_refused_naming_it(home, mode, tmp_path, capsys):
    bad = _place(weights.ganplug_cache_dir(), mode=mode)
    with pytest.raises(weights.WeightsError, match=_rx("refusing to use", bad, f"mode {mode:#o}")):
        weights.locate("inception", allow_unverified=True)
    assert main(["weights", "list"]) == 0  # the listing reports it instead of failing
    assert "REFUSED" in capsys.readouterr().out
    imgs = _images(tmp_path)
    assert main(["eval", str(imgs), "--real", str(imgs), "--metrics", "fid", "--allow-unverified-weights"]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "other users" in err


@pytest.mark.parametrize("folder_mode", [0o777, 0o1777, 0o775], ids=oct)
def test_a_file_in_a_weights_dir_others_can_write_to_is_refused(home, folder_mode, tmp_path, capsys):
    shared = tmp_path / "shared"
    bad = _place(shared, mode=0o644, folder_mode=folder_mode)
    with pytest.raises(weights.WeightsError, match=_rx("refusing to use", bad, "sits in", shared)):
        weights.locate("inception", shared, allow_unverified=True)
    imgs = _images(tmp_path)
    rc = main(["eval", str(imgs), "--real", str(imgs), "--metrics", "fid", "--weights-dir", str(shared),
               "--allow-unverified-weights"])
    assert rc == 2
    assert str(bad) in capsys.readouterr().err


def test_a_folder_inside_a_world_writable_folder_without_sticky_bit_is_refused(home, tmp_path):
    outer = tmp_path / "open"
    outer.mkdir()
    outer.chmod(0o777)  # anyone may rename `inner` away and put their own folder there
    bad = _place(outer / "inner")
    with pytest.raises(weights.WeightsError, match=_rx(bad, "no sticky bit")):
        weights.locate("inception", outer / "inner", allow_unverified=True)
    outer.chmod(0o1777)  # with the sticky bit only the owner may rename it: accepted, like a folder in /tmp
    assert weights.locate("inception", outer / "inner", allow_unverified=True).path == bad


def test_a_correct_file_is_still_found_and_loads(home):
    from ganplug.eval.features.inception import load_scripted

    good = _place(weights.ganplug_cache_dir(), mode=0o644, folder_mode=0o755)
    found = weights.locate("inception", allow_unverified=True)
    assert found is not None and found.path == good
    assert found.verified is False  # stand-in, and the published hash is not pinned
    assert hasattr(load_scripted(found.path), "layers")
    # an explicit --weights-dir of our own (0o700, like a fresh mkdtemp) wins over the cache
    mine = home / "mine"
    _place(mine, mode=0o600, folder_mode=0o700)
    assert weights.locate("inception", mine, allow_unverified=True).path == mine / INCEPTION


def test_a_symlink_to_a_file_others_can_write_is_refused(home, tmp_path):
    target = _place(tmp_path / "elsewhere", mode=0o666)
    cache = weights.ganplug_cache_dir()
    cache.mkdir(parents=True, mode=0o755)
    (cache / INCEPTION).symlink_to(target)
    with pytest.raises(weights.WeightsError, match=_rx(target, "mode 0o666")):
        weights.locate("inception", allow_unverified=True)


def test_torchscript_loader_refuses_an_unsafe_file_even_without_locate(tmp_path):
    from ganplug.eval.features.inception import load_scripted

    bad = _place(tmp_path / "w", mode=0o666)
    with pytest.raises(weights.WeightsError, match=_rx("refusing to use", bad)):
        load_scripted(bad)


def test_fetch_refuses_a_destination_others_can_write_to(home, tmp_path, monkeypatch):
    offline = dataclasses.replace(weights.LPIPS_VGG, url="http://127.0.0.1:9/vgg.pth")
    monkeypatch.setitem(weights.KNOWN, "lpips-vgg16", offline)
    dest = tmp_path / "dest"
    dest.mkdir()
    dest.chmod(0o777)
    with pytest.raises(weights.WeightsError, match=_rx("refusing to download vgg.pth into", dest)):
        weights.fetch("lpips-vgg16", dest)
    assert not list(dest.iterdir())


@pytest.mark.skipif(not hasattr(os, "getuid") or os.getuid() != 0, reason="chown to another uid needs root")
def test_files_and_folders_owned_by_another_user_are_refused(home, tmp_path):
    theirs = _place(tmp_path / "a", mode=0o644)
    os.chown(theirs, 4242, 4242)
    with pytest.raises(weights.WeightsError, match=_rx(theirs, "owned by uid 4242")):
        weights.locate("inception", tmp_path / "a", allow_unverified=True)
    in_theirs = _place(tmp_path / "b", mode=0o644)
    os.chown(tmp_path / "b", 4242, 4242)
    with pytest.raises(weights.WeightsError, match=_rx(in_theirs, "sits in", tmp_path / "b", "owned by uid 4242")):
        weights.locate("inception", tmp_path / "b", allow_unverified=True)
