"""StyleGAN2-style generator and residual discriminator in plain PyTorch (no custom CUDA ops).

Follows Karras et al. 2020 (StyleGAN2) "config F" shapes: a mapping network (z normalised by its RMS,
`mapping_layers` fully connected layers, 0.01 learning-rate multiplier) to w; a learned 4x4 constant;
per layer a style (affine of w) that modulates the conv weights, followed by weight demodulation;
per-pixel noise with a learned strength; skip-connection toRGB outputs summed across resolutions; and a
residual discriminator ending in a minibatch standard-deviation layer. All layers use equalised
learning rate (weights stored N(0, 1), scaled by 1/sqrt(fan_in) at run time).

Choices made for speed without custom ops (and why):
- Modulated convolution is computed "non-fused" by default: scale the input channels by the style,
  run an ordinary conv with the shared weight, scale the output channels by the demodulation factor.
  This is the same linear map as the per-sample weight (tested against it in float64), but it runs
  cuDNN/oneDNN's ordinary kernels, which keep channels_last and autocast fast. The grouped-conv form
  (`fused=True`) is kept for inference at batch 1 and as a cross-check.
- Resampling uses bilinear upsampling (a separable [1, 3, 3, 1] filter, as StyleGAN2's FIR filter) in G
  and [1, 3, 3, 1] blur + stride 2 in D, both built from stock ops.

Widths: channels at resolution r are `capacity * min(16384 / r, channel_max)`, so capacity=1 with
channel_max=512 is the "paper256" configuration of StyleGAN2-ADA; capacity scales every layer.
"""

from __future__ import annotations

import contextlib
import math
from collections import OrderedDict
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ganplug.errors import UserError
from ganplug.models.registry import Family, ModelSpec, Optimiser
from ganplug.train.config import CLASSIC_OPTIONS, FREEZE_OPTIONS, STYLEGAN_OPTIONS

SIZES = (32, 64, 128, 256, 512)
NOISE_MODES = ("const", "random", "none")
CHANNEL_BASE = 16384
LRELU_GAIN = math.sqrt(2.0)


