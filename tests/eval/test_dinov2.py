"""FD-DINOv2 (Stein et al. 2023): the DINOv2 ViT-L/14 loader, its forward, preprocessing, file checks, and
FD-DINOv2 / PR / DC / the verdict in DINOv2 space through `ganplug eval`.

The stand-in files are written by the tests with the published key names and shape relations of
`dinov2_vitl14_pretrain.pth` at a reduced width (128, 2 heads) and depth (2), with the published 37 x 37
position grid, so the real loading and interpolation code runs on them.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ganplug.cli.app import main
from ganplug.eval.features import dinov2, weights
from ganplug.eval.metrics import fid as fid_m
from ganplug.eval.metrics import prdc
from ganplug.eval.pipeline import evaluate

FILE = weights.DINOV2_VITL14.filename


@pytest.fixture(scope="module")
def standin(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("dinov2-weights")
    d.chmod(0o755)
    return dinov2.save_standin_dinov2(d / FILE, dim=128, depth=2, seed=3)


def _folder(root: Path, name: str, n: int, seed: int, lo: int = 0, hi: int = 256) -> Path:
    d = root / name
    d.mkdir()
    rng = np.random.default_rng(seed)
    for i in range(n):
        size = (40, 56) if i % 3 else (48, 48)  # mixed sizes: every image is resized to 224 on its own
        Image.fromarray(rng.integers(lo, hi, (*size, 3)).astype(np.uint8)).save(d / f"im_{i:02d}.png")
    return d


def _arrays(folder: Path) -> list[np.ndarray]:
    return [np.asarray(Image.open(p).convert("RGB")) for p in sorted(folder.glob("*.png"))]


# ----------------------------------------------------------------------------------------- the file layout


def test_standin_has_the_published_key_names_and_loads_with_the_detected_shape(standin):
    state = torch.load(standin, map_location="cpu", weights_only=True)
    assert {k for k in state if not k.startswith("blocks.")} == {
        "cls_token", "pos_embed", "mask_token", "patch_embed.proj.weight", "patch_embed.proj.bias",
        "norm.weight", "norm.bias"}
    assert set(k.split(".", 2)[2] for k in state if k.startswith("blocks.1.")) == set(dinov2.BLOCK_KEYS)
    assert tuple(state["pos_embed"].shape) == (1, 37 * 37 + 1, 128)
    assert tuple(state["blocks.0.attn.qkv.weight"].shape) == (384, 128)
    model = dinov2.load_dinov2(standin)
    assert model.shape == dinov2.ViTShape(dim=128, depth=2, patch=14, grid=37) and model.shape.heads == 2
    assert torch.equal(model.blocks[1].ls2.gamma, state["blocks.1.ls2.gamma"])


def test_the_published_vitl14_layout_is_accepted_with_16_heads():
    shapes = dinov2.expected_shapes(dinov2.ViTShape(1024, 24, 14, 37))
    assert len(shapes) == 7 + 24 * 14
    assert shapes["pos_embed"] == (1, 1370, 1024) and shapes["patch_embed.proj.weight"] == (1024, 3, 14, 14)
    assert shapes["blocks.23.mlp.fc1.weight"] == (4096, 1024) and shapes["blocks.0.attn.qkv.bias"] == (3072,)
    meta = {k: torch.empty(s, device="meta") for k, s in shapes.items()}  # no 1.2 GB allocated
    found = dinov2.detect_shape(meta)
    assert (found.dim, found.depth, found.patch, found.grid, found.heads) == (1024, 24, 14, 37, 16)


@pytest.mark.parametrize("change, message", [
    (lambda s: s.update(register_tokens=torch.zeros(1, 4, 128)), "register tokens"),
    (lambda s: s.update({"blocks.0.mlp.w12.weight": torch.zeros(2, 2)}), "SwiGLU"),
    (lambda s: s.pop("mask_token"), "missing \\['mask_token'\\]"),
    (lambda s: s.update({"blocks.1.ls1.gamma": torch.zeros(64)}), "wrong shape \\['blocks.1.ls1.gamma'\\]"),
], ids=["registers", "swiglu", "missing", "shape"])
def test_other_layouts_are_refused_naming_the_difference(change, message):
    state = dinov2.standin_state_dict(dim=128, depth=2)
    change(state)
    with pytest.raises(weights.WeightsError, match=message):
        dinov2.detect_shape(state)


# ----------------------------------------------------------------------------------------- the forward


def _layer_norm(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + 1e-6) * w + b


def _cubic(t: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel with a = -0.75 (torch's bicubic)."""
    a, t = -0.75, np.abs(t)
    return np.where(t <= 1, (a + 2) * t ** 3 - (a + 3) * t ** 2 + 1,
                    np.where(t < 2, a * t ** 3 - 5 * a * t ** 2 + 8 * a * t - 4 * a, 0.0))


