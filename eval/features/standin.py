"""Seeded stand-ins for the pretrained files, for tests and benchmarks on machines without internet.

A stand-in has the real architecture and the real file format and interface, so the real loading code
runs on it, but its weights are random: numbers computed with it are NOT comparable to published FID,
KID, IS or PPL values, only to other numbers computed with the same stand-in file.
"""

from __future__ import annotations

import warnings
import zipfile
from pathlib import Path

import torch

from ganplug.eval.features.inception_arch import InceptionFID, init_seeded_
from ganplug.eval.features.weights import STANDIN_MARKER as MARKER  # `weights.is_standin` looks for it


def _mark(path: Path, seed: int) -> None:
    """Label the file as a stand-in inside its own zip archive, so results computed with it say so even when
    it is found later under the real file's name (torch ignores records it does not know)."""
    with zipfile.ZipFile(path, "a") as z:
        top = z.namelist()[0].split("/")[0]
        z.writestr(f"{top}/extra/{MARKER}", f"seeded random stand-in (seed {seed}); not the published weights")


def save_standin_inception(path: str | Path, seed: int = 0) -> Path:
    """Write a TorchScript `inception-2015-12-05.pt` look-alike (same interface) to `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = init_seeded_(InceptionFID(), seed).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.script is deprecated in new torch; the real file is TorchScript
        scripted = torch.jit.script(model)
    torch.jit.save(scripted, str(path))
    _mark(path, seed)
    return path


def standin_vgg16_features_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """torchvision-VGG16-shaped conv weights (`features.N.weight/bias`), He-initialised from `seed`."""
    gen = torch.Generator().manual_seed(seed)
    cfg = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
    sd: dict[str, torch.Tensor] = {}
    cin, idx = 3, 0
    for v in cfg:
        if v == "M":
            idx += 1
            continue
        sd[f"features.{idx}.weight"] = torch.randn(v, cin, 3, 3, generator=gen) * (2.0 / (cin * 9)) ** 0.5
        sd[f"features.{idx}.bias"] = torch.randn(v, generator=gen) * 0.01
        cin, idx = v, idx + 2  # conv, relu
    return sd


def save_standin_vgg16(path: str | Path, seed: int = 0) -> Path:
    """Write a `vgg16-397923af.pth`-format file (a plain state dict; conv layers only) to `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(standin_vgg16_features_state_dict(seed), str(path))
    _mark(path, seed)
    return path