@dataclass
class StyleGANConfig:
    size: int = 64  # output side in pixels: 32, 64, 128, 256 or 512
    channels: int = 3  # 3 = RGB, 4 = RGBA
    z_dim: int = 512  # latent size (<= 512)
    w_dim: int = 512  # intermediate latent (style) size
    mapping_layers: int = 8  # 8 as in StyleGAN; 2 works for small data
    capacity: float = 1.0  # multiplies every channel width (1.0 = paper256 widths)
    channel_max: int = 512  # cap on widths near 4x4, before capacity
    mapping_lr_mult: float = 0.01  # learning-rate multiplier of the mapping network
    mbstd_group: int = 4  # minibatch-stddev group size in D
    conv_clamp: float | None = None  # clamp conv outputs to +-this (useful with fp16), None = off

    def validate(self) -> None:
        if self.size not in SIZES:
            raise UserError(f"stylegan size must be one of {', '.join(map(str, SIZES))}, not {self.size}.")
        if self.channels not in (3, 4):
            raise UserError(f"channels must be 3 (RGB) or 4 (RGBA), not {self.channels}.")
        if not 1 <= self.z_dim <= 512:
            raise UserError(f"z_dim must be between 1 and 512, not {self.z_dim}.")
        if not 1 <= self.w_dim <= 1024:
            raise UserError(f"w_dim must be between 1 and 1024, not {self.w_dim}.")
        if not 1 <= self.mapping_layers <= 16:
            raise UserError(f"mapping_layers must be between 1 and 16 (8 = StyleGAN, 2 for small data), "
                            f"not {self.mapping_layers}.")
        if not 0 < self.capacity <= 4:
            raise UserError(f"capacity must be in (0, 4], not {self.capacity}; 1.0 = paper256 widths.")
        if self.channel_max < 8:
            raise UserError(f"channel_max must be at least 8, not {self.channel_max}.")
        if self.mbstd_group < 1:
            raise UserError(f"mbstd_group must be at least 1, not {self.mbstd_group}.")

    @property
    def log2_size(self) -> int:
        return int(math.log2(self.size))

    @property
    def num_ws(self) -> int:
        """Style inputs: two convs per resolution above 4x4, one at 4x4, and the final toRGB."""
        return 2 * self.log2_size - 2

    def width(self, res: int) -> int:
        return max(8, int(round(self.capacity * min(CHANNEL_BASE // res, self.channel_max))))


# --------------------------------------------------------------------------------------------------
# Equalised-learning-rate layers


class FullyConnected(nn.Module):
    """Linear layer with weights stored at unit scale and rescaled at run time (equalised lr)."""

    def __init__(self, in_features: int, out_features: int, *, bias_init: float = 0.0, lr_mult: float = 1.0,
                 activation: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_mult)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init)))
        self.weight_gain = lr_mult / math.sqrt(in_features)
        self.bias_gain = lr_mult
        self.activation = activation

    def forward(self, x: Tensor) -> Tensor:
        x = F.linear(x, self.weight * self.weight_gain, self.bias * self.bias_gain)
        if self.activation:
            x = F.leaky_relu(x, 0.2) * LRELU_GAIN
        return x


def _blur_kernel(channels: int, device=None, dtype=None) -> Tensor:
    k = torch.tensor([1.0, 3.0, 3.0, 1.0], device=device, dtype=dtype)
    k2 = torch.outer(k, k)
    k2 = k2 / k2.sum()
    return k2.expand(channels, 1, 4, 4)


def no_autocast(device_type: str) -> contextlib.AbstractContextManager:
    """Autocast off; a no-op on devices autocast does not know (`meta`, used to size a model unallocated)."""
    if device_type == "meta":
        return contextlib.nullcontext()
    return torch.autocast(device_type, enabled=False)


def downsample2x(x: Tensor) -> Tensor:
    """Blur with a separable [1, 3, 3, 1] filter and keep every second pixel (anti-aliased halving).

    The depthwise conv runs in float32 even under bf16 autocast: oneDNN's bf16 depthwise kernels
    (backward especially) were 2.8x slower than float32 on the CPU, and this op was half of a
    StyleGAN training step (docs/benchmarks.md)."""
    c = x.shape[1]
    dtype = torch.promote_types(x.dtype, torch.float32)
    with no_autocast(x.device.type):
        y = F.conv2d(x.to(dtype), _blur_kernel(c, x.device, dtype), stride=2, padding=1, groups=c)
    return y.to(x.dtype)


def upsample2x(x: Tensor) -> Tensor:
    """Bilinear doubling; its taps are the separable [1, 3, 3, 1] / 4 filter of StyleGAN2."""
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


class Conv(nn.Module):
    """Equalised-lr conv with optional bias + leaky ReLU, and an optional 2x downsample before it."""

    def __init__(self, cin: int, cout: int, kernel: int, *, bias: bool = True, activation: bool = True,
                 down: bool = False, clamp: float | None = None):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(cout)) if bias else None
        self.weight_gain = 1 / math.sqrt(cin * kernel * kernel)
        self.activation = activation
        self.down = down
        self.padding = kernel // 2
        self.clamp = clamp

    def forward(self, x: Tensor, gain: float = 1.0) -> Tensor:
        if self.down:
            x = downsample2x(x)
        x = F.conv2d(x, self.weight * self.weight_gain, self.bias, padding=self.padding)
        if self.activation:
            x = F.leaky_relu(x, 0.2) * (LRELU_GAIN * gain)
        elif gain != 1.0:
            x = x * gain
        if self.clamp is not None:
            x = x.clamp(-self.clamp, self.clamp)
        return x


# --------------------------------------------------------------------------------------------------
# Modulated convolution


def demodulation_coefs(weight: Tensor, styles: Tensor, eps: float = 1e-8) -> Tensor:
    """1 / ||w[o] * s[n]||_2 for each sample n and output channel o, as [N, O] in float32.

    sum_{i,k} (w[o,i,k] s[n,i])^2 = sum_i s[n,i]^2 sum_k w[o,i,k]^2: one small matmul, no 5-D tensor.
    """
    dtype = torch.promote_types(weight.dtype, torch.float32)  # float32 under autocast, float64 stays
    with no_autocast(weight.device.type):  # keep the matmul in float32
        wsq = weight.to(dtype).square().sum(dim=(2, 3))  # [O, I]
        return (styles.to(dtype).square() @ wsq.t() + eps).rsqrt()


