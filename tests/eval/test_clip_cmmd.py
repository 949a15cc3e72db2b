"""CMMD (Jayasumana et al. 2024): the CLIP ViT-L/14@336px loader, its forward and preprocessing, the
TorchScript file checks, the MMD math against an independent float64 numpy version, and `ganplug eval`.

The stand-in is a TorchScript file (as OpenAI's `ViT-L-14-336px.pt`) holding seeded random weights under the
published `visual.` names, at width 128 (2 heads), 2 layers and a 32-d embedding, with the published 14 px
patches and 24 x 24 grid (336 px input), stored in float16.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.spatial.distance import cdist

from ganplug.cli.app import main
from ganplug.device import make_runtime
from ganplug.errors import DataError
from ganplug.eval.features import clip, weights
from ganplug.eval.metrics import cmmd
from ganplug.eval.pipeline import evaluate

FILE = weights.CLIP_VITL14_336.filename


@pytest.fixture(scope="module")
def standin(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("clip-weights")
    d.chmod(0o755)
    return clip.save_standin_clip(d / FILE, width=128, layers=2, out=32, seed=5)


def _folder(root: Path, name: str, n: int, seed: int, lo: int = 0, hi: int = 256) -> Path:
    d = root / name
    d.mkdir()
    rng = np.random.default_rng(seed)
    for i in range(n):
        size = (40, 60) if i % 2 else (50, 50)
        Image.fromarray(rng.integers(lo, hi, (*size, 3)).astype(np.uint8)).save(d / f"im_{i:02d}.png")
    return d


def _arrays(folder: Path) -> list[np.ndarray]:
    return [np.asarray(Image.open(p).convert("RGB")) for p in sorted(folder.glob("*.png"))]


# ----------------------------------------------------------------------------------------- the file layout


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated")
def test_standin_is_torchscript_with_the_published_visual_names_in_float16(standin):
    state = torch.jit.load(str(standin), map_location="cpu").state_dict()
    assert {k for k in state if not k.startswith("visual.transformer.")} == {
        "visual.class_embedding", "visual.positional_embedding", "visual.conv1.weight", "visual.ln_pre.weight",
        "visual.ln_pre.bias", "visual.ln_post.weight", "visual.ln_post.bias", "visual.proj"}
    assert {k.split(".", 4)[4] for k in state if k.startswith("visual.transformer.resblocks.1.")} == \
        set(clip.BLOCK_KEYS)
    assert state["visual.proj"].dtype == torch.float16
    assert tuple(state["visual.positional_embedding"].shape) == (577, 128)
    model = clip.load_clip_visual(standin)
    assert model.shape == clip.ClipShape(width=128, layers=2, patch=14, grid=24, out=32)
    assert model.shape.heads == 2 and model.shape.resolution == 336
    assert model.proj.dtype == torch.float32  # converted on load


def test_the_published_vitl14_336_layout_is_accepted_with_16_heads():
    shapes = clip.expected_shapes(clip.ClipShape(1024, 24, 14, 24, 768))
    assert len(shapes) == 8 + 24 * 12
    assert shapes["positional_embedding"] == (577, 1024) and shapes["proj"] == (1024, 768)
    assert shapes["transformer.resblocks.23.attn.in_proj_weight"] == (3072, 1024)
    found = clip.detect_shape({k: torch.empty(s, device="meta") for k, s in shapes.items()})
    assert (found.width, found.layers, found.heads, found.resolution, found.out) == (1024, 24, 16, 336, 768)


def test_a_resnet_clip_or_changed_layout_is_refused():
    with pytest.raises(weights.WeightsError, match="no CLIP vision transformer"):
        clip.detect_shape({"layer1.0.conv1.weight": torch.zeros(64, 64, 1, 1)})
    shapes = clip.expected_shapes(clip.ClipShape(128, 2, 14, 24, 32))
    state = {k: torch.zeros(s) for k, s in shapes.items()}
    state.pop("transformer.resblocks.0.ln_2.bias")
    with pytest.raises(weights.WeightsError, match=r"missing \['transformer.resblocks.0.ln_2.bias'\]"):
        clip.detect_shape(state)


# ----------------------------------------------------------------------------------------- the forward


def _reference_visual(s: dict[str, torch.Tensor], x: torch.Tensor, heads: int) -> torch.Tensor:
    """OpenAI's VisionTransformer recomputed in float64: a conv, nn.MultiheadAttention on [L, N, D]
    (sequence first, as OpenAI runs it), explicit QuickGELU, F.layer_norm with eps 1e-5."""
    s = {k: v.double() for k, v in s.items()}
    w = s["class_embedding"].shape[0]
    ln = lambda t, name: torch.nn.functional.layer_norm(t, (w,), s[f"{name}.weight"], s[f"{name}.bias"], 1e-5)  # noqa: E731
    t = torch.nn.functional.conv2d(x, s["conv1.weight"], stride=s["conv1.weight"].shape[-1])
    t = t.reshape(len(x), w, -1).permute(0, 2, 1)
    t = torch.cat((s["class_embedding"] + torch.zeros(len(x), 1, w, dtype=t.dtype), t), 1) + s["positional_embedding"]
    t = ln(t, "ln_pre").permute(1, 0, 2)  # NLD -> LND
    layers = len({k.split(".")[2] for k in s if k.startswith("transformer.resblocks.")})
    for i in range(layers):
        p = f"transformer.resblocks.{i}"
        mha = torch.nn.MultiheadAttention(w, heads, dtype=torch.float64)
        with torch.no_grad():
            mha.in_proj_weight.copy_(s[f"{p}.attn.in_proj_weight"])
            mha.in_proj_bias.copy_(s[f"{p}.attn.in_proj_bias"])
            mha.out_proj.weight.copy_(s[f"{p}.attn.out_proj.weight"])
            mha.out_proj.bias.copy_(s[f"{p}.attn.out_proj.bias"])
        h = ln(t, f"{p}.ln_1")
        t = t + mha(h, h, h, need_weights=False)[0]
        h = ln(t, f"{p}.ln_2") @ s[f"{p}.mlp.c_fc.weight"].T + s[f"{p}.mlp.c_fc.bias"]
        h = h * torch.sigmoid(1.702 * h)
        t = t + h @ s[f"{p}.mlp.c_proj.weight"].T + s[f"{p}.mlp.c_proj.bias"]
    return ln(t.permute(1, 0, 2)[:, 0], "ln_post") @ s["proj"]


def test_forward_matches_openai_layout_recomputed_in_float64(standin):
    state = clip.read_visual_state(standin)
    model = clip.load_clip_visual(standin).double()
    x = torch.randn(2, 3, 336, 336, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    with torch.no_grad():
        ours, ref = model(x), _reference_visual(state, x, heads=2)
    assert ours.shape == (2, 32)
    torch.testing.assert_close(ours, ref, rtol=1e-9, atol=1e-9)


def test_embeddings_have_unit_length(standin):
    found = weights.locate("clip-vitl14-336", standin.parent, allow_unverified=True)
    ext = clip.ClipExtractor(found, make_runtime("cpu", "fp32"), workers=0)
    rng = np.random.default_rng(0)
    emb = ext.extract([rng.integers(0, 256, (30, 45, 3)).astype(np.uint8) for _ in range(3)])
    assert emb.shape == (3, 32) and emb.dtype == np.float64
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-12)


def test_preprocessing_is_cmmds_centre_crop_336_bicubic_with_clip_normalisation():
    assert clip.MEAN == (0.48145466, 0.4578275, 0.40821073) and clip.STD == (0.26862954, 0.26130258, 0.27577711)
    img = np.arange(41 * 61 * 3, dtype=np.int64).reshape(41, 61, 3).astype(np.uint8)
    np.testing.assert_array_equal(clip.centre_square(img), img[0:41, 10:51])  # offsets (61 - 41) // 2 = 10
    np.testing.assert_array_equal(clip.centre_square(img.transpose(1, 0, 2)), img.transpose(1, 0, 2)[10:51])
    x = clip.preprocess(img, 336)
    assert x.shape == (3, 336, 336) and x.dtype == np.float32
    pil = np.asarray(Image.fromarray(np.ascontiguousarray(img[:, 10:51])).resize((336, 336), Image.BICUBIC)) / 255
    np.testing.assert_allclose(x.transpose(1, 2, 0) * np.array(clip.STD) + np.array(clip.MEAN), pil, atol=1e-6)


# ----------------------------------------------------------------------------------------- CMMD math


def _cmmd_numpy(x: np.ndarray, y: np.ndarray, sigma: float = 10.0, scale: float = 1000.0) -> float:
    """The biased (all pairs) MMD^2 with a Gaussian RBF kernel, from scipy's squared distances."""
    k = lambda a, b: np.exp(-cdist(a, b, "sqeuclidean") / (2 * sigma ** 2))  # noqa: E731
    return scale * (k(x, x).mean() + k(y, y).mean() - 2 * k(x, y).mean())


