"""The training run's configuration: one typed dataclass, saved resolved as RUN/config.json."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from ganplug.errors import UserError

LOSSES = ("nonsat", "hinge", "wgan-gp")

# StyleGAN2(-ADA): Adam lr 0.0025 with betas (0, 0.99); DCGAN: lr 2e-4, betas (0.5, 0.999).
ARCH_DEFAULTS: dict[str, dict[str, Any]] = {
    "stylegan": {"lr_g": 0.0025, "lr_d": 0.0025, "beta1": 0.0, "beta2": 0.99},
}


@dataclass
class TrainConfig:
    data: str  # prepared dataset folder or raw image folder
    out: str  # run folder
    arch: str = "dcgan"
    size: int = 64
    steps: int = 10_000  # generator updates
    batch: int = 64
    lr_g: float = 2e-4  # Adam, DCGAN paper
    lr_d: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    loss: str = "nonsat"  # nonsat (BCE with logits) | hinge | wgan-gp
    gp_weight: float = 10.0  # WGAN-GP penalty weight
    l1_weight: float = 100.0  # pix2pix: weight of the L1 distance to the target image (lambda in the paper)
    d_steps: int = 1  # D updates per G update (5 is usual for WGAN-GP)
    label_smoothing: float = 0.0  # one-sided: real targets 1 - a
    label_noise: float = 0.0  # real targets ~ U[1 - a, 1], fake targets ~ U[0, a]
    ema_kimg: float = 10.0  # EMA half-life in thousands of images
    ema_rampup: float = 0.05  # half-life at most this fraction of images seen so far (0 = off)
    mirror: bool = True  # random horizontal flips of real images
    background: str = "white"  # alpha compositing colour for raw folders
    seed: int = 0
    sample_every: int = 200  # steps between sample grids (0 = only at the end)
    ckpt_every: int = 1000  # steps between checkpoints (a final one is always written)
    keep_checkpoints: int = 5  # newest checkpoints kept (0 = all)
    grid_samples: int = 64  # images in each sample grid (fixed seeds 0..n-1)
    device: str = "auto"
    precision: str = "auto"  # auto | fp32 | bf16 | fp16
    channels_last: bool = True
    max_seconds: float = 0.0  # stop after this wall time (0 = no limit); used by `ganplug demo`
    init_from: str = ""  # transfer learning: weights from this checkpoint, fresh optimisers, step 0
    freeze_d: int = 0  # Freeze-D: keep the first N discriminator blocks fixed
    allow_partial: bool = False  # --init-from: copy what fits even when some layers have other shapes
    # Differentiable augmentation before D (used by the stylegan step; see ganplug/train/augment.py).
    aug: str = "none"  # none | diffaug (fixed probability aug_p) | ada (adaptive, StyleGAN2-ADA)
    aug_p: float = 0.3  # probability of each op per image with --aug diffaug
    aug_ops: str = "bgc"  # pipeline name (bgc, diffaug, all) or comma list of ops
    ada_target: float = 0.6  # ADA: target for E[sign(D(real))]
    ada_kimg: float = 500.0  # ADA: thousands of images for p to move by 1
    # StyleGAN2 regularisation (ganplug/train/stylegan_loss.py).
    r1_gamma: float | None = None  # R1 weight; None = 0.0002 * size^2 / batch (StyleGAN2-ADA "auto")
    r1_interval: int = 16  # lazy R1: every N discriminator updates
    pl_weight: float = 0.0  # path-length regularisation weight (2 in StyleGAN2; 0 = off)
    style_mixing: float = 0.9  # style-mixing regularisation probability
    model: dict[str, Any] = field(default_factory=dict)  # family options, e.g. {"base_channels": 32}

    def validate(self) -> None:
        for f in fields(self):  # nan passes every comparison below; inf is no meaningful setting either
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise UserError(f"--{f.name.replace('_', '-')} must be a finite number, not {value}.")
        for name in ("sample_every", "ckpt_every", "keep_checkpoints", "ema_kimg", "max_seconds"):
            if getattr(self, name) < 0:
                raise UserError(f"--{name.replace('_', '-')} must be 0 or more, not {getattr(self, name)}.")
        if self.size <= 0 or self.size & (self.size - 1):
            raise UserError(f"--size must be a power of two (32, 64, 128, 256...), not {self.size}.")
        if self.steps <= 0:
            raise UserError(f"--steps must be at least 1, not {self.steps}.")
        if self.batch <= 0:
            raise UserError(f"--batch must be at least 1, not {self.batch}.")
        if self.loss not in LOSSES:
            raise UserError(f"--loss must be one of {', '.join(LOSSES)}, not {self.loss!r}.")
        for name in ("lr_g", "lr_d"):
            if getattr(self, name) <= 0:
                raise UserError(f"--{name.replace('_', '-')} must be positive.")
        for name in ("label_smoothing", "label_noise"):
            if not 0.0 <= getattr(self, name) < 0.5:
                raise UserError(f"--{name.replace('_', '-')} must be in [0, 0.5).")
        if not (0.0 <= self.beta1 < 1.0 and 0.0 <= self.beta2 < 1.0):
            raise UserError(f"Adam betas must be in [0, 1): got --beta1 {self.beta1}, --beta2 {self.beta2}.")
        if self.d_steps < 1:
            raise UserError("--d-steps must be at least 1.")
        if self.aug not in ("none", "diffaug", "ada"):
            raise UserError(f"--aug must be none, diffaug or ada, not {self.aug!r}.")
        if not 0.0 <= self.aug_p <= 1.0 or not 0.0 < self.ada_target < 1.0 or self.ada_kimg <= 0:
            raise UserError("--aug-p must be in [0, 1], --ada-target in (0, 1) and --ada-kimg positive.")
        if (self.r1_gamma is not None and self.r1_gamma < 0) or self.r1_interval < 1 or self.pl_weight < 0:
            raise UserError("--r1-gamma and --pl-weight must be 0 or more, --r1-interval at least 1.")
        if not 0.0 <= self.style_mixing <= 1.0:
            raise UserError(f"--style-mixing must be in [0, 1], not {self.style_mixing}.")
        if self.l1_weight < 0:
            raise UserError(f"--l1-weight must be 0 or more, not {self.l1_weight}.")
        if self.freeze_d < 0:
            raise UserError("--freeze-d must be 0 or more.")

    @staticmethod
    def arch_defaults(arch: str) -> dict[str, Any]:
        """Optimiser settings each family's paper trains with (DCGAN's are the field defaults above)."""
        return ARCH_DEFAULTS.get(arch, {})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})