def modulated_conv2d(x: Tensor, weight: Tensor, styles: Tensor, *, demodulate: bool = True, padding: int = 0,
                     fused: bool = False, eps: float = 1e-8) -> Tensor:
    """Convolve each sample with its own weight w[o, i] * s[n, i], optionally demodulated so that each
    output channel's weight has unit L2 norm: w'[n, o, i] / sqrt(sum_{i,k} w'[n, o, i, k]^2 + eps).

    x [N, I, H, W], weight [O, I, k, k], styles [N, I]. `fused=False` scales activations instead of
    weights (same result, stock conv kernels); `fused=True` builds the per-sample weights and runs one
    grouped conv.
    """
    n, cin = x.shape[0], x.shape[1]
    cout = weight.shape[0]
    if styles.shape != (n, cin):
        raise ValueError(f"styles must be [N, {cin}] = [{n}, {cin}], got {tuple(styles.shape)}")
    dcoefs = demodulation_coefs(weight, styles, eps) if demodulate else None
    if fused:
        w = weight.unsqueeze(0) * styles.reshape(n, 1, cin, 1, 1).to(weight.dtype)
        if dcoefs is not None:
            w = w * dcoefs.reshape(n, cout, 1, 1, 1).to(w.dtype)
        w = w.reshape(n * cout, cin, *weight.shape[2:])
        y = F.conv2d(x.reshape(1, n * cin, *x.shape[2:]), w, padding=padding, groups=n)
        return y.reshape(n, cout, *y.shape[2:])
    x = x * styles.reshape(n, cin, 1, 1).to(x.dtype)
    y = F.conv2d(x, weight, padding=padding)
    if dcoefs is not None:
        y = y * dcoefs.reshape(n, cout, 1, 1).to(y.dtype)
    return y


class SynthesisLayer(nn.Module):
    """Style-modulated 3x3 conv (optionally after 2x upsampling) + noise + bias + leaky ReLU."""

    def __init__(self, cin: int, cout: int, w_dim: int, res: int, *, up: bool = False,
                 clamp: float | None = None):
        super().__init__()
        self.affine = FullyConnected(w_dim, cin, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(cout, cin, 3, 3))
        self.bias = nn.Parameter(torch.zeros(cout))
        self.weight_gain = 1 / math.sqrt(cin * 9)
        self.up = up
        self.res = res
        self.clamp = clamp
        self.register_buffer("noise_const", torch.randn(res, res))
        self.noise_strength = nn.Parameter(torch.zeros([]))

    def forward(self, x: Tensor, w: Tensor, noise_mode: str = "const", fused: bool = False) -> Tensor:
        styles = self.affine(w)
        weight = self.weight * self.weight_gain
        if self.up and not fused:
            # Per-channel scaling commutes with upsampling: modulate at the low resolution (cheaper),
            # upsample, run the shared conv, then demodulate the output channels.
            n, cin = x.shape[:2]
            x = upsample2x(x * styles.reshape(n, cin, 1, 1).to(x.dtype))
            x = F.conv2d(x, weight, padding=1)
            x = x * demodulation_coefs(weight, styles).reshape(n, -1, 1, 1).to(x.dtype)
        else:
            if self.up:
                x = upsample2x(x)
            x = modulated_conv2d(x, weight, styles, demodulate=True, padding=1, fused=fused)
        if noise_mode == "random":
            noise = torch.randn(x.shape[0], 1, self.res, self.res, device=x.device, dtype=x.dtype)
            x = x + noise * self.noise_strength.to(x.dtype)
        elif noise_mode == "const":
            x = x + (self.noise_const * self.noise_strength).to(x.dtype)
        elif noise_mode != "none":
            raise UserError(f"noise mode must be one of {', '.join(NOISE_MODES)}, not {noise_mode!r}.")
        x = F.leaky_relu(x + self.bias.reshape(1, -1, 1, 1).to(x.dtype), 0.2) * LRELU_GAIN
        if self.clamp is not None:
            x = x.clamp(-self.clamp, self.clamp)
        return x


