"""FastGAN: shapes at every size, skip-layer excitation, the self-supervised decoders, the shared seams
(truncation, interpolation, rank, projection, tileable output) and the options the family refuses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ganplug import ops
from ganplug.checkpoint import LoadedModel
from ganplug.cli.app import main
from ganplug.device import make_runtime
from ganplug.errors import UserError
from ganplug.models import FAMILIES, build_models, config_from_dict
from ganplug.models import fastgan as fg
from ganplug.tiling import tileable

RT = make_runtime("cpu", "fp32", channels_last=False)
TINY = {"capacity": 0.05, "z_dim": 16}


def _build(size: int = 32, **kw):
    torch.manual_seed(0)
    cfg = config_from_dict("fastgan", {"size": size, **TINY, **kw})
    G, D, spec = build_models("fastgan", cfg)
    return cfg, G, D, spec


@pytest.mark.parametrize("size", fg.SIZES)
def test_shapes_at_every_size(size, one_thread):
    """Real tensors at 32 and 64 px, shapes only (the meta device) above, at the paper's widths there."""
    meta = size > 64
    cfg = config_from_dict("fastgan", {"size": size} if meta else {"size": size, **TINY})
    with torch.device("meta") if meta else torch.device("cpu"):
        G, D, spec = build_models("fastgan", cfg)
        z = torch.randn(2, cfg.z_dim)
        img = G(z)
        logits, whole, part, small, q = D(img, reconstruct=True)
    assert img.shape == (2, 3, size, size) and logits.shape == (2,) and q.shape == (2,) and small is None
    rec = min(128, size // 2)
    assert whole.shape == part.shape == (2, 3, rec, rec)
    assert len(D.blocks) == int(torch.log2(torch.tensor(min(size, 256) / 8))) + 1 + (size == 1024)
    if not meta:
        assert img.min() >= -1 and img.max() <= 1
    assert spec.latent == "z" and set(spec.supports) == {"truncation", "projection"}


def test_rgba_output_and_input():
    cfg, G, D, spec = _build(32, channels=4)
    img = G(torch.randn(2, 16))
    assert img.shape == (2, 4, 32, 32) and spec.out_channels == 4
    _, whole, part, _, _ = D(img, reconstruct=True)
    assert whole.shape[1] == part.shape[1] == 4


@pytest.mark.parametrize("size", fg.SIZES)
def test_multiscale_shapes_at_every_size(size, one_thread):
    """G's second image and D's small branch at every size (meta above 64 px, at the paper's widths)."""
    meta = size > 64
    cfg = config_from_dict("fastgan", {"size": size, "multiscale": True, **({} if meta else TINY)})
    small_px = min(128, size // 2)
    assert cfg.small_size == small_px
    with torch.device("meta") if meta else torch.device("cpu"):
        G, D, _ = build_models("fastgan", cfg)
        img, small = G(torch.randn(2, cfg.z_dim), with_small=True)
        both, whole, part, rec_small, q = D(img, reconstruct=True, small=small, branches=True)
        assert G(torch.randn(2, cfg.z_dim)).shape == img.shape  # sampling gets the full-size image alone
    assert img.shape == (2, 3, size, size) and small.shape == (2, 3, small_px, small_px)
    assert both.shape == (2, 2) and rec_small.shape == whole.shape == (2, 3, small_px, small_px)
    # the branch halves its input to a 4x4/2 conv's output, then 4x4/2 down-blocks to 8x8
    assert len(D.small_blocks) == int(torch.log2(torch.tensor(small_px / 16))) + 1
    if size == 1024:  # the paper's widths: down_from_small 128 -> 64 px at ndf/2 channels, 8x8 at 4 * ndf
        assert D.small_blocks[0][0].out_channels == 32 and D.small_head.in_channels == 256


def test_multiscale_small_branch_judges_the_small_image(one_thread):
    """The small branch scores what it is given (G's own small image for fakes), a real's downsized copy
    when given nothing; plain logits are the two branches' mean; a model without it refuses with_small."""
    _, G, D, _ = _build(64, multiscale=True)
    G.eval(), D.eval()
    torch.manual_seed(2)
    img = torch.rand(3, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        both = D(img, branches=True)
        own = D(img, small=torch.nn.functional.avg_pool2d(img, 2), branches=True)
        other = D(img, small=torch.rand(3, 3, 32, 32) * 2 - 1, branches=True)
        plain = D(img)
    assert torch.equal(both, own)
    assert torch.equal(other[:, 0], both[:, 0]) and not torch.allclose(other[:, 1], both[:, 1])
    assert torch.allclose(plain, both.mean(1))
    with pytest.raises(ValueError, match="small branch expects"):
        D(img, small=torch.zeros(3, 3, 16, 16))
    _, G1, _, _ = _build(64)
    with pytest.raises(ValueError, match="without multiscale"):
        G1(torch.randn(1, 16), with_small=True)


def test_patch_loss_hands_the_loss_every_patch_logit(one_thread):
    """With patch_loss, D's per-branch output is its 5x5 patch logits (main, then small), whose means are
    the logits without it: the hinge then applies to each patch, as the paper's code does."""
    _, _, D, _ = _build(64, multiscale=True)
    _, _, Dp, _ = _build(64, multiscale=True, patch_loss=True)
    D.eval(), Dp.eval()
    img = torch.rand(2, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        patches, means, plain = Dp(img, branches=True), D(img, branches=True), Dp(img)
    assert patches.shape == (2, 50)
    assert torch.allclose(patches.view(2, 2, 25).mean(2), means, atol=1e-6)
    assert torch.allclose(plain, means.mean(1), atol=1e-6)  # ranking still gets one score per image


def test_multiscale_is_off_for_configs_without_it_and_must_be_a_bool():
    """Checkpoints written before the option have no key: they load as the single-branch model they are."""
    assert config_from_dict("fastgan", {"size": 64}).multiscale is False
    G, D, _ = build_models("fastgan", config_from_dict("fastgan", {"size": 64, **TINY}))
    assert not hasattr(G, "to_small") and not hasattr(D, "small_blocks")
    assert config_from_dict("fastgan", {"size": 64}).patch_loss is False
    for name in ("multiscale", "patch_loss"):
        with pytest.raises(UserError, match=f"{name} must be true or false"):
            config_from_dict("fastgan", {"size": 64, name: "yes"})


@pytest.mark.parametrize("size,g_pairs,d_pairs", [
    (32, ((4, 32),), ()), (64, ((4, 64),), ((64, 8),)), (256, ((4, 64), (8, 128), (16, 256)),
                                                           ((256, 32), (128, 16), (64, 8))),
    (1024, ((4, 64), (8, 128), (16, 256), (32, 512)), ((256, 32), (128, 16), (64, 8))),
])
def test_sle_pairs_follow_the_paper_scaled_down(size, g_pairs, d_pairs):
    cfg = fg.FastGANConfig(size=size)
    assert cfg.g_sle == g_pairs and cfg.d_sle == d_pairs


def test_paper_widths_at_capacity_one():
    cfg = fg.FastGANConfig(size=1024)
    assert [cfg.g_width(r) for r in (4, 8, 16, 32, 64, 128, 256, 512, 1024)] == [1024, 512, 256, 128, 128, 64, 32,
                                                                                 16, 8]
    assert [cfg.d_width(r) for r in (8, 16, 32, 64, 128, 256, 512)] == [512, 256, 128, 64, 32, 16, 8]
    assert fg.FastGANConfig(size=64, capacity=0.5).g_width(4) == 512


def test_d_capacity_widens_the_encoder_alone():
    """d_capacity replaces capacity for D's encoder (stem, down-blocks, SLE, head), not for G or D's decoders."""
    base = fg.FastGANConfig(size=64, capacity=0.25)
    wide = fg.FastGANConfig(size=64, capacity=0.25, d_capacity=0.5)
    assert [wide.d_width(r) for r in (4, 8, 16, 32, 64)] == [2 * base.d_width(r) for r in (4, 8, 16, 32, 64)]
    assert fg.FastGANConfig(size=64, capacity=0.25, d_capacity=0.25).d_width(8) == base.d_width(8)
    (G0, D0), (G1, D1) = fg.build(base), fg.build(wide)
    shapes = lambda m: {k: tuple(v.shape) for k, v in m.state_dict().items()}  # noqa: E731
    assert shapes(G1) == shapes(G0)
    d0, d1 = shapes(D0), shapes(D1)
    stem = "blocks.0.0.parametrizations.weight.original"
    assert d1[stem][0] == 2 * d0[stem][0]
    dec = [k for k in d0 if k.startswith(("decode_whole.", "decode_part.")) and "blocks.0.convs.0." not in k]
    assert dec and all(d1[k] == d0[k] for k in dec)  # only their input conv sees the wider features
    first = "decode_whole.blocks.0.convs.0.parametrizations.weight.original"
    assert d1[first][0] == d0[first][0] and d1[first][1] == 2 * d0[first][1]
    x = torch.randn(2, 3, 64, 64)
    assert D1(x).shape == D0(x).shape == (2,)
    for bad in (0, 5):
        with pytest.raises(UserError, match="d_capacity must be in"):
            config_from_dict("fastgan", {"size": 64, "d_capacity": bad})


def test_d_capacity_reaches_the_run_config(capsys, imgs, tmp_path):
    code, out = _dry(capsys, imgs, tmp_path, "--model", "d_capacity=0.5", "--device", "cpu")
    model = json.loads(out[out.index("{"):])["resolved"]["model"]
    assert code == 0 and model["d_capacity"] == 0.5 and model["capacity"] == fg.CPU_CAPACITY
    code, out = _dry(capsys, imgs, tmp_path, "--device", "cpu")
    assert json.loads(out[out.index("{"):])["resolved"]["model"]["d_capacity"] is None  # follows capacity


def test_sle_gates_are_in_unit_interval_and_change_the_output(one_thread):
    _, G, _, _ = _build(64)
    G.eval()
    gates = []
    handle = G.sle["sle4_64"].gate.register_forward_hook(lambda _m, _i, out: gates.append(out.detach()))
    z = torch.randn(3, 16)
    with torch.no_grad():
        plain = G(z)
    handle.remove()
    (g,) = gates
    assert g.shape == (3, G.sle["sle4_64"].gate[1].out_channels, 1, 1)
    assert g.min() >= 0 and g.max() <= 1 and g.std() > 0
    handle = G.sle["sle4_64"].gate.register_forward_hook(lambda _m, _i, out: 1 - out)  # perturb the gates
    with torch.no_grad():
        perturbed = G(z)
    handle.remove()
    assert not torch.allclose(plain, perturbed)


@pytest.mark.parametrize("multiscale", [False, True])
def test_decoders_reconstruction_loss_falls_on_a_fixed_batch(multiscale, one_thread):
    """30 D-only updates on a fixed batch: the decoders (three with multiscale) learn to reconstruct the reals."""
    cfg, _, D, _ = _build(32, multiscale=multiscale)
    gen = torch.Generator().manual_seed(0)
    real = torch.rand(4, 3, 32, 32, generator=gen) * 2 - 1
    real = torch.nn.functional.avg_pool2d(real, 5, 1, 2)  # some structure for SSIM to see
    opt = torch.optim.Adam(D.parameters(), lr=1e-3, betas=(0.5, 0.999))
    losses = []
    torch.manual_seed(1)
    for _ in range(30):
        _, whole, part, small, q = D(real, reconstruct=True)
        assert (small is not None) == multiscale
        loss = fg.reconstruction_loss(fg.pixel_ssim_distance, real, whole, part, q, small)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-3:]) / 3 < 0.7 * sum(losses[:3]) / 3, losses


def test_glu_matches_torch_glu_and_hands_back_its_input_layout():
    """The up-blocks' GLU: values and gradients of torch's GLU (float64 gradcheck and gradgradcheck), with the
    gradient in the input's memory format; torch's gives NCHW for channels_last, and BatchNorm's backward is
    then slow. A channels_last map on a CPU takes the dense-halves path, an NCHW one torch's own."""
    x = torch.randn(2, 6, 5, 5, dtype=torch.float64)
    for layout in (torch.contiguous_format, torch.channels_last):
        xi = x.contiguous(memory_format=layout).requires_grad_(True)
        assert torch.autograd.gradcheck(fg.glu, (xi,))
        assert torch.autograd.gradgradcheck(fg.glu, (xi,))
        ref = xi.detach().clone().requires_grad_(True)
        torch.testing.assert_close(fg.glu(xi), torch.nn.functional.glu(ref, dim=1), rtol=1e-15, atol=0)
        w = torch.randn(2, 3, 5, 5, dtype=torch.float64)
        (grad,) = torch.autograd.grad((fg.glu(xi) * w).sum(), xi)
        (want,) = torch.autograd.grad((torch.nn.functional.glu(ref, dim=1) * w).sum(), ref)
        torch.testing.assert_close(grad, want, rtol=1e-14, atol=1e-15)
        assert grad.is_contiguous(memory_format=layout)
        assert fg.glu(xi).is_contiguous(memory_format=layout)
    (torch_grad,) = torch.autograd.grad(torch.nn.functional.glu(xi, dim=1).sum(), xi)
    assert not torch_grad.is_contiguous(memory_format=torch.channels_last), "torch now keeps the layout itself"


def test_glu_in_bf16_matches_float64_within_rounding():
    """The training precision: a channels_last bf16 map (the CPU default) against the float64 GLU."""
    x = torch.randn(4, 16, 8, 8, dtype=torch.float64)
    w = torch.randn(4, 8, 8, 8, dtype=torch.float64)
    xb = x.to(torch.bfloat16).contiguous(memory_format=torch.channels_last).requires_grad_(True)
    x64 = xb.detach().double().requires_grad_(True)  # the same rounded inputs
    out = fg.glu(xb)
    (grad,) = torch.autograd.grad((out * w.to(torch.bfloat16)).sum(), xb)
    (want,) = torch.autograd.grad((torch.nn.functional.glu(x64, dim=1) * w.to(torch.bfloat16).double()).sum(), x64)
    torch.testing.assert_close(out.double(), torch.nn.functional.glu(x64, dim=1), rtol=2e-2, atol=2e-2)
    torch.testing.assert_close(grad.double(), want, rtol=3e-2, atol=3e-2)
    assert grad.dtype == torch.bfloat16 and grad.is_contiguous(memory_format=torch.channels_last)


def test_quadrant_picks_each_corner():
    x = torch.arange(16.0).reshape(1, 1, 4, 4).repeat(4, 1, 1, 1)
    got = fg.quadrant(x, torch.tensor([0, 1, 2, 3]))
    assert got[0].flatten().tolist() == [0, 1, 4, 5] and got[1].flatten().tolist() == [2, 3, 6, 7]
    assert got[2].flatten().tolist() == [8, 9, 12, 13] and got[3].flatten().tolist() == [10, 11, 14, 15]


def test_ms_ssim_is_one_for_equal_images_and_has_finite_gradients():
    a = torch.rand(2, 3, 16, 16)
    assert torch.allclose(fg.ms_ssim(a, a), torch.ones(2))
    b = (-a + 1).requires_grad_(True)  # anti-correlated: cs < 0 at the fine scale
    fg.pixel_ssim_distance(b * 2 - 1, a * 2 - 1).backward()
    assert torch.isfinite(b.grad).all()


def test_recon_distance_is_pixel_ssim_without_vgg_weights(monkeypatch):
    import ganplug.eval.features.weights as weights

    monkeypatch.setattr(weights, "locate", lambda key, *a, **k: None)
    name, fn = fg.recon_distance(torch.device("cpu"))
    assert name == "pixel+ssim" and fn is fg.pixel_ssim_distance


def test_truncation_shrinks_z_and_noise_is_const_at_inference():
    _, G, _, _ = _build(32)
    for m in G.modules():
        if isinstance(m, fg.NoiseInjection):
            torch.nn.init.constant_(m.strength, 0.5)
    G.eval()
    z = torch.randn(2, 16)
    with torch.no_grad():
        assert torch.equal(G(z, truncation=0.5), G(z * 0.5))
        assert torch.equal(G(z), G(z))  # a function of z alone
        assert not torch.equal(G(z, noise_mode="random"), G(z))


def _loaded(G, spec) -> LoadedModel:
    return LoadedModel(G=G.eval().requires_grad_(False), spec=spec, meta={}, path=Path("fastgan.safetensors"))


def test_interpolation_rank_and_projection_through_the_shared_ops(one_thread):
    from ganplug.sampling import interpolation_latents, to_uint8

    _, G, D, spec = _build(32)
    model = _loaded(G, spec)
    got = ops.interpolate(model, RT, [1, 2], 3).images
    with torch.no_grad():
        assert torch.equal(got, to_uint8(G(interpolation_latents([1, 2], 3, 16))))
    images, scores = ops.rank(model, D.eval(), RT, [1, 2, 3])
    assert scores.shape == (3,) and len(images.images) == 3
    tiled = ops.generate(model, RT, [5], tileable=True).images
    assert tiled.shape == (1, 3, 32, 32) and torch.equal(tiled, ops.generate(model, RT, [5], tileable=True).images)
    target = ops.generate(model, RT, [5]).images[0]
    proj = ops.project(model, RT, target, steps=3, loss="pixel")
    assert proj.space == "z" and proj.latent.shape == (16,)


def test_tileable_output_is_a_function_on_the_torus():
    """Under tileable(), with SLE's per-channel gates held fixed, rolling the 4x4 map by one pixel rolls the
    image by size/4 exactly: every conv and upsampling treats its input as periodic, and a gate only scales
    whole channels, so the image has no seam."""
    _, G, _, _ = _build(32)
    G = G.double().eval()
    z = torch.randn(2, 16, dtype=torch.float64)
    captured = []
    gate = G.sle["sle4_32"].gate
    with torch.no_grad(), tileable():
        h = G.init(z.reshape(2, 16, 1, 1))
        handle = gate.register_forward_hook(lambda _m, _i, out: captured.append(out))

        def rest(x):
            feats = {4: x}
            for name, block in G.blocks.items():
                x = block(x, "none")
                if name == "b32":
                    x = G.sle["sle4_32"](feats[4], x)
            return torch.tanh(G.to_rgb(x))

        out = rest(h)
        handle.remove()
        handle = gate.register_forward_hook(lambda _m, _i, _out: captured[0])  # the same gates
        rolled = rest(torch.roll(h, shifts=(1, 2), dims=(2, 3)))
        handle.remove()
    torch.testing.assert_close(rolled, torch.roll(out, shifts=(8, 16), dims=(2, 3)))


def test_family_registration():
    fam = FAMILIES["fastgan"]
    assert (fam.optimiser.lr_g, fam.optimiser.lr_d, fam.optimiser.beta1, fam.optimiser.beta2) == (2e-4, 2e-4, 0.5,
                                                                                                  0.999)
    assert fam.step is fg.train_step and "freeze_d" in fam.train_options and "aug" in fam.train_options
    assert "loss" not in fam.train_options  # hinge only: --loss is refused, never ignored


# ------------------------------------------------------------------------------------------ the CLI


@pytest.fixture(scope="module")
def imgs(tmp_path_factory):
    from tests.conftest import write_shapes

    return write_shapes(tmp_path_factory.mktemp("fastgan") / "imgs", 8, size=32)


def _dry(capsys, imgs, tmp_path, *args) -> tuple[int, str]:
    code = main(["train", str(imgs), "--out", str(tmp_path / "r"), "--arch", "fastgan", "--size", "32",
                 *map(str, args), "--dry-run"])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


@pytest.mark.parametrize("args,named", [
    (["--loss", "nonsat"], "--loss"), (["--label-smoothing", "0.1"], "--label-smoothing"),
    (["--pl-weight", "2"], "--pl-weight"), (["--l1-weight", "10"], "--l1-weight"),
    (["--base-channels", "8"], "--base-channels"), (["--mapping-layers", "2"], "--mapping-layers"),
])
def test_options_fastgan_does_not_use_are_refused(args, named, capsys, imgs, tmp_path):
    code, out = _dry(capsys, imgs, tmp_path, *args)
    assert code == 2 and named in out and "--arch fastgan" in out and "Traceback" not in out, out


def test_dry_run_says_hinge_diffaug_the_cpu_batch_and_the_recon_loss(capsys, imgs, tmp_path):
    """The family's training defaults are the run config's values, as config.json will record them."""
    code, out = _dry(capsys, imgs, tmp_path, "--capacity", "0.05", "--device", "cpu")
    assert code == 0, out
    doc = json.loads(out[out.index("{"):])
    assert doc["resolved"]["model"]["capacity"] == 0.05
    assert (doc["loss"], doc["aug"], doc["aug_ops"], doc["aug_p"], doc["batch"]) == (
        "hinge", "diffaug", fg.FAMILY_AUG_OPS, fg.FAMILY_AUG_P, fg.CPU_BATCH)
    assert doc["resolved"]["recon_loss"] in ("lpips", "pixel+ssim")
    code, out = _dry(capsys, imgs, tmp_path, "--aug", "ada", "--batch", "16", "--loss", "hinge")
    doc = json.loads(out[out.index("{"):])
    assert code == 0 and doc["aug"] == "ada" and doc["batch"] == 16  # the user's options win
    code, out = _dry(capsys, imgs, tmp_path, "--aug-p", "0.3")  # the default DiffAugment's p
    assert code == 0 and json.loads(out[out.index("{"):])["aug_p"] == 0.3
    code, out = _dry(capsys, imgs, tmp_path, "--aug", "none")
    assert code == 0 and json.loads(out[out.index("{"):])["aug"] == "none"
    assert not (tmp_path / "r").exists()
