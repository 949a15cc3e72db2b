"""A tiny MLP GAN on 2D points, for the synthetic mode-collapse benchmarks (ring of 8 / grid of 25 Gaussians).

Shapes after the Unrolled GAN / VEEGAN / PacGAN toy experiments: fully connected layers, ReLU in G,
LeakyReLU(0.2) in D, a linear output. A point is a 1x1 "image" with 2 channels (x, y), so the family
fits the registry's NCHW contract and ClassicStep trains it unchanged; the coordinates are NOT squashed
into [-1, 1] (the papers train on the raw mixture, modes at radius 2 or up to +-4), so the image tools
(sample grids, PNG export) do not apply to it. It is trained by scripts/gaussian_mixtures.py, not by
`ganplug train` on an image folder.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ganplug.errors import UserError
from ganplug.models.registry import Family, ModelSpec
from ganplug.train.config import ADVERSARIAL_OPTIONS


@dataclass
class MLPConfig:
    size: int = 1  # a point is a 1x1 image
    channels: int = 2  # its two coordinates
    z_dim: int = 2  # PacGAN's toy setup draws z from a 2D standard normal
    hidden: int = 128
    g_layers: int = 3  # hidden layers in G
    d_layers: int = 2  # hidden layers in D

    def validate(self) -> None:
        if self.size != 1 or self.channels != 2:
            raise UserError(
                f"the mlp family models 2D points (size 1, channels 2), not {self.channels}-channel {self.size} px "
                "images; it is for the synthetic benchmarks (scripts/gaussian_mixtures.py). Use --arch dcgan or "
                "stylegan for images."
            )
        if min(self.z_dim, self.hidden, self.g_layers, self.d_layers) < 1:
            raise UserError("z_dim, hidden, g_layers and d_layers must be positive.")
        if max(self.g_layers, self.d_layers) > 64:  # each layer is a Python object: a billion would never build
            raise UserError(f"g_layers and d_layers must be at most 64, not {self.g_layers} and {self.d_layers}.")


def _stack(n_in: int, width: int, layers: int, n_out: int, act: type[nn.Module], **act_kw) -> nn.Sequential:
    mods: list[nn.Module] = []
    for i in range(layers):
        mods += [nn.Linear(n_in if i == 0 else width, width), act(**act_kw)]
    mods.append(nn.Linear(width, n_out))
    return nn.Sequential(*mods)


class PointGenerator(nn.Module):
    def __init__(self, cfg: MLPConfig):
        super().__init__()
        self.z_dim, self.channels = cfg.z_dim, cfg.channels
        self.net = _stack(cfg.z_dim, cfg.hidden, cfg.g_layers, cfg.channels, nn.ReLU)

    def forward(self, z: torch.Tensor, truncation: float = 1.0) -> torch.Tensor:
        if truncation != 1.0:
            z = z * truncation
        return self.net(z).view(len(z), self.channels, 1, 1)


class PointDiscriminator(nn.Module):
    def __init__(self, cfg: MLPConfig):
        super().__init__()
        self.net = _stack(cfg.channels, cfg.hidden, cfg.d_layers, 1, nn.LeakyReLU, negative_slope=0.2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.reshape(len(x), -1)).view(-1)


def points(x: torch.Tensor) -> torch.Tensor:
    """[N, 2, 1, 1] generator output -> [N, 2] coordinates."""
    return x.reshape(len(x), -1)


def build(cfg: MLPConfig) -> tuple[nn.Module, nn.Module]:
    cfg.validate()
    G = PointGenerator(cfg)
    return G, PointDiscriminator(cfg)


def spec(cfg: MLPConfig) -> ModelSpec:
    return ModelSpec(arch="mlp", size=cfg.size, channels=cfg.channels, z_dim=cfg.z_dim, latent="z",
                     supports=("truncation",))


# Image augmentation means nothing on 2D points, and D has no blocks to freeze: only the losses apply.
FAMILY = Family(name="mlp", config_cls=MLPConfig, build=build, spec=spec, train_options=ADVERSARIAL_OPTIONS)