class ToRGB(nn.Module):
    """Modulated 1x1 conv to image channels, no demodulation (StyleGAN2 skip output)."""

    def __init__(self, cin: int, channels: int, w_dim: int, clamp: float | None = None):
        super().__init__()
        self.affine = FullyConnected(w_dim, cin, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(channels, cin, 1, 1))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.weight_gain = 1 / math.sqrt(cin)
        self.clamp = clamp

    def forward(self, x: Tensor, w: Tensor, fused: bool = False) -> Tensor:
        styles = self.affine(w) * self.weight_gain
        x = modulated_conv2d(x, self.weight, styles, demodulate=False, fused=fused)
        x = x + self.bias.reshape(1, -1, 1, 1).to(x.dtype)
        if self.clamp is not None:
            x = x.clamp(-self.clamp, self.clamp)
        return x


class SynthesisBlock(nn.Module):
    """One resolution: (const | upsampling conv0), conv1, toRGB added to the upsampled running image."""

    def __init__(self, cin: int, cout: int, w_dim: int, res: int, channels: int, clamp: float | None):
        super().__init__()
        self.res = res
        if res == 4:
            self.const = nn.Parameter(torch.randn(cout, 4, 4))
            self.num_conv = 1
        else:
            self.conv0 = SynthesisLayer(cin, cout, w_dim, res, up=True, clamp=clamp)
            self.num_conv = 2
        self.conv1 = SynthesisLayer(cout, cout, w_dim, res, clamp=clamp)
        self.torgb = ToRGB(cout, channels, w_dim, clamp=clamp)

    def forward(self, x: Tensor | None, img: Tensor | None, ws: Tensor, noise_mode: str,
                fused: bool) -> tuple[Tensor, Tensor]:
        # ws: [N, num_conv + 1, w_dim]
        if self.res == 4:
            x = self.const.unsqueeze(0).expand(ws.shape[0], -1, -1, -1).to(ws.dtype)
            x = self.conv1(x, ws[:, 0], noise_mode, fused)
        else:
            x = self.conv0(x, ws[:, 0], noise_mode, fused)
            x = self.conv1(x, ws[:, 1], noise_mode, fused)
        y = self.torgb(x, ws[:, self.num_conv], fused)
        img = y if img is None else upsample2x(img).to(y.dtype) + y
        return x, img


class SynthesisNetwork(nn.Module):
    def __init__(self, cfg: StyleGANConfig):
        super().__init__()
        self.w_dim = cfg.w_dim
        self.num_ws = cfg.num_ws
        self.size = cfg.size
        blocks = OrderedDict()
        for log2 in range(2, cfg.log2_size + 1):
            res = 2**log2
            cin = cfg.width(res // 2) if res > 4 else 0
            blocks[f"b{res}"] = SynthesisBlock(cin, cfg.width(res), cfg.w_dim, res, cfg.channels,
                                               cfg.conv_clamp)
        self.blocks = nn.ModuleDict(blocks)

    def forward(self, ws: Tensor, noise_mode: str = "const", fused: bool = False) -> Tensor:
        if ws.dim() != 3 or ws.shape[1:] != (self.num_ws, self.w_dim):
            raise ValueError(f"ws must be [N, {self.num_ws}, {self.w_dim}], got {tuple(ws.shape)}")
        if noise_mode not in NOISE_MODES:
            raise UserError(f"noise mode must be one of {', '.join(NOISE_MODES)}, not {noise_mode!r}.")
        x = img = None
        idx = 0
        for block in self.blocks.values():
            x, img = block(x, img, ws[:, idx: idx + block.num_conv + 1], noise_mode, fused)
            idx += block.num_conv
        return img

    def noise_buffers(self) -> list[Tensor]:
        """The constant noise maps, lowest resolution first (optimised by projection)."""
        return [m.noise_const for m in self.modules() if isinstance(m, SynthesisLayer)]


class MappingNetwork(nn.Module):
    """z -> w: RMS-normalise z, then `layers` fully connected layers with leaky ReLU."""

    def __init__(self, cfg: StyleGANConfig):
        super().__init__()
        self.z_dim = cfg.z_dim
        self.w_dim = cfg.w_dim
        self.num_ws = cfg.num_ws
        dims = [cfg.z_dim] + [cfg.w_dim] * cfg.mapping_layers
        self.layers = nn.Sequential(*[
            FullyConnected(dims[i], dims[i + 1], lr_mult=cfg.mapping_lr_mult, activation=True)
            for i in range(cfg.mapping_layers)
        ])
        self.register_buffer("w_avg", torch.zeros(cfg.w_dim))

    def forward(self, z: Tensor, truncation: float = 1.0, truncation_cutoff: int | None = None) -> Tensor:
        if z.dim() != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"z must be [N, {self.z_dim}], got {tuple(z.shape)}")
        z = z.float()
        z = z * (z.square().mean(dim=1, keepdim=True) + 1e-8).rsqrt()
        w = self.layers(z)
        ws = w.unsqueeze(1).repeat(1, self.num_ws, 1)
        if truncation != 1.0:
            ws = truncate(ws, self.w_avg, truncation, truncation_cutoff)
        return ws


