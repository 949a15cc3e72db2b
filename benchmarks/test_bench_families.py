"""Training step and generation, per family, at 64, 128 and 256 px, fp32 and bf16, in one run (`make bench`;
figures in docs/benchmarks.md). Widths are the ones the 60-minute CPU comparison in docs/results.md trained:
DCGAN's defaults, StyleGAN at capacity 0.25 with 2 mapping layers, FastGAN at capacity 0.25. The train batch
is 8 for every family (FastGAN's on a GPU; a CPU trains it at 32, about as costly per image), so the
per-image costs compare directly; generation uses 16.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from ganplug.data.dataset import ImageDataset
from ganplug.device import make_runtime
from ganplug.models import build_models, config_from_dict, fastgan
from ganplug.train.batches import BatchSource
from ganplug.train.config import TrainConfig
from ganplug.train.steps import build_step
from ganplug.train.trainer import make_adam

TRAIN_BATCH, GEN_BATCH = 8, 16
MODEL = {"dcgan": {}, "stylegan": {"capacity": 0.25, "mapping_layers": 2},
         "fastgan": fastgan.model_defaults(TrainConfig(data="", out="", device="cpu"))}  # a CPU run's defaults
CASES = [(arch, size, precision) for arch in MODEL for size in (64, 128, 256) for precision in ("fp32", "bf16")]


def _models(arch: str, size: int, rt):
    torch.manual_seed(0)
    G, D, _ = build_models(arch, config_from_dict(arch, {"size": size, "channels": 3, **MODEL[arch]}))
    rt.prepare_module(G), rt.prepare_module(D)
    return G, D


def _skip_without_bf16(precision: str) -> None:
    if precision == "bf16" and make_runtime("cpu", "auto").precision != "bf16":
        pytest.skip("this CPU has no native bf16 (precision auto picks fp32 here)")


def _record(benchmark, batch: int) -> None:
    if benchmark.stats is not None:  # None with --benchmark-disable (a plain test run)
        benchmark.extra_info.update(images_per_second=batch / benchmark.stats.stats.median, batch=batch)


def _bench_train(benchmark, arch: str, size: int, precision: str, batch: int, rounds: int) -> None:
    _skip_without_bf16(precision)
    rt = make_runtime("cpu", precision, True)
    cfg = TrainConfig.for_family(arch, data="", out="", size=size, batch=batch, precision=precision)
    G, D = _models(arch, size, rt)
    opt_G = make_adam(G.parameters(), lr=cfg.lr_g, betas=(cfg.beta1, cfg.beta2))
    opt_D = make_adam(D.parameters(), lr=cfg.lr_d, betas=(cfg.beta1, cfg.beta2))
    step = build_step(arch, G, D, opt_G, opt_D, cfg, rt)
    images = np.random.default_rng(0).integers(0, 256, (max(64, batch), size, size, 3), dtype=np.uint8)
    batches = BatchSource(ImageDataset(images=images, meta={}), batch, seed=0, mirror=True, runtime=rt)
    counter = itertools.count()

    def one():
        k = next(counter)
        step(lambda: batches.get(k), k)

    benchmark.pedantic(one, rounds=rounds, warmup_rounds=1)
    _record(benchmark, batch)


@pytest.mark.parametrize("arch,size,precision", CASES)
def test_train_step(benchmark, arch, size, precision):
    _bench_train(benchmark, arch, size, precision, TRAIN_BATCH, rounds=3 if size == 256 else 5)


@pytest.mark.parametrize("batch", (8, 16, 32))
def test_fastgan_train_step_by_batch(benchmark, batch):
    """Cost per image of FastGAN's CPU step at its batch sizes (the CPU default is 32: fastgan.CPU_BATCH)."""
    _bench_train(benchmark, "fastgan", 64, "auto", batch, rounds=5)


@pytest.mark.parametrize("arch,size,precision", CASES)
def test_generate(benchmark, arch, size, precision):
    _skip_without_bf16(precision)
    rt = make_runtime("cpu", precision, True)
    G, _ = _models(arch, size, rt)
    G.eval().requires_grad_(False)
    z = torch.randn(GEN_BATCH, G.spec.z_dim)

    def one():
        with torch.inference_mode(), rt.autocast():
            G(z)

    benchmark.pedantic(one, rounds=5, warmup_rounds=1)
    _record(benchmark, GEN_BATCH)
