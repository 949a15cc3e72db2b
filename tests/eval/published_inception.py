"""A TorchScript file with the layout of NVIDIA's published `inception-2015-12-05.pt`, built WITHOUT ganplug's twin.

What it reproduces (sources in eval/features/inception_layout.py and inception_arch.py):
- one module per conv + batch norm + ReLU unit, holding `weight` (conv, no bias), `beta`, `mean`, `var`; batch
  norm without scale, eps 1e-3; no `num_batches_tracked`;
- the published module paths (`layers.conv` .. `layers.conv_4`, `pool0`, `pool1`, `mixed` .. `mixed_10`, `pool2`,
  `tower`/`tower_1`/`tower_2` sequentials, the flat `tower_mixed_conv_1`-style names of the 8x8 blocks) and the
  real Inception-v3 shapes (94 units, 1008 outputs), at seeded random weights;
- the forward of the published `.code`: an identity theta shifted by 1/in - 1/299, affine_grid + bilinear
  grid_sample with border padding, then (x - 128) / 128, the trunk, reshape to [-1, 2048], and
  return_features / no_output_bias / softmax.

Batch-norm statistics are set from a calibration batch so that features vary with the image (random deep ReLU
nets otherwise map every image to about the same vector, which would make agreement tests meaningless).
"""

from __future__ import annotations

import functools
import warnings
from collections import OrderedDict
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

FILENAME = "inception-2015-12-05.pt"


class TFConv(nn.Module):
    """conv (no bias) -> batch norm with beta only (eps 1e-3) -> ReLU, as one published module."""

    def __init__(self, cin: int, cout: int, kernel: int | tuple[int, int], stride: int = 1,
                 padding: int | tuple[int, int] = 0, *, gen: torch.Generator) -> None:
        super().__init__()
        kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
        self.stride = [stride, stride]
        self.padding = [padding, padding] if isinstance(padding, int) else list(padding)
        self.weight = nn.Parameter(torch.randn(cout, cin, kh, kw, generator=gen) * (2.0 / (cin * kh * kw)) ** 0.5)
        self.beta = nn.Parameter(torch.randn(cout, generator=gen) * 0.1)
        self.register_buffer("mean", torch.zeros(cout))
        self.register_buffer("var", torch.ones(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.conv2d(x, self.weight, None, self.stride, self.padding)
        return F.relu(F.batch_norm(y, self.mean, self.var, None, self.beta, False, 0.0, 1e-3))


def _seq(*named: tuple[str, nn.Module]) -> nn.Sequential:
    return nn.Sequential(OrderedDict(named))


def _avg() -> nn.AvgPool2d:
    return nn.AvgPool2d(3, 1, 1, count_include_pad=False)


class Mixed35(nn.Module):
    def __init__(self, cin: int, pool_ch: int, gen: torch.Generator) -> None:
        super().__init__()
        self.conv = TFConv(cin, 64, 1, gen=gen)
        self.tower = _seq(("conv", TFConv(cin, 48, 1, gen=gen)), ("conv_1", TFConv(48, 64, 5, padding=2, gen=gen)))
        self.tower_1 = _seq(("conv", TFConv(cin, 64, 1, gen=gen)), ("conv_1", TFConv(64, 96, 3, padding=1, gen=gen)),
                            ("conv_2", TFConv(96, 96, 3, padding=1, gen=gen)))
        self.tower_2 = _seq(("pool", _avg()), ("conv", TFConv(cin, pool_ch, 1, gen=gen)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.conv(x), self.tower(x), self.tower_1(x), self.tower_2(x)], 1)


class Reduce35(nn.Module):
    def __init__(self, cin: int, gen: torch.Generator) -> None:
        super().__init__()
        self.conv = TFConv(cin, 384, 3, 2, gen=gen)
        self.tower = _seq(("conv", TFConv(cin, 64, 1, gen=gen)), ("conv_1", TFConv(64, 96, 3, padding=1, gen=gen)),
                          ("conv_2", TFConv(96, 96, 3, 2, gen=gen)))
        self.pool = nn.MaxPool2d(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.conv(x), self.tower(x), self.pool(x)], 1)


class Mixed17(nn.Module):
    def __init__(self, cin: int, mid: int, gen: torch.Generator) -> None:
        super().__init__()
        row, col = dict(kernel=(1, 7), padding=(0, 3)), dict(kernel=(7, 1), padding=(3, 0))
        self.conv = TFConv(cin, 192, 1, gen=gen)
        self.tower = _seq(("conv", TFConv(cin, mid, 1, gen=gen)), ("conv_1", TFConv(mid, mid, **row, gen=gen)),
                          ("conv_2", TFConv(mid, 192, **col, gen=gen)))
        self.tower_1 = _seq(("conv", TFConv(cin, mid, 1, gen=gen)), ("conv_1", TFConv(mid, mid, **col, gen=gen)),
                            ("conv_2", TFConv(mid, mid, **row, gen=gen)), ("conv_3", TFConv(mid, mid, **col, gen=gen)),
                            ("conv_4", TFConv(mid, 192, **row, gen=gen)))
        self.tower_2 = _seq(("pool", _avg()), ("conv", TFConv(cin, 192, 1, gen=gen)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.conv(x), self.tower(x), self.tower_1(x), self.tower_2(x)], 1)


class Reduce17(nn.Module):
    def __init__(self, cin: int, gen: torch.Generator) -> None:
        super().__init__()
        self.tower = _seq(("conv", TFConv(cin, 192, 1, gen=gen)), ("conv_1", TFConv(192, 320, 3, 2, gen=gen)))
        self.tower_1 = _seq(("conv", TFConv(cin, 192, 1, gen=gen)),
                            ("conv_1", TFConv(192, 192, (1, 7), padding=(0, 3), gen=gen)),
                            ("conv_2", TFConv(192, 192, (7, 1), padding=(3, 0), gen=gen)),
                            ("conv_3", TFConv(192, 192, 3, 2, gen=gen)))
        self.pool = nn.MaxPool2d(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.tower(x), self.tower_1(x), self.pool(x)], 1)


