"""FastGAN (Liu et al., ICLR 2021, "Towards Faster and Stabilized GAN Training for High-fidelity Few-shot
Image Synthesis") for square images of 32 to 1024 pixels: the whole family in one file.

Generator: z (256 dims) -> 4x4 by a 4x4 transposed conv + BatchNorm + GLU, then one up-block per doubling
(nearest upsample, 3x3 conv, BatchNorm, GLU; at 8, 32, 128 and 512 px a second conv and noise injection,
the paper's "UpBlockComp"), 3x3 conv + tanh. Skip-layer excitation (SLE) lets a low-resolution map gate the
channels of a map 16x larger: gate = sigmoid(1x1 conv(LeakyReLU(4x4 conv(avgpool_4x4(low))))).

SLE pairs (source -> target px): the paper's code gates r with r/16 for 64 <= r <= 512, so
4->64, 8->128, 16->256 at 256 px and also 32->512 at 512 and 1024 px; at 64 and 128 px the pairs that
exist (4->64; 4->64, 8->128); at 32 px, which has no such pair, 4->32 (scaled down to a factor of 8).

Discriminator (a self-supervised encoder): a stem to min(size, 256) px (paper: 4x4/2 convs from 1024 and
512, a 3x3 conv at 256 and below), residual down-blocks (4x4/2 conv + 3x3 conv beside avgpool + 1x1 conv,
averaged) to 8x8, SLE downwards (256->32, 128->16, 64->8 where both exist), and a head (1x1 conv,
BatchNorm, LeakyReLU, 4x4 conv) whose 5x5 patch logits are averaged to one logit per image. Two small
decoders (nearest upsample + 3x3 conv + BatchNorm + GLU blocks, then 3x3 conv + tanh) reconstruct, from
the 8x8 features, the whole real image downsized to min(128, size / 2) px, and from a random quadrant of
the 16x16 features that quadrant of the image at the same resolution. Their loss joins D's loss on real
images only: LPIPS-VGG16 as in the paper when both weight files are present locally, else pixel L1 +
(1 - MS-SSIM); the step's state (saved in every checkpoint) and `--dry-run` say which.

With `multiscale` (`--model multiscale=true`), as the paper's code and not its text: G also draws the image
at min(128, size / 2) px from its map there (a 1x1 conv + tanh), and D has a second, small branch (a 4x4/2
conv, then plain 4x4/2 down-blocks to 8x8 and a 4x4 conv to patch logits) that judges G's small image, or
for a real image its area-downsized copy, with a third decoder reconstructing that copy. The hinge loss
applies to each branch's logits and is averaged; plain `D(x)` (ranking) returns the two branches' mean.
Freeze-D (`--freeze-d N`) freezes the first N blocks of each branch (the small one has fewer).

Widths follow the official code (ngf = ndf = 64 with its per-resolution multipliers), times `capacity`
(D's encoder: times `d_capacity` when that is given); every conv is spectrally normalised, weights start
N(0, 0.02) (BatchNorm scales N(1, 0.02)).
Training (the family's defaults, written to the run's config.json like any other option): hinge loss,
Adam lr 2e-4, betas (0.5, 0.999), DiffAugment (colour, translation, cutout) and batch 8, as the paper,
except that each augmentation applies with probability FAMILY_AUG_P (0.2), not always, and that a CPU
trains at batch 32 (see device_train_defaults).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parametrize

from ganplug.errors import UserError
from ganplug.models.registry import Family, ModelSpec, Optimiser
from ganplug.train.config import AUGMENT_OPTIONS, FREEZE_OPTIONS

if TYPE_CHECKING:
    from ganplug.device import Runtime
    from ganplug.train.config import TrainConfig

SIZES = (32, 64, 128, 256, 512, 1024)
NOISE_MODES = ("random", "const", "none")
BASE = 64  # ngf = ndf in the paper's code
# Width multipliers of the official code: G's map at r px has BASE * G_MULT[r] channels; D's map at r px has
# BASE * D_MULT[2r] (its table is indexed one octave up); the decoders use 32 * G_MULT[r].
G_MULT = {4: 16, 8: 8, 16: 4, 32: 2, 64: 2, 128: 1, 256: 0.5, 512: 0.25, 1024: 0.125}
D_MULT = {8: 16, 16: 8, 32: 4, 64: 2, 128: 1, 256: 0.5, 512: 0.25, 1024: 0.125}
COMP_RES = (8, 32, 128, 512)  # up-blocks with two convs and noise injection (the paper's UpBlockComp)
LRELU = 0.2  # LeakyReLU slope in D and the up-blocks' neighbours (paper's code)
SLE_LRELU = 0.1  # the paper's SLE figure: LeakyReLU(0.1) between its two convs
MIN_WIDTH = 4
SN_EPS = 1e-12
SN_WARMUP = 15  # power-iteration steps on the initial weights (torch's spectral_norm does 15)


@dataclass
class FastGANConfig:
    size: int = 64  # output side in pixels: 32 to 1024, a power of two
    channels: int = 3  # 3 = RGB, 4 = RGBA
    z_dim: int = 256  # the paper's nz
    capacity: float = 1.0  # multiplies every width (1.0 = the paper's ngf = ndf = 64)
    # multiplies the widths of D's encoder (stem, down-blocks, SLE, head) instead of capacity; None = capacity.
    # Its decoders keep capacity's widths. At 64 px on a CPU, 0.5 beside capacity 0.25 costs 1.45x per image
    # and learns faster per image, but after an hour covered no more than the default (docs/results.md).
    d_capacity: float | None = None
    # The paper's code (not its text): G also draws the image at `small_size` px from its feature map there,
    # and a second, small D branch with its own logits and a third decoder judges it against the downsized
    # real; the two branches' hinge losses are averaged. False: one D branch only (checkpoints from before
    # the option, which lack the key, load as False).
    multiscale: bool = False
    # The paper's code: the hinge loss applies to each of D's 5x5 patch logits, not to their mean.
    patch_loss: bool = False

    def validate(self) -> None:
        if self.size not in SIZES:
            raise UserError(f"fastgan size must be one of {', '.join(map(str, SIZES))}, not {self.size}.")
        if self.channels not in (3, 4):
            raise UserError(f"channels must be 3 (RGB) or 4 (RGBA), not {self.channels}.")
        if not 1 <= self.z_dim <= 1024:
            raise UserError(f"z_dim must be between 1 and 1024, not {self.z_dim}.")
        if not 0 < self.capacity <= 4:
            raise UserError(f"capacity must be in (0, 4], not {self.capacity}; 1.0 = the paper's widths.")
        if self.d_capacity is not None and not 0 < self.d_capacity <= 4:
            raise UserError(f"d_capacity must be in (0, 4] (or null, to follow capacity), not {self.d_capacity}.")
        for name in ("multiscale", "patch_loss"):
            if not isinstance(getattr(self, name), bool):
                raise UserError(f"{name} must be true or false, not {getattr(self, name)!r}.")

    def _scaled(self, width: float, capacity: float | None = None) -> int:
        return max(MIN_WIDTH, int(round((self.capacity if capacity is None else capacity) * width)))

    def g_width(self, res: int) -> int:
        return self._scaled(BASE * G_MULT[res])

    def d_width(self, res: int) -> int:
        return self._scaled(BASE * D_MULT[2 * res], self.d_capacity)

    def d_small_width(self, res: int) -> int:
        """Width of the small D branch's map at `res` px (the paper's code: ndf * D_MULT[4 * res])."""
        return self._scaled(BASE * D_MULT[4 * res], self.d_capacity)

    def dec_width(self, res: int) -> int:
        return self._scaled(32 * G_MULT[res])

    @property
    def g_sle(self) -> tuple[tuple[int, int], ...]:
        """(source, target) resolutions of G's skip-layer excitations (see the module docstring)."""
        pairs = tuple((r // 16, r) for r in (64, 128, 256, 512) if r <= self.size)
        return pairs or ((4, 32),)

    @property
    def d_top(self) -> int:
        """Resolution of D's first full feature map (the stem's output)."""
        return min(self.size, 256)

    @property
    def d_sle(self) -> tuple[tuple[int, int], ...]:
        return tuple((8 * t, t) for t in (32, 16, 8) if 8 * t <= self.d_top)

    @property
    def rec_size(self) -> int:
        """Side of the decoders' reconstructions (the paper: 128 px from 1024 px images)."""
        return min(128, self.size // 2)

    @property
    def small_size(self) -> int:
        """Side of G's second image and of the small D branch's input with `multiscale` (the paper: 128 px
        for 256 px and larger; half the size below, as the decoders' reconstructions)."""
        return self.rec_size


# --------------------------------------------------------------------------------------------------
# Blocks


class SpectralNorm(nn.Module):
    """Parametrization W -> W / sigma(W), sigma by power iteration: one step per training forward, as torch's
    spectral_norm. Its own so that `init_weights` can start the iteration on the final weights and a model
    built on the meta device (ganplug sizes every model there first) runs none: torch's version runs 15 steps
    per layer at build, seconds on meta."""

    def __init__(self, weight: Tensor, *, dim: int):
        super().__init__()
        self.dim = dim
        mat = self._mat(weight)
        self.register_buffer("_u", F.normalize(mat.new_empty(mat.shape[0]).normal_(), dim=0, eps=SN_EPS))
        self.register_buffer("_v", F.normalize(mat.new_empty(mat.shape[1]).normal_(), dim=0, eps=SN_EPS))

    def _mat(self, weight: Tensor) -> Tensor:
        return (weight.transpose(0, 1) if self.dim else weight).flatten(1)

    @torch.no_grad()
    def power_iteration(self, weight: Tensor, steps: int = 1) -> None:
        mat = self._mat(weight.detach())
        for _ in range(steps):
            self._u.copy_(F.normalize(torch.mv(mat, self._v), dim=0, eps=SN_EPS))
            self._v.copy_(F.normalize(torch.mv(mat.t(), self._u), dim=0, eps=SN_EPS))

    def forward(self, weight: Tensor) -> Tensor:
        if self.training:
            self.power_iteration(weight)
        u, v = self._u.clone(), self._v.clone()  # the graph must not see the buffers' later in-place updates
        return weight / torch.vdot(u, torch.mv(self._mat(weight), v))


def _sn(module: nn.Module) -> nn.Module:
    dim = 1 if isinstance(module, nn.ConvTranspose2d) else 0
    return parametrize.register_parametrization(module, "weight", SpectralNorm(module.weight, dim=dim))


def conv(cin: int, cout: int, kernel: int, stride: int = 1, padding: int = 0) -> nn.Module:
    """Spectrally normalised conv without bias, as every conv of the paper's code."""
    return _sn(nn.Conv2d(cin, cout, kernel, stride, padding, bias=False))


class NoiseInjection(nn.Module):
    """x + strength * noise, strength learned from 0. "random" draws fresh noise (training), "const" uses a
    map fixed at build time (so inference is a function of z alone), "none" adds nothing."""

    def __init__(self, *, res: int):
        super().__init__()
        self.strength = nn.Parameter(torch.zeros(1))
        self.register_buffer("const", torch.randn(1, 1, res, res))

    def forward(self, x: Tensor, noise_mode: str) -> Tensor:
        if noise_mode == "none":
            return x
        if noise_mode == "random":
            noise = torch.randn(x.shape[0], 1, x.shape[2], x.shape[3], device=x.device, dtype=x.dtype)
        elif noise_mode == "const":
            noise = self.const.to(x.dtype)
        else:
            raise UserError(f"noise mode must be one of {', '.join(NOISE_MODES)}, not {noise_mode!r}.")
        return x + self.strength.to(x.dtype) * noise


class _GradInInputLayout(torch.autograd.Function):
    """The identity, whose gradient leaves in its input's memory format. torch's GLU backward hands a
    channels_last input an NCHW gradient, and BatchNorm's backward with the two layouts mixed takes a slow
    path (6x on a CPU for a 32x64x64x64 bf16 map)."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        ctx.channels_last = _is_channels_last(x)
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        return grad.contiguous(memory_format=torch.channels_last) if ctx.channels_last else grad


class _DenseHalvesGLU(torch.autograd.Function):
    """GLU of a channels_last map on a CPU, from dense copies of its two halves. Each half of such a map is a
    strided view, and torch's CPU kernels leave their vector path on strided bf16: a sigmoid of the half
    costs 21 ms against 2.7 ms dense (32x64x64x64, one core), and GLU forward and backward together 82 ms
    against 11 ms this way (docs/benchmarks.md). The backward recomputes the halves from the saved input,
    so that double backward is exact."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        ctx.save_for_backward(x)
        a, b = _dense_halves(x)
        return a * torch.sigmoid(b)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        (x,) = ctx.saved_tensors
        a, b = _dense_halves(x)
        s = torch.sigmoid(b)
        grad_a = grad.contiguous(memory_format=torch.channels_last) * s
        return torch.cat([grad_a, grad_a * a * (1 - s)], dim=1)


def _is_channels_last(x: Tensor) -> bool:
    return x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)


def _dense_halves(x: Tensor) -> tuple[Tensor, Tensor]:
    c = x.shape[1] // 2
    return (x[:, :c].contiguous(memory_format=torch.channels_last),
            x[:, c:].contiguous(memory_format=torch.channels_last))


def glu(x: Tensor) -> Tensor:
    """GLU over channels (first half times the sigmoid of the second), its gradient in x's layout."""
    if x.device.type == "cpu" and _is_channels_last(x):
        return _DenseHalvesGLU.apply(x)
    return F.glu(_GradInInputLayout.apply(x), dim=1)


class GLU(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return glu(x)


class SLE(nn.Module):
    """Skip-layer excitation: channel gates in [0, 1] from a low-resolution map, applied to a high one."""

    def __init__(self, *, c_low: int, c_high: int):
        super().__init__()
        self.gate = nn.Sequential(
            nn.AdaptiveAvgPool2d(4), conv(c_low, c_high, 4), nn.LeakyReLU(SLE_LRELU),
            conv(c_high, c_high, 1), nn.Sigmoid(),
        )

    def forward(self, low: Tensor, high: Tensor) -> Tensor:
        return high * self.gate(low)


class UpBlock(nn.Module):
    """Nearest x2, then (3x3 conv to 2c, [noise], BatchNorm, GLU) once, or twice when `comp` (UpBlockComp)."""

    def __init__(self, *, cin: int, cout: int, res: int, comp: bool):
        super().__init__()
        n = 2 if comp else 1
        self.convs = nn.ModuleList(conv(cin if i == 0 else cout, 2 * cout, 3, 1, 1) for i in range(n))
        self.noises = nn.ModuleList(NoiseInjection(res=res) for _ in range(n)) if comp else None
        self.norms = nn.ModuleList(nn.BatchNorm2d(2 * cout) for _ in range(n))

    def forward(self, x: Tensor, noise_mode: str = "const") -> Tensor:
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        for i, (c, norm) in enumerate(zip(self.convs, self.norms, strict=True)):
            x = c(x)
            if self.noises is not None:
                x = self.noises[i](x, noise_mode)
            x = glu(norm(x))
        return x


class DownBlock(nn.Module):
    """The paper's DownBlockComp: (4x4/2 conv, BN, LReLU, 3x3 conv, BN, LReLU) averaged with
    (avgpool 2, 1x1 conv, BN, LReLU)."""

    def __init__(self, *, cin: int, cout: int):
        super().__init__()
        self.main = nn.Sequential(
            conv(cin, cout, 4, 2, 1), nn.BatchNorm2d(cout), nn.LeakyReLU(LRELU),
            conv(cout, cout, 3, 1, 1), nn.BatchNorm2d(cout), nn.LeakyReLU(LRELU),
        )
        self.direct = nn.Sequential(nn.AvgPool2d(2), conv(cin, cout, 1), nn.BatchNorm2d(cout), nn.LeakyReLU(LRELU))

    def forward(self, x: Tensor) -> Tensor:
        return (self.main(x) + self.direct(x)) / 2


class Decoder(nn.Module):
    """8x8 features -> an image of `out_size` px in [-1, 1] (the paper's SimpleDecoder)."""

    def __init__(self, cfg: FastGANConfig, *, cin: int):
        super().__init__()
        blocks: list[nn.Module] = []
        res = 8
        while res < cfg.rec_size:
            res *= 2
            cout = cfg.dec_width(res)
            blocks.append(UpBlock(cin=cin, cout=cout, res=res, comp=False))
            cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.to_rgb = conv(cin, cfg.channels, 3, 1, 1)

    def forward(self, feat: Tensor) -> Tensor:
        return torch.tanh(self.to_rgb(self.blocks(feat)))


def quadrant(x: Tensor, q: Tensor) -> Tensor:
    """Per sample, the quadrant q (0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right) of x [N, C, H, W]."""
    n, c, h, w = x.shape
    quads = x.reshape(n, c, 2, h // 2, 2, w // 2).permute(0, 2, 4, 1, 3, 5).reshape(n, 4, c, h // 2, w // 2)
    return quads[torch.arange(n, device=x.device), q]


# --------------------------------------------------------------------------------------------------
# Networks


class FastGANGenerator(nn.Module):
    def __init__(self, cfg: FastGANConfig):
        super().__init__()
        self.z_dim, self.size = cfg.z_dim, cfg.size
        c4 = cfg.g_width(4)
        self.init = nn.Sequential(_sn(nn.ConvTranspose2d(cfg.z_dim, 2 * c4, 4, 1, 0, bias=False)),
                                  nn.BatchNorm2d(2 * c4), GLU())
        # Keyed by resolution, so layers match between models of different sizes (--init-from).
        self.blocks = nn.ModuleDict({
            f"b{r}": UpBlock(cin=cfg.g_width(r // 2), cout=cfg.g_width(r), res=r, comp=r in COMP_RES)
            for r in (2**k for k in range(3, int(math.log2(cfg.size)) + 1))
        })
        self.sle = nn.ModuleDict({f"sle{s}_{t}": SLE(c_low=cfg.g_width(s), c_high=cfg.g_width(t))
                                  for s, t in cfg.g_sle})
        self._sle_at = {t: (s, f"sle{s}_{t}") for s, t in cfg.g_sle}
        self.to_rgb = conv(cfg.g_width(cfg.size), cfg.channels, 3, 1, 1)
        self.small_size = cfg.small_size if cfg.multiscale else 0
        if cfg.multiscale:  # the paper's to_128: a 1x1 conv + tanh on the map at small_size
            self.to_small = conv(cfg.g_width(cfg.small_size), cfg.channels, 1)
        init_weights(self)

    def forward(self, z: Tensor, truncation: float = 1.0, noise_mode: str = "const",
                with_small: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        """Images [N, C, size, size]; with `with_small` (training a multiscale model), also G's own image at
        small_size px, which only the small D branch sees."""
        # Truncation for a Gaussian z: shrink toward its mean (0), as DCGAN does.
        if truncation != 1.0:
            z = z * truncation
        x = self.init(z.reshape(z.shape[0], self.z_dim, 1, 1))
        feats = {4: x}
        for name, block in self.blocks.items():
            x = block(x, noise_mode)
            res = int(name[1:])
            if res in self._sle_at:
                src, key = self._sle_at[res]
                x = self.sle[key](feats[src], x)
            feats[res] = x
        img = torch.tanh(self.to_rgb(x))
        if not with_small:
            return img
        if not self.small_size:
            raise ValueError("with_small: this generator was built without multiscale")
        return img, torch.tanh(self.to_small(feats[self.small_size]))


class FastGANDiscriminator(nn.Module):
    def __init__(self, cfg: FastGANConfig):
        super().__init__()
        self.size, self.channels = cfg.size, cfg.channels
        blocks: list[nn.Module] = []
        c512, c256 = cfg.d_width(512), cfg.d_width(256)
        if cfg.size == 1024:  # the paper's stems: 4x4/2 convs down to 256 px, a 3x3 conv at 256 and below
            blocks += [nn.Sequential(conv(cfg.channels, c512, 4, 2, 1), nn.LeakyReLU(LRELU)),
                       nn.Sequential(conv(c512, c256, 4, 2, 1), nn.BatchNorm2d(c256), nn.LeakyReLU(LRELU))]
        elif cfg.size == 512:
            blocks.append(nn.Sequential(conv(cfg.channels, c256, 4, 2, 1), nn.LeakyReLU(LRELU)))
        else:
            blocks.append(nn.Sequential(conv(cfg.channels, cfg.d_width(cfg.size), 3, 1, 1), nn.LeakyReLU(LRELU)))
        res = cfg.d_top
        while res > 8:
            blocks.append(DownBlock(cin=cfg.d_width(res), cout=cfg.d_width(res // 2)))
            res //= 2
        # `blocks` is indexed from the input side, so Freeze-D can freeze the first N.
        self.blocks = nn.Sequential(*blocks)
        self.sle = nn.ModuleDict({f"sle{s}_{t}": SLE(c_low=cfg.d_width(s), c_high=cfg.d_width(t))
                                  for s, t in cfg.d_sle})
        self._sle_at = {t: (s, f"sle{s}_{t}") for s, t in cfg.d_sle}
        self.head = nn.Sequential(conv(cfg.d_width(8), cfg.d_width(4), 1), nn.BatchNorm2d(cfg.d_width(4)),
                                  nn.LeakyReLU(LRELU), conv(cfg.d_width(4), 1, 4))  # 8x8 -> 5x5 patch logits
        self.decode_whole = Decoder(cfg, cin=cfg.d_width(8))
        self.decode_part = Decoder(cfg, cin=cfg.d_width(16))
        self.small_size = cfg.small_size if cfg.multiscale else 0
        self.patch_loss = cfg.patch_loss
        if cfg.multiscale:  # the paper's down_from_small (4x4/2 conv, then plain down-blocks to 8x8) and rf_small
            res, cin, small = cfg.small_size // 2, cfg.channels, []
            small.append(nn.Sequential(conv(cin, cfg.d_small_width(res), 4, 2, 1), nn.LeakyReLU(LRELU)))
            while res > 8:
                small.append(nn.Sequential(conv(cfg.d_small_width(res), cfg.d_small_width(res // 2), 4, 2, 1),
                                           nn.BatchNorm2d(cfg.d_small_width(res // 2)), nn.LeakyReLU(LRELU)))
                res //= 2
            self.small_blocks = nn.Sequential(*small)
            self.small_head = conv(cfg.d_small_width(8), 1, 4)
            self.decode_small = Decoder(cfg, cin=cfg.d_small_width(8))
        init_weights(self)

    def features(self, img: Tensor) -> dict[int, Tensor]:
        if img.dim() != 4 or img.shape[1:] != (self.channels, self.size, self.size):
            want = f"[N, {self.channels}, {self.size}, {self.size}]"
            raise ValueError(f"D expects images {want}, got {tuple(img.shape)}")
        feats: dict[int, Tensor] = {}
        x = img
        for block in self.blocks:
            x = block(x)
            res = x.shape[-1]
            if res in self._sle_at:
                src, key = self._sle_at[res]
                x = self.sle[key](feats[src], x)
            feats[res] = x
        return feats

    @property
    def input_stacks(self) -> tuple[nn.Sequential, ...]:
        """The branches' layer stacks from the input side, for Freeze-D (train/loop.py)."""
        return (self.blocks, self.small_blocks) if self.small_size else (self.blocks,)

    def downsize(self, img: Tensor) -> Tensor:
        """A full-size image as the small branch sees it (area average; the paper's code picks pixels)."""
        return F.avg_pool2d(img, self.size // self.small_size)

    def forward(self, img: Tensor, reconstruct: bool = False, small: Tensor | None = None, branches: bool = False):
        """Logits [N] (the patch map's mean; with multiscale, the mean of the two branches'); with `branches`,
        [N, 1] or [N, 2] (main, small), so that a loss applies to each branch. `small` is the small branch's
        input (G's own small image for a fake); without it the branch sees `img` downsized. With
        `reconstruct`, also the reconstructions (whole, part, small or None) and the quadrant index [N] each
        part shows (drawn from torch's RNG)."""
        feats = self.features(img)
        patches = [self.head(feats[8])]
        feat_small = None
        if self.small_size:
            if small is None:
                small = self.downsize(img)
            elif small.shape != (img.shape[0], self.channels, self.small_size, self.small_size):
                raise ValueError(f"D's small branch expects images [N, {self.channels}, {self.small_size}, "
                                 f"{self.small_size}], got {tuple(small.shape)}")
            feat_small = self.small_blocks(small)
            patches.append(self.small_head(feat_small))
        if branches and self.patch_loss:
            out = torch.cat([p.flatten(1) for p in patches], dim=1)
        else:
            means = [p.mean(dim=(1, 2, 3)) for p in patches]
            out = torch.stack(means, dim=1) if branches else sum(means) / len(means)
        if not reconstruct:
            return out
        q = torch.randint(0, 4, (img.shape[0],), device=img.device)
        rec_small = self.decode_small(feat_small) if feat_small is not None else None
        return out, self.decode_whole(feats[8]), self.decode_part(quadrant(feats[16], q)), rec_small, q


def init_weights(module: nn.Module) -> None:
    """N(0, 0.02) conv weights and N(1, 0.02) BatchNorm scales (the paper's `weights_init`), then the
    spectral norms' power iteration started on those weights (not on meta: no values there)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
            w = m.parametrizations.weight.original
            nn.init.normal_(w, 0.0, 0.02)
            if w.device.type != "meta":
                m.parametrizations.weight[0].power_iteration(w, SN_WARMUP)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


# --------------------------------------------------------------------------------------------------
# Reconstruction losses


def ms_ssim(a: Tensor, b: Tensor) -> Tensor:
    """Differentiable MS-SSIM per pair of [0, 1] images [N]: eval/metrics/msssim.py's constants, with as
    many scales as keep the coarsest at 8 px or more, and terms floored at 1e-6 (x**w has an infinite
    gradient at 0, which a clamp at 0 turns into NaN)."""
    from ganplug.eval.metrics.msssim import FILTER_SIGMA, FILTER_SIZE, K1, K2, WEIGHTS, gaussian_window

    levels = max(1, min(len(WEIGHTS), int(math.log2(min(a.shape[-2:]))) - 2))
    weights = torch.tensor(WEIGHTS[:levels], device=a.device)
    weights = weights / weights.sum()
    c1, c2 = K1**2, K2**2
    terms = []
    for i in range(levels):
        size = min(FILTER_SIZE, a.shape[-1])
        g = gaussian_window(size, size * FILTER_SIGMA / FILTER_SIZE).to(a.device, a.dtype)
        c = a.shape[1]
        kh, kw = g.view(1, 1, -1, 1).repeat(c, 1, 1, 1), g.view(1, 1, 1, -1).repeat(c, 1, 1, 1)

        def blur(x: Tensor, kh=kh, kw=kw, c=c) -> Tensor:
            return F.conv2d(F.conv2d(x, kh, groups=c), kw, groups=c)

        mu_a, mu_b = blur(a), blur(b)
        saa, sbb, sab = blur(a * a) - mu_a**2, blur(b * b) - mu_b**2, blur(a * b) - mu_a * mu_b
        cs = (2 * sab + c2) / (saa + sbb + c2)
        term = cs if i < levels - 1 else (2 * mu_a * mu_b + c1) / (mu_a**2 + mu_b**2 + c1) * cs
        terms.append(term.flatten(1).mean(1).clamp_min(1e-6) ** weights[i])
        a, b = F.avg_pool2d(a, 2), F.avg_pool2d(b, 2)
    return torch.stack(terms).prod(0)


def pixel_ssim_distance(rec: Tensor, target: Tensor) -> Tensor:
    """L1 on [-1, 1] plus (1 - MS-SSIM) on [0, 1], all channels: the fallback when LPIPS is unavailable."""
    return (rec - target).abs().mean() + (1 - ms_ssim((rec + 1) / 2, (target + 1) / 2)).mean()


def recon_distance(device: torch.device) -> tuple[str, Callable[[Tensor, Tensor], Tensor]]:
    """("lpips", LPIPS-VGG16) when its weights are found locally (as ganplug.latent.image_loss finds
    them), else ("pixel+ssim", pixel_ssim_distance). LPIPS sees RGB; an alpha channel gets L1."""
    from ganplug.eval.features.weights import locate

    vgg, lin = locate("vgg16"), locate("lpips-vgg16")
    if vgg is None or lin is None:
        return "pixel+ssim", pixel_ssim_distance
    from ganplug.eval.features.lpips import LPIPSVGG

    model = LPIPSVGG.from_files(vgg, lin).to(device)

    def lpips(rec: Tensor, target: Tensor) -> Tensor:
        d = model((rec[:, :3] + 1) * 127.5, (target[:, :3] + 1) * 127.5).mean()
        return d + ((rec[:, 3:] - target[:, 3:]).abs().mean() if rec.shape[1] > 3 else 0.0)

    return "lpips", lpips


def reconstruction_loss(distance: Callable[[Tensor, Tensor], Tensor], real: Tensor, whole: Tensor, part: Tensor,
                        q: Tensor, small: Tensor | None = None) -> Tensor:
    """distance(whole, real downsized) + distance(part, real's quadrant q at the same size), in fp32; with
    the small branch's reconstruction, + distance(small, real downsized)."""
    real = real.float()
    size = whole.shape[-1]
    target_whole = F.interpolate(real, size=(size, size), mode="area")
    target_part = quadrant(real, q)
    if target_part.shape[-1] != size:
        target_part = F.interpolate(target_part, size=(size, size), mode="area")
    loss = distance(whole.float(), target_whole) + distance(part.float(), target_part)
    return loss if small is None else loss + distance(small.float(), target_whole)


# --------------------------------------------------------------------------------------------------
# Training step

FAMILY_AUG_OPS = "diffaug"  # DiffAugment's colour (brightness, saturation, contrast), translation, cutout
# Per-op probability of the family's default augmentation. DiffAugment/FastGAN apply every op to every image
# (p = 1); below 0.5 the identity stays the most likely outcome of each op (augment.py's non-leaking rule).
# 0.2 (a third of images pass unaugmented) covers more of the data in a CPU hour: on 1,607 twemoji at 64 px,
# coverage stalled at 0.38-0.40 from 16k images on at p = 0.5 and reached 0.43-0.47 at 0.2 over the same
# steps. Dropping the colour ops did no better, and no augmentation did worse (docs/results.md). p = 0.2
# still protects D from the start; when it overfits anyway, the collapse watch raises p (train/watch.py).
FAMILY_AUG_P = 0.2
RECON_WEIGHT = 1.0  # the paper adds the reconstruction terms with weight 1 (it sums them over the batch)


class FastGANStep:
    """`d_steps` D updates (hinge loss on D(aug(x)) and D(aug(G(z))), plus the decoders' reconstruction of
    the augmented reals), then one G update (hinge: -D(aug(G(z)))) on the last fake batch.

    The loss and the augmentation are the run config's: the family's `train_defaults` make them hinge and
    DiffAugment (colour, translation, cutout at p = FAMILY_AUG_P) unless the user says otherwise, so
    config.json says what trains. `state_dict()` records the reconstruction distance, which depends on
    whether the LPIPS weights are present.
    """

    def __init__(self, G: nn.Module, D: nn.Module, opt_G: torch.optim.Optimizer, opt_D: torch.optim.Optimizer,
                 cfg: TrainConfig, runtime: Runtime):
        from ganplug.train.augment import DiscriminatorAugment

        self.G, self.D, self.opt_G, self.opt_D = G, D, opt_G, opt_D
        self.cfg, self.rt = cfg, runtime
        self.augment = DiscriminatorAugment(cfg)
        self.recon_name, self.recon = recon_distance(runtime.device)

    @property
    def ada(self):
        return self.augment.ada

    def _d(self, fake: Tensor | tuple[Tensor, Tensor]) -> Tensor:
        """D's per-branch logits on generated images (each scale augmented on its own, as the paper's code)."""
        if isinstance(fake, tuple):
            return self.D(self.augment(fake[0], self.cfg), small=self.augment(fake[1], self.cfg), branches=True)
        return self.D(self.augment(fake, self.cfg), branches=True)

    def __call__(self, next_real: Callable[[], Tensor], step: int) -> dict[str, float]:
        from ganplug.train import losses
        from ganplug.train.frozen import frozen
        from ganplug.train.steps import adversarial_stats

        rt, G = self.rt, self.G
        multiscale = bool(G.small_size)
        for _ in range(self.cfg.d_steps):
            real = next_real()
            with rt.autocast():
                z = torch.randn(real.shape[0], G.z_dim, device=rt.device)
                fake = G(z, noise_mode="random", with_small=multiscale)
                real_aug = self.augment(real, self.cfg)
                real_logits, whole, part, small, q = self.D(real_aug, reconstruct=True, branches=True)
                fake_logits = self._d(tuple(f.detach() for f in fake) if multiscale else fake.detach())
            loss_adv = losses.d_loss(self.cfg.loss, real_logits, fake_logits)
            loss_rec = reconstruction_loss(self.recon, real_aug.detach(), whole, part, q, small)
            self.opt_D.zero_grad(set_to_none=True)
            (loss_adv + RECON_WEIGHT * loss_rec).backward()
            self.opt_D.step()
            self.augment.observe(real_logits)
        with frozen(self.D):
            with rt.autocast():
                gen_logits = self._d(fake)
            loss_g = losses.g_loss(self.cfg.loss, gen_logits)
            self.opt_G.zero_grad(set_to_none=True)
            loss_g.backward()
        self.opt_G.step()
        stats = adversarial_stats(loss_g, loss_adv, real_logits, fake_logits)
        stats.update({"loss/recon": loss_rec.item(), "aug/p": self.augment.p(self.cfg)})
        if self.ada is not None:
            stats["ada/rt"] = self.ada.last_rt
        return stats

    def state_dict(self) -> dict[str, Any]:
        """Plain JSON, saved in each checkpoint: what the step does beyond the run config's words."""
        return {"recon_loss": self.recon_name, **self.augment.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        saved = state.get("recon_loss")
        if saved is not None and saved != self.recon_name:
            raise UserError(f"this fastgan run was trained with the {saved!r} reconstruction loss, and here it would "
                            f"be {self.recon_name!r} (the VGG16/LPIPS weight files are "
                            f"{'missing' if saved == 'lpips' else 'now present'}); restore the same weights setup "
                            "to resume it exactly, or start a new run with --init-from.")
        self.augment.load_state_dict(state)


def train_step(*args) -> FastGANStep:
    return FastGANStep(*args)


# --------------------------------------------------------------------------------------------------
# Registration


def build(cfg: FastGANConfig) -> tuple[nn.Module, nn.Module]:
    cfg.validate()
    G = FastGANGenerator(cfg)
    return G, FastGANDiscriminator(cfg)


def spec(cfg: FastGANConfig) -> ModelSpec:
    return ModelSpec(arch="fastgan", size=cfg.size, channels=cfg.channels, z_dim=cfg.z_dim, latent="z",
                     supports=("truncation", "projection"))


def derived(train: TrainConfig) -> dict[str, Any]:
    """What the step will do that the run config does not say: the reconstruction distance (LPIPS when
    its weights are found, else pixel + MS-SSIM)."""
    name, _ = recon_distance(torch.device("cpu"))
    return {"recon_loss": name}


CPU_CAPACITY = 0.25  # widths a CPU trains in an hour (docs/results.md); the paper's (1.0) on a GPU


def model_defaults(train: TrainConfig) -> dict[str, Any]:
    """What a new run gets, written to its config: the paper's code's two-scale D (`multiscale`; False is
    only what a config without the key means), and the paper's widths on a GPU, a quarter of them on a
    CPU. At 64 px capacity 1 costs about 9x per image on a CPU (0.7 s against 6 s per batch of 8 on one
    core), ~600 steps an hour, which leaves an artist smudges; 0.25 draws recognisable designs in that
    hour. multiscale costs ~10% per image there and covered more of twemoji in an hour (docs/results.md)."""
    from ganplug.device import device_type

    gpu = device_type(train.device) in ("cuda", "mps")
    return {"multiscale": True, **({} if gpu else {"capacity": CPU_CAPACITY})}


CPU_BATCH = 32


def device_train_defaults(train: TrainConfig) -> dict[str, Any]:
    """Batch 32 on a CPU, the paper's 8 on a GPU. A CPU step costs about the same per image at 8 or 32
    (35 and 31 ms on one core at 64 px), so the larger batch gives steadier gradients for free: on 1,607
    twemoji at 64 px its coverage reached 0.50 and held it to 54k images, where batch 8 wavered at
    0.39-0.47 (docs/results.md). On a GPU the paper's widths at batch 32 need 28-48 GiB (256-1024 px)."""
    from ganplug.device import device_type

    return {} if device_type(train.device) in ("cuda", "mps") else {"batch": CPU_BATCH}


# The paper's training: hinge loss (the only one this step is tested with, so --loss is not offered),
# DiffAugment on D's inputs and batch 8 (32 on a CPU); the augmentation options and Freeze-D are the shared ones.
FAMILY = Family(name="fastgan", config_cls=FastGANConfig, build=build, spec=spec, step=train_step,
                optimiser=Optimiser(lr_g=2e-4, lr_d=2e-4, beta1=0.5, beta2=0.999),
                train_options=AUGMENT_OPTIONS | FREEZE_OPTIONS, derived=derived, model_defaults=model_defaults,
                train_defaults={"loss": "hinge", "aug": "diffaug", "aug_ops": FAMILY_AUG_OPS, "aug_p": FAMILY_AUG_P,
                                "batch": 8},
                device_train_defaults=device_train_defaults)