def _bicubic_matrix(n_in: int, n_out: int, scale_factor: float) -> np.ndarray:
    """[n_out, n_in] weights of torch bicubic (align_corners=False, borders clamped) for a given scale factor:
    source = (dst + 0.5) / scale_factor - 0.5."""
    m = np.zeros((n_out, n_in))
    for j in range(n_out):
        src = (j + 0.5) / scale_factor - 0.5
        base = math.floor(src)
        for k in range(base - 1, base + 3):
            m[j, min(max(k, 0), n_in - 1)] += _cubic(np.array(src - k))
    return m


def _reference_pos_embed(pos: torch.Tensor, grid: int, out: int) -> torch.Tensor:
    """DINOv2's resize of the patch position embeddings, computed separably in float64 numpy."""
    r = _bicubic_matrix(grid, out, (out + 0.1) / grid)
    p = pos[0, 1:].numpy().reshape(grid, grid, -1)
    resized = np.einsum("ir,rcd,jc->ijd", r, p, r).reshape(out * out, -1)
    return torch.cat((pos[0, :1], torch.from_numpy(resized)), 0)[None]


def _reference_forward(state: dict[str, torch.Tensor], x: torch.Tensor, heads: int) -> torch.Tensor:
    """An independent float64 DINOv2 forward: unfold patches, torch.nn.MultiheadAttention, explicit LN/GELU."""
    s = {k: v.double() for k, v in state.items()}
    d, p = s["cls_token"].shape[-1], s["patch_embed.proj.weight"].shape[-1]
    patches = torch.nn.functional.unfold(x, kernel_size=p, stride=p).transpose(1, 2)  # [B, L, 3*p*p]
    t = patches @ s["patch_embed.proj.weight"].reshape(d, -1).T + s["patch_embed.proj.bias"]
    t = torch.cat((s["cls_token"].expand(len(x), 1, d), t), 1)
    t = t + _reference_pos_embed(s["pos_embed"], 37, x.shape[-1] // p)
    depth = len({k.split(".")[1] for k in s if k.startswith("blocks.")})
    for i in range(depth):
        b = lambda name, i=i: s[f"blocks.{i}.{name}"]  # noqa: E731
        mha = torch.nn.MultiheadAttention(d, heads, batch_first=True, dtype=torch.float64)
        with torch.no_grad():
            mha.in_proj_weight.copy_(b("attn.qkv.weight"))
            mha.in_proj_bias.copy_(b("attn.qkv.bias"))
            mha.out_proj.weight.copy_(b("attn.proj.weight"))
            mha.out_proj.bias.copy_(b("attn.proj.bias"))
        h = _layer_norm(t, b("norm1.weight"), b("norm1.bias"))
        t = t + b("ls1.gamma") * mha(h, h, h, need_weights=False)[0]
        h = _layer_norm(t, b("norm2.weight"), b("norm2.bias")) @ b("mlp.fc1.weight").T + b("mlp.fc1.bias")
        h = 0.5 * h * (1 + torch.erf(h / math.sqrt(2)))
        t = t + b("ls2.gamma") * (h @ b("mlp.fc2.weight").T + b("mlp.fc2.bias"))
    return _layer_norm(t, s["norm.weight"], s["norm.bias"])[:, 0]


def test_forward_matches_an_independent_float64_computation(standin):
    state = torch.load(standin, map_location="cpu", weights_only=True)
    model = dinov2.load_dinov2(standin).double()
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    with torch.no_grad():
        ours, ref = model(x), _reference_forward(state, x, heads=2)
    assert ours.shape == (2, 128)
    # float64 throughout, except the position-embedding resize, which DINOv2 runs in float32 (as here)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(model.position_embedding(16, 16),
                               _reference_pos_embed(state["pos_embed"].double(), 37, 16), rtol=1e-5, atol=1e-6)
    # the +0.1 offset matters: resizing to 16 x 16 by `size` gives other position embeddings
    plain = torch.nn.functional.interpolate(state["pos_embed"][:, 1:].reshape(1, 37, 37, -1).permute(0, 3, 1, 2),
                                            size=(16, 16), mode="bicubic")
    offset = model.float().position_embedding(16, 16)[:, 1:].reshape(1, 16, 16, -1).permute(0, 3, 1, 2)
    assert (plain - offset).abs().max() > 1e-3


