"""pix2pix (Isola et al. 2017): a U-Net generator that translates an image (a sketch, an edge map) into
another, and a PatchGAN discriminator that judges (input, output) pairs patch by patch.

Generator: log2(size) stride-2 4x4 convolutions down to 1x1, the mirror-image transposed convolutions
up, and a skip connection from every encoder level to the decoder level of the same size, so fine
detail of the input (line positions) reaches the output directly. Widths base, 2base, 4base, then
8base (capped at `max_channels`); dropout 0.5 in the three decoder levels above the bottleneck, as in
the paper's U-Net-256.

Dense bottleneck (`dense_bottleneck` N > 0, from the mugshots write-up, front view -> side view): N fully
connected layers of the bottleneck width, each followed by LeakyReLU 0.2, between the 1x1 bottleneck and
the decoder. The skip connections carry every pixel straight across, so a plain U-Net is good at
translations aligned with their input (edges -> render) and poor at ones whose parts move (a turn, a
mirrored layout); the dense layers give the one path that sees the whole image (the 1x1 code) the depth
to rearrange it. At CPU scale (32 px, about 1,000 steps) it measured neutral, on mirrored and on aligned
pairs (docs/results.md); the write-up's 256 px, long-trained setting was not reproduced.

Skip drop (`skip_drop` K > 0, issue 19's alternative): the K outermost decoder levels lose their skip
connection and take only the upsampled path (their input is width(i) channels, not 2 x width(i)), so
the pixels at those resolutions can no longer be copied straight across and have to come from the
deeper, coarser code. K = levels - 1 drops every skip: an encoder-decoder with a 1x1 code. Measured
(docs/results.md): on mirrored synthetic shapes (32 px, the L1 term alone) K = 1 cut the held-out error
by a quarter at every seed, where the dense bottleneck changed nothing; on mirrored twemoji, which are
nearly symmetric and full of detail, it blurred the output and did worse than the plain U-Net.

Normalisation: the paper trains with batch size 1, where its BatchNorm (in train mode, also at test
time) normalises each image over its own pixels; that is instance normalisation, which is what this
file uses, at any batch size. It has no running statistics, so the EMA generator needs no
recalibration and a translation does not depend on the rest of the batch.

Discriminator: the 70x70 PatchGAN for `d_layers=3` (receptive field 70 pixels): it takes the input and
the output concatenated on channels and returns one logit per overlapping patch, [N, h, w].
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ganplug.errors import UserError
from ganplug.models.registry import Family, ModelSpec
from ganplug.train.config import CLASSIC_OPTIONS, PIX2PIX_OPTIONS

MAX_DENSE = 16  # more dense bottleneck layers than this is a typo, not a setting (the write-up uses 5)


@dataclass
class Pix2PixConfig:
    size: int = 256  # image side in pixels: 32 to 512, a power of two
    channels: int = 3  # output (B side) channels
    in_channels: int = 3  # input (A side) channels
    base_channels: int = 64  # width of the outermost G and D layers (ngf = ndf = 64 in the paper)
    max_channels: int = 512  # cap on widths (8 x 64 in the paper)
    dropout: float = 0.5  # in the three decoder levels above the bottleneck
    d_layers: int = 3  # PatchGAN depth: 3 = the 70x70 discriminator
    dense_bottleneck: int = 0  # fully connected layers at the 1x1 bottleneck (5 in the mugshots write-up)
    skip_drop: int = 0  # outermost skip connections removed (0 = the paper's U-Net; levels - 1 = none left)

    def validate(self) -> None:
        if self.size < 32 or self.size > 512 or self.size & (self.size - 1):
            raise UserError(f"pix2pix size must be a power of two from 32 to 512, not {self.size}.")
        if self.channels not in (1, 3, 4) or self.in_channels not in (1, 3, 4):
            raise UserError("pix2pix images must have 1, 3 or 4 channels.")
        if self.base_channels < 1 or self.max_channels < self.base_channels:
            raise UserError("base_channels must be at least 1 and max_channels at least base_channels.")
        if not 0.0 <= self.dropout < 1.0:
            raise UserError(f"dropout must be in [0, 1), not {self.dropout}.")
        if not 1 <= self.d_layers <= int(math.log2(self.size)) - 2:
            raise UserError(f"d_layers must be between 1 and {int(math.log2(self.size)) - 2} at {self.size} px.")
        n = self.dense_bottleneck
        if not isinstance(n, int) or isinstance(n, bool) or not 0 <= n <= MAX_DENSE:
            raise UserError(f"dense_bottleneck must be a whole number from 0 to {MAX_DENSE}, not {n!r}.")
        k, top = self.skip_drop, int(math.log2(self.size)) - 1
        if not isinstance(k, int) or isinstance(k, bool) or not 0 <= k <= top:
            raise UserError(f"skip_drop must be a whole number from 0 to {top} at {self.size} px (the U-Net has "
                            f"{top} skip connections), not {k!r}.")

    @property
    def levels(self) -> int:
        return int(math.log2(self.size))

    def width(self, level: int) -> int:
        return min(self.base_channels * 2**level, self.max_channels)


def _init(m: nn.Module) -> None:
    """N(0, 0.02) weights and zero biases, as pix2pix initialises its convolutions."""
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(m.weight, 0.0, 0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)


def dense_stack(width: int, layers: int) -> nn.Sequential:
    """`layers` x (Linear(width, width) + LeakyReLU 0.2) on [N, width, 1, 1], shape kept. He-initialised
    for the LeakyReLU, so the signal keeps its scale through a deep stack (N(0, 0.02) would shrink it
    about 0.45x per layer at width 512 and leave the decoder a near-constant code)."""
    mods: list[nn.Module] = [nn.Flatten()]
    for _ in range(layers):
        linear = nn.Linear(width, width)
        nn.init.kaiming_normal_(linear.weight, a=0.2, nonlinearity="leaky_relu")
        nn.init.zeros_(linear.bias)
        mods += [linear, nn.LeakyReLU(0.2)]
    mods.append(nn.Unflatten(1, (width, 1, 1)))
    return nn.Sequential(*mods)


class UNetGenerator(nn.Module):
    z_dim = 0  # driven by an image, not a latent

    def __init__(self, cfg: Pix2PixConfig):
        super().__init__()
        self.cfg = cfg
        n = cfg.levels
        self.down = nn.ModuleList()
        for i in range(n):
            cin = cfg.in_channels if i == 0 else cfg.width(i - 1)
            outer_or_inner = i in (0, n - 1)
            layers: list[nn.Module] = [] if i == 0 else [nn.LeakyReLU(0.2)]
            layers.append(nn.Conv2d(cin, cfg.width(i), 4, 2, 1, bias=outer_or_inner))
            if not outer_or_inner:
                layers.append(nn.InstanceNorm2d(cfg.width(i)))
            self.down.append(nn.Sequential(*layers))
        self.up = nn.ModuleList()  # up[i] undoes down[i]; run from the bottleneck (i = n-1) outwards
        for i in range(n):
            cin = cfg.width(i) if i == n - 1 or i < cfg.skip_drop else 2 * cfg.width(i)
            cout = cfg.channels if i == 0 else cfg.width(i - 1)
            layers = [nn.ReLU(), nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=i == 0)]
            if i == 0:
                layers.append(nn.Tanh())
            else:
                layers.append(nn.InstanceNorm2d(cout))
                if cfg.dropout and max(1, n - 4) <= i < n - 1:
                    layers.append(nn.Dropout(cfg.dropout))
            self.up.append(nn.Sequential(*layers))
        self.apply(_init)
        # after _init, which touches only convolutions; Identity keeps old checkpoints' state_dict keys
        self.dense = dense_stack(cfg.width(n - 1), cfg.dense_bottleneck) if cfg.dense_bottleneck else nn.Identity()

    def forward(self, x: Tensor, truncation: float = 1.0, **_: object) -> Tensor:
        skips = []
        for layer in self.down:
            x = layer(x)
            skips.append(x)
        x = self.up[-1](self.dense(skips[-1]))
        for i in range(len(self.up) - 2, -1, -1):
            x = self.up[i](x if i < self.cfg.skip_drop else torch.cat([x, skips[i]], dim=1))
        return x


class PatchDiscriminator(nn.Module):
    def __init__(self, cfg: Pix2PixConfig):
        super().__init__()
        ndf, cap = cfg.base_channels, cfg.max_channels
        layers: list[nn.Module] = [nn.Conv2d(cfg.in_channels + cfg.channels, ndf, 4, 2, 1), nn.LeakyReLU(0.2)]
        width = ndf
        for k in range(1, cfg.d_layers + 1):
            stride = 2 if k < cfg.d_layers else 1
            nxt = min(ndf * 2**k, cap)
            layers += [nn.Conv2d(width, nxt, 4, stride, 1, bias=False), nn.InstanceNorm2d(nxt), nn.LeakyReLU(0.2)]
            width = nxt
        layers.append(nn.Conv2d(width, 1, 4, 1, 1))
        self.net = nn.Sequential(*layers)
        self.apply(_init)

    def forward(self, pair: Tensor) -> Tensor:
        """pair = cat([input, output], dim=1) -> patch logits [N, h, w]."""
        return self.net(pair)[:, 0]


def build(cfg: Pix2PixConfig) -> tuple[nn.Module, nn.Module]:
    cfg.validate()
    G = UNetGenerator(cfg)
    return G, PatchDiscriminator(cfg)


def spec(cfg: Pix2PixConfig) -> ModelSpec:
    return ModelSpec(arch="pix2pix", size=cfg.size, channels=cfg.channels, z_dim=0, image_to_image=True,
                     latent="none", in_channels=cfg.in_channels, supports=("translation",))


def train_step(*args):
    """Pix2PixStep (imported here, not at the top: the training code imports this module)."""
    from ganplug.train.pix2pix_step import Pix2PixStep

    return Pix2PixStep(*args)


# The paper's Adam settings are DCGAN's (the default optimiser). The PatchGAN has no `blocks`: no Freeze-D.
FAMILY = Family(name="pix2pix", config_cls=Pix2PixConfig, build=build, spec=spec, step=train_step,
                train_options=CLASSIC_OPTIONS | PIX2PIX_OPTIONS)
