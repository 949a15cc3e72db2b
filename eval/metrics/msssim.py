"""MS-SSIM (Wang et al. 2003) between pairs of samples: the diversity score of Odena et al. 2017 and
ProGAN. Lower mean MS-SSIM over random pairs means more diverse samples; compare with the same
statistic on real images.

Constants as in TensorFlow's reference used by ProGAN: 11-tap Gaussian (sigma 1.5, shrunk with the
image at coarse levels), K1 0.01, K2 0.03, dynamic range 255, five scales with weights
(0.0448, 0.2856, 0.3001, 0.2363, 0.1333), 2x2 average-pool downsampling, 'valid' filtering.
Colour: SSIM maps are averaged over channels at each scale, then the scales are combined.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
K1, K2 = 0.01, 0.03
FILTER_SIZE, FILTER_SIGMA = 11, 1.5


def gaussian_window(size: int, sigma: float) -> torch.Tensor:
    offset = 0.5 if size % 2 == 0 else 0.0
    radius = size // 2
    coords = torch.arange(-radius, radius + (0 if size % 2 == 0 else 1), dtype=torch.float64) + offset
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    return g / g.sum()


def _filter(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    c = x.shape[1]
    kh = g.view(1, 1, -1, 1).repeat(c, 1, 1, 1)
    kw = g.view(1, 1, 1, -1).repeat(c, 1, 1, 1)
    return F.conv2d(F.conv2d(x, kh, groups=c), kw, groups=c)


def _ssim_cs(a: torch.Tensor, b: torch.Tensor, max_val: float) -> tuple[torch.Tensor, torch.Tensor]:
    h, w = a.shape[-2:]
    size = min(FILTER_SIZE, h, w)
    sigma = size * FILTER_SIGMA / FILTER_SIZE
    g = gaussian_window(size, sigma).to(a.dtype)
    c1, c2 = (K1 * max_val) ** 2, (K2 * max_val) ** 2
    mu_a, mu_b = _filter(a, g), _filter(b, g)
    saa = _filter(a * a, g) - mu_a**2
    sbb = _filter(b * b, g) - mu_b**2
    sab = _filter(a * b, g) - mu_a * mu_b
    cs = (2 * sab + c2) / (saa + sbb + c2)
    ssim = (2 * mu_a * mu_b + c1) / (mu_a**2 + mu_b**2 + c1) * cs
    return ssim.flatten(1).mean(1), cs.flatten(1).mean(1)


def ms_ssim(a: torch.Tensor, b: torch.Tensor, max_val: float = 255.0) -> torch.Tensor:
    """Per-pair MS-SSIM of two NCHW batches (values 0..max_val), float64 [N]."""
    a, b = a.to(torch.float64), b.to(torch.float64)
    levels = len(WEIGHTS)
    mcs = []
    for i in range(levels):
        ssim, cs = _ssim_cs(a, b, max_val)
        if i < levels - 1:
            mcs.append(cs.clamp_min(0))
            a, b = F.avg_pool2d(a, 2), F.avg_pool2d(b, 2)
    vals = torch.stack(mcs + [ssim.clamp_min(0)])
    w = torch.tensor(WEIGHTS, dtype=torch.float64)[:, None]
    return (vals**w).prod(0)


class PairMSSSIM:
    """Streams uint8 NCHW batches; pairs consecutive images (0-1, 2-3, ...) as ProGAN does."""

    def __init__(self, max_pairs: int = 5000) -> None:
        self.values: list[np.ndarray] = []
        self.max_pairs = max_pairs
        self.count = 0

    def update(self, images: torch.Tensor) -> None:
        k = min(len(images) // 2, self.max_pairs - self.count)
        if k <= 0:
            return
        x = images[: 2 * k].to(torch.float64)
        self.values.append(ms_ssim(x[0::2], x[1::2]).numpy())
        self.count += k

    def result(self) -> dict:
        if not self.values:
            return {"value": float("nan"), "pairs": 0}
        v = np.concatenate(self.values)
        return {"value": float(v.mean()), "std": float(v.std()), "pairs": int(len(v))}
