"""Transparent art in `ganplug eval`: composited onto the background the generator learnt, not black."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from ganplug.cli.app import main
from ganplug.eval.sources import composite, open_source, resolve_background


def _rgba_folder(tmp_path, n=24, size=32, seed=0):
    """Opaque discs of random colours on fully transparent (0, 0, 0, 0) surroundings, with soft edges."""
    d = tmp_path / "rgba"
    d.mkdir()
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    for i in range(n):
        r = np.hypot(yy - size / 2, xx - size / 2)
        alpha = np.clip((size * rng.uniform(0.2, 0.4) - r) * 64, 0, 255).astype(np.uint8)
        rgb = np.broadcast_to(rng.integers(0, 256, 3).astype(np.uint8), (size, size, 3)).copy()
        rgb[alpha == 0] = 0
        Image.fromarray(np.dstack([rgb, alpha]), "RGBA").save(d / f"{i:03d}.png")
    return d


def test_composite_matches_the_over_operator_in_float64():
    rng = np.random.default_rng(3)
    rgba = rng.integers(0, 256, (5, 7, 4)).astype(np.uint8)
    bg = (200, 30, 90)
    a = rgba[..., 3:].astype(np.float64) / 255
    ref = np.rint(rgba[..., :3] * a + np.array(bg, np.float64) * (1 - a))
    got = composite(rgba, bg)
    assert got.dtype == np.uint8 and np.abs(got.astype(np.float64) - ref).max() <= 1
    assert np.array_equal(composite(rgba, None), rgba[..., :3])  # None: alpha dropped, as clean-fid


def test_folder_source_composites_onto_the_given_colour(tmp_path):
    folder = _rgba_folder(tmp_path, n=3)
    white = open_source(folder, role="real", n=None, seed=0, background=(255, 255, 255))
    dropped = open_source(folder, role="real", n=None, seed=0, background=None)
    (img_w, *_), (img_d, *_) = next(white.batches(3)).arrays, next(dropped.batches(3)).arrays
    with Image.open(sorted(folder.iterdir())[0]) as im:
        ref = np.asarray(Image.alpha_composite(Image.new("RGBA", im.size, (255, 255, 255, 255)), im).convert("RGB"))
    assert np.array_equal(img_w, ref)
    assert (img_w[0, 0] == 255).all() and (img_d[0, 0] == 0).all()  # a transparent corner
    assert any("composited onto #ffffff" in n for n in white.notes)
    assert white.content_hash() != dropped.content_hash()  # cached features must not be shared


def test_auto_takes_the_generators_training_background(tiny_run, tmp_path):
    from ganplug.device import make_runtime

    fake = open_source(tiny_run, role="fake", n=4, seed=0, runtime=make_runtime("cpu", "fp32"))
    trained = json.loads((tiny_run / "config.json").read_text())["train"]["background"]
    assert trained == "white" and resolve_background("auto", fake) == (255, 255, 255)
    assert resolve_background("auto", None) is None and resolve_background("none", fake) is None
    assert resolve_background("#102030", fake) == (16, 32, 48)


def test_cli_white_composited_copies_score_zero_only_on_the_matching_background(tmp_path, capsys):
    """FAKE = the RGBA REAL folder flattened onto white by PIL. On white the sets are the same images
    (SWD 0); with alpha dropped the REAL side turns black around the discs and the distance is large."""
    real = _rgba_folder(tmp_path)
    fake = tmp_path / "flat"
    fake.mkdir()
    for f in sorted(real.iterdir()):
        with Image.open(f) as im:
            Image.alpha_composite(Image.new("RGBA", im.size, (255,) * 4), im).convert("RGB").save(fake / f.name)
    swd = {}
    for bg in ("white", "none"):
        out = tmp_path / f"{bg}.json"
        assert main(["eval", str(fake), "--real", str(real), "--metrics", "swd", "--no-collapse", "--no-cache",
                     "--background", bg, "--json", str(out)]) == 0
        swd[bg] = json.loads(out.read_text())["metrics"]["swd"]["value"]
    assert swd["white"] == pytest.approx(0.0, abs=1e-6)
    assert swd["none"] > 1.0


def test_an_rgba_generator_is_judged_composited_onto_its_background(tmp_path):
    """Cut-outs are seen over a background: auto composites an RGBA model's samples and the RGBA REAL set
    onto the run's --background, never scoring the colour under transparent pixels."""
    from ganplug.device import make_runtime
    from ganplug.eval.options import EvalOptions
    from ganplug.eval.pipeline import open_inputs
    from tests.serve.serve_helpers import write_untrained_run

    run = tmp_path / "model"
    write_untrained_run(run, size=32, channels=4, base_channels=8, z_dim=16)
    fake = open_source(run, role="fake", n=4, seed=0, runtime=make_runtime("cpu", "fp32"))
    assert fake.spec.channels == 4 and resolve_background("auto", fake) == (255, 255, 255)
    inputs = open_inputs(run, _rgba_folder(tmp_path, n=3), EvalOptions(n=4, device="cpu", precision="fp32"))
    assert inputs.fake.background == inputs.real.background == (255, 255, 255)  # the same on both sides
    assert "composited onto #ffffff" in " ".join(inputs.fake.notes)
    raw = np.stack([a for b in fake.batches(4) for a in b.arrays])  # opened alone: alpha dropped
    shown = np.stack([a for b in inputs.fake.batches(4) for a in b.arrays])
    assert not np.array_equal(raw, shown)


def test_cli_bad_background_is_exit_2(tmp_path, capsys):
    real = _rgba_folder(tmp_path, n=2)
    assert main(["eval", str(real), "--real", str(real), "--metrics", "swd", "--background", "plaid"]) == 2
    assert "--background" in capsys.readouterr().err
