"""Perceptual path length (Karras et al. 2019; StyleGAN2-ADA's protocol).

For each sample: two latents, a point t on the path between them (t = 0 with `end` sampling, uniform
with `full`), and a step of epsilon = 1e-4 along it; PPL is E[LPIPS(G(p(t)), G(p(t + eps))) / eps^2]
after dropping values below the 1st and above the 99th percentile. Style-based generators walk W
linearly (lerp of mapped w); other generators walk Z with spherical interpolation. StyleGAN slerps
unit vectors because its mapping normalises z; a DCGAN does not, so here the direction is slerped and
the norm interpolated linearly, which keeps z at a typical radius. Images larger than 256 px are box-
downsampled to 256 as in StyleGAN2-ADA; grey images are repeated to RGB. Always computed in fp32: a
step of 1e-4 is below bf16 resolution.
"""

from __future__ import annotations

import numpy as np
import torch

from ganplug.errors import UserError


def slerp_keep_norm(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation of directions, linear interpolation of norms (t broadcast over rows)."""
    na, nb = a.norm(dim=-1, keepdim=True), b.norm(dim=-1, keepdim=True)
    ua, ub = a / na, b / nb
    d = (ua * ub).sum(-1, keepdim=True).clamp(-1.0, 1.0)
    omega = torch.acos(d)
    c = ub - d * ua
    c = c / c.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    direction = ua * torch.cos(t * omega) + c * torch.sin(t * omega)
    return direction * (na + (nb - na) * t)


def _to_lpips_range(img: torch.Tensor) -> torch.Tensor:
    if img.shape[1] == 1:
        img = img.repeat(1, 3, 1, 1)
    if img.shape[-1] > 256:
        f = img.shape[-1] // 256
        img = img.reshape(img.shape[0], img.shape[1], img.shape[2] // f, f, img.shape[3] // f, f).mean(dim=(3, 5))
    return (img.float() + 1.0) * 127.5


def percentile_mean(dist: np.ndarray, lo: float = 1.0, hi: float = 99.0) -> float:
    a = np.percentile(dist, lo, method="lower")
    b = np.percentile(dist, hi, method="higher")
    return float(dist[(dist >= a) & (dist <= b)].mean())


@torch.no_grad()
def perceptual_path_length(G, lpips, *, style_based: bool, n: int = 10000, epsilon: float = 1e-4,
                           space: str = "auto", sampling: str = "end", batch_size: int = 32, seed: int = 0,
                           device: torch.device | str = "cpu") -> dict:
    if space == "auto":
        space = "w" if style_based else "z"
    if space not in ("z", "w"):
        raise UserError(f"unknown PPL space {space!r}; use auto, z or w.")
    if space == "w" and not style_based:
        raise UserError("PPL in W space needs a style-based generator (mapping/synthesis); this one is not.")
    if sampling not in ("end", "full"):
        raise UserError(f"unknown PPL sampling {sampling!r}; use end or full.")
    if n < 2:
        raise UserError(f"PPL needs at least 2 samples; got --ppl-samples {n}.")
    device = torch.device(device)
    gen = torch.Generator().manual_seed(seed)
    dists = []
    for start in range(0, n, batch_size):
        b = min(batch_size, n - start)
        z0 = torch.randn(b, G.z_dim, generator=gen).to(device)
        z1 = torch.randn(b, G.z_dim, generator=gen).to(device)
        t = (torch.rand(b, 1, generator=gen) if sampling == "full" else torch.zeros(b, 1)).to(device)
        if space == "w":
            w0, w1 = G.mapping(torch.cat([z0, z1])).chunk(2)
            tw = t[:, :, None]
            img = G.synthesis(torch.cat([torch.lerp(w0, w1, tw), torch.lerp(w0, w1, tw + epsilon)]),
                              noise_mode="const")
        else:
            img = G(torch.cat([slerp_keep_norm(z0, z1, t), slerp_keep_norm(z0, z1, t + epsilon)]))
        img = _to_lpips_range(img)
        a, c = img.chunk(2)
        dists.append((lpips(a, c) / epsilon**2).double().cpu().numpy())
    dist = np.concatenate(dists)
    return {"value": percentile_mean(dist), "space": space, "sampling": sampling, "epsilon": epsilon,
            "samples": int(n), "std": float(dist.std())}
