"""StyleGAN family: shapes at every size, registry contract, config errors, gradients reach every weight."""

from __future__ import annotations

import pytest
import torch

from ganplug.errors import UserError
from ganplug.models import build_models, config_from_dict, get_family
from ganplug.models.stylegan import SIZES, StyleGANConfig, build, minibatch_stddev

TINY = dict(z_dim=16, w_dim=32, mapping_layers=2, capacity=1 / 64)  # every width = 8 channels


@pytest.mark.parametrize("size", SIZES)
def test_shapes_at_every_size(size):
    channels = 4 if size in (64, 256) else 3  # RGBA at two sizes keeps the suite quick
    G, D, spec = build_models("stylegan", config_from_dict("stylegan", dict(size=size, channels=channels, **TINY)))
    log2 = size.bit_length() - 1
    assert spec.style_based and spec.num_ws == 2 * log2 - 2 == G.num_ws
    assert (spec.size, spec.channels, spec.z_dim) == (size, channels, 16)
    z = torch.randn(2, 16)
    with torch.no_grad():
        ws = G.mapping(z)
        assert ws.shape == (2, spec.num_ws, 32)
        img = G.synthesis(ws)
        assert img.shape == (2, channels, size, size)
        torch.testing.assert_close(G(z), img)
        logits = D(img)
    assert logits.shape == (2,)
    assert G.w_avg.shape == (32,)


def test_paper256_widths_match_reference_parameter_count():
    """capacity=1, channel_max=512, 8 mapping layers at 256 px is StyleGAN2-ADA's paper256 G: 24.8 M params."""
    G, _ = build(StyleGANConfig(size=256))
    n = sum(p.numel() for p in G.parameters())
    assert 24.6e6 < n < 25.0e6


def test_capacity_scales_widths():
    small = StyleGANConfig(size=64, capacity=0.25)
    full = StyleGANConfig(size=64)
    assert [small.width(r) for r in (4, 8, 16, 32, 64)] == [128, 128, 128, 128, 64]
    assert [full.width(r) for r in (4, 8, 16, 32, 64)] == [512, 512, 512, 512, 256]


@pytest.mark.parametrize(
    "values",
    [dict(size=48), dict(size=1024), dict(channels=1), dict(z_dim=513), dict(mapping_layers=0), dict(capacity=0)],
)
def test_bad_config_is_a_user_error(values):
    with pytest.raises(UserError):
        config_from_dict("stylegan", values)


def test_unknown_option_is_a_user_error():
    with pytest.raises(UserError, match="mapping_layer"):
        config_from_dict("stylegan", {"mapping_layer": 2})


def test_family_is_registered():
    assert get_family("stylegan").config_cls is StyleGANConfig


def test_every_parameter_gets_a_gradient():
    G, D = build(StyleGANConfig(size=32, **TINY))
    for m in G.modules():  # noise strengths start at 0; give them a value so the noise path is live
        if hasattr(m, "noise_strength"):
            torch.nn.init.constant_(m.noise_strength, 0.1)
    loss = D(G(torch.randn(4, 16), noise_mode="random")).sum()
    loss.backward()
    missing = [n for n, p in list(G.named_parameters()) + list(D.named_parameters())
               if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


def test_generator_is_batch_independent():
    G, _ = build(StyleGANConfig(size=32, **TINY))
    z = torch.randn(3, 16)
    with torch.no_grad():
        full = G(z)
        one = G(z[1:2])
    torch.testing.assert_close(full[1:2], one, rtol=1e-4, atol=1e-5)


def test_noise_modes():
    G, _ = build(StyleGANConfig(size=32, **TINY))
    for m in G.modules():
        if hasattr(m, "noise_strength"):
            torch.nn.init.constant_(m.noise_strength, 0.5)
    z = torch.randn(2, 16)
    with torch.no_grad():
        c1, c2 = G(z, noise_mode="const"), G(z, noise_mode="const")
        r1, r2 = G(z, noise_mode="random"), G(z, noise_mode="random")
        n1 = G(z, noise_mode="none")
    torch.testing.assert_close(c1, c2)
    assert (r1 - r2).abs().max() > 1e-3
    assert (c1 - n1).abs().max() > 1e-3
    with pytest.raises(UserError, match="noise mode"):
        G(z, noise_mode="fixed")


def test_truncation_pulls_toward_w_avg():
    G, _ = build(StyleGANConfig(size=32, **TINY))
    G.mapping.w_avg.normal_()
    z = torch.randn(3, 16)
    with torch.no_grad():
        ws = G.mapping(z)
        ws0 = G.mapping(z, truncation=0.0)
        wsh = G.mapping(z, truncation=0.5, truncation_cutoff=4)
    torch.testing.assert_close(ws0, G.w_avg.expand_as(ws0))
    torch.testing.assert_close(wsh[:, :4], G.w_avg + 0.5 * (ws[:, :4] - G.w_avg))
    torch.testing.assert_close(wsh[:, 4:], ws[:, 4:])


def test_update_w_avg_is_an_ema():
    G, _ = build(StyleGANConfig(size=32, **TINY))
    ws = torch.randn(8, G.num_ws, 32)
    G.update_w_avg(ws, beta=0.9)
    torch.testing.assert_close(G.w_avg, 0.1 * ws[:, 0].mean(0))


def test_mapping_normalises_z():
    """Scaling z does not change w: z is divided by its RMS first."""
    G, _ = build(StyleGANConfig(size=32, **TINY))
    z = torch.randn(2, 16)
    with torch.no_grad():
        torch.testing.assert_close(G.mapping(z), G.mapping(7.0 * z), rtol=1e-4, atol=1e-5)


def test_minibatch_stddev_matches_direct_computation():
    x = torch.randn(6, 3, 4, 4, dtype=torch.float64)
    out = minibatch_stddev(x, group_size=3)  # groups: samples {i, i+2, i+4} for i in 0, 1
    assert out.shape == (6, 4, 4, 4)
    for i in range(6):
        members = x[[j for j in range(6) if j % 2 == i % 2]]
        want = members.std(dim=0, unbiased=False).mean()
        torch.testing.assert_close(out[i, 3], want.expand(4, 4).to(out.dtype), rtol=1e-5, atol=1e-6)
    # a batch size that the group size does not divide still works (largest divisor <= group size)
    assert minibatch_stddev(torch.randn(5, 2, 4, 4), 4).shape == (5, 3, 4, 4)


def test_channels_last_bf16_autocast_close_to_fp32():
    G, D = build(StyleGANConfig(size=32, **TINY))
    z = torch.randn(2, 16)
    with torch.no_grad():
        ref = G(z)
        ref_logits = D(ref)
        G.to(memory_format=torch.channels_last)
        D.to(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            img = G(z)
            logits = D(img.contiguous(memory_format=torch.channels_last))
    assert img.shape == ref.shape
    assert (img.float() - ref).abs().mean() < 0.05 * ref.abs().mean()
    assert (logits.float() - ref_logits).abs().max() < 0.1 * ref_logits.abs().max() + 0.05
