"""LPIPS with VGG16 (Zhang et al. 2018, v0.1): the perceptual distance PPL is defined with.

Backbone: torchvision's VGG16 conv layers (`vgg16-397923af.pth`, only `features.*` is read), tapped
after relu1_2, relu2_2, relu3_3, relu4_3 and relu5_3. Calibration: the five 1x1 linear layers of LPIPS
v0.1 (`vgg.pth`, as shipped in the `lpips` package). Inputs are images in [0, 255]; they are mapped to
[-1, 1] and shifted/scaled by LPIPS's constants, each tapped feature map is unit-normalised over
channels, squared differences are weighted by the linear layer, averaged over space and summed.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from ganplug.eval.features.weights import FoundWeights, WeightsError

VGG16_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
TAPS = (3, 8, 15, 22, 29)  # indices of relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 in vgg16.features
CHANNELS = (64, 128, 256, 512, 512)
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)


def vgg16_features() -> nn.Sequential:
    layers: list[nn.Module] = []
    cin = 3
    for v in VGG16_CFG:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(cin, v, 3, padding=1), nn.ReLU(inplace=False)]
            cin = v
    return nn.Sequential(*layers[: TAPS[-1] + 1])


def _load_state(path) -> dict:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is the same user problem
        raise WeightsError(f"{path} could not be read as a PyTorch state dict ({e}); download it again.") from None


class LPIPSVGG(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = vgg16_features()
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in CHANNELS)
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1))

    @classmethod
    def from_files(cls, vgg: FoundWeights, lin: FoundWeights) -> LPIPSVGG:
        model = cls()
        vgg_state = {k[len("features."):]: v for k, v in _load_state(vgg.path).items() if k.startswith("features.")}
        try:
            model.features.load_state_dict(vgg_state, strict=True)
        except RuntimeError as e:
            raise WeightsError(f"{vgg.path} does not hold torchvision VGG16 conv weights ({e}).") from None
        lin_state = _load_state(lin.path)
        for i, conv in enumerate(model.lins):
            key = f"lin{i}.model.1.weight"
            if key not in lin_state or lin_state[key].shape != conv.weight.shape:
                raise WeightsError(f"{lin.path} is not LPIPS v0.1 VGG calibration ({key} missing or misshapen).")
            conv.weight.data.copy_(lin_state[key])
        return model.eval().requires_grad_(False)

    def taps(self, img: torch.Tensor) -> list[torch.Tensor]:
        x = (img / 127.5 - 1.0 - self.shift) / self.scale
        out = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in TAPS:
                out.append(x / (x.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10))
        return out

    def forward(self, img0: torch.Tensor, img1: torch.Tensor) -> torch.Tensor:
        """LPIPS distance per pair of NCHW RGB images in [0, 255] -> [N]."""
        t0, t1 = self.taps(img0.float()), self.taps(img1.float())
        return sum(lin((a - b) ** 2).mean(dim=(2, 3)).squeeze(1) for lin, a, b in zip(self.lins, t0, t1, strict=True))
