"""pix2pix: U-Net and PatchGAN shapes, the 70x70 receptive field, and the step's losses by hand."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ganplug.device import make_runtime
from ganplug.errors import UserError
from ganplug.models import build_models
from ganplug.models.pix2pix import Pix2PixConfig
from ganplug.train.config import TrainConfig
from ganplug.train.pix2pix_step import Pix2PixStep, jitter_generator, jitter_size, random_jitter


def build(cfg: Pix2PixConfig):
    """Through the registry, as training does: the generator carries its spec."""
    G, D, _ = build_models("pix2pix", cfg)
    return G, D


@pytest.mark.parametrize("size", [32, 64, 128, 256])
def test_shapes_and_bottleneck(size):
    cfg = Pix2PixConfig(size=size, base_channels=4, in_channels=1, channels=3)
    G, D = build(cfg)
    seen = {}
    G.down[-1].register_forward_hook(lambda m, i, o: seen.update(bottleneck=o.shape))
    x = torch.randn(2, 1, size, size)
    y = G(x)
    assert y.shape == (2, 3, size, size) and y.abs().max() <= 1
    assert seen["bottleneck"][2:] == (1, 1)  # down to 1x1, as the paper's U-Net-256
    logits = D(torch.cat([x, y], dim=1))
    # 3 stride-2 and 2 stride-1 4x4 convs: size/8 - 2 patches a side (30x30 at 256 px, as in the paper)
    assert logits.shape == (2, size // 8 - 2, size // 8 - 2)


def test_patchgan_sees_70_by_70_pixels():
    """Without normalisation (which mixes the whole image), one patch logit depends on exactly a 70x70
    window of the input: the receptive field the paper names the discriminator after."""
    torch.manual_seed(0)
    _, D = build(Pix2PixConfig(size=256, base_channels=2))
    for i, m in enumerate(D.net):
        if isinstance(m, nn.InstanceNorm2d):
            D.net[i] = nn.Identity()
    D = D.double()
    x = torch.randn(1, 6, 256, 256, dtype=torch.float64, requires_grad=True)
    D(x)[0, 15, 15].backward()
    rows = x.grad.abs().sum(dim=(0, 1, 3)).nonzero().flatten()
    cols = x.grad.abs().sum(dim=(0, 1, 2)).nonzero().flatten()
    assert rows.max() - rows.min() + 1 == 70 and cols.max() - cols.min() + 1 == 70


def test_step_losses_match_the_paper_formulas():
    """D: 0.5 * (BCE(D(A,B), 1) + BCE(D(A,G(A)), 0)) over patches; G: BCE(D(A,G(A)), 1) + lambda * |G(A)-B|_1,
    recomputed here from copies of the networks taken before the update."""
    torch.manual_seed(0)
    cfg_m = Pix2PixConfig(size=32, base_channels=4, dropout=0.0)
    G, D = build(cfg_m)
    G0, D0 = (type(G)(cfg_m), type(D)(cfg_m))
    G0.load_state_dict(G.state_dict())
    D0.load_state_dict(D.state_dict())
    cfg = TrainConfig(data="", out="", arch="pix2pix", size=32, batch=4, l1_weight=100.0, jitter=False)
    rt = make_runtime("cpu", "fp32", False)
    step = Pix2PixStep(G, D, torch.optim.Adam(G.parameters(), 2e-4, betas=(0.5, 0.999)),
                       torch.optim.Adam(D.parameters(), 2e-4, betas=(0.5, 0.999)), cfg, rt)
    a, b = torch.rand(4, 3, 32, 32) * 2 - 1, torch.rand(4, 3, 32, 32) * 2 - 1
    stats = step(lambda: torch.cat([a, b], dim=1), 0)
    with torch.no_grad():
        fake = G0(a)
        real_l, fake_l = D0(torch.cat([a, b], 1)), D0(torch.cat([a, fake], 1))
        d_ref = 0.5 * (F.binary_cross_entropy_with_logits(real_l, torch.ones_like(real_l))
                       + F.binary_cross_entropy_with_logits(fake_l, torch.zeros_like(fake_l)))
        l1_ref = (fake - b).abs().mean()
    assert stats["loss/D"] == pytest.approx(d_ref.item(), rel=1e-5)
    assert stats["loss/L1"] == pytest.approx(l1_ref.item(), rel=1e-5)
    assert stats["loss/G"] == pytest.approx(stats["loss/G_adv"] + 100.0 * stats["loss/L1"], rel=1e-6)
    assert not torch.equal(G.down[0][0].weight, G0.down[0][0].weight)  # both networks moved


def test_bad_configs_are_user_errors():
    for bad in (dict(size=48), dict(size=16), dict(dropout=1.0), dict(size=32, d_layers=4),
                dict(dense_bottleneck=-1), dict(dense_bottleneck=2.5), dict(dense_bottleneck=True),
                dict(dense_bottleneck=17)):
        with pytest.raises(UserError):
            build(Pix2PixConfig(**bad))


# ------------------------------------------------------------------------------------------ dense bottleneck


@pytest.mark.parametrize("size", [32, 64, 128, 256, 512])
def test_dense_bottleneck_shapes_at_every_size(size):
    """flatten -> N x (Linear(C, C) + LeakyReLU 0.2) -> [N, C, 1, 1] at the bottleneck, output shape unchanged."""
    cfg = Pix2PixConfig(size=size, base_channels=2, max_channels=16, dense_bottleneck=3)
    G, _ = build(cfg)
    seen = {}
    G.dense.register_forward_hook(lambda m, i, o: seen.update(into=i[0].shape, out=o.shape))
    linears = [m for m in G.dense if isinstance(m, nn.Linear)]
    acts = [m for m in G.dense if isinstance(m, nn.LeakyReLU)]
    assert len(linears) == 3 and all(m.in_features == m.out_features == cfg.width(cfg.levels - 1) for m in linears)
    assert len(acts) == 3 and all(m.negative_slope == 0.2 for m in acts)
    y = G(torch.randn(2, 3, size, size))
    assert y.shape == (2, 3, size, size) and y.abs().max() <= 1
    assert seen["into"] == seen["out"] == (2, cfg.width(cfg.levels - 1), 1, 1)


def test_dense_layers_receive_gradients_and_change_the_output():
    torch.manual_seed(0)
    G, _ = build(Pix2PixConfig(size=32, base_channels=4, dense_bottleneck=2, dropout=0.0))
    x = torch.randn(2, 3, 32, 32)
    G(x).abs().mean().backward()
    for m in G.dense:
        if isinstance(m, nn.Linear):
            assert m.weight.grad is not None and m.weight.grad.abs().sum() > 0
    before = G(x).detach()
    with torch.no_grad():
        G.dense[1].weight.mul_(-1)
    assert not torch.allclose(before, G(x))  # the bottleneck path reaches the output


def test_plain_unet_keeps_its_weights_names():
    """dense_bottleneck=0 adds no parameters: checkpoints of earlier runs load as they are."""
    G, _ = build(Pix2PixConfig(size=32, base_channels=4))
    assert not any(k.startswith("dense") for k in G.state_dict())


# ------------------------------------------------------------------------------------------ random jitter


def test_jitter_size_is_the_papers_286_at_256():
    assert (jitter_size(256), jitter_size(32), jitter_size(512)) == (286, 36, 572)


def test_jitter_crops_a_and_b_alike():
    """B = -A pixel by pixel: after jitter every pair still is, so both sides got the same crop."""
    a = torch.rand(6, 3, 32, 32) * 2 - 1
    pair = torch.cat([a, -a], dim=1)
    out = random_jitter(pair, jitter_generator(3, 10, 0))
    assert out.shape == pair.shape
    assert torch.allclose(out[:, 3:], -out[:, :3], atol=1e-6)  # the same crop on both sides
    assert not torch.allclose(out, random_jitter(pair, jitter_generator(3, 11, 0)))  # crops vary by step
    assert torch.equal(out, random_jitter(pair, jitter_generator(3, 10, 0)))  # a pure function of (seed, step)


def test_jitter_is_a_crop_of_the_upscaled_pair():
    x = torch.rand(4, 6, 32, 32)
    big = F.interpolate(x, size=(36, 36), mode="bilinear", align_corners=False)
    out = random_jitter(x, jitter_generator(0, 0, 0))
    for i in range(4):
        assert any(torch.equal(out[i], big[i, :, t : t + 32, le : le + 32]) for t in range(5) for le in range(5))


def test_step_jitters_only_when_asked():
    """The step feeds D jittered pairs by default (as in the paper) and the batch as given with jitter=False."""
    torch.manual_seed(0)
    seen = []
    for jitter in (True, False):
        G, D = build(Pix2PixConfig(size=32, base_channels=4))
        D.register_forward_pre_hook(lambda _m, args: seen.append(args[0][:, :3].clone()))
        cfg = TrainConfig(data="", out="", arch="pix2pix", size=32, batch=2, jitter=jitter)
        step = Pix2PixStep(G, D, torch.optim.Adam(G.parameters()), torch.optim.Adam(D.parameters()), cfg,
                           make_runtime("cpu", "fp32", False))
        x = torch.rand(2, 6, 32, 32) * 2 - 1
        step(lambda x=x: x, 0)
        assert torch.equal(seen[-1], x[:, :3]) is not jitter
