"""Differentiable augmentation for small-data GAN training (DiffAugment / StyleGAN2-ADA style).

D sees every image, real or generated, through the same random augmentation, and gradients flow
through it back to G. Each op is a pure function `op(x, p, generator) -> x` in the `OPS` table that
applies its transform to each sample independently with probability p (p = 0 is an exact identity).

Non-leaking design (Karras et al. 2020, "Training GANs with limited data", sec. 2.2): G only learns
the clean distribution if the augmentation is invertible in distribution, i.e. the law of augmented
images determines the law of clean ones. Every op here keeps the identity the most likely outcome for
p < 1: discrete ops draw their transform uniformly *including* the identity (rot90: k in {0,1,2,3}, so
P(no rotation) = 1 - 3p/4), and continuous ops draw parameters centred on the identity (log-normal
scales, zero-mean shifts). ADA keeps p well below 1; `AdaController.max_p` caps it (0.8 by default).

Parameters follow StyleGAN2-ADA's defaults where it has the op (translation of up to 1/8 of the size,
isotropic scale std 0.2*log2, brightness std 0.2, contrast std 0.5*log2, saturation std log2) and
DiffAugment's for cutout (a square of half the size). Colour ops touch RGB only; alpha is geometry.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ganplug.train.distributed import all_reduce_sum

Op = Callable[[Tensor, float, "torch.Generator | None"], Tensor]


def _rand(n: int, x: Tensor, gen: torch.Generator | None) -> Tensor:
    return torch.rand(n, device=x.device, generator=gen)


def _randn(n: int, x: Tensor, gen: torch.Generator | None) -> Tensor:
    return torch.randn(n, device=x.device, generator=gen)


def _apply_mask(n: int, p: float, x: Tensor, gen: torch.Generator | None) -> Tensor:
    """Which samples get the op: bool [N], each True with probability p."""
    return _rand(n, x, gen) < p


def _bcast(v: Tensor, x: Tensor) -> Tensor:
    return v.reshape(-1, 1, 1, 1).to(x.dtype)


# ---------------------------------------------------------------------------------------- geometry


def xflip(x: Tensor, p: float, gen: torch.Generator | None = None) -> Tensor:
    """Mirror left-right: with probability p, flip with probability 1/2 (P(identity) = 1 - p/2)."""
    if p <= 0:
        return x
    n = x.shape[0]
    flip = _apply_mask(n, p, x, gen) & (_rand(n, x, gen) < 0.5)
    return torch.where(flip.reshape(-1, 1, 1, 1), x.flip(3), x)


def rot90(x: Tensor, p: float, gen: torch.Generator | None = None) -> Tensor:
    """Rotate by k * 90 degrees, k uniform in {0, 1, 2, 3} with probability p (square images only)."""
    if p <= 0:
        return x
    if x.shape[2] != x.shape[3]:
        raise ValueError("rot90 augmentation needs square images")
    n = x.shape[0]
    k = torch.randint(0, 4, (n,), device=x.device, generator=gen)
    k = torch.where(_apply_mask(n, p, x, gen), k, torch.zeros_like(k))
    out = x
    for turns in (1, 2, 3):
        out = torch.where((k == turns).reshape(-1, 1, 1, 1), torch.rot90(x, turns, dims=(2, 3)), out)
    return out


def _reflect(idx: Tensor, size: int) -> Tensor:
    """Mirror indices that fall outside [0, size) back inside (reflection without repeating the edge)."""
    if size == 1:
        return torch.zeros_like(idx)
    period = 2 * size - 2
    idx = idx.remainder(period)
    return torch.where(idx >= size, period - idx, idx)


def translation(x: Tensor, p: float, gen: torch.Generator | None = None, ratio: float = 0.125) -> Tensor:
    """Shift by a whole number of pixels, uniform in +-ratio * size per axis, reflecting at the borders
    (so no empty band gives the shift away, as with ADA's integer translation)."""
    if p <= 0:
        return x
    n, _, h, w = x.shape
    apply = _apply_mask(n, p, x, gen)
    ty = torch.round((_rand(n, x, gen) * 2 - 1) * ratio * h).long() * apply
    tx = torch.round((_rand(n, x, gen) * 2 - 1) * ratio * w).long() * apply
    iy = _reflect(torch.arange(h, device=x.device).unsqueeze(0) - ty.unsqueeze(1), h)  # [N, H]
    ix = _reflect(torch.arange(w, device=x.device).unsqueeze(0) - tx.unsqueeze(1), w)  # [N, W]
    batch = torch.arange(n, device=x.device).reshape(n, 1, 1)
    out = x.permute(0, 2, 3, 1)[batch, iy.unsqueeze(2), ix.unsqueeze(1)]  # [N, H, W, C]
    return out.permute(0, 3, 1, 2).contiguous(memory_format=_memory_format(x))


def scale(x: Tensor, p: float, gen: torch.Generator | None = None, std: float = 0.2 * math.log(2)) -> Tensor:
    """Isotropic zoom by s = exp(N(0, std^2)) about the centre, bilinear, reflection padding."""
    if p <= 0:
        return x
    n = x.shape[0]
    apply = _apply_mask(n, p, x, gen)
    s = torch.exp(_randn(n, x, gen) * std)
    s = torch.where(apply, s, torch.ones_like(s))
    work = torch.promote_types(x.dtype, torch.float32)  # grid_sample in float32 (float64 stays float64)
    theta = torch.zeros(n, 2, 3, device=x.device, dtype=work)
    theta[:, 0, 0] = 1 / s.to(work)
    theta[:, 1, 1] = 1 / s.to(work)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x.to(work), grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    out = out.to(x.dtype)
    # Samples left alone come through bit-exact (grid_sample at identity is exact only up to rounding).
    return torch.where(apply.reshape(-1, 1, 1, 1), out, x)


def cutout(x: Tensor, p: float, gen: torch.Generator | None = None, ratio: float = 0.5) -> Tensor:
    """Zero a square of ratio * size, centred uniformly at random (DiffAugment's cutout).

    On RGBA images only the colour is zeroed and alpha is kept: cutting alpha too would show D
    transparent boxes (alpha 0 is half transparent in [-1, 1]), which G can learn to draw; a cut-out's
    silhouette is its shape, and cutout is meant to hide content, not to change shapes."""
    if p <= 0:
        return x
    n, _, h, w = x.shape
    apply = _apply_mask(n, p, x, gen)
    cy = _rand(n, x, gen) * h
    cx = _rand(n, x, gen) * w
    ys = torch.arange(h, device=x.device).reshape(1, h, 1) + 0.5
    xs = torch.arange(w, device=x.device).reshape(1, 1, w) + 0.5
    inside = ((ys - cy.reshape(n, 1, 1)).abs() < ratio * h / 2) & ((xs - cx.reshape(n, 1, 1)).abs() < ratio * w / 2)
    keep = ~(inside & apply.reshape(n, 1, 1))
    rgb, alpha = _split_alpha(x)
    return _join_alpha(rgb * keep.unsqueeze(1).to(x.dtype), alpha)


# ------------------------------------------------------------------------------------------ colour


def _split_alpha(x: Tensor) -> tuple[Tensor, Tensor | None]:
    return (x[:, :3], x[:, 3:]) if x.shape[1] == 4 else (x, None)


def _join_alpha(rgb: Tensor, alpha: Tensor | None) -> Tensor:
    return rgb if alpha is None else torch.cat([rgb, alpha], dim=1)


def brightness(x: Tensor, p: float, gen: torch.Generator | None = None, std: float = 0.2) -> Tensor:
    """Add b ~ N(0, std^2) to every colour channel."""
    if p <= 0:
        return x
    n = x.shape[0]
    b = _randn(n, x, gen) * std * _apply_mask(n, p, x, gen)
    rgb, alpha = _split_alpha(x)
    return _join_alpha(rgb + _bcast(b, rgb), alpha)


def contrast(x: Tensor, p: float, gen: torch.Generator | None = None, std: float = 0.5 * math.log(2)) -> Tensor:
    """Scale colours about the image mean by c = exp(N(0, std^2))."""
    if p <= 0:
        return x
    n = x.shape[0]
    apply = _apply_mask(n, p, x, gen)
    c = torch.exp(_randn(n, x, gen) * std)
    rgb, alpha = _split_alpha(x)
    mean = rgb.mean(dim=(1, 2, 3), keepdim=True)
    out = torch.where(apply.reshape(-1, 1, 1, 1), (rgb - mean) * _bcast(c, rgb) + mean, rgb)
    return _join_alpha(out, alpha)


def saturation(x: Tensor, p: float, gen: torch.Generator | None = None, std: float = math.log(2)) -> Tensor:
    """Scale each pixel's distance from its grey level by s = exp(N(0, std^2))."""
    if p <= 0:
        return x
    n = x.shape[0]
    apply = _apply_mask(n, p, x, gen)
    s = torch.exp(_randn(n, x, gen) * std)
    rgb, alpha = _split_alpha(x)
    grey = rgb.mean(dim=1, keepdim=True)
    out = torch.where(apply.reshape(-1, 1, 1, 1), (rgb - grey) * _bcast(s, rgb) + grey, rgb)
    return _join_alpha(out, alpha)


def _memory_format(x: Tensor) -> torch.memory_format:
    if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        return torch.channels_last
    return torch.contiguous_format


OPS: dict[str, Op] = {
    "xflip": xflip,
    "rot90": rot90,
    "translation": translation,
    "scale": scale,
    "brightness": brightness,
    "contrast": contrast,
    "saturation": saturation,
    "cutout": cutout,
}

# Named pipelines. "bgc" is ADA's recommendation for small data (blit + geometry + colour);
# "diffaug" is DiffAugment's colour + translation + cutout.
PIPELINES: dict[str, tuple[str, ...]] = {
    "bgc": ("xflip", "rot90", "translation", "scale", "brightness", "contrast", "saturation"),
    "diffaug": ("brightness", "saturation", "contrast", "translation", "cutout"),
    "all": ("xflip", "rot90", "translation", "scale", "brightness", "contrast", "saturation", "cutout"),
}


def resolve_ops(spec: str | Sequence[str]) -> tuple[str, ...]:
    """A pipeline name ("bgc") or a comma list of op names ("translation,cutout") -> op names."""
    from ganplug.errors import UserError

    if isinstance(spec, str):
        if spec in PIPELINES:
            return PIPELINES[spec]
        names = tuple(s.strip() for s in spec.split(",") if s.strip())
    else:
        names = tuple(spec)
    unknown = [s for s in names if s not in OPS]
    if unknown or not names:
        raise UserError(
            f"unknown augmentation(s) {', '.join(unknown) or '(none given)'}; use a pipeline "
            f"({', '.join(PIPELINES)}) or a comma list of {', '.join(OPS)}."
        )
    return names


def augment(x: Tensor, p: float, ops: Sequence[str] = PIPELINES["bgc"],
            generator: torch.Generator | None = None) -> Tensor:
    """Apply each op in turn, each to each sample with probability p. Differentiable in x."""
    if p <= 0:
        return x
    for name in ops:
        x = OPS[name](x, p, generator)
    return x


# ----------------------------------------------------------------------------------- adaptive p


@dataclass
class AdaController:
    """Adaptive augmentation probability (StyleGAN2-ADA): r_t = E[sign(D(real))] measures how sure D is
    about the training images. Every `interval` updates, p moves by sign(r_t - target) * images /
    (ada_kimg * 1000), so p can go from 0 to 1 in `ada_kimg` thousand images.

    All state is plain numbers (`state_dict`) so that a resumed run continues with the same p.
    """

    target: float = 0.6
    ada_kimg: float = 500.0
    interval: int = 4  # D updates between adjustments
    p: float = 0.0
    max_p: float = 0.8  # stays below 1 so the identity remains the most likely outcome (no leaking)
    sign_sum: float = 0.0  # accumulated sum of sign(D(real)) since the last adjustment
    sign_count: int = 0  # number of logits in sign_sum
    updates: int = 0  # D updates observed since the last adjustment
    images: int = 0  # images seen since the last adjustment
    adjustments: int = 0
    last_rt: float = 0.0

    def observe(self, real_logits: Tensor) -> None:
        """Record D's outputs on (augmented) real images for one D update (the whole global batch's, in a
        multi-process run); adjusts p every `interval`."""
        signs = torch.sign(real_logits.detach().float())
        # over every rank of a multi-process run, so p moves alike everywhere (a no-op on one process)
        total, count, images = all_reduce_sum([float(signs.sum()), float(signs.numel()), float(real_logits.shape[0])])
        self.sign_sum += total
        self.sign_count += int(count)
        self.images += int(images)
        self.updates += 1
        if self.updates >= self.interval:
            self.adjust()

    def adjust(self) -> None:
        if self.sign_count == 0:
            return
        rt = self.sign_sum / self.sign_count
        step = math.copysign(1.0, rt - self.target) if rt != self.target else 0.0
        self.p = min(max(self.p + step * self.images / (self.ada_kimg * 1000), 0.0), self.max_p)
        self.last_rt = rt
        self.adjustments += 1
        self.sign_sum, self.sign_count, self.updates, self.images = 0.0, 0, 0, 0

    def state_dict(self) -> dict[str, float | int]:
        return {"p": self.p, "sign_sum": self.sign_sum, "sign_count": self.sign_count, "updates": self.updates,
                "images": self.images, "adjustments": self.adjustments, "last_rt": self.last_rt}

    def load_state_dict(self, state: dict[str, float | int]) -> None:
        self.p = float(state.get("p", self.p))
        self.sign_sum = float(state.get("sign_sum", 0.0))
        self.sign_count = int(state.get("sign_count", 0))
        self.updates = int(state.get("updates", 0))
        self.images = int(state.get("images", 0))
        self.adjustments = int(state.get("adjustments", 0))
        self.last_rt = float(state.get("last_rt", 0.0))


# ------------------------------------------------------------------------- D's inputs, any family

# Ops that move or mask pixels: on a conditional pair they act on A and B together, so the pair stays aligned.
GEOMETRIC = frozenset({"xflip", "rot90", "translation", "scale", "cutout"})


def augment_pair(x: Tensor, p: float, ops: Sequence[str], split: int,
                 generator: torch.Generator | None = None) -> Tensor:
    """Augment a conditional pair cat([A, B], dim=1) as D sees it (pix2pix).

    Geometric ops draw one transform per sample for all channels, so A and B move together and D still
    judges an aligned pair. Colour ops touch only B (channels from `split` on): A is a condition (an edge
    map, a sketch) whose values mean something, and shifting them would show D inputs G is never given.
    """
    if p <= 0:
        return x
    for name in ops:
        if name in GEOMETRIC:
            x = OPS[name](x, p, generator)
        else:
            x = torch.cat([x[:, :split], OPS[name](x[:, split:], p, generator)], dim=1)
    return x


class DiscriminatorAugment:
    """--aug for any family: the probability in force, the ops, and ADA's controller (None without ADA).

    It acts on whatever D takes, so a family's step only wraps D's inputs: `D(aug(x, cfg))`. The run
    config is passed at each call because the collapse watch may turn augmentation on mid-run (a new
    config); ADA's p lives here and is saved with the step's state.
    """

    def __init__(self, cfg, split: int = 0, controller: Callable[..., AdaController] | None = None):
        """`controller` builds ADA's controller (AdaController; a test may start it elsewhere)."""
        self.ops = resolve_ops(cfg.aug_ops)
        make = controller or AdaController
        self.ada = make(target=cfg.ada_target, ada_kimg=cfg.ada_kimg) if cfg.aug == "ada" else None
        self.split = split  # channels of a conditional input in front of the image (pix2pix's A side)

    def p(self, cfg) -> float:
        if cfg.aug == "ada" and self.ada is not None:
            return self.ada.p
        if cfg.aug == "diffaug":
            return cfg.aug_p
        return 0.0

    def __call__(self, x: Tensor, cfg) -> Tensor:
        p = self.p(cfg)
        if p <= 0:
            return x
        return augment_pair(x, p, self.ops, self.split) if self.split else augment(x, p, self.ops)

    def observe(self, real_logits: Tensor) -> None:
        """ADA's signal: D's logits on augmented reals ([N] or patch logits [N, h, w], one image per row)."""
        if self.ada is not None:
            self.ada.observe(real_logits.reshape(real_logits.shape[0], -1))

    def state_dict(self) -> dict:
        return {"ada": self.ada.state_dict()} if self.ada is not None else {}

    def load_state_dict(self, state: dict) -> None:
        if self.ada is not None and "ada" in state:
            self.ada.load_state_dict(state["ada"])