def truncate(ws: Tensor, w_avg: Tensor, psi: float, cutoff: int | None = None) -> Tensor:
    """w <- w_avg + psi * (w - w_avg) for the first `cutoff` style inputs (all when None)."""
    ws = ws.clone()
    end = ws.shape[1] if cutoff is None else cutoff
    ws[:, :end] = w_avg.to(ws.dtype).lerp(ws[:, :end], psi)
    return ws


def mix_styles(ws_a: Tensor, ws_b: Tensor, cutoff: int | Tensor) -> Tensor:
    """Style mixing: style inputs [0, cutoff) from `ws_a` (coarse: pose, shape), the rest from `ws_b`
    (fine: colour, texture). `cutoff` is an int or a per-sample tensor [N]."""
    if ws_a.shape != ws_b.shape:
        raise ValueError(f"ws shapes differ: {tuple(ws_a.shape)} vs {tuple(ws_b.shape)}")
    idx = torch.arange(ws_a.shape[1], device=ws_a.device)
    cut = torch.as_tensor(cutoff, device=ws_a.device).reshape(-1, 1)
    take_a = (idx.unsqueeze(0) < cut).unsqueeze(-1)  # [N or 1, num_ws, 1]
    return torch.where(take_a, ws_a, ws_b)


class StyleGenerator(nn.Module):
    def __init__(self, cfg: StyleGANConfig):
        super().__init__()
        self.z_dim = cfg.z_dim
        self.w_dim = cfg.w_dim
        self.num_ws = cfg.num_ws
        self.size = cfg.size
        self.channels = cfg.channels
        self.mapping = MappingNetwork(cfg)
        self.synthesis = SynthesisNetwork(cfg)

    @property
    def w_avg(self) -> Tensor:
        return self.mapping.w_avg

    @torch.no_grad()
    def update_w_avg(self, ws: Tensor, beta: float = 0.995) -> None:
        """Track the mean of w (an EMA over batches), which truncation pulls toward."""
        w = ws[:, 0] if ws.dim() == 3 else ws
        self.mapping.w_avg.copy_(w.detach().float().mean(0).lerp(self.mapping.w_avg, beta))

    def forward(self, z: Tensor, truncation: float = 1.0, truncation_cutoff: int | None = None,
                noise_mode: str = "const", fused: bool = False) -> Tensor:
        ws = self.mapping(z, truncation=truncation, truncation_cutoff=truncation_cutoff)
        return self.synthesis(ws, noise_mode=noise_mode, fused=fused)


# --------------------------------------------------------------------------------------------------
# Discriminator


class DiscriminatorBlock(nn.Module):
    """Residual block: two 3x3 convs (the second halves the size), plus a 1x1 skip, summed / sqrt(2)."""

    def __init__(self, cin: int, cout: int, channels: int, *, from_rgb: bool, clamp: float | None):
        super().__init__()
        self.fromrgb = Conv(channels, cin, 1, clamp=clamp) if from_rgb else None
        self.conv0 = Conv(cin, cin, 3, clamp=clamp)
        self.conv1 = Conv(cin, cout, 3, down=True, clamp=clamp)
        self.skip = Conv(cin, cout, 1, bias=False, activation=False, down=True)

    def forward(self, x: Tensor) -> Tensor:
        if self.fromrgb is not None:
            x = self.fromrgb(x)
        y = self.skip(x, gain=math.sqrt(0.5))
        x = self.conv1(self.conv0(x), gain=math.sqrt(0.5))
        return y + x


