"""The training run's configuration: one typed dataclass, saved resolved as RUN/config.json.

Its fields fall into groups. LOOP_OPTIONS are used by `train()` for every family (data, schedule,
optimiser, EMA, checkpoints, device); every other field is a training option that a family uses only
if it lists it in `Family.train_options` (ganplug.models.registry). `check_options` refuses a field a
family does not use, or one that does nothing with the other settings (--aug-p without --aug diffaug),
whenever it was given explicitly or differs from its default: no option is ever silently ignored.

This module imports no torch (the CLI reads the defaults from it to build `--help`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from typing import Any

from ganplug.errors import UserError

LOSSES = ("nonsat", "hinge", "wgan-gp")
AUGS = ("none", "diffaug", "ada")

LOOP_OPTIONS = frozenset({
    "data", "out", "arch", "size", "steps", "batch", "lr_g", "lr_d", "beta1", "beta2", "d_steps", "ema_kimg",
    "ema_rampup", "mirror", "background", "alpha", "seed", "sample_every", "ckpt_every", "keep_checkpoints",
    "grid_samples", "device", "precision", "channels_last", "max_seconds", "init_from", "allow_partial", "model",
})
ADVERSARIAL_OPTIONS = frozenset({"loss", "gp_weight", "label_smoothing", "label_noise"})  # train/losses.py
AUGMENT_OPTIONS = frozenset({"aug", "aug_p", "aug_ops", "ada_target", "ada_kimg"})  # train/augment.py, on D's input
CLASSIC_OPTIONS = ADVERSARIAL_OPTIONS | AUGMENT_OPTIONS  # what ganplug.train.steps.ClassicStep uses
FREEZE_OPTIONS = frozenset({"freeze_d"})  # needs a discriminator with `blocks` indexed from the input
STYLEGAN_OPTIONS = frozenset({"r1_gamma", "r1_interval", "pl_weight", "style_mixing"})  # train/stylegan_loss.py
PIX2PIX_OPTIONS = frozenset({"l1_weight", "jitter"})  # train/pix2pix_step.py

# Options that only do something together with another setting: name -> (does it apply?, with what).
CONDITIONAL: dict[str, tuple[Callable[[Any], bool], str]] = {
    "label_smoothing": (lambda c: c.loss == "nonsat", "--loss nonsat (hinge and wgan-gp have no targets)"),
    "label_noise": (lambda c: c.loss == "nonsat", "--loss nonsat (hinge and wgan-gp have no targets)"),
    "gp_weight": (lambda c: c.loss == "wgan-gp", "--loss wgan-gp"),
    "aug_p": (lambda c: c.aug == "diffaug", "--aug diffaug (ADA chooses p itself)"),
    "aug_ops": (lambda c: c.aug != "none", "--aug diffaug or --aug ada"),
    "ada_target": (lambda c: c.aug == "ada", "--aug ada"),
    "ada_kimg": (lambda c: c.aug == "ada", "--aug ada"),
    "r1_interval": (lambda c: c.r1_gamma is None or c.r1_gamma > 0, "an --r1-gamma above 0"),
}


def flag(name: str) -> str:
    """A TrainConfig field as the CLI spells it."""
    return "--" + name.replace("_", "-")


@dataclass
class TrainConfig:
    data: str  # prepared dataset folder or raw image folder
    out: str  # run folder
    arch: str = "fastgan"  # the family that draws recognisable designs soonest on small data (docs/results.md)
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
    jitter: bool = True  # pix2pix: the paper's random jitter (resize 286/256 up, random crop back), per pair
    d_steps: int = 1  # D updates per G update (5 is usual for WGAN-GP)
    label_smoothing: float = 0.0  # one-sided: real targets 1 - a
    label_noise: float = 0.0  # real targets ~ U[1 - a, 1], fake targets ~ U[0, a]
    ema_kimg: float = 10.0  # EMA half-life in thousands of images
    ema_rampup: float = 0.05  # half-life at most this fraction of images seen so far (0 = off)
    mirror: bool = True  # random horizontal flips of real images
    background: str = "white"  # alpha compositing colour for raw folders
    alpha: bool | None = None  # train on RGBA (cut-outs); None: as the dataset is (raw folders: prep's auto rule)
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
    # Differentiable augmentation of D's inputs, for every image family (ganplug/train/augment.py).
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
        if self.aug not in AUGS:
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

        self.check_options()

    def check_options(self, given: Iterable[str] = ()) -> None:
        """Refuse options this family does not use, and ones that do nothing with the other settings.

        An option counts when it is in `given` (the CLI's explicit options) or differs from its default,
        so a default never trips it, and a config from a file or checkpoint goes through the same check.
        """
        from ganplug.models import FAMILIES, get_family  # torch: only once a config is being checked

        fam = get_family(self.arch)
        own = fam.own_train_defaults(self)
        defaults = {**field_defaults(), **own}
        used = set(given) | {name for name, default in defaults.items() if getattr(self, name) != default}
        used -= {name for name, value in own.items() if getattr(self, name) == value}  # the family's own choice
        for name in sorted(used - LOOP_OPTIONS - set(fam.train_options)):
            users = sorted(f.name for f in FAMILIES.values() if name in f.train_options)
            raise UserError(f"{flag(name)} does nothing for --arch {self.arch}"
                            + (f"; it is an option of {', '.join(users)}." if users else "."))
        for name in sorted(used & set(CONDITIONAL)):
            applies, needs = CONDITIONAL[name]
            if name in fam.train_options and not applies(self):
                raise UserError(f"{flag(name)} does nothing for --arch {self.arch} here: it applies only with {needs}.")

    @classmethod
    def for_family(cls, arch: str, **values: Any) -> TrainConfig:
        """A config with the family's defaults (its paper's Adam settings, its `train_defaults`); `values` win."""
        from ganplug.models import get_family

        fam = get_family(arch)
        cfg = cls(**{**asdict(fam.optimiser), **(fam.train_defaults or {}), "arch": arch, **values})
        if fam.device_train_defaults is None:
            return cfg
        return replace(cfg, **{k: v for k, v in fam.device_train_defaults(cfg).items() if k not in values})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """From config.json or a checkpoint's "train" section; unknown keys are refused, as for model configs."""
        if not isinstance(values, dict):
            raise UserError(f"training options must be a mapping of names to values, not a {type(values).__name__}.")
        known = {f.name for f in fields(cls)}
        unknown = sorted(map(str, set(values) - known))
        if unknown:
            raise UserError(f"unknown training option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}.")
        if values.get("arch") == "pix2pix" and "jitter" not in values:
            values = {**values, "jitter": False}  # a run saved before --jitter trained without it; resume alike
        missing = [f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING
                   and f.name not in values]
        if missing:
            raise UserError(f"training options lack {', '.join(missing)}.")
        return cls(**values)