def test_at_the_trained_grid_the_position_embeddings_are_used_as_they_are(standin):
    model = dinov2.load_dinov2(standin)
    assert model.position_embedding(37, 37) is model.pos_embed
    assert model.position_embedding(16, 16).shape == (1, 257, 128)


def test_preprocessing_is_dgm_evals_224_bicubic_with_imagenet_normalisation():
    assert dinov2.INPUT_SIZE == 224 and dinov2.MEAN == (0.485, 0.456, 0.406) and dinov2.STD == (0.229, 0.224, 0.225)
    flat = np.zeros((50, 70, 3), np.uint8) + np.array([255, 0, 128], np.uint8)
    x = dinov2.preprocess(flat)
    assert x.shape == (3, 224, 224) and x.dtype == np.float32
    want = (np.array([255, 0, 128]) / 255 - np.array(dinov2.MEAN)) / np.array(dinov2.STD)
    np.testing.assert_allclose(x.reshape(3, -1).mean(1), want, atol=1e-5)
    img = np.random.default_rng(0).integers(0, 256, (37, 61, 3)).astype(np.uint8)
    pil = np.asarray(Image.fromarray(img).resize((224, 224), Image.BICUBIC), np.float64) / 255  # on uint8
    back = dinov2.preprocess(img).transpose(1, 2, 0) * np.array(dinov2.STD) + np.array(dinov2.MEAN)
    np.testing.assert_allclose(back, pil, atol=1e-6)


# ----------------------------------------------------------------------------------------- file checks


def test_loading_never_runs_pickled_code(tmp_path):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    bad = tmp_path / "w" / FILE
    bad.parent.mkdir(mode=0o755)
    torch.save({"cls_token": torch.zeros(1, 1, 64), "extra": Payload()}, bad)
    with pytest.raises(weights.WeightsError, match="weights-only"):
        dinov2.read_state_dict(bad)
    assert not marker.exists()


@pytest.mark.parametrize("file_mode, folder_mode", [(0o666, 0o755), (0o644, 0o777)], ids=["file", "folder"])
def test_a_file_others_could_write_is_refused(tmp_path, standin, file_mode, folder_mode):
    d = tmp_path / "shared"
    d.mkdir()
    target = d / FILE
    shutil.copyfile(standin, target)
    target.chmod(file_mode)
    d.chmod(folder_mode)
    try:
        with pytest.raises(weights.WeightsError, match="refusing to use"):
            weights.locate("dinov2-vitl14", d)
        with pytest.raises(weights.WeightsError, match="refusing to use"):
            dinov2.load_dinov2(target)  # checked again right before loading
    finally:
        d.chmod(0o755)


def test_hash_is_not_pinned_and_says_so(tmp_path, standin):
    assert weights.DINOV2_VITL14.sha256 is None  # Meta publishes no digest
    assert weights.locate("dinov2-vitl14", standin.parent).status == "stand-in"
    plain = tmp_path / "plain"
    plain.mkdir(mode=0o755)
    torch.save(dinov2.standin_state_dict(dim=64, depth=1), plain / FILE)  # no stand-in marker
    found = weights.locate("dinov2-vitl14", plain)
    assert found.status == "hash not pinned" and found.verified is False


def test_torch_hubs_checkpoint_folder_is_searched(home, tmp_path, standin):
    hub = tmp_path / "torchhub" / "checkpoints"
    hub.mkdir(parents=True, mode=0o755)
    shutil.copyfile(standin, hub / FILE)
    assert weights.locate("dinov2-vitl14").path == hub / FILE


# ----------------------------------------------------------------------------------------- through ganplug eval


def test_missing_file_exits_2_naming_it_and_how_to_get_it(home, tmp_path, capsys):
    imgs = _folder(tmp_path, "imgs", 8, 0)
    empty = tmp_path / "empty"
    empty.mkdir(mode=0o755)
    assert main(["eval", str(imgs), "--real", str(imgs), "--metrics", "fd_dinov2", "--weights-dir", str(empty),
                 "--no-collapse", "--n", "8"]) == 2
    err = capsys.readouterr().err
    assert "--metrics asks for fd_dinov2" in err and FILE in err
    assert "ganplug weights fetch dinov2-vitl14" in err and weights.DINOV2_VITL14.url in err


