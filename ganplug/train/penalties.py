"""Gradient penalties for the discriminator and generator.

Each function returns the unweighted penalty; the caller applies its weight (lambda for WGAN-GP,
gamma/2 times the lazy interval for R1, pl_weight times the interval for path length), because
the weights depend on the schedule and live with the loss, not with the math.

Gradients are taken in float32 even under autocast (the logits are cast up first), so that the
squared norms do not underflow in bf16/fp16.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


def _f32(x: Tensor) -> Tensor:
    """Cast bf16/fp16 up to float32; leave float32/float64 alone."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def _per_sample_sq_norm(grad: Tensor) -> Tensor:
    return _f32(grad).square().flatten(1).sum(1)


def wgan_gp_penalty(D: Callable[[Tensor], Tensor], real: Tensor, fake: Tensor) -> Tensor:
    """WGAN-GP (Gulrajani et al. 2017): mean of (||grad_x D(x)||_2 - 1)^2 at random interpolates.

    One mixing coefficient per sample, uniform in [0, 1). `fake` is detached: the penalty trains D only.
    """
    if real.shape != fake.shape:
        raise ValueError(f"real and fake batches differ in shape: {tuple(real.shape)} vs {tuple(fake.shape)}")
    alpha = torch.rand([real.shape[0]] + [1] * (real.dim() - 1), device=real.device, dtype=real.dtype)
    x = (alpha * real.detach() + (1 - alpha) * fake.detach()).requires_grad_(True)
    out = D(x)
    (grad,) = torch.autograd.grad(_f32(out).sum(), x, create_graph=True)
    norm = _per_sample_sq_norm(grad).add(1e-12).sqrt()
    return (norm - 1).square().mean()


def r1_penalty(real_logits: Tensor, real_images: Tensor) -> Tensor:
    """R1 (Mescheder et al. 2018): per-sample sum of squared gradients of D's logits w.r.t. the real
    images, averaged over the batch. `real_images` must have had requires_grad set before D ran."""
    if not real_images.requires_grad:
        raise ValueError("r1_penalty needs real_images.requires_grad_(True) set before D was applied to them")
    (grad,) = torch.autograd.grad(_f32(real_logits).sum(), real_images, create_graph=True)
    return _per_sample_sq_norm(grad).mean()


def path_length_penalty(
    images: Tensor,
    ws: Tensor,
    pl_mean: Tensor,
    *,
    decay: float = 0.01,
    noise: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """StyleGAN2 path-length regularisation.

    For random image-space directions y ~ N(0, I)/sqrt(H*W), the path length of each sample is
    sqrt(mean over style inputs of ||J_w^T y||^2), where J_w is the Jacobian of the image w.r.t. that
    sample's ws [N, num_ws, w_dim]. The running mean a is updated as a <- a + decay * (mean(len) - a),
    and the penalty is mean((len - a)^2) with the updated a.

    Returns (penalty, new_pl_mean); `new_pl_mean` is detached, and the caller stores it
    (e.g. `pl_mean.copy_(new_pl_mean)`) so that this function stays free of hidden state.
    """
    if not ws.requires_grad:
        raise ValueError("path_length_penalty needs the ws the images came from, with requires_grad set")
    if ws.dim() != 3:
        raise ValueError(f"ws must be [N, num_ws, w_dim]; got shape {tuple(ws.shape)}")
    h, w = images.shape[2], images.shape[3]
    if noise is None:
        noise = torch.randn_like(_f32(images))
    noise = noise / (h * w) ** 0.5
    (grad,) = torch.autograd.grad((_f32(images) * noise).sum(), ws, create_graph=True)
    lengths = _f32(grad).square().sum(2).mean(1).sqrt()
    new_mean = _f32(pl_mean.detach()) + decay * (lengths.detach().mean() - _f32(pl_mean.detach()))
    penalty = (lengths - new_mean).square().mean()
    return penalty, new_mean.to(pl_mean.dtype)
