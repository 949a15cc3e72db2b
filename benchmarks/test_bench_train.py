"""DCGAN training-step and generation benchmarks (run with `make bench`; numbers in docs/benchmarks.md).

Side by side in one run: ganplug's default step (bf16 autocast + channels_last where the CPU has native
bf16, data from the in-RAM prepared array), the same step in plain fp32, and the canonical PyTorch DCGAN
example's loop (same architecture, sigmoid + BCELoss, images decoded from PNG files every step by a
DataLoader, no channels_last).
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from ganplug.data.dataset import ImageDataset
from ganplug.device import make_runtime
from ganplug.models import build_models, config_from_dict
from ganplug.sampling import generate_all
from ganplug.train.batches import BatchSource
from ganplug.train.config import TrainConfig
from ganplug.train.loop import make_adam
from ganplug.train.steps import ClassicStep

REPO = Path(__file__).resolve().parents[1]
TWEMOJI = REPO.parent / "shared" / "datasets" / "twemoji-128"
BATCH, SIZE = 64, 64


@pytest.fixture(scope="module")
def png_folder(tmp_path_factory) -> Path:
    """PNG files as an artist would have them: the twemoji set if present, else synthetic 128 px images."""
    if TWEMOJI.is_dir():
        return TWEMOJI
    folder = tmp_path_factory.mktemp("pngs")
    rng = np.random.default_rng(0)
    for i in range(512):
        Image.fromarray(rng.integers(0, 256, (128, 128, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return folder


@pytest.fixture(scope="module")
def prepared(png_folder) -> ImageDataset:
    files = sorted(png_folder.glob("*.png"))[:1024]
    arr = np.stack([np.asarray(Image.open(f).convert("RGB").resize((SIZE, SIZE), Image.BOX)) for f in files])
    return ImageDataset(images=arr, meta={})


def _ganplug_step(dataset: ImageDataset, precision: str, channels_last: bool):
    rt = make_runtime("cpu", precision, channels_last)
    cfg = TrainConfig(data="", out="", size=SIZE, batch=BATCH, precision=precision, channels_last=channels_last)
    torch.manual_seed(0)
    G, D, _ = build_models("dcgan", config_from_dict("dcgan", {"size": SIZE}))
    rt.prepare_module(G), rt.prepare_module(D)
    opt_G = make_adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_D = make_adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    step = ClassicStep(G, D, opt_G, opt_D, cfg, rt)
    batches = BatchSource(dataset, BATCH, seed=0, mirror=True, runtime=rt)
    counter = itertools.count()
    data_time = [0.0]

    def one():
        k = next(counter)

        def next_real():
            t = time.perf_counter()
            x = batches.get(k)
            data_time[0] += time.perf_counter() - t
            return x

        step(next_real, k)

    return one, data_time


def test_step_ganplug_default(benchmark, prepared):
    """The default: precision auto (bf16 on CPUs with native bf16) + channels_last."""
    one, data_time = _ganplug_step(prepared, "auto", True)
    benchmark.extra_info["precision"] = make_runtime("cpu", "auto").precision
    benchmark.pedantic(one, rounds=8, warmup_rounds=2)
    benchmark.extra_info["data_fraction"] = data_time[0] / (benchmark.stats.stats.total + 1e-9)


def test_step_ganplug_fp32(benchmark, prepared):
    one, data_time = _ganplug_step(prepared, "fp32", False)
    benchmark.pedantic(one, rounds=8, warmup_rounds=2)
    benchmark.extra_info["data_fraction"] = data_time[0] / (benchmark.stats.stats.total + 1e-9)


class PngFolder(torch.utils.data.Dataset):
    """What torchvision's ImageFolder + Resize/CenterCrop/ToTensor/Normalize does, per image, per step."""

    def __init__(self, folder: Path):
        self.files = sorted(folder.glob("*.png"))

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i):
        im = Image.open(self.files[i]).convert("RGB").resize((SIZE, SIZE), Image.BILINEAR)
        x = torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1).float() / 255
        return (x - 0.5) / 0.5, 0


def _canonical_models():
    """The example's networks: ganplug's 64 px DCGAN is layer-for-layer the same (tests/models/test_dcgan.py);
    the example's D ends in a sigmoid and trains with BCELoss."""
    torch.manual_seed(0)
    G, D, _ = build_models("dcgan", config_from_dict("dcgan", {"size": SIZE}))
    return G, nn.Sequential(D.blocks, D.head, nn.Flatten(), nn.Sigmoid())


def test_step_canonical_pytorch_example(benchmark, png_folder):
    """The canonical example's loop: fp32, contiguous NCHW, PNG decoding every step by 2 loader workers."""
    netG, netD = _canonical_models()
    criterion = nn.BCELoss()
    optD = torch.optim.Adam(netD.parameters(), lr=2e-4, betas=(0.5, 0.999))
    optG = torch.optim.Adam(netG.parameters(), lr=2e-4, betas=(0.5, 0.999))
    loader = torch.utils.data.DataLoader(PngFolder(png_folder), batch_size=BATCH, shuffle=True, num_workers=2,
                                         drop_last=True, persistent_workers=True)

    def forever():
        while True:
            yield from loader

    batches = forever()

    def one():
        real, _ = next(batches)
        netD.zero_grad()
        label = torch.full((BATCH,), 1.0)
        err_real = criterion(netD(real).view(-1), label)
        err_real.backward()
        fake = netG(torch.randn(BATCH, 100, 1, 1))
        label.fill_(0.0)
        err_fake = criterion(netD(fake.detach()).view(-1), label)
        err_fake.backward()
        optD.step()
        netG.zero_grad()
        label.fill_(1.0)
        criterion(netD(fake).view(-1), label).backward()
        optG.step()

    benchmark.pedantic(one, rounds=8, warmup_rounds=2)


@pytest.mark.parametrize("precision", ["fp32", "auto"])
def test_generate_256_images(benchmark, precision):
    rt = make_runtime("cpu", precision, True)
    G, _, _ = build_models("dcgan", config_from_dict("dcgan", {"size": SIZE}))
    rt.prepare_module(G.eval())
    benchmark.extra_info["precision"] = rt.precision
    benchmark.pedantic(lambda: generate_all(G, range(256), batch_size=64, runtime=rt), rounds=3, warmup_rounds=1)
