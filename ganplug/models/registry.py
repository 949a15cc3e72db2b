"""Model families by name: a `Family` is the unit of extension.

A family carries everything about itself: its model config dataclass (every field with a default),
the builder of (generator, discriminator), its `ModelSpec` (what the generator is and supports), the
optimiser settings its paper trains with, its training step (None = `ClassicStep`, the plain
adversarial update) and which training options it uses beyond the ones every family shares. Training,
sampling, eval and serving read the spec and the family, never the family's module, so adding one is
one new file plus one `register()` line in models/__init__.py (or a test's own `register()`):

    @dataclass
    class TinyConfig:                       # every field has a default; `size` and `channels` required
        size: int = 32
        channels: int = 3
        z_dim: int = 8

    def build(cfg):                          # -> (G, D): G(z) -> [N, channels, size, size], D(x) -> [N]
        return TinyG(cfg), TinyD(cfg)

    register(Family(name="tiny", config_cls=TinyConfig, build=build,
                    spec=lambda c: ModelSpec(arch="tiny", size=c.size, channels=c.channels, z_dim=c.z_dim)))

`ganplug train --arch tiny` then trains it with the shared options (--loss, --label-smoothing, --aug...);
an option the family does not list in `train_options` is refused with exit 2 naming both.

Generator contract (every family):
    G.z_dim                      latent size (0 for image-to-image families)
    G.spec                       its ModelSpec (set by `build_models`)
    G(z, truncation=1.0, **kw)   -> images in [-1, 1], NCHW float, C = spec.channels
Style-based generators (spec.latent == "w") add:
    G.mapping(z, truncation=1.0) -> ws [N, num_ws, w_dim];  G.synthesis(ws, noise_mode=...) -> images
    G.w_avg                      tracked mean of w (buffer), used for truncation
Image-to-image generators (spec.image_to_image) take an image [N, spec.in_channels, size, size] instead of z.
Discriminator contract:
    D(images)                    -> logits [N] (or patch logits [N, h, w])
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ganplug.errors import UserError
from ganplug.train.config import CLASSIC_OPTIONS

LATENTS = ("z", "w", "none")
# Operations a spec may declare: truncation (G(z, truncation=)), mixing (styles from two latents),
# projection (image -> latent), translation (image -> image).
SUPPORTS = ("truncation", "mixing", "projection", "translation")


@dataclass(frozen=True)
class ModelSpec:
    """What a generator is and supports; everything outside the family reads this, never G's attributes."""

    arch: str
    size: int
    channels: int  # output (image, or B side) channels
    z_dim: int  # 0 for image-to-image families
    style_based: bool = False  # has mapping/synthesis and a w space (truncation in w, mixing)
    num_ws: int = 0  # number of style inputs (0 for non-style models)
    image_to_image: bool = False  # pix2pix-like: generator takes an image, not z
    latent: str = "z"  # what G is driven by: "z", "w" (z -> mapping -> w) or "none" (an image)
    w_dim: int = 0  # style size (0 unless latent == "w")
    in_channels: int = 0  # channels of the input image (0 unless image_to_image)
    supports: tuple[str, ...] = ()  # operations G allows, from SUPPORTS

    def __post_init__(self) -> None:
        if self.latent not in LATENTS or not set(self.supports) <= set(SUPPORTS):
            raise ValueError(f"ModelSpec: latent must be one of {LATENTS} and supports within {SUPPORTS}, "
                             f"not {self.latent!r} and {self.supports!r}")

    @property
    def out_channels(self) -> int:
        return self.channels

    def can(self, operation: str) -> bool:
        return operation in self.supports



@dataclass(frozen=True)
class Optimiser:
    """Adam settings a family trains with unless the user says otherwise (DCGAN paper by default)."""

    lr_g: float = 2e-4
    lr_d: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999


