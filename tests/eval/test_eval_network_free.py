"""SWD (ProGAN), MS-SSIM and the handcrafted feature space: checked against independent references."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage
import torch

from ganplug.eval.features.handcrafted import BLOCKS, DIM, handcrafted_features
from ganplug.eval.metrics import msssim, swd

G5 = np.float32([[1, 4, 6, 4, 1], [4, 16, 24, 16, 4], [6, 24, 36, 24, 6], [4, 16, 24, 16, 4], [1, 4, 6, 4, 1]]) / 256


def _scipy_pyramid(x: np.ndarray, levels: int) -> list[np.ndarray]:
    """ProGAN's pyramid with scipy.ndimage (mode='mirror'), as cv2.pyrDown/pyrUp."""
    def down(m):
        return scipy.ndimage.convolve(m, G5[None, None], mode="mirror")[:, :, ::2, ::2]

    def up(m):
        r = np.zeros((m.shape[0], m.shape[1], m.shape[2] * 2, m.shape[3] * 2), m.dtype)
        r[:, :, ::2, ::2] = m
        return scipy.ndimage.convolve(r, G5[None, None] * 4.0, mode="mirror")

    pyr = [x.astype(np.float64)]
    for _ in range(1, levels):
        pyr.append(down(pyr[-1]))
        pyr[-2] = pyr[-2] - up(pyr[-1])
    return pyr


def test_laplacian_pyramid_matches_scipy_reference():
    x = np.random.default_rng(0).integers(0, 256, (2, 3, 32, 32)).astype(np.float64)
    ours = swd.laplacian_pyramid(torch.from_numpy(x), 2)
    for a, b in zip(ours, _scipy_pyramid(x, 2), strict=True):
        np.testing.assert_allclose(a.numpy(), b, atol=1e-9)


def test_swd_zero_for_same_descriptors_and_grows_with_difference():
    rng = np.random.default_rng(1)
    imgs = torch.from_numpy(rng.integers(0, 256, (8, 3, 32, 32)).astype(np.uint8))
    smooth = torch.nn.functional.avg_pool2d(imgs.float(), 4).repeat_interleave(4, 2).repeat_interleave(4, 3)
    a, b, c = swd.SWDDescriptors(32, seed=0), swd.SWDDescriptors(32, seed=0), swd.SWDDescriptors(32, seed=0)
    a.update(imgs)
    b.update(imgs)
    c.update(smooth.to(torch.uint8))
    same = swd.swd(a.finalize(), b.finalize(), a.levels)
    diff = swd.swd(a.finalize(), c.finalize(), a.levels)
    assert same["value"] == pytest.approx(0.0, abs=1e-9)
    assert diff["per_level"]["32"] > 50  # blocky images lose fine-scale texture
    assert list(same["per_level"]) == ["32", "16"]


def test_ms_ssim_equals_pytorch_msssim_on_grey_images():
    from pytorch_msssim import ms_ssim as ref_ms_ssim

    gen = torch.Generator().manual_seed(2)
    a = torch.rand(2, 1, 192, 192, generator=gen) * 255
    b = (a + torch.randn(2, 1, 192, 192, generator=gen) * 25).clamp(0, 255)
    ours = msssim.ms_ssim(a, b)
    ref = ref_ms_ssim(a.double(), b.double(), data_range=255, size_average=False)
    torch.testing.assert_close(ours, ref, rtol=1e-6, atol=1e-8)
    assert msssim.ms_ssim(a, a).numpy() == pytest.approx(1.0)


def test_pair_msssim_lower_for_diverse_sets():
    rng = np.random.default_rng(3)
    diverse = torch.from_numpy(rng.integers(0, 256, (8, 3, 64, 64)).astype(np.uint8))
    same = diverse[:1].repeat(8, 1, 1, 1)
    d, s = msssim.PairSampler(), msssim.PairSampler()
    d.update(diverse)
    s.update(same)
    assert s.result()["value"] == pytest.approx(1.0) and d.result()["value"] < 0.2
    assert d.result()["pairs"] == 4


def test_handcrafted_features_are_batch_independent_and_normalised():
    rng = np.random.default_rng(4)
    imgs = torch.from_numpy(rng.integers(0, 256, (5, 3, 128, 128)).astype(np.uint8))
    full = handcrafted_features(imgs)
    one = handcrafted_features(imgs[2:3])
    assert full.shape == (5, DIM)
    np.testing.assert_allclose(full[2], one[0], atol=1e-6)
    # BLOCKS tiles the columns, and each block is one of the unit-length parts
    assert sorted(c for cols in BLOCKS.values() for c in range(DIM)[cols]) == list(range(DIM))
    for cols in BLOCKS.values():
        np.testing.assert_allclose(np.linalg.norm(full[:, cols], axis=1), 1.0, atol=1e-5)
    flipped = handcrafted_features(imgs.transpose(2, 3))  # transposed images: same palette, other layout
    palette, layout = BLOCKS["palette"], BLOCKS["layout"]
    np.testing.assert_allclose(flipped[:, palette], full[:, palette], atol=1e-6)
    assert np.abs(flipped[:, layout] - full[:, layout]).max() > 1e-3
