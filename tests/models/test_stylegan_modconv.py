"""Modulated convolution with demodulation against a direct per-sample computation in float64."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ganplug.models.stylegan import SynthesisLayer, ToRGB, downsample2x, modulated_conv2d, upsample2x


def direct_modconv(x, weight, styles, demodulate, padding):
    """One sample at a time: build w'[o,i,k] = w[o,i,k] s[i], divide each output channel's kernel by its
    L2 norm, and convolve. Nothing shared with the implementation under test."""
    outs = []
    for n in range(x.shape[0]):
        w = weight * styles[n].reshape(1, -1, 1, 1)
        if demodulate:
            norms = torch.sqrt((w**2).sum(dim=(1, 2, 3)) + 1e-8)
            w = w / norms.reshape(-1, 1, 1, 1)
        outs.append(F.conv2d(x[n : n + 1], w, padding=padding))
    return torch.cat(outs)


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("demodulate", [True, False])
@pytest.mark.parametrize("kernel", [1, 3])
def test_modulated_conv_matches_per_sample_weights(fused, demodulate, kernel):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 5, 6, 6, generator=g, dtype=torch.float64)
    weight = torch.randn(4, 5, kernel, kernel, generator=g, dtype=torch.float64)
    styles = torch.randn(3, 5, generator=g, dtype=torch.float64) + 1.0
    got = modulated_conv2d(x, weight, styles, demodulate=demodulate, padding=kernel // 2, fused=fused)
    want = direct_modconv(x, weight, styles, demodulate, kernel // 2)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


def test_demodulation_gives_unit_norm_kernels():
    """With demodulation, a per-sample kernel acting on a delta image returns unit-norm output channels."""
    g = torch.Generator().manual_seed(1)
    weight = torch.randn(4, 3, 3, 3, generator=g, dtype=torch.float64)
    styles = torch.rand(2, 3, generator=g, dtype=torch.float64) * 5
    # Probing every input channel and position with a one-hot recovers the full kernel.
    energy = torch.zeros(2, 4, dtype=torch.float64)
    for i in range(3):
        x = torch.zeros(2, 3, 5, 5, dtype=torch.float64)
        x[:, i, 2, 2] = 1.0
        y = modulated_conv2d(x, weight, styles, demodulate=True, padding=1)
        energy += y.square().sum(dim=(2, 3))
    torch.testing.assert_close(energy, torch.ones_like(energy), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("up", [False, True])
@pytest.mark.parametrize("fused", [False, True])
def test_synthesis_layer_matches_direct(up, fused):
    """A whole layer: affine style, (upsample), demodulated conv, no noise, bias, scaled leaky ReLU."""
    torch.manual_seed(2)
    layer = SynthesisLayer(5, 4, w_dim=7, res=8, up=up).double()
    with torch.no_grad():
        layer.bias.normal_()
        layer.affine.bias.normal_()
    x = torch.randn(2, 5, 4 if up else 8, 4 if up else 8, dtype=torch.float64)
    w = torch.randn(2, 7, dtype=torch.float64)
    got = layer(x, w, noise_mode="none", fused=fused)

    styles = w @ (layer.affine.weight / 7**0.5).t() + layer.affine.bias  # equalised lr: 1/sqrt(fan_in)
    weight = layer.weight / (5 * 9) ** 0.5
    xin = upsample2x(x) if up else x
    y = direct_modconv(xin, weight, styles, True, 1) + layer.bias.reshape(1, -1, 1, 1)
    want = F.leaky_relu(y, 0.2) * 2**0.5
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)


def test_torgb_is_modulated_without_demodulation():
    torch.manual_seed(3)
    layer = ToRGB(6, 3, w_dim=5).double()
    x = torch.randn(2, 6, 4, 4, dtype=torch.float64)
    w = torch.randn(2, 5, dtype=torch.float64)
    styles = (w @ (layer.affine.weight / 5**0.5).t() + layer.affine.bias) / 6**0.5
    want = direct_modconv(x, layer.weight.double(), styles, False, 0) + layer.bias.reshape(1, -1, 1, 1)
    torch.testing.assert_close(layer(x, w), want, rtol=1e-9, atol=1e-9)


def test_upsample_is_the_1331_filter_in_the_interior():
    """Bilinear x2 (align_corners=False) equals zero-insertion + separable [1,3,3,1]/4 filtering, away from
    the border where the two differ only in padding."""
    x = torch.randn(1, 1, 6, 6, dtype=torch.float64)
    z = torch.zeros(1, 1, 12, 12, dtype=torch.float64)
    z[..., ::2, ::2] = x
    k = torch.tensor([1.0, 3.0, 3.0, 1.0], dtype=torch.float64) / 4  # sums to 2: gain for the inserted zeros
    k2 = torch.outer(k, k)
    ref = F.conv2d(F.pad(z, (2, 1, 2, 1)), k2.flip(0, 1).reshape(1, 1, 4, 4))
    got = upsample2x(x)
    torch.testing.assert_close(got[..., 2:-2, 2:-2], ref[..., 2:-2, 2:-2], rtol=1e-10, atol=1e-10)


def test_downsample_is_binomial_blur_then_decimate():
    """Output pixel (i, j) = sum over a 4x4 window of the zero-padded input starting at (2i, 2j), weighted
    by outer([1,3,3,1], [1,3,3,1]) / 64; written out as loops in float64."""
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    k = [1.0, 3.0, 3.0, 1.0]
    p = F.pad(x, (1, 1, 1, 1))
    ref = torch.zeros(2, 3, 4, 4, dtype=torch.float64)
    for i in range(4):
        for j in range(4):
            for a in range(4):
                for b in range(4):
                    ref[..., i, j] += k[a] * k[b] / 64 * p[..., 2 * i + a, 2 * j + b]
    torch.testing.assert_close(downsample2x(x), ref, rtol=1e-12, atol=1e-12)


def test_downsample_under_bf16_autocast_keeps_dtype_and_gradients():
    """The blur runs in float32 inside bf16 autocast (faster on the CPU) but hands back the input's dtype,
    and gradients still flow to the input."""
    x = torch.randn(2, 4, 8, 8).bfloat16().contiguous(memory_format=torch.channels_last).requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = downsample2x(x)
    assert y.dtype == torch.bfloat16 and y.shape == (2, 4, 4, 4)
    torch.testing.assert_close(y.float(), downsample2x(x.detach().double()).float(), rtol=1e-2, atol=1e-2)
    y.float().sum().backward()
    # Each input pixel away from the border feeds 4 outputs per axis with weights summing to 1/2 per axis.
    assert torch.allclose(x.grad[..., 2:-2, 2:-2].float(), torch.full((2, 4, 4, 4), 0.25), atol=1e-2)
