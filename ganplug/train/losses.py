"""Adversarial losses on discriminator logits: non-saturating, hinge and Wasserstein.

Each is a pair of pure functions of logits (the gradient penalties live in penalties.py). Logits are
promoted to fp32 so mixed-precision forward passes do not lose the loss's precision.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def real_targets(n: int, smoothing: float, noise: float, device: torch.device) -> Tensor:
    """Targets for real images: 1 - smoothing, minus U[0, noise) when label noise is on."""
    t = torch.full((n,), 1.0 - smoothing, device=device)
    if noise > 0:
        t = t - torch.rand(n, device=device) * noise
    return t


def fake_targets(n: int, noise: float, device: torch.device) -> Tensor:
    if noise > 0:
        return torch.rand(n, device=device) * noise
    return torch.zeros(n, device=device)


def d_loss(kind: str, real_logits: Tensor, fake_logits: Tensor, *, smoothing: float = 0.0,
           noise: float = 0.0) -> Tensor:
    real_logits, fake_logits = real_logits.float(), fake_logits.float()
    if kind == "nonsat":
        dev = real_logits.device
        return (F.binary_cross_entropy_with_logits(real_logits, real_targets(len(real_logits), smoothing, noise, dev))
                + F.binary_cross_entropy_with_logits(fake_logits, fake_targets(len(fake_logits), noise, dev)))
    if kind == "hinge":
        return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()
    if kind == "wgan-gp":
        return fake_logits.mean() - real_logits.mean()
    raise ValueError(f"unknown loss {kind!r}")


def g_loss(kind: str, fake_logits: Tensor) -> Tensor:
    fake_logits = fake_logits.float()
    if kind == "nonsat":
        return F.softplus(-fake_logits).mean()  # = BCE(fake, 1): the non-saturating generator loss
    if kind in ("hinge", "wgan-gp"):
        return -fake_logits.mean()
    raise ValueError(f"unknown loss {kind!r}")
