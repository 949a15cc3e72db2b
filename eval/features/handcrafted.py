"""A network-free feature space ("handcrafted-v1"), always available offline.

Each image (RGB, resized to 64x64 with antialiasing) becomes 384 numbers in three equally weighted,
L2-normalised blocks:
- layout and colour: an 8x8 RGB thumbnail (192 values, centred on mid-grey),
- palette: a 4x4x4 joint RGB histogram, square-rooted (Hellinger) (64 values),
- shape: 8-bin gradient-orientation histograms, magnitude weighted, over a 4x4 grid of cells (128).
It is cheap and deterministic. It sees colour, composition and edge structure, not semantics, so its
precision/recall/density/coverage rank sets by those; use Inception features where available.
Two thirds of the numbers are colour, so a global colour or brightness change moves every image: the
collapse verdict reports that as a shift, not as collapse (eval/collapse.py, docs/collapse.md).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

NAME = "handcrafted-v1"
DIM = 384
WORK_SIZE = 64
# Columns of each block, for reading a metric by block (scripts/coverage_blocks.py).
BLOCKS = {"layout": slice(0, 192), "palette": slice(192, 256), "edges": slice(256, 384)}


def _normalise(block: torch.Tensor) -> torch.Tensor:
    return block / block.norm(dim=1, keepdim=True).clamp_min(1e-12)


def handcrafted_features(images: torch.Tensor) -> np.ndarray:
    """uint8 NCHW RGB (any square size) -> [N, 384] float64."""
    x = images.to(torch.float32) / 255.0
    if x.shape[-1] != WORK_SIZE or x.shape[-2] != WORK_SIZE:
        x = F.interpolate(x, size=(WORK_SIZE, WORK_SIZE), mode="bilinear", antialias=True, align_corners=False)
    n = x.shape[0]
    thumb = F.adaptive_avg_pool2d(x, 8).reshape(n, -1) - 0.5
    q = (x.clamp(0, 1) * 3.999).long()
    bins = q[:, 0] * 16 + q[:, 1] * 4 + q[:, 2]
    hist = torch.zeros(n, 64).scatter_add_(1, bins.reshape(n, -1), torch.ones(n, WORK_SIZE * WORK_SIZE)).sqrt()
    gray = (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2])[:, None]
    sobel = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
    gx = F.conv2d(F.pad(gray, (1, 1, 1, 1), mode="replicate"), sobel[None, None])
    gy = F.conv2d(F.pad(gray, (1, 1, 1, 1), mode="replicate"), sobel.T[None, None])
    mag = (gx**2 + gy**2).sqrt()[:, 0]
    ang = torch.atan2(gy, gx)[:, 0] % np.pi  # unsigned orientation
    obin = (ang / np.pi * 8).long().clamp(0, 7)
    cell = WORK_SIZE // 4
    onehot = F.one_hot(obin, 8).to(torch.float32) * mag[..., None]  # [N, H, W, 8]
    hog = onehot.reshape(n, 4, cell, 4, cell, 8).sum(dim=(2, 4)).reshape(n, -1)
    feats = torch.cat([_normalise(thumb), _normalise(hist), _normalise(hog)], dim=1)
    return feats.to(torch.float64).numpy()
