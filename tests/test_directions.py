"""Latent directions (GANSpace): the PCA against numpy's SVD, the edit arithmetic in w, the regression to z
for DCGAN, and `ganplug directions` / `generate --edit` through the real CLI, refusals included.

Tiny 32 px runs trained for 2 steps, once per module; 512 samples.
"""

from __future__ import annotations

import copy
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ganplug import directions as dirs
from ganplug import ops
from ganplug.checkpoint import load_generator, save_training_checkpoint
from ganplug.cli.app import main
from ganplug.device import make_runtime
from ganplug.errors import UserError
from ganplug.models import build_models, config_from_dict
from tests.conftest import tiny_config

SAMPLES = 512
CPU = ["--device", "cpu"]
STYLE = {"z_dim": 16, "w_dim": 16, "mapping_layers": 1, "capacity": 0.05, "channel_max": 32}


def _train(out: Path, data: Path, **overrides) -> Path:
    from ganplug.train.loop import train

    train(tiny_config(data, out, steps=2, sample_every=2, ckpt_every=1, **overrides))
    return out


def _untrained_pix2pix(run: Path) -> Path:
    """An image-to-image checkpoint (untrained is enough to be refused)."""
    cfg = config_from_dict("pix2pix", {"size": 32, "base_channels": 8})
    G, D, _ = build_models("pix2pix", cfg)
    opt_g, opt_d = torch.optim.Adam(G.parameters()), torch.optim.Adam(D.parameters())
    save_training_checkpoint(run, step=1, G=G, D=D, G_ema=copy.deepcopy(G), opt_G=opt_g, opt_D=opt_d,
                             rng={"cpu": torch.get_rng_state()},
                             meta={"arch": "pix2pix", "model": asdict(cfg), "train": {}})
    return run


@pytest.fixture(scope="module")
def runs(tmp_path_factory, shapes_dir) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("directions")
    return {"dcgan": _train(root / "dcgan", shapes_dir),
            "stylegan": _train(root / "stylegan", shapes_dir, arch="stylegan", batch=4, model=STYLE),
            "pix2pix": _untrained_pix2pix(root / "pix2pix")}


@pytest.fixture(scope="module")
def made(runs) -> dict[str, Path]:
    """`ganplug directions` run on both seed-driven runs (their default output file)."""
    for family in ("dcgan", "stylegan"):
        assert main(["directions", str(runs[family]), "--n", "6", "--samples", str(SAMPLES), *CPU]) == 0
    return {f: runs[f] / dirs.DEFAULT_NAME for f in ("dcgan", "stylegan")}


def _model(run: Path):
    return load_generator(run, device="cpu")


def _w_samples(model) -> np.ndarray:
    z = dirs.sample_latents(model.spec.z_dim, SAMPLES, 0)
    with torch.no_grad():
        return model.G.mapping(z)[:, 0].double().numpy()


# ----------------------------------------------------------------------------------- PCA in w


