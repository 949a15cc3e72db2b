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
    """D's loss for `kind`; `smoothing` and `noise` shape the nonsat targets (the other losses have none).

    nonsat is BCE with logits written as softplus: with plain targets it is exactly StyleGAN2's
    softplus(D(G(z))) + softplus(-D(x)), bit for bit, and t * softplus(-x) + (1 - t) * softplus(x) otherwise.
    """
    real_logits, fake_logits = real_logits.flatten().float(), fake_logits.flatten().float()
    if kind == "nonsat":
        if smoothing == 0 and noise == 0:
            return F.softplus(fake_logits).mean() + F.softplus(-real_logits).mean()
        dev = real_logits.device
        t_real = real_targets(len(real_logits), smoothing, noise, dev)
        t_fake = fake_targets(len(fake_logits), noise, dev)
        return _bce(real_logits, t_real) + _bce(fake_logits, t_fake)
    if kind == "hinge":
        return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()
    if kind == "wgan-gp":
        return fake_logits.mean() - real_logits.mean()
    raise ValueError(f"unknown loss {kind!r}")


def _bce(logits: Tensor, targets: Tensor) -> Tensor:
    """BCE with logits, in the softplus form (stable for any logit)."""
    return (targets * F.softplus(-logits) + (1 - targets) * F.softplus(logits)).mean()


def g_loss(kind: str, fake_logits: Tensor) -> Tensor:
    fake_logits = fake_logits.float()
    if kind == "nonsat":
        return F.softplus(-fake_logits).mean()  # = BCE(fake, 1): the non-saturating generator loss
    if kind in ("hinge", "wgan-gp"):
        return -fake_logits.mean()
    raise ValueError(f"unknown loss {kind!r}")