def field_defaults() -> dict[str, Any]:
    """TrainConfig's defaults by field (fields without one left out): the one source the CLI reads."""
    out: dict[str, Any] = {}
    for f in fields(TrainConfig):
        if f.default is not MISSING:
            out[f.name] = f.default
        elif f.default_factory is not MISSING:
            out[f.name] = f.default_factory()
    return out


def model_config(cfg: TrainConfig, channels: int, in_channels: int = 0) -> Any:
    """The family's model config a run builds: the data's size and channels, then the run's --model options.
    `in_channels` (the A side's channels) is passed to image-to-image families only."""
    from ganplug.models import config_from_dict, get_family

    shape: dict[str, Any] = {"size": cfg.size, "channels": channels}
    if get_family(cfg.arch).default_spec().image_to_image:
        shape["in_channels"] = in_channels
    return config_from_dict(cfg.arch, {**shape, **cfg.model})


def resolve(cfg: TrainConfig, channels: int, in_channels: int = 0) -> dict[str, Any]:
    """Everything a run derives from its config before training, as JSON (what `--dry-run` prints): the
    resolved model config, its spec, and values the family derives (StyleGAN's R1 weight when "auto")."""
    from ganplug.models import get_family

    fam = get_family(cfg.arch)
    model = model_config(cfg, channels, in_channels)
    spec = fam.spec(model)
    return {"model": asdict(model), "spec": asdict(spec), **(fam.derived(cfg) if fam.derived else {})}
