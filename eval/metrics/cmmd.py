"""CMMD: squared MMD between CLIP image embeddings with a Gaussian RBF kernel (Jayasumana et al., CVPR 2024).

    CMMD = SCALE * (mean k(x, x') + mean k(y, y') - 2 mean k(x, y)),  k(a, b) = exp(-|a - b|^2 / (2 SIGMA^2))

with SIGMA = 10 and SCALE = 1000, the constants of the reference implementation (google-research/cmmd
`distance.py`). The means run over all pairs, the diagonal included: the reference's biased
(minimum-variance) estimator of Gretton et al. 2012, Eq. 5, not the unbiased one KID uses. The sets may differ
in size. Computed here in float64 in row blocks (the reference uses float32 and whole n x n matrices), so
50,000 x 50,000 pairs fit in memory.
"""

from __future__ import annotations

import numpy as np
import torch

from ganplug.errors import DataError

SIGMA = 10.0  # the RBF bandwidth of the reference implementation
SCALE = 1000.0  # the reference's readability factor
BLOCK = 4096


def _mean_kernel(a: torch.Tensor, b: torch.Tensor, gamma: float) -> float:
    """Mean of exp(-gamma |a_i - b_j|^2) over all i, j."""
    b_sq = (b * b).sum(1)
    total = 0.0
    for i in range(0, len(a), BLOCK):
        x = a[i:i + BLOCK]
        d2 = ((x * x).sum(1)[:, None] + b_sq[None, :] - 2.0 * x @ b.T).clamp_min_(0.0)
        total += float(torch.exp(-gamma * d2).sum().item())
    return total / (len(a) * len(b))


def cmmd(x: np.ndarray, y: np.ndarray, sigma: float = SIGMA, scale: float = SCALE,
         device: str | torch.device = "cpu") -> float:
    """CMMD between embedding sets `x` [n, d] and `y` [m, d] (L2-normalised CLIP embeddings)."""
    a = torch.as_tensor(np.asarray(x), dtype=torch.float64, device=device)
    b = torch.as_tensor(np.asarray(y), dtype=torch.float64, device=device)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or len(a) < 1 or len(b) < 1:
        raise DataError(f"CMMD needs two non-empty [N, D] embedding sets of one width; got {tuple(a.shape)} "
                        f"and {tuple(b.shape)}.")
    if not (torch.isfinite(a).all() and torch.isfinite(b).all()):
        raise DataError("CLIP embeddings contain NaN or infinite values; no CMMD is reported.")
    gamma = 1.0 / (2.0 * sigma ** 2)
    return scale * (_mean_kernel(a, a, gamma) + _mean_kernel(b, b, gamma) - 2.0 * _mean_kernel(a, b, gamma))
