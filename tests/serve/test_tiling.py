"""Tileable generation: each rewritten op equals the plain op run on an explicitly tiled input."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ganplug.tiling import seam_jumps, tileable, wrap_pad


def tile3(x: torch.Tensor) -> torch.Tensor:
    return x.repeat(1, 1, 3, 3)


def test_wrap_pad_matches_numpy_wrap():
    x = torch.arange(2 * 3 * 2 * 3, dtype=torch.float64).reshape(2, 3, 2, 3)
    got = wrap_pad(x, 3, 1, 4, 2)  # more than the size itself
    ref = np.pad(x.numpy(), ((0, 0), (0, 0), (3, 1), (4, 2)), mode="wrap")
    np.testing.assert_array_equal(got.numpy(), ref)


@pytest.mark.parametrize("k,p,d", [(3, 1, 1), (5, 2, 1), (3, 2, 2)])
def test_conv2d_is_the_torus_convolution(k, p, d):
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, k, padding=p, dilation=d).double()
    x = torch.randn(2, 3, 6, 7, dtype=torch.float64)
    with tileable():
        got = conv(x)
    ref = conv(tile3(x))[..., 6:12, 7:14]
    torch.testing.assert_close(got, ref)


def test_conv2d_same_padding_string():
    torch.manual_seed(0)
    w = torch.randn(4, 3, 3, 3, dtype=torch.float64)
    x = torch.randn(1, 3, 5, 5, dtype=torch.float64)
    with tileable():
        got = F.conv2d(x, w, padding="same")
    ref = F.conv2d(tile3(x), w, padding="same")[..., 5:10, 5:10]
    torch.testing.assert_close(got, ref)


@pytest.mark.parametrize("k,s,p", [(4, 2, 1), (3, 1, 1), (6, 2, 2)])
def test_conv_transpose2d_is_the_torus_transposed_convolution(k, s, p):
    torch.manual_seed(1)
    convt = nn.ConvTranspose2d(3, 2, k, stride=s, padding=p).double()
    x = torch.randn(2, 3, 4, 5, dtype=torch.float64)
    with tileable():
        got = convt(x)
    assert got.shape[-2:] == convt(x).shape[-2:]
    h, w = got.shape[-2:]
    ref = convt(tile3(x))[..., 4 * s : 4 * s + h, 5 * s : 5 * s + w]
    torch.testing.assert_close(got, ref)


@pytest.mark.parametrize("mode", ["bilinear", "bicubic"])
def test_smooth_upsampling_wraps(mode):
    x = torch.randn(1, 2, 4, 4, dtype=torch.float64)
    with tileable():
        got = F.interpolate(x, scale_factor=2, mode=mode, align_corners=False)
    ref = F.interpolate(tile3(x), scale_factor=2, mode=mode, align_corners=False)[..., 8:16, 8:16]
    torch.testing.assert_close(got, ref)


def test_zero_padding_layers_and_outside_the_context_are_untouched():
    torch.manual_seed(2)
    first = nn.ConvTranspose2d(8, 4, 4, 1, 0).double()  # DCGAN's 1x1 -> 4x4 projection
    z = torch.randn(2, 8, 1, 1, dtype=torch.float64)
    plain = first(z)
    with tileable():
        torch.testing.assert_close(first(z), plain)
    conv = nn.Conv2d(3, 3, 3, padding=1).double()
    x = torch.randn(1, 3, 5, 5, dtype=torch.float64)
    zero_padded = F.conv2d(F.pad(x, (1, 1, 1, 1)), conv.weight, conv.bias)
    torch.testing.assert_close(conv(x), zero_padded)
    assert F.conv2d is torch.conv2d  # the patch is removed when the last context exits


def test_tileable_is_thread_local():
    conv = nn.Conv2d(1, 1, 3, padding=1, bias=False).double()
    x = torch.randn(1, 1, 6, 6, dtype=torch.float64)
    zero_padded = F.conv2d(F.pad(x, (1, 1, 1, 1)), conv.weight)
    inside, release = threading.Event(), threading.Event()

    def hold():
        with tileable():
            inside.set()
            release.wait(5)

    t = threading.Thread(target=hold)
    t.start()
    inside.wait(5)
    try:
        torch.testing.assert_close(conv(x), zero_padded)  # this thread is not inside tileable()
    finally:
        release.set()
        t.join()


def _dcgan_like(z_dim=16, ch=32):
    return nn.Sequential(
        nn.ConvTranspose2d(z_dim, ch, 4, 1, 0), nn.BatchNorm2d(ch), nn.ReLU(),
        nn.ConvTranspose2d(ch, ch // 2, 4, 2, 1), nn.BatchNorm2d(ch // 2), nn.ReLU(),
        nn.ConvTranspose2d(ch // 2, ch // 4, 4, 2, 1), nn.BatchNorm2d(ch // 4), nn.ReLU(),
        nn.Conv2d(ch // 4, ch // 4, 3, padding=1), nn.ReLU(),
        nn.ConvTranspose2d(ch // 4, 3, 4, 2, 1), nn.Tanh(),
    ).double().eval()


def test_generator_is_shift_equivariant_on_the_torus():
    """After the first layer every op is periodic: rolling the 4x4 map by 1 rolls the image by 8."""
    torch.manual_seed(3)
    g = _dcgan_like()
    head, rest = g[:3], g[3:]
    h = head(torch.randn(2, 16, 1, 1, dtype=torch.float64))
    with tileable():
        out = rest(h)
        rolled = rest(torch.roll(h, shifts=(1, 2), dims=(2, 3)))
    torch.testing.assert_close(rolled, torch.roll(out, shifts=(8, 16), dims=(2, 3)))
    plain_rolled = rest(torch.roll(h, shifts=(1, 2), dims=(2, 3)))
    assert not torch.allclose(plain_rolled, torch.roll(rest(h), shifts=(8, 16), dims=(2, 3)))


def test_seam_jumps_measures_the_wrap_around():
    x = np.tile(np.linspace(0, 255, 32), (32, 1))  # a ramp: big jump at the horizontal seam
    j = seam_jumps(x)
    assert j["seam_x"] > 30 * j["interior_x_max"]
    assert j["seam_y"] == 0


def test_style_generator_is_shift_equivariant_on_the_torus():
    """StyleGAN synthesis under tileable(): rolling the learned 4x4 constant by one pixel rolls the image by
    size/4 pixels exactly, so the image is a function on the torus (no seam anywhere)."""
    from ganplug.models import build_models, config_from_dict

    torch.manual_seed(4)
    cfg = config_from_dict("stylegan", dict(size=32, z_dim=8, w_dim=8, mapping_layers=1, capacity=0.03,
                                            channel_max=16))
    G, _, _ = build_models("stylegan", cfg)
    G = G.double().eval()
    ws = torch.randn(2, cfg.num_ws, 8, dtype=torch.float64)
    const = G.synthesis.blocks["b4"].const
    with torch.no_grad(), tileable():
        out = G.synthesis(ws, noise_mode="none")
        const.copy_(torch.roll(const, shifts=(1, 3), dims=(1, 2)))
        rolled = G.synthesis(ws, noise_mode="none")
    torch.testing.assert_close(rolled, torch.roll(out, shifts=(8, 24), dims=(2, 3)))
