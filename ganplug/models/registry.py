"""Model families by name.

A family is a config dataclass, a builder for (generator, discriminator) and a frozen `ModelSpec`
that says what the generator supports. Training, sampling, eval and serving depend on the spec, never
on the family, so adding a family is one file plus one `register()` call in models/__init__.py.

Generator contract (every family):
    G.z_dim                      latent size
    G(z, truncation=1.0, **kw)   -> images in [-1, 1], NCHW float, C = spec.channels
Style-based generators add:
    G.mapping(z, truncation=1.0) -> ws [N, num_ws, w_dim];  G.synthesis(ws, noise_mode=...) -> images
    G.w_avg                      tracked mean of w (buffer), used for truncation
Discriminator contract:
    D(images)                    -> logits [N]
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ganplug.errors import UserError


@dataclass(frozen=True)
class ModelSpec:
    arch: str
    size: int
    channels: int
    z_dim: int
    style_based: bool = False  # has mapping/synthesis and a w space (truncation in w, mixing)
    num_ws: int = 0  # number of style inputs (0 for non-style models)
    image_to_image: bool = False  # pix2pix-like: generator takes an image, not z


@dataclass(frozen=True)
class Family:
    name: str
    config_cls: type  # a dataclass; must have `size` and `channels` fields
    build: Callable[[Any], tuple[nn.Module, nn.Module]]  # config -> (G, D)
    spec: Callable[[Any], ModelSpec]


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
    return g, d, fam.spec(cfg)


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
    """True for image-to-image families (their config has `in_channels`: the width of the A side)."""
    return "in_channels" in {f.name for f in dataclasses.fields(get_family(arch).config_cls)}
