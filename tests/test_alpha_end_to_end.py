"""Cut-outs stay cut-outs: a folder of transparent-background art is prepared as RGBA (the automatic
--alpha rule), every family trains on 4 channels, and generate, an exported model and the server all
return RGBA PNGs with the same pixels. Plus the export round trip (size, pixels, --init-from, no resume)."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ganplug.cli.app import main
from tests.conftest import shape_image
from tests.serve.serve_helpers import make_client

CPU = ["--device", "cpu", "--precision", "fp32"]
TINY = {
    "dcgan": ["--base-channels", "8", "--batch", "4"],
    "fastgan": ["--capacity", "0.0625", "--batch", "4"],
    "stylegan": ["--capacity", "0.05", "--batch", "4", "--model", "z_dim=16,w_dim=16,mapping_layers=2,channel_max=32"],
}


def _cli(*argv) -> None:
    assert main([str(a) for a in argv]) == 0


def _png(path_or_bytes) -> Image.Image:
    im = Image.open(io.BytesIO(path_or_bytes) if isinstance(path_or_bytes, bytes) else path_or_bytes)
    im.load()
    return im


@pytest.fixture(scope="module")
def cutouts(tmp_path_factory) -> Path:
    """16 shapes on fully transparent backgrounds, prepared by `ganplug prep` with its defaults."""
    root = tmp_path_factory.mktemp("alpha")
    rng = np.random.default_rng(3)
    (root / "art").mkdir()
    for i in range(16):
        shape_image(rng, 32, rgba=True).save(root / "art" / f"cut{i:02d}.png")
    _cli("prep", root / "art", root / "data", "--size", "32", "--seed", "0")
    return root / "data"


@pytest.fixture(scope="module")
def runs(cutouts, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("alpha-runs")
    out = {}
    for family, opts in TINY.items():
        out[family] = root / family
        _cli("train", cutouts, "--out", out[family], "--arch", family, "--steps", "2", "--sample-every", "0",
             "--grid-samples", "4", *opts, *CPU)
    return out


def test_prep_keeps_alpha_for_cutouts(cutouts):
    from ganplug.data import open_dataset

    ds = open_dataset(cutouts)
    assert ds.channels == 4 and ds.meta["alpha"]["kept"] and ds.images[..., 3].min() == 0


@pytest.mark.parametrize("family", sorted(TINY))
def test_rgba_from_training_to_files_and_server(runs, tmp_path, family):
    from ganplug.checkpoint import load_generator

    assert load_generator(runs[family]).spec.channels == 4
    _cli("generate", runs[family], "--seeds", "5,6", "--outdir", tmp_path / "cli", *CPU)
    written = [_png(p) for p in sorted((tmp_path / "cli").glob("*.png"))]
    assert [im.mode for im in written] == ["RGBA", "RGBA"]
    with make_client(models=(runs[family],)) as client:
        r = client.post("/v1/generate", json={"model": family, "seeds": [5, 6]})
        assert r.status_code == 200, r.text
        served = [_png(base64.b64decode(im["png"])) for im in r.json()["images"]]
    assert [im.mode for im in served] == ["RGBA", "RGBA"]
    for a, b in zip(written, served, strict=True):
        assert np.array_equal(np.asarray(a), np.asarray(b))


def test_export_is_small_generates_the_same_and_fine_tunes(runs, cutouts, tmp_path):
    from ganplug import checkpoint as ckpt

    run = runs["fastgan"]
    out = tmp_path / "model.safetensors"
    _cli("export", run, out, "--notice", "CC-BY test art")
    full = ckpt.resolve_checkpoint(run)
    assert out.stat().st_size < full.stat().st_size / 4  # fp16 G_ema + D, no G, no optimiser state
    meta = ckpt.read_meta(out)
    assert meta["release"]["dtype"] == "fp16" and meta["notice"] == "CC-BY test art"

    _cli("generate", run, "--seeds", "1,2,3", "--outdir", tmp_path / "a", *CPU)
    _cli("generate", out, "--seeds", "1,2,3", "--outdir", tmp_path / "b", *CPU)
    for pa, pb in zip(sorted((tmp_path / "a").glob("*.png")), sorted((tmp_path / "b").glob("*.png")), strict=True):
        diff = np.abs(np.asarray(_png(pa), np.int16) - np.asarray(_png(pb), np.int16))
        assert diff.max() <= 8 and diff.mean() < 1.0  # half-precision weights, same images

    fine = tmp_path / "fine"
    _cli("train", cutouts, "--out", fine, "--arch", "fastgan", "--init-from", out, "--steps", "1",
         "--sample-every", "0", "--grid-samples", "4", *TINY["fastgan"], *CPU)
    assert main(["train", "--resume", str(out), "--steps", "3"]) == 2  # weights only: nothing to resume

    _cli("export", run, tmp_path / "g.safetensors", "--no-discriminator", "--dtype", "bf16")
    assert main(["train", str(cutouts), "--out", str(tmp_path / "f2"), "--arch", "fastgan", "--init-from",
                 str(tmp_path / "g.safetensors"), "--steps", "1", *TINY["fastgan"], *CPU]) == 2
    assert main(["export", str(run), str(out)]) == 2  # exists: refused without --force