def test_pr_features_dinov2_without_the_file_exits_2(home, tmp_path, capsys):
    imgs = _folder(tmp_path, "imgs", 8, 0)
    assert main(["eval", str(imgs), "--real", str(imgs), "--metrics", "pr", "--pr-features", "dinov2",
                 "--weights-dir", str(tmp_path), "--no-collapse", "--n", "8"]) == 2
    assert FILE in capsys.readouterr().err


def test_weights_list_says_where_to_get_the_file(home, tmp_path, capsys):
    assert main(["weights", "list", "--weights-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "dinov2-vitl14" in out and FILE in out and "ganplug weights fetch dinov2-vitl14" in out
    assert weights.DINOV2_VITL14.url in out


def test_fd_dinov2_pr_dc_and_the_verdict_run_in_dinov2_space(home, tmp_path, standin):
    fake = _folder(tmp_path, "fake", 24, 1, 0, 128)
    real = _folder(tmp_path, "real", 24, 2)
    out = evaluate(fake, real, metrics="fd_dinov2,pr,dc", pr_features="dinov2", collapse=True,
                   collapse_features="dinov2", weights_dir=str(standin.parent), n=24, use_cache=False,
                   progress=False, workers=0)
    # the same features computed here, outside the pipeline
    found = weights.locate("dinov2-vitl14", standin.parent)
    from ganplug.device import make_runtime

    ext = dinov2.DinoV2Extractor(found, make_runtime("cpu", "fp32"), workers=0)
    f, r = ext.extract(_arrays(fake)), ext.extract(_arrays(real))
    m = out["metrics"]
    assert m["fd_dinov2"]["feature_space"] == "dinov2-vitl14" and m["fd_dinov2"]["weights"] == "stand-in"
    want = fid_m.frechet_distance(*fid_m.gaussian_stats(f), *fid_m.gaussian_stats(r))
    assert m["fd_dinov2"]["value"] == pytest.approx(want, rel=1e-6) and want > 0
    assert m["pr"]["feature_space"] == m["dc"]["feature_space"] == "dinov2-vitl14"
    assert m["pr"]["precision"] == pytest.approx(prdc.precision_recall(r, f, 3)["precision"])
    assert m["dc"]["coverage"] == pytest.approx(prdc.density_coverage(r, f, 5)["coverage"])
    assert out["feature_space"] == "dinov2-vitl14" and out["collapse"]["stats"]["feature_space"] == "dinov2-vitl14"
    # both verdicts are shown: DINOv2's, and the network-free one, as a handcrafted-space run gives it
    plain = evaluate(fake, real, metrics="pr", collapse=True, n=24, use_cache=False, progress=False, workers=0)
    assert plain["feature_space"] == "handcrafted-v1" and list(plain["collapse_by_space"]) == ["handcrafted-v1"]
    assert out["collapse_by_space"] == {
        "dinov2-vitl14": {"verdict": out["collapse"]["verdict"], "severity": out["collapse"]["severity"]},
        "handcrafted-v1": {"verdict": plain["collapse"]["verdict"], "severity": plain["collapse"]["severity"]}}
    assert out["weights"]["dinov2-vitl14"]["status"] == "stand-in"
    assert any("stand-in" in w and "fd_dinov2" in w for w in out["warnings"])
    from ganplug.eval.report import _metric_value  # the report's metric table names the space too

    assert _metric_value("pr", m["pr"]).endswith("(dinov2-vitl14 features)")
    assert _metric_value("fd_dinov2", m["fd_dinov2"]).endswith("(dinov2-vitl14 features)")


def test_default_metrics_do_not_load_dinov2(home, tmp_path, standin):
    imgs = _folder(tmp_path, "imgs", 12, 0)
    out = evaluate(imgs, imgs, weights_dir=str(standin.parent), n=12, use_cache=False, progress=False,
                   workers=0)
    assert "fd_dinov2" not in out["metrics"] and "dinov2-vitl14" not in out["weights"]


def test_every_checkpoint_is_rejudged_in_dinov2_space(home, tiny_run, shapes_dir, standin):
    out = evaluate(tiny_run, shapes_dir, metrics="fd_dinov2", collapse=True, collapse_features="dinov2",
                   all_checkpoints=True, n=24, collapse_n=24, weights_dir=str(standin.parent), use_cache=False,
                   progress=False, workers=0)
    # the other checkpoints' samples go through DINOv2 too: handcrafted 384-d rows against the 128-d DINOv2
    # reference would fail here
    rows = out["checkpoints"]
    assert len(rows) >= 2 and sum(r["best"] for r in rows) == 1
    assert out["feature_space"] == "dinov2-vitl14" and out["metrics"]["fd_dinov2"]["value"] > 0
