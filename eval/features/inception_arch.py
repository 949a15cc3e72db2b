"""Inception-v3 as in the TensorFlow 2015-12-05 graph that FID, KID and IS are defined on.

This is the architecture of `inception-2015-12-05.pt` (the TorchScript file StyleGAN2-ADA and clean-fid
load), written out with the same module names so that its state dict loads here unchanged. ganplug
uses it for two things: an eager twin of the scripted file (so autocast and channels_last apply to
every layer), and seeded stand-in files for tests and benchmarks on machines without the real
weights. FID-specific details of the TF graph: average pools exclude padding, the last block max-pools
its pool branch, batch norm has eps 1e-3 and no scale (gamma), and the classifier has 1008 outputs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

POOL_DIM = 2048
NUM_LOGITS = 1008
INPUT_SIZE = 299


def _bn_without_scale(channels: int) -> nn.BatchNorm2d:
    """TF batch norm with beta only: the weight slot is None (F.batch_norm treats it as 1)."""
    bn = nn.BatchNorm2d(channels, eps=1e-3)
    del bn.weight
    bn.register_parameter("weight", None)
    return bn


class ConvBN(nn.Module):
    def __init__(self, cin: int, cout: int, kernel, stride=1, padding=0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=False)
        self.bn = _bn_without_scale(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _seq(**named: nn.Module) -> nn.Sequential:
    s = nn.Sequential()
    for name, m in named.items():
        s.add_module(name, m)
    return s


def _avg3() -> nn.AvgPool2d:
    return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)


class BlockA(nn.Module):  # 35x35
    def __init__(self, cin: int, pool_features: int) -> None:
        super().__init__()
        self.conv = ConvBN(cin, 64, 1)
        self.tower = _seq(conv=ConvBN(cin, 48, 1), conv_1=ConvBN(48, 64, 5, padding=2))
        self.tower_1 = _seq(conv=ConvBN(cin, 64, 1), conv_1=ConvBN(64, 96, 3, padding=1),
                            conv_2=ConvBN(96, 96, 3, padding=1))
        self.tower_2 = _seq(pool=_avg3(), conv=ConvBN(cin, pool_features, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.conv(x), self.tower(x), self.tower_1(x), self.tower_2(x)], 1)


class BlockB(nn.Module):  # 35 -> 17
    def __init__(self, cin: int) -> None:
        super().__init__()
        self.conv = ConvBN(cin, 384, 3, stride=2)
        self.tower = _seq(conv=ConvBN(cin, 64, 1), conv_1=ConvBN(64, 96, 3, padding=1),
                          conv_2=ConvBN(96, 96, 3, stride=2))
        self.pool = nn.MaxPool2d(3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.conv(x), self.tower(x), self.pool(x)], 1)


class BlockC(nn.Module):  # 17x17, factorised 7x7
    def __init__(self, cin: int, c7: int) -> None:
        super().__init__()
        self.conv = ConvBN(cin, 192, 1)
        self.tower = _seq(conv=ConvBN(cin, c7, 1), conv_1=ConvBN(c7, c7, (1, 7), padding=(0, 3)),
                          conv_2=ConvBN(c7, 192, (7, 1), padding=(3, 0)))
        self.tower_1 = _seq(conv=ConvBN(cin, c7, 1), conv_1=ConvBN(c7, c7, (7, 1), padding=(3, 0)),
                            conv_2=ConvBN(c7, c7, (1, 7), padding=(0, 3)),
                            conv_3=ConvBN(c7, c7, (7, 1), padding=(3, 0)),
                            conv_4=ConvBN(c7, 192, (1, 7), padding=(0, 3)))
        self.tower_2 = _seq(pool=_avg3(), conv=ConvBN(cin, 192, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.conv(x), self.tower(x), self.tower_1(x), self.tower_2(x)], 1)


class BlockD(nn.Module):  # 17 -> 8
    def __init__(self, cin: int) -> None:
        super().__init__()
        self.tower = _seq(conv=ConvBN(cin, 192, 1), conv_1=ConvBN(192, 320, 3, stride=2))
        self.tower_1 = _seq(conv=ConvBN(cin, 192, 1), conv_1=ConvBN(192, 192, (1, 7), padding=(0, 3)),
                            conv_2=ConvBN(192, 192, (7, 1), padding=(3, 0)),
                            conv_3=ConvBN(192, 192, 3, stride=2))
        self.pool = nn.MaxPool2d(3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.tower(x), self.tower_1(x), self.pool(x)], 1)


class BlockE(nn.Module):  # 8x8, expanded filter bank; the last one max-pools (TF graph quirk)
    def __init__(self, cin: int, use_max_pool: bool) -> None:
        super().__init__()
        self.conv = ConvBN(cin, 320, 1)
        self.tower_conv = ConvBN(cin, 384, 1)
        self.tower_mixed_conv = ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.tower_mixed_conv_1 = ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.tower_1_conv = ConvBN(cin, 448, 1)
        self.tower_1_conv_1 = ConvBN(448, 384, 3, padding=1)
        self.tower_1_mixed_conv = ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.tower_1_mixed_conv_1 = ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.tower_2_pool = nn.MaxPool2d(3, stride=1, padding=1) if use_max_pool else _avg3()
        self.tower_2_conv = ConvBN(cin, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.tower_conv(x)
        b = self.tower_1_conv_1(self.tower_1_conv(x))
        return torch.cat([
            self.conv(x),
            self.tower_mixed_conv(a), self.tower_mixed_conv_1(a),
            self.tower_1_mixed_conv(b), self.tower_1_mixed_conv_1(b),
            self.tower_2_conv(self.tower_2_pool(x)),
        ], 1)


def build_layers() -> nn.Sequential:
    """The trunk: 299x299 normalised input -> [N, 2048, 1, 1] pool3 features."""
    return _seq(
        conv=ConvBN(3, 32, 3, stride=2), conv_1=ConvBN(32, 32, 3), conv_2=ConvBN(32, 64, 3, padding=1),
        pool0=nn.MaxPool2d(3, stride=2),
        conv_3=ConvBN(64, 80, 1), conv_4=ConvBN(80, 192, 3),
        pool1=nn.MaxPool2d(3, stride=2),
        mixed=BlockA(192, 32), mixed_1=BlockA(256, 64), mixed_2=BlockA(288, 64),
        mixed_3=BlockB(288),
        mixed_4=BlockC(768, 128), mixed_5=BlockC(768, 160), mixed_6=BlockC(768, 160), mixed_7=BlockC(768, 192),
        mixed_8=BlockD(768),
        mixed_9=BlockE(1280, use_max_pool=False), mixed_10=BlockE(2048, use_max_pool=True),
        pool2=nn.AvgPool2d(8, stride=8),
    )


class InceptionFID(nn.Module):
    """Same interface as the scripted file: `layers` (the trunk), `output` (the 1008-way classifier), and
    forward(img in [0, 255] of any size, return_features) with the TF-style bilinear resize inside."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = build_layers()
        self.output = nn.Linear(POOL_DIM, NUM_LOGITS)

    def forward(self, img: torch.Tensor, return_features: bool = False, use_fp16: bool = False,
                no_output_bias: bool = False) -> torch.Tensor:
        x = tf_resize_299(img.to(torch.float16 if use_fp16 else torch.float32))
        # The published file scales by (x - 128) / 128, not (x - 127.5) / 127.5: its forward's `.code` ends the
        # resize with `x0.sub_(128)` / `x1.div_(128)`, as quoted by re-implementations checked against it
        # (github.com/miemie2013/ppgan ppgan/metrics/inception_paddle.py, converted with
        # convert_weights/inception_convert_weights.py, which compares features with the file), and clean-fid
        # applies the same (x - 128) / 128 before calling the file's trunk itself (GaParmar/clean-fid,
        # cleanfid/inception_torchscript.py, InceptionV3W.forward with resize_inside=False).
        x = (x - 128.0) / 128.0
        features = self.layers(x).reshape(-1, 2048)  # POOL_DIM (literal for TorchScript)
        if return_features:
            return features
        features = features.float()
        if no_output_bias:
            logits = F.linear(features, self.output.weight)
        else:
            logits = self.output(features)
        return F.softmax(logits, dim=1)