def minibatch_stddev(x: Tensor, group_size: int) -> Tensor:
    """Append one feature map: the std of each feature across a group of samples, averaged over
    features and pixels (Karras et al. 2018). The group is the largest divisor of N up to group_size."""
    n, c, h, w = x.shape
    g = max(d for d in range(1, min(group_size, n) + 1) if n % d == 0)
    y = x.float().reshape(g, n // g, c, h, w)
    y = (y - y.mean(dim=0)).square().mean(dim=0)
    y = (y + 1e-8).sqrt().mean(dim=(1, 2, 3))  # [n // g]
    y = y.reshape(-1, 1, 1, 1).repeat(g, 1, h, w).to(x.dtype)
    return torch.cat([x, y], dim=1)


class Epilogue(nn.Module):
    def __init__(self, cin: int, mbstd_group: int, clamp: float | None):
        super().__init__()
        self.mbstd_group = mbstd_group
        self.conv = Conv(cin + 1, cin, 3, clamp=clamp)
        self.fc = FullyConnected(cin * 16, cin, activation=True)
        self.out = FullyConnected(cin, 1)

    def forward(self, x: Tensor) -> Tensor:
        x = minibatch_stddev(x, self.mbstd_group)
        x = self.conv(x)
        x = self.fc(x.flatten(1))
        return self.out(x).flatten()


class ResidualDiscriminator(nn.Module):
    def __init__(self, cfg: StyleGANConfig):
        super().__init__()
        self.size = cfg.size
        self.channels = cfg.channels
        blocks = OrderedDict()
        for log2 in range(cfg.log2_size, 2, -1):
            res = 2**log2
            blocks[f"b{res}"] = DiscriminatorBlock(cfg.width(res), cfg.width(res // 2), cfg.channels,
                                                   from_rgb=res == cfg.size, clamp=cfg.conv_clamp)
        # Sequential, indexed from the input side, so Freeze-D can freeze `blocks[:n]`; names carry the
        # resolution so layers match between models of different sizes.
        self.blocks = nn.Sequential(blocks)
        self.epilogue = Epilogue(cfg.width(4), cfg.mbstd_group, cfg.conv_clamp)

    def forward(self, img: Tensor) -> Tensor:
        if img.dim() != 4 or img.shape[1:] != (self.channels, self.size, self.size):
            want = f"[N, {self.channels}, {self.size}, {self.size}]"
            raise ValueError(f"D expects images {want}, got {tuple(img.shape)}")
        return self.epilogue(self.blocks(img))


# --------------------------------------------------------------------------------------------------
# Registration


def build(cfg: StyleGANConfig) -> tuple[nn.Module, nn.Module]:
    cfg.validate()
    G = StyleGenerator(cfg)
    return G, ResidualDiscriminator(cfg)


def spec(cfg: StyleGANConfig) -> ModelSpec:
    return ModelSpec(arch="stylegan", size=cfg.size, channels=cfg.channels, z_dim=cfg.z_dim, style_based=True,
                     num_ws=cfg.num_ws, latent="w", w_dim=cfg.w_dim, supports=("truncation", "mixing", "projection"))


def train_step(*args):
    """StyleGANStep (imported here, not at the top: the training code imports this module)."""
    from ganplug.train.stylegan_loss import StyleGANStep

    return StyleGANStep(*args)


def derived(train) -> dict[str, float]:
    """R1's weight when left to "auto": StyleGAN2-ADA's 0.0002 * size^2 / batch."""
    from ganplug.train.stylegan_loss import auto_r1_gamma

    return {"r1_gamma": train.r1_gamma if train.r1_gamma is not None else auto_r1_gamma(train.size, train.batch)}


# StyleGAN2(-ADA) trains with Adam lr 0.0025, betas (0, 0.99).
FAMILY = Family(name="stylegan", config_cls=StyleGANConfig, build=build, spec=spec, step=train_step,
                optimiser=Optimiser(lr_g=0.0025, lr_d=0.0025, beta1=0.0, beta2=0.99),
                train_options=CLASSIC_OPTIONS | FREEZE_OPTIONS | STYLEGAN_OPTIONS, derived=derived)