def test_w_pca_matches_numpy_svd(runs, made):
    """The file's directions, spreads and mean are numpy's float64 SVD of the same centred w samples."""
    model = _model(runs["stylegan"])
    found = dirs.load(made["stylegan"], model)
    w = _w_samples(model)
    centred = w - w.mean(0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    n = found.count
    np.testing.assert_allclose(found.mean.numpy(), w.mean(0), atol=1e-6)
    np.testing.assert_allclose(found.std.numpy(), s[:n] / np.sqrt(SAMPLES - 1), rtol=1e-5)
    cos = np.abs(np.sum(found.vectors.double().numpy() * vt[:n], axis=1))  # the sign of a component is free
    np.testing.assert_allclose(cos, 1.0, atol=1e-5)
    assert found.space == "w" and found.meta["samples"] == SAMPLES


def test_w_directions_orthonormal_and_sorted(runs, made):
    found = dirs.read(made["stylegan"])
    v = found.vectors.double()
    np.testing.assert_allclose((v @ v.T).numpy(), np.eye(found.count), atol=1e-5)
    assert torch.all(found.std[:-1] >= found.std[1:])


def test_pca_low_rank_path_matches_exact():
    """Above EXACT_LIMIT dimensions the randomised SVD is used: its leading components are the exact ones."""
    gen = torch.Generator().manual_seed(0)
    scales = 0.1 + 3 * torch.exp(-torch.arange(2500, dtype=torch.float64) / 8)  # a decaying spectrum, as activations
    basis, _ = torch.linalg.qr(torch.randn(2500, 300, generator=gen, dtype=torch.float64))
    x = (torch.randn(300, 2500, generator=gen, dtype=torch.float64) * scales) @ basis @ basis.T
    _, s, vt = np.linalg.svd((x - x.mean(0)).numpy(), full_matrices=False)
    mean, comps, std = dirs.pca(x, 4)
    np.testing.assert_allclose(std.numpy(), s[:4] / np.sqrt(299), rtol=1e-3)
    assert np.all(np.abs(np.sum(comps.numpy() * vt[:4], axis=1)) > 0.99)


@pytest.mark.parametrize("k,amount", [(0, 2.5), (3, -1.0)])
def test_edit_moves_w_projection_by_amount_times_std(runs, made, k, amount):
    """What ops.generate feeds the synthesis network: every style input's w moved by exactly amount * std_k along
    direction k, after truncation, and not at all across the other directions."""
    model = _model(runs["stylegan"])
    found = dirs.load(made["stylegan"], model)
    seen: list[torch.Tensor] = []
    hook = model.G.synthesis.register_forward_pre_hook(lambda _m, args: seen.append(args[0].double()))
    rt = make_runtime("cpu", "fp32")
    try:
        ops.generate(model, rt, [3, 4], truncation=0.7, edits=[(k, 0.0)], directions=found)
        ops.generate(model, rt, [3, 4], truncation=0.7, edits=[(k, amount)], directions=found)
    finally:
        hook.remove()
    moved = (seen[1] - seen[0]) @ found.vectors.double().T  # [N, num_ws, n]
    want = torch.zeros(found.count, dtype=torch.float64)
    want[k] = amount * float(found.std[k])
    np.testing.assert_allclose(moved.numpy(), want.expand_as(moved).numpy(), atol=1e-5)


# ----------------------------------------------------------------------------------- z-only (DCGAN)


def test_dcgan_directions_are_unit_z_vectors(runs, made):
    found = dirs.load(made["dcgan"], _model(runs["dcgan"]))
    assert found.space == "z" and found.vectors.shape == (6, 100)
    np.testing.assert_allclose(found.vectors.norm(dim=1).numpy(), 1.0, atol=1e-6)
    assert found.meta["feature_layer"] == "net.2"  # the first block's ReLU
    assert found.meta["feature_std"] == sorted(found.meta["feature_std"], reverse=True)


def test_dcgan_regressed_direction_moves_features_along_pca_direction(runs, made):
    """Moving z by one spread along regressed direction k changes the first block's activations (on average over
    the samples) along feature PCA direction k and hardly along the others; and z's coordinate on it correlates
    with PCA coordinate k across samples. Measured on a 2-step model: cosines 0.98 on direction k, at most 0.02
    across; correlations 0.96-0.97. Bars: 0.9, 0.1 and 0.9."""
    model = _model(runs["dcgan"])
    found = dirs.load(made["dcgan"], model)
    z = dirs.sample_latents(100, SAMPLES, 0)
    with torch.no_grad():
        feats = dirs.early_features(model.G, z)
        _, f_vecs, _ = dirs.pca(feats, found.count)
        for k in range(found.count):
            step = float(found.std[k]) * found.vectors[k]
            effect = (dirs.early_features(model.G, z + step) - feats).mean(0).double()
            cos = (effect @ f_vecs.T).abs() / effect.norm()
            assert cos[k] > 0.9 and (cos.sum() - cos[k]) / (found.count - 1) < 0.1, (k, cos)
    coords = (feats.double() - feats.double().mean(0)) @ f_vecs.T
    proj = z.double() @ found.vectors.double().T
    corr = [float(torch.corrcoef(torch.stack([proj[:, k], coords[:, k]]))[0, 1]) for k in range(found.count)]
    assert min(corr) > 0.9, corr


# ----------------------------------------------------------------------------------- the CLI


def _pixels(folder: Path) -> list[np.ndarray]:
    return [np.asarray(Image.open(p)) for p in sorted(folder.glob("*.png"))]


@pytest.mark.parametrize("family", ["dcgan", "stylegan"])
def test_generate_edit_via_cli_equals_ops(runs, made, tmp_path, family):
    run = runs[family]
    assert main(["generate", str(run), "--seeds", "3,4", "--outdir", str(tmp_path / "plain"), *CPU]) == 0
    assert main(["generate", str(run), "--seeds", "3,4", "--edit", "0:+2.5,3:-1", "--outdir",
                 str(tmp_path / "edited"), *CPU]) == 0
    plain, edited = _pixels(tmp_path / "plain"), _pixels(tmp_path / "edited")
    assert all(not np.array_equal(a, b) for a, b in zip(plain, edited, strict=True))
    model = _model(run)
    expected = ops.generate(model, make_runtime("cpu", "fp32"), [3, 4], edits=[(0, 2.5), (3, -1.0)],
                            directions=dirs.load(made[family], model))
    for img, written in zip(expected.images, edited, strict=True):
        assert np.array_equal(img.permute(1, 2, 0).numpy(), written)
    record = json.loads((tmp_path / "edited" / "seeds.json").read_text())
    assert record["edits"] == "0:+2.5,3:-1" and record["edit_space"] == ("w" if family == "stylegan" else "z")
    assert record["directions"] == str(made[family])


def test_directions_writes_safetensors_and_preview(runs, made):
    assert (runs["stylegan"] / "directions.png").is_file()
    with Image.open(runs["stylegan"] / "directions.png") as sheet:  # 6 rows of 3 seeds x 7 amounts, 32 px + 2 pad
        assert sheet.size == (2 + 21 * 34, 2 + 6 * 34)
    raw = (runs["stylegan"] / dirs.DEFAULT_NAME).read_bytes()
    assert b"pickle" not in raw and raw[8:9] == b"{"  # a safetensors header, not a pickle


def _fails(capsys, argv: list[str], *words: str) -> None:
    assert main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and all(w in err for w in words), err


def test_refusals_exit_2(runs, made, tmp_path, capsys):
    out = ["--out", str(tmp_path / "x.png"), *CPU]
    sg, dc = runs["stylegan"], runs["dcgan"]
    _fails(capsys, ["generate", sg, "--seed", "7", "--edit", "0:1", "--directions", made["dcgan"], *out],
           "made for another model", "ganplug directions")
    older = dc / "checkpoints" / "step-000001.safetensors"  # same run, earlier weights
    _fails(capsys, ["generate", older, "--seed", "7", "--edit", "0:1", *out], "generator_sha256")
    _fails(capsys, ["generate", sg, "--seed", "7", "--edit", "6:+1", *out], "out of range", "6")
    for bad in ("0=1", "0:", "x:1", "0:nan", "0:1e9"):
        _fails(capsys, ["generate", sg, "--seed", "7", "--edit", bad, *out], "edit")
    _fails(capsys, ["directions", runs["pix2pix"], "--samples", "64", *CPU], "image-to-image")
    _fails(capsys, ["directions", sg, "--samples", "64", *CPU], "already exists")
    _fails(capsys, ["generate", sg, "--seed", "7", "--edit", "0:1", "--directions", tmp_path / "none.safetensors",
                    *out], "does not exist")
    assert not (tmp_path / "x.png").exists()


# ----------------------------------------------------------------------------------- names


def test_names_are_saved_beside_the_file_and_only_for_it(made, tmp_path, capsys):
    """save_names/read_names round-trip; names of another file (same name, other bytes), a damaged names file
    and names past the count are not shown; bad names are refused before anything is written."""
    path = tmp_path / dirs.DEFAULT_NAME
    path.write_bytes(made["stylegan"].read_bytes())
    assert dirs.read_names(path) == [None] * 6
    dirs.save_names(path, ["warm", "", "tall"])
    assert dirs.names_path(path) == tmp_path / "directions.names.json"
    assert dirs.read_names(path) == ["warm", None, "tall", None, None, None]
    assert dirs.describe_names(path)[:2] == ["0: warm", "1: (unnamed)"]
    for bad, words in ((["x"] * 7, "6 directions"), (["x" * 41], "40"), (["a\tb"], "printable"), ([3], "string")):
        with pytest.raises(UserError, match=words):
            dirs.save_names(path, bad)
    assert dirs.read_names(path)[0] == "warm"  # the refused saves left the names as they were
    other = dirs.read(path)
    dirs.save(dirs.Directions(-other.vectors, other.std, other.mean, other.space, other.meta), path)
    assert dirs.read_names(path) == [None] * 6  # made again: the old names are not its names
    dirs.names_path(path).write_text("{damaged")
    assert dirs.read_names(path) == [None] * 6
    assert main(["directions", str(tmp_path / "nowhere"), "--names"]) == 2