def tf_resize_299(x: torch.Tensor) -> torch.Tensor:
    """TF1 `resize_bilinear` (align_corners=False, no half-pixel centres) to 299, via an affine grid.

    Source coordinate of output pixel j is j * in/out; the grid below reproduces that with a shift of
    (1/in - 1/out) in normalised coordinates, sampling with border padding as the scripted file does.
    """
    n, c, h, w = x.shape
    theta = torch.zeros(n, 2, 3, dtype=x.dtype, device=x.device)
    theta[:, 0, 0] = 1.0
    theta[:, 1, 1] = 1.0
    theta[:, 0, 2] = 1.0 / w - 1.0 / 299
    theta[:, 1, 2] = 1.0 / h - 1.0 / 299
    grid = F.affine_grid(theta, [n, c, 299, 299], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def init_seeded_(model: InceptionFID, seed: int, calibration: torch.Tensor | None = None) -> InceptionFID:
    """Seeded random weights whose pool features still depend on the image.

    A deep random ReLU net maps every input to nearly the same direction, which would make FID ~0 and
    agreement tests meaningless. So convolutions get He init and batch-norm statistics are then set from
    a calibration batch (seeded smooth noise unless given, values in [-1, 1]), as data-dependent init does.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                fan_in = m.in_channels * m.kernel_size[0] * m.kernel_size[1]
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * (2.0 / fan_in) ** 0.5)
            elif isinstance(m, nn.BatchNorm2d):
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)
                m.momentum = None  # cumulative average: running stats = calibration statistics
                m.reset_running_stats()
            elif isinstance(m, nn.Linear):
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * 2.0 / m.in_features**0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen))
        if calibration is None:
            coarse = torch.rand(6, 3, 12, 12, generator=gen) * 2 - 1
            calibration = F.interpolate(coarse, size=(INPUT_SIZE, INPUT_SIZE), mode="bicubic", align_corners=False)
            calibration = calibration + 0.1 * torch.randn(calibration.shape, generator=gen)
        model.train()
        model.layers(calibration.clamp(-1, 1))
        model.eval()
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.momentum = 0.1
    return model