def _unit(rng, n: int, d: int, shift: float = 0.0) -> np.ndarray:
    v = rng.normal(size=(n, d)) + shift
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_cmmd_constants_are_the_reference_ones():
    assert cmmd.SIGMA == 10 and cmmd.SCALE == 1000


def test_cmmd_matches_an_independent_float64_computation(monkeypatch):
    rng = np.random.default_rng(0)
    x, y = _unit(rng, 70, 16), _unit(rng, 45, 16, shift=0.8)  # sets of different sizes
    want = _cmmd_numpy(x, y)
    assert cmmd.cmmd(x, y) == pytest.approx(want, rel=1e-10) and want > 0
    monkeypatch.setattr(cmmd, "BLOCK", 7)  # row blocks give the same number
    assert cmmd.cmmd(x, y) == pytest.approx(want, rel=1e-10)
    assert cmmd.cmmd(y, x) == pytest.approx(want, rel=1e-10)  # symmetric
    assert cmmd.cmmd(x, x) == pytest.approx(0.0, abs=1e-9)


def test_cmmd_is_the_biased_estimator_with_the_diagonal():
    rng = np.random.default_rng(1)
    x, y = _unit(rng, 6, 8), _unit(rng, 6, 8)
    gamma = 1 / (2 * 10.0 ** 2)
    k = lambda a, b: np.exp(-gamma * cdist(a, b, "sqeuclidean"))  # noqa: E731
    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    unbiased = 1000 * ((kxx.sum() - 6) / 30 + (kyy.sum() - 6) / 30 - 2 * kxy.mean())
    assert cmmd.cmmd(x, y) == pytest.approx(1000 * (kxx.mean() + kyy.mean() - 2 * kxy.mean()), rel=1e-12)
    assert abs(cmmd.cmmd(x, y) - unbiased) > 1e-3  # the diagonal is in: not KID's unbiased form