@dataclass(frozen=True)
class Family:
    name: str
    config_cls: type  # a dataclass with defaults for every field; must have `size` and `channels`
    build: Callable[[Any], tuple[nn.Module, nn.Module]]  # config -> (G, D)
    spec: Callable[[Any], ModelSpec]
    optimiser: Optimiser = Optimiser()
    # (G, D, opt_G, opt_D, TrainConfig, Runtime) -> a TrainStep; None = ganplug.train.steps.ClassicStep
    step: Callable[..., Any] | None = None
    # TrainConfig fields it uses beyond the loop's (config.LOOP_OPTIONS); any other one given is refused
    train_options: frozenset[str] = CLASSIC_OPTIONS
    # model options derived from the training options (DCGAN: LayerNorm in D for WGAN-GP); user's win
    model_defaults: Callable[[Any], dict[str, Any]] | None = None
    # training values resolved from the config at run time, for --dry-run (StyleGAN: R1 gamma "auto")
    derived: Callable[[Any], dict[str, Any]] | None = None
    # TrainConfig values this family trains with unless the user gives them (FastGAN: hinge, DiffAugment,
    # batch 8), so the run's config.json says what really trains
    train_defaults: dict[str, Any] | None = None
    # TrainConfig -> the values among train_defaults' keys that depend on where it trains (FastGAN: batch 32
    # on a CPU, the paper's 8 on a GPU); they win over train_defaults, the user's options over both
    device_train_defaults: Callable[[Any], dict[str, Any]] | None = None

    def own_train_defaults(self, train: Any) -> dict[str, Any]:
        """The TrainConfig values this family chooses for a run like `train` (where it trains)."""
        extra = self.device_train_defaults(train) if self.device_train_defaults is not None else {}
        stray = sorted(set(extra) - set(self.train_defaults or {}))
        if stray:  # the CLI's help and check_options read train_defaults' keys to know what the family sets
            raise ValueError(f"family {self.name!r}: device_train_defaults sets {', '.join(stray)}, which "
                             "train_defaults lacks; give each a device-independent default there")
        return {**(self.train_defaults or {}), **extra}

    def default_spec(self) -> ModelSpec:
        """The spec of the default config: what the family is (image-to-image, latent kind)."""
        return self.spec(self.config_cls())


FAMILIES: dict[str, Family] = {}


def register(family: Family) -> Family:
    if family.name in FAMILIES:
        raise ValueError(f"model family {family.name!r} registered twice")
    FAMILIES[family.name] = family
    return family


def get_family(name: str) -> Family:
    try:
        return FAMILIES[name]
    except KeyError:
        raise UserError(f"unknown architecture {name!r}; available: {', '.join(sorted(FAMILIES))}.") from None


def config_from_dict(arch: str, values: dict[str, Any]) -> Any:
    """Build a family's config from a dict (CLI options or checkpoint JSON), refusing unknown keys."""
    cls = get_family(arch).config_cls
    if not isinstance(values, dict):
        raise UserError(f"{arch} options must be a mapping of names to values, not a {type(values).__name__}.")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(map(str, set(values) - names))
    if unknown:
        raise UserError(f"{arch} does not take option(s) {', '.join(unknown)}; it takes {', '.join(sorted(names))}.")
    try:  # values of the wrong type (a checkpoint's JSON says "8" or [8]) fail in validate's comparisons
        cfg = cls(**values)
        validate = getattr(cfg, "validate", None)
        if validate is not None:
            validate()
    except (TypeError, ValueError) as e:
        raise UserError(f"{arch} options have values of the wrong type ({e}).") from None
    return cfg


def build_models(arch: str, cfg: Any) -> tuple[nn.Module, nn.Module, ModelSpec]:
    fam = get_family(arch)
    g, d = fam.build(cfg)
    g.spec = fam.spec(cfg)  # the generator carries its spec, so code holding only G need not guess
    return g, d, g.spec


# Weights (parameters and buffers) of G and D together. The largest configurations ganplug trains (StyleGAN at
# 512 px, capacity 4, 16 mapping layers) have about 0.75 G; 2 G (8 GB as fp32) leaves room and refuses the
# damaged or absurd settings (base_channels=100000) that would otherwise try to allocate hundreds of GB.
MAX_WEIGHTS = 2_000_000_000


def _weights(module: nn.Module) -> int:
    return sum(t.numel() for t in (*module.parameters(), *module.buffers()))


def count_weights(arch: str, cfg: Any) -> tuple[int, int]:
    """(G, D) weight counts, built on the meta device: shapes only, no memory, no RNG draws."""
    fam = get_family(arch)
    try:
        with torch.device("meta"):  # thread-local: other threads keep allocating on their own devices
            g, d = fam.build(cfg)
    except (TypeError, ValueError, RuntimeError, OverflowError) as e:
        raise UserError(f"{arch} options do not make a buildable model ({e}).") from None
    return _weights(g), _weights(d)


def check_budget(arch: str, cfg: Any, max_weights: int = MAX_WEIGHTS) -> tuple[int, int]:
    """Refuse a configuration too large to allocate before anyone allocates it; returns (G, D) weight counts."""
    g, d = count_weights(arch, cfg)
    if g + d > max_weights:
        sizes = ", ".join(f"{k}={v}" for k, v in dataclasses.asdict(cfg).items() if isinstance(v, int | float))
        raise UserError(f"this {arch} model would have {g + d:,} weights (generator {g:,}, discriminator {d:,}; "
                        f"{(g + d) * 4 / 2**30:,.0f} GiB as fp32), over the limit of {max_weights:,}: its options "
                        f"({sizes}) are damaged or absurd.")
    return g, d


def takes_images(arch: str) -> bool:
    """True for image-to-image families (trained on (A, B) pairs, G driven by an image), from the spec."""
    return get_family(arch).default_spec().image_to_image
