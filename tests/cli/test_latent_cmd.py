"""`ganplug mix` and `ganplug project` end to end on a tiny StyleGAN checkpoint."""

from __future__ import annotations

import copy
import dataclasses
import io
import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load as st_load

from ganplug import checkpoint as ckpt
from ganplug.cli.app import main
from ganplug.latent import render_projection
from ganplug.models.stylegan import StyleGANConfig, build
from ganplug.sampling import to_uint8


@pytest.fixture(scope="module")
def sg_ckpt(tmp_path_factory):
    """A checkpoint of an untrained tiny 32 px StyleGAN, written by the real checkpoint writer."""
    torch.manual_seed(0)
    cfg = StyleGANConfig(size=32, z_dim=16, w_dim=16, mapping_layers=2, capacity=1 / 32)
    G, D = build(cfg)
    for m in G.modules():
        if hasattr(m, "noise_strength"):
            torch.nn.init.constant_(m.noise_strength, 0.3)
    run = tmp_path_factory.mktemp("sgrun")
    opt_G, opt_D = torch.optim.Adam(G.parameters()), torch.optim.Adam(D.parameters())
    ckpt.save_training_checkpoint(run, step=1, G=G, D=D, G_ema=copy.deepcopy(G), opt_G=opt_G, opt_D=opt_D,
                                  rng={"torch": torch.get_rng_state()},
                                  meta={"arch": "stylegan", "model": dataclasses.asdict(cfg), "train": {}})
    return run


def test_mix_writes_grid_and_record(sg_ckpt, tmp_path):
    out = tmp_path / "mix.png"
    assert main(["mix", str(sg_ckpt), "--rows", "1,2", "--cols", "3,4,5", "--styles", "0-3", "--out", str(out),
                 "--device", "cpu"]) == 0
    with Image.open(out) as im:
        assert im.size == (4 * 34 + 2, 3 * 34 + 2)  # (cols + 1) x (rows + 1) cells of 32 px, 2 px gaps
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["rows"] == [1, 2] and record["cols"] == [3, 4, 5] and record["styles_from_rows"] == [0, 1, 2, 3]
    # refuses to overwrite without --force
    assert main(["mix", str(sg_ckpt), "--out", str(out), "--device", "cpu"]) == 2


def test_mix_styles_out_of_range_is_exit_2(sg_ckpt, tmp_path, capsys):
    assert main(["mix", str(sg_ckpt), "--styles", "0-20", "--out", str(tmp_path / "m.png"), "--device", "cpu"]) == 2
    assert "out of range" in capsys.readouterr().err
    assert not (tmp_path / "m.png").exists()


def test_mix_on_dcgan_is_exit_2(tiny_run, tmp_path, capsys):
    assert main(["mix", str(tiny_run), "--out", str(tmp_path / "m.png"), "--device", "cpu"]) == 2
    assert "style-based" in capsys.readouterr().err


def test_project_writes_everything_needed_to_regenerate(sg_ckpt, tmp_path, capsys):
    img = tmp_path / "target.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (48, 48, 3), dtype=np.uint8)).save(img)
    out = tmp_path / "proj"
    assert main(["project", str(sg_ckpt), str(img), "--steps", "12", "--out", str(out), "--loss", "pixel",
                 "--device", "cpu"]) == 0
    text = capsys.readouterr().out
    assert "resized to 32x32" in text and "pixel L1 + MS-SSIM" in text
    for name in ("target.png", "projected.png", "latent.npy", "noise.safetensors", "progress.gif", "projection.json"):
        assert (out / name).is_file(), name
    record = json.loads((out / "projection.json").read_text())
    assert record["space"] == "w" and record["loss"] == "pixel+ms-ssim"
    latent = torch.from_numpy(np.load(out / "latent.npy", allow_pickle=False))
    noise = st_load((out / "noise.safetensors").read_bytes())
    G = ckpt.load_generator(sg_ckpt).G
    again = to_uint8(render_projection(G, latent, "w", noise))[0].permute(1, 2, 0).numpy()
    with Image.open(out / "projected.png") as im:
        assert np.array_equal(np.asarray(im), again)
    # the CLI regenerates the same pixels from the saved files, as projection.json says
    assert "--latent" in record["regenerate"]
    again_png = tmp_path / "again.png"
    assert main(["generate", str(sg_ckpt), "--latent", str(out / "latent.npy"), "--out", str(again_png),
                 "--device", "cpu"]) == 0
    with Image.open(again_png) as a, Image.open(out / "projected.png") as b:
        assert np.array_equal(np.asarray(a), np.asarray(b))
    # a second run into the same folder needs --force
    assert main(["project", str(sg_ckpt), str(img), "--steps", "2", "--out", str(out), "--device", "cpu"]) == 2


def test_project_non_image_is_exit_2(sg_ckpt, tmp_path, capsys):
    bad = tmp_path / "notes.png"
    bad.write_bytes(io.BytesIO(b"definitely not a png").getvalue())
    assert main(["project", str(sg_ckpt), str(bad), "--out", str(tmp_path / "p"), "--device", "cpu"]) == 2
    assert "not an image" in capsys.readouterr().err
    assert not (tmp_path / "p").exists()


@pytest.mark.parametrize("content", ["wrong-size", "not-npy"])
def test_generate_from_a_bad_latent_is_exit_2(sg_ckpt, tmp_path, capsys, content):
    path = tmp_path / "latent.npy"
    if content == "wrong-size":
        np.save(path, np.zeros(7, dtype=np.float32))
    else:
        path.write_text("hello")
    assert main(["generate", str(sg_ckpt), "--latent", str(path), "--out", str(tmp_path / "x.png"),
                 "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and ("not a latent of this" in err or "could not be read" in err)
    assert not (tmp_path / "x.png").exists()


def test_dcgan_projection_regenerates_from_its_z(tiny_run, tmp_path):
    """A z-space projection (DCGAN) round-trips through `generate --latent` as well."""
    img = tmp_path / "target.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(img)
    out = tmp_path / "proj"
    assert main(["project", str(tiny_run), str(img), "--steps", "3", "--out", str(out), "--loss", "pixel",
                 "--device", "cpu"]) == 0
    assert json.loads((out / "projection.json").read_text())["space"] == "z"
    again = tmp_path / "again.png"
    assert main(["generate", str(tiny_run), "--latent", str(out / "latent.npy"), "--out", str(again),
                 "--device", "cpu"]) == 0
    with Image.open(again) as a, Image.open(out / "projected.png") as b:
        assert np.array_equal(np.asarray(a), np.asarray(b))