class Mixed8(nn.Module):
    def __init__(self, cin: int, max_pool: bool, gen: torch.Generator) -> None:
        super().__init__()
        row, col = dict(kernel=(1, 3), padding=(0, 1)), dict(kernel=(3, 1), padding=(1, 0))
        self.conv = TFConv(cin, 320, 1, gen=gen)
        self.tower_conv = TFConv(cin, 384, 1, gen=gen)
        self.tower_mixed_conv = TFConv(384, 384, **row, gen=gen)
        self.tower_mixed_conv_1 = TFConv(384, 384, **col, gen=gen)
        self.tower_1_conv = TFConv(cin, 448, 1, gen=gen)
        self.tower_1_conv_1 = TFConv(448, 384, 3, padding=1, gen=gen)
        self.tower_1_mixed_conv = TFConv(384, 384, **row, gen=gen)
        self.tower_1_mixed_conv_1 = TFConv(384, 384, **col, gen=gen)
        self.tower_2_pool = nn.MaxPool2d(3, 1, 1) if max_pool else _avg()
        self.tower_2_conv = TFConv(cin, 192, 1, gen=gen)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.tower_conv(x)
        b = self.tower_1_conv_1(self.tower_1_conv(x))
        parts = [self.conv(x), self.tower_mixed_conv(a), self.tower_mixed_conv_1(a), self.tower_1_mixed_conv(b),
                 self.tower_1_mixed_conv_1(b), self.tower_2_conv(self.tower_2_pool(x))]
        return torch.cat([p.contiguous() for p in parts], 1)