def test_cmmd_refuses_bad_inputs():
    with pytest.raises(DataError, match="one width"):
        cmmd.cmmd(np.zeros((3, 4)), np.zeros((3, 5)))
    with pytest.raises(DataError, match="NaN"):
        cmmd.cmmd(np.full((3, 4), np.nan), np.zeros((3, 4)))


# ----------------------------------------------------------------------------------------- file checks


def test_the_published_hash_is_pinned_and_a_different_file_is_refused(standin):
    spec = weights.CLIP_VITL14_336
    assert spec.sha256 == "3035c92b350959924f9f00213499208652fc7ea050643e8b385c2dac08641f02"
    assert spec.url.split("/")[-2] == spec.sha256 and spec.url.endswith("/" + FILE)  # OpenAI's URL carries it
    with pytest.raises(weights.WeightsError, match=f"expected sha256 {spec.sha256}, found sha256 [0-9a-f]{{64}}"):
        weights.locate("clip-vitl14-336", standin.parent)
    assert weights.locate("clip-vitl14-336", standin.parent, allow_unverified=True).status == "stand-in"


def test_torchscript_in_a_folder_others_can_write_is_refused_before_loading(tmp_path, standin, monkeypatch):
    d = tmp_path / "shared"
    d.mkdir()
    shutil.copyfile(standin, d / FILE)
    d.chmod(0o777)
    calls = []
    monkeypatch.setattr(torch.jit, "load", lambda *a, **k: calls.append(a))
    try:
        with pytest.raises(weights.WeightsError, match="refusing to use.*other users can write to"):
            clip.load_clip_visual(d / FILE)
        with pytest.raises(weights.WeightsError, match="refusing to use"):
            weights.locate("clip-vitl14-336", d, allow_unverified=True)
    finally:
        d.chmod(0o755)
    assert calls == []  # torch.jit.load never ran


def test_openai_clips_download_folder_is_searched(home, standin):
    cache = home / ".cache" / "clip"
    cache.mkdir(parents=True, mode=0o755)
    shutil.copyfile(standin, cache / FILE)
    assert weights.locate("clip-vitl14-336", allow_unverified=True).path == cache / FILE


# ----------------------------------------------------------------------------------------- through ganplug eval


def test_missing_file_exits_2_naming_it_its_hash_and_how_to_get_it(home, tmp_path, capsys):
    imgs = _folder(tmp_path, "imgs", 6, 0)
    assert main(["eval", str(imgs), "--real", str(imgs), "--metrics", "cmmd", "--weights-dir", str(tmp_path),
                 "--no-collapse", "--n", "6"]) == 2
    err = capsys.readouterr().err
    assert "--metrics asks for cmmd" in err and FILE in err and "ganplug weights fetch clip-vitl14-336" in err
    assert weights.CLIP_VITL14_336.sha256 in err and "openaipublic.azureedge.net" in err


def test_weights_list_says_where_to_get_the_file(home, tmp_path, capsys):
    assert main(["weights", "list", "--weights-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "clip-vitl14-336" in out and "ganplug weights fetch clip-vitl14-336" in out
    assert weights.CLIP_VITL14_336.url in out


def test_cmmd_through_evaluate_equals_cmmd_of_the_embeddings(home, tmp_path, standin):
    fake = _folder(tmp_path, "fake", 10, 1, 0, 100)
    real = _folder(tmp_path, "real", 12, 2)
    out = evaluate(fake, real, metrics="cmmd", weights_dir=str(standin.parent), allow_unverified_weights=True,
                   n=10, use_cache=False, progress=False, workers=0)
    found = weights.locate("clip-vitl14-336", standin.parent, allow_unverified=True)
    ext = clip.ClipExtractor(found, make_runtime("cpu", "fp32"), workers=0)
    want = _cmmd_numpy(ext.extract(_arrays(real)), ext.extract(_arrays(fake)))
    m = out["metrics"]["cmmd"]
    assert m["value"] == pytest.approx(want, rel=1e-6) and want > 0
    assert m["feature_space"] == "clip-vitl14-336" and m["weights"] == "stand-in" and m["sigma"] == 10
    assert out["weights"]["clip-vitl14-336"]["status"] == "stand-in"
    assert any("cmmd" in w and "stand-in" in w for w in out["warnings"])
    assert math.isfinite(m["value"])
