"""DCGAN shapes, the canonical 64 px architecture, initialisation and config checks."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from ganplug.errors import UserError
from ganplug.models import build_models, config_from_dict


@pytest.mark.parametrize("size", [32, 64, 128, 256])
@pytest.mark.parametrize("kernel", [4, 5])
def test_shapes_at_every_size(size, kernel):
    cfg = config_from_dict("dcgan", {"size": size, "kernel": kernel, "base_channels": 8, "channels": 4})
    G, D, spec = build_models("dcgan", cfg)
    img = G(torch.randn(3, cfg.z_dim))
    assert img.shape == (3, 4, size, size)
    assert img.abs().max() <= 1.0  # tanh output
    assert D(img).shape == (3,)
    # one stride-2 block per doubling from 4x4
    assert len(D.blocks) == int(math.log2(size)) - 2
    assert spec.size == size and spec.channels == 4 and not spec.style_based


def canonical_generator(nz=100, ngf=64, nc=3):
    """The generator of the canonical PyTorch DCGAN example, written out layer by layer."""
    return nn.Sequential(
        nn.ConvTranspose2d(nz, ngf * 8, 4, 1, 0, bias=False), nn.BatchNorm2d(ngf * 8), nn.ReLU(True),
        nn.ConvTranspose2d(ngf * 8, ngf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 4), nn.ReLU(True),
        nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 2), nn.ReLU(True),
        nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf), nn.ReLU(True),
        nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False), nn.Tanh(),
    )


def canonical_discriminator(ndf=64, nc=3):
    return nn.Sequential(
        nn.Conv2d(nc, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 2), nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(ndf * 2, ndf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 4), nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(ndf * 4, ndf * 8, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 8), nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(ndf * 8, 1, 4, 1, 0, bias=False),
    )


def _copy_by_order(src: nn.Module, dst: nn.Module) -> None:
    s, d = list(src.state_dict().values()), dst.state_dict()
    assert [v.shape for v in s] == [v.shape for v in d.values()]
    dst.load_state_dict(dict(zip(d.keys(), s, strict=True)))


def test_default_64_is_the_canonical_architecture():
    """Same layers, same parameter count, same function as the reference example (minus D's sigmoid)."""
    G, D, _ = build_models("dcgan", config_from_dict("dcgan", {"size": 64}))
    G_ref, D_ref = canonical_generator(), canonical_discriminator()
    assert sum(p.numel() for p in G.parameters()) == sum(p.numel() for p in G_ref.parameters())
    assert sum(p.numel() for p in D.parameters()) == sum(p.numel() for p in D_ref.parameters())
    _copy_by_order(G, G_ref)
    _copy_by_order(D, D_ref)
    G.eval(), G_ref.eval(), D.eval(), D_ref.eval()
    z = torch.randn(4, 100)
    torch.testing.assert_close(G(z), G_ref(z.view(4, 100, 1, 1)))
    x = torch.rand(4, 3, 64, 64) * 2 - 1
    torch.testing.assert_close(D(x), D_ref(x).flatten())


def test_paper_initialisation():
    torch.manual_seed(0)
    G, D, _ = build_models("dcgan", config_from_dict("dcgan", {"size": 64}))
    convs = [m.weight for m in list(G.modules()) + list(D.modules()) if isinstance(m, nn.Conv2d | nn.ConvTranspose2d)]
    w = torch.cat([c.flatten() for c in convs])
    assert abs(w.mean().item()) < 1e-3
    assert abs(w.std().item() - 0.02) < 5e-4
    G2, _, _ = build_models("dcgan", config_from_dict("dcgan", {"size": 64, "init": "glorot"}))
    first = next(m for m in G2.modules() if isinstance(m, nn.ConvTranspose2d))
    fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(first.weight)
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    assert first.weight.abs().max() <= bound and first.weight.abs().max() > 0.9 * bound


def test_truncation_shrinks_z_toward_zero():
    G, _, _ = build_models("dcgan", config_from_dict("dcgan", {"size": 32, "base_channels": 8}))
    G.eval()
    z = torch.randn(2, 100)
    torch.testing.assert_close(G(z, truncation=0.5), G(z * 0.5))
    torch.testing.assert_close(G(z, truncation=0.0), G(torch.zeros_like(z)))


def test_layer_norm_discriminator_is_per_sample():
    """With d_norm=layer (used for WGAN-GP) a sample's score does not depend on the rest of the batch."""
    _, D, _ = build_models("dcgan", config_from_dict("dcgan", {"size": 32, "base_channels": 8, "d_norm": "layer"}))
    D.train()
    x = torch.randn(5, 3, 32, 32)
    torch.testing.assert_close(D(x)[:2], D(x[:2]))


@pytest.mark.parametrize("bad", [{"size": 48}, {"size": 64, "kernel": 3}, {"size": 64, "channels": 2},
                                 {"size": 64, "init": "he"}, {"size": 64, "d_dropout": 1.5},
                                 {"size": 64, "colour": 1}])
def test_bad_configs_are_user_errors(bad):
    with pytest.raises(UserError):
        config_from_dict("dcgan", bad)


def test_unknown_architecture_names_the_known_ones():
    with pytest.raises(UserError, match="dcgan"):
        config_from_dict("biggan", {})
