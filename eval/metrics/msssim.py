"""MS-SSIM (Wang et al. 2003) between pairs of samples: the diversity score of Odena et al. 2017 and
ProGAN. Lower mean MS-SSIM over random pairs means more diverse samples; compare with the same
statistic on real images. One implementation of the pairing (PairSampler) serves the `msssim` metric
and the collapse battery.

Constants as in TensorFlow's reference used by ProGAN: 11-tap Gaussian (sigma 1.5, shrunk with the
image at coarse levels), K1 0.01, K2 0.03, dynamic range 255, five scales with weights
(0.0448, 0.2856, 0.3001, 0.2363, 0.1333), 2x2 average-pool downsampling, 'valid' filtering.
Colour: SSIM maps are averaged over channels at each scale, then the scales are combined.
"""

from __future__ import annotations

import hashlib
import heapq

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


class PairSampler:
    """Mean MS-SSIM over seeded random pairs, streamed, and independent of the order images arrive in.

    Why not consecutive images (ProGAN's 0-1, 2-3, ...): that made the score depend on file order (a folder
    of repeated images sorted by name scored ~1). Each image gets a seeded key from its pixels and its
    occurrence number among identical images, so which images are kept, and how they are paired, depends
    only on the set of images and the seed. The 2 x `pairs` smallest keys are kept (a uniform random
    subset, streamed with a heap); in key order (a random permutation) they form disjoint pairs.
    """

    def __init__(self, pairs: int = 1000, seed: int = 0) -> None:
        self.pairs, self.seed = max(1, int(pairs)), int(seed)
        self._heap: list[tuple[int, int, torch.Tensor]] = []  # (-key, arrival, image): a max-heap of kept keys
        self._seen: dict[bytes, int] = {}  # pixel digest -> copies seen so far
        self._arrived = 0

    def _key(self, image: torch.Tensor) -> int:
        digest = hashlib.blake2b(image.numpy().tobytes() + str(tuple(image.shape)).encode(), digest_size=16).digest()
        copy = self._seen.get(digest, 0)
        self._seen[digest] = copy + 1
        salted = hashlib.blake2b(digest + copy.to_bytes(8, "little"), digest_size=8,
                                 key=self.seed.to_bytes(8, "little", signed=True)).digest()
        return int.from_bytes(salted, "little")

    def update(self, images: torch.Tensor) -> None:
        """Offer a uint8 NCHW batch; only the images with the smallest keys are kept."""
        for img in images:
            item = (-self._key(img), self._arrived, img.clone())
            self._arrived += 1
            if len(self._heap) < 2 * self.pairs:
                heapq.heappush(self._heap, item)
            elif item[0] > self._heap[0][0]:
                heapq.heapreplace(self._heap, item)

    def values(self) -> np.ndarray:
        """Per-pair MS-SSIM of the kept images, paired in key order."""
        kept = [img for _, _, img in sorted(self._heap, key=lambda t: -t[0])]
        k = len(kept) // 2
        if k == 0:
            return np.zeros(0)
        x = torch.stack(kept[: 2 * k]).to(torch.float64)
        if x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)
        return ms_ssim(x[0::2], x[1::2]).numpy()

    def result(self) -> dict:
        v = self.values()
        if not len(v):
            return {"value": float("nan"), "pairs": 0}
        return {"value": float(v.mean()), "std": float(v.std()), "pairs": int(len(v))}


def pair_msssim(images: torch.Tensor, pairs: int = 48, seed: int = 0) -> float:
    """Mean MS-SSIM of seeded random pairs of uint8 NCHW images (higher = less diverse); see PairSampler."""
    sampler = PairSampler(pairs, seed)
    sampler.update(images)
    return sampler.result()["value"]
