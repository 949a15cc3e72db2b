"""Exponential moving average of generator weights, set as a half-life in images (StyleGAN2-ADA)."""

from __future__ import annotations

import torch
from torch import nn


def ema_beta(batch: int, half_life_kimg: float, nimg: int, rampup: float = 0.0) -> float:
    """Per-step decay so that the average halves its memory every `half_life_kimg` thousand images.

    With `rampup` the half-life is at most `rampup * nimg`, so early weights fade fast in short runs.
    """
    half_nimg = half_life_kimg * 1000.0
    if rampup > 0:
        half_nimg = min(half_nimg, nimg * rampup)
    if half_nimg <= 0:
        return 0.0
    return 0.5 ** (batch / half_nimg)


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, beta: float) -> None:
    """ema <- beta * ema + (1 - beta) * model for parameters; buffers are copied."""
    for p_ema, p in zip(ema.parameters(), model.parameters(), strict=True):
        p_ema.lerp_(p.detach(), 1.0 - beta)
    for b_ema, b in zip(ema.buffers(), model.buffers(), strict=True):
        b_ema.copy_(b)


@torch.no_grad()
def recalibrate_batchnorm(G: nn.Module, z_dim: int, device: torch.device, batches: int = 4, batch: int = 64,
                          seed: int = 1234, autocast=None) -> None:
    """Recompute BatchNorm running statistics for averaged weights.

    Running stats copied from the raw generator belong to other weights; a few forward passes with the
    EMA weights give the statistics that match them. Uses its own RNG so training randomness is untouched.
    """
    bns = [m for m in G.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    was_training = G.training
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the passes below
    G.train()
    gen = torch.Generator(device="cpu").manual_seed(seed)
    for _ in range(batches):
        z = torch.randn(batch, z_dim, generator=gen).to(device)
        if autocast is not None:
            with autocast():
                G(z)
        else:
            G(z)
    for m, mom in zip(bns, saved, strict=True):
        m.momentum = mom
    G.train(was_training)
