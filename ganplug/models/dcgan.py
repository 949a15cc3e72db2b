"""DCGAN (Radford et al. 2016) for square images of 32 to 256 pixels.

Defaults follow the paper and the canonical PyTorch example: z of 100 dims, 4x4 kernels with stride 2,
BatchNorm, ReLU in G, LeakyReLU(0.2) in D, tanh output, weights from N(0, 0.02). Each doubling of the
size adds one up-block to G and one down-block to D; channel widths double per block towards the 4x4
end, capped at `max_channels`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ganplug.errors import UserError
from ganplug.models.registry import Family, ModelSpec
from ganplug.train.config import CLASSIC_OPTIONS, FREEZE_OPTIONS

SIZES = (32, 64, 128, 256)


@dataclass
class DCGANConfig:
    size: int = 64  # output side in pixels: 32, 64, 128 or 256
    channels: int = 3  # 3 = RGB, 4 = RGBA
    z_dim: int = 100
    base_channels: int = 64  # width of G's last and D's first block (ngf/ndf)
    max_channels: int = 512  # cap on block widths near 4x4, keeps 128/256 px affordable
    kernel: int = 4  # 4 (paper) or 5
    init: str = "normal"  # "normal" = N(0, 0.02) as in the paper; "glorot" = Xavier uniform
    d_dropout: float = 0.0  # dropout after each D activation (0 = off)
    d_norm: str = "batch"  # D normalisation: "batch" (paper) or "layer" (per-sample, for WGAN-GP)

    def validate(self) -> None:
        if self.size not in SIZES:
            sizes = ", ".join(map(str, SIZES))
            raise UserError(f"DCGAN size must be one of {sizes} (a power of two), not {self.size}.")
        if self.channels not in (3, 4):
            raise UserError(f"channels must be 3 (RGB) or 4 (RGBA), not {self.channels}.")
        if self.kernel not in (4, 5):
            raise UserError(f"DCGAN kernel must be 4 or 5, not {self.kernel}.")
        if self.init not in ("normal", "glorot"):
            raise UserError(f"init must be 'normal' or 'glorot', not {self.init!r}.")
        if self.d_norm not in ("batch", "layer"):
            raise UserError(f"d_norm must be 'batch' or 'layer', not {self.d_norm!r}.")
        if not 0.0 <= self.d_dropout < 1.0:
            raise UserError(f"d_dropout must be in [0, 1), not {self.d_dropout}.")
        if self.z_dim < 1 or self.base_channels < 1:
            raise UserError("z_dim and base_channels must be positive.")

    @property
    def num_blocks(self) -> int:
        """Stride-2 blocks between 4x4 and the output size."""
        return int(math.log2(self.size)) - 2

    def width(self, level: int) -> int:
        """Channels at resolution 4 * 2**level (level 0 = 4x4)."""
        return min(self.base_channels * 2 ** (self.num_blocks - 1 - level), self.max_channels)


def _stride2_padding(kernel: int) -> tuple[int, int]:
    """(padding, output_padding) that make a stride-2 (transposed) conv exactly halve/double H."""
    return (1, 0) if kernel == 4 else (2, 1)


class DCGANGenerator(nn.Module):
    def __init__(self, cfg: DCGANConfig):
        super().__init__()
        self.z_dim = cfg.z_dim
        self.size = cfg.size
        pad, out_pad = _stride2_padding(cfg.kernel)
        c0 = cfg.width(0)
        # z (as a 1x1 map) -> 4x4: a 4x4 transposed conv, i.e. the paper's projection and reshape.
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(cfg.z_dim, c0, 4, 1, 0, bias=False),
            nn.BatchNorm2d(c0),
            nn.ReLU(True),
        ]
        for level in range(cfg.num_blocks - 1):
            cin, cout = cfg.width(level), cfg.width(level + 1)
            layers += [
                nn.ConvTranspose2d(cin, cout, cfg.kernel, 2, pad, output_padding=out_pad, bias=False),
                nn.BatchNorm2d(cout),
                nn.ReLU(True),
            ]
        layers += [
            nn.ConvTranspose2d(cfg.width(cfg.num_blocks - 1), cfg.channels, cfg.kernel, 2, pad, output_padding=out_pad,
                               bias=False),
            nn.Tanh(),
        ]
        self.net = nn.Sequential(*layers)
        init_weights(self, cfg.init)

    def forward(self, z: torch.Tensor, truncation: float = 1.0) -> torch.Tensor:
        # Truncation for a Gaussian z: shrink toward its mean (0).
        if truncation != 1.0:
            z = z * truncation
        return self.net(z.reshape(z.shape[0], self.z_dim, 1, 1))


class DCGANDiscriminator(nn.Module):
    def __init__(self, cfg: DCGANConfig):
        super().__init__()
        pad, _ = _stride2_padding(cfg.kernel)
        blocks: list[nn.Module] = []
        cin = cfg.channels
        for i, level in enumerate(range(cfg.num_blocks - 1, -1, -1)):
            cout = cfg.width(level)
            block: list[nn.Module] = [nn.Conv2d(cin, cout, cfg.kernel, 2, pad, bias=False)]
            if i > 0:  # no normalisation on the input block (paper)
                # WGAN-GP penalises per-sample gradients, which batch statistics would mix.
                block.append(nn.BatchNorm2d(cout) if cfg.d_norm == "batch" else nn.GroupNorm(1, cout))
            block.append(nn.LeakyReLU(0.2, inplace=True))
            if cfg.d_dropout > 0:
                block.append(nn.Dropout(cfg.d_dropout))
            blocks.append(nn.Sequential(*block))
            cin = cout
        # `blocks` is indexed from the input side, so Freeze-D can freeze the first N.
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Conv2d(cin, 1, 4, 1, 0, bias=False)  # 4x4 -> one logit
        init_weights(self, cfg.init)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(img)).flatten()


def init_weights(module: nn.Module, scheme: str) -> None:
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
            if scheme == "normal":
                nn.init.normal_(m.weight, 0.0, 0.02)
            else:
                nn.init.xavier_uniform_(m.weight)
        elif isinstance(m, nn.BatchNorm2d | nn.GroupNorm):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


def build(cfg: DCGANConfig) -> tuple[nn.Module, nn.Module]:
    cfg.validate()
    G = DCGANGenerator(cfg)
    return G, DCGANDiscriminator(cfg)


def spec(cfg: DCGANConfig) -> ModelSpec:
    return ModelSpec(arch="dcgan", size=cfg.size, channels=cfg.channels, z_dim=cfg.z_dim, latent="z",
                     supports=("truncation", "projection"))


def model_defaults(train) -> dict[str, object]:
    """WGAN-GP's per-sample penalty and BatchNorm's batch statistics do not mix: LayerNorm in D instead."""
    return {"d_norm": "layer"} if train.loss == "wgan-gp" else {}


# Trained by ClassicStep (the default step) with the DCGAN paper's Adam settings (the default optimiser).
FAMILY = Family(name="dcgan", config_cls=DCGANConfig, build=build, spec=spec,
                train_options=CLASSIC_OPTIONS | FREEZE_OPTIONS, model_defaults=model_defaults)