class PublishedInception(nn.Module):
    """`layers` (299 px normalised -> [N, 2048, 1, 1]) and `output` (1008 logits), with the published forward."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.layers = _seq(
            ("conv", TFConv(3, 32, 3, 2, gen=g)), ("conv_1", TFConv(32, 32, 3, gen=g)),
            ("conv_2", TFConv(32, 64, 3, padding=1, gen=g)), ("pool0", nn.MaxPool2d(3, 2)),
            ("conv_3", TFConv(64, 80, 1, gen=g)), ("conv_4", TFConv(80, 192, 3, gen=g)), ("pool1", nn.MaxPool2d(3, 2)),
            ("mixed", Mixed35(192, 32, g)), ("mixed_1", Mixed35(256, 64, g)), ("mixed_2", Mixed35(288, 64, g)),
            ("mixed_3", Reduce35(288, g)),
            ("mixed_4", Mixed17(768, 128, g)), ("mixed_5", Mixed17(768, 160, g)), ("mixed_6", Mixed17(768, 160, g)),
            ("mixed_7", Mixed17(768, 192, g)), ("mixed_8", Reduce17(768, g)),
            ("mixed_9", Mixed8(1280, False, g)), ("mixed_10", Mixed8(2048, True, g)),
            ("pool2", nn.AvgPool2d(8, 8)),
        )
        self.output = nn.Linear(2048, 1008)
        with torch.no_grad():
            self.output.weight.copy_(torch.randn(1008, 2048, generator=g) * 2.0 / 2048**0.5)
            self.output.bias.copy_(torch.randn(1008, generator=g))

    def forward(self, img: torch.Tensor, return_features: bool = False, use_fp16: bool = False,
                no_output_bias: bool = False) -> torch.Tensor:
        batch_size, channels, height, width = img.shape
        x = img.to(torch.float16 if use_fp16 else torch.float32)
        theta = torch.eye(2, 3, device=x.device)
        theta[0, 2].add_(theta[0, 0] / width - theta[0, 0] / 299)
        theta[1, 2].add_(theta[1, 1] / height - theta[1, 1] / 299)
        theta = theta.to(x.dtype).unsqueeze(0).repeat([batch_size, 1, 1])
        grid = F.affine_grid(theta, [batch_size, channels, 299, 299], False)
        x = F.grid_sample(x, grid, "bilinear", "border", False)
        x = (x - 128) / 128
        features = self.layers(x).reshape([-1, 2048]).to(torch.float32)
        if return_features:
            return features
        if no_output_bias:
            logits = F.linear(features, self.output.weight)
        else:
            logits = self.output(features)
        return F.softmax(logits, 1)


def units(model: nn.Module) -> list[TFConv]:
    return [m for m in model.modules() if isinstance(m, TFConv)]


@torch.no_grad()
def calibrate_(model: PublishedInception, seed: int = 1) -> PublishedInception:
    """Set each unit's mean/var from its conv output on a seeded smooth batch, in network order."""
    g = torch.Generator().manual_seed(seed)
    batch = F.interpolate(torch.rand(3, 3, 10, 10, generator=g) * 2 - 1, size=(299, 299), mode="bilinear",
                          align_corners=False)

    def set_stats(unit: TFConv, inputs: tuple[torch.Tensor]) -> None:
        y = F.conv2d(inputs[0], unit.weight, None, unit.stride, unit.padding)
        unit.mean.copy_(y.mean((0, 2, 3)))
        unit.var.copy_(y.var((0, 2, 3)))

    hooks = [u.register_forward_pre_hook(set_stats) for u in units(model)]
    try:
        model.layers(batch)
    finally:
        for h in hooks:
            h.remove()
    return model


@functools.cache
def published_model(seed: int = 0) -> PublishedInception:
    return calibrate_(PublishedInception(seed)).eval()


def save_published(folder: Path, model: nn.Module | None = None) -> Path:
    """Script `model` (default: the seeded published look-alike) and save it as `folder/inception-2015-12-05.pt`."""
    folder.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scripted = torch.jit.script(model if model is not None else published_model())
    path = folder / FILENAME
    torch.jit.save(scripted, str(path))
    return path
