"""pix2pix: U-Net and PatchGAN shapes, the 70x70 receptive field, and the step's losses by hand."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ganplug.device import make_runtime
from ganplug.models.pix2pix import Pix2PixConfig, build
from ganplug.train.config import TrainConfig
from ganplug.train.pix2pix_step import Pix2PixStep


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
    cfg = TrainConfig(data="", out="", arch="pix2pix", size=32, batch=4, l1_weight=100.0)
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
    from ganplug.errors import UserError

    for bad in (dict(size=48), dict(size=16), dict(dropout=1.0), dict(size=32, d_layers=4)):
        with pytest.raises(UserError):
            build(Pix2PixConfig(**bad))
