"""StyleGAN training-step and generation benchmarks on the CPU (run with `make bench`; figures in
docs/benchmarks.md, section "StyleGAN").

Both at 64 and 256 px with the StyleGAN2-ADA paper256 widths (capacity 1.0, channel_max 512, 8 mapping
layers: 24.8 M generator parameters at 256 px), in fp32 and in bf16 autocast + channels_last. A training
step is what `ganplug train --arch stylegan` runs per iteration: one D update (non-saturating loss on
ADA-augmented reals and fakes) and one G update with style mixing. The lazy R1 step (1 iteration in 16)
and path length (off by default) are left out (r1_gamma=0), so this is the common iteration. Generation
is the generator alone under no_grad with constant noise. The small-data case is the capacity-0.25,
2-mapping-layer model at batch 32 that docs/results.md trains on twemoji.
"""

from __future__ import annotations

import pytest
import torch

from ganplug.device import make_runtime
from ganplug.models.stylegan import StyleGANConfig, build
from ganplug.train.config import TrainConfig
from ganplug.train.stylegan_loss import StyleGANStep

CASES = [(64, 8), (256, 2)]  # (size, batch): small CPU batches keep one round under a minute
MODES = {"fp32": ("fp32", False), "bf16+cl": ("bf16", True)}


def _models(size: int, mode: str, **model):
    precision, channels_last = MODES[mode]
    rt = make_runtime("cpu", precision, channels_last)
    torch.manual_seed(0)
    G, D = build(StyleGANConfig(size=size, **model))
    rt.prepare_module(G)
    rt.prepare_module(D)
    return G, D, rt


SMALL_DATA = {"capacity": 0.25, "mapping_layers": 2}  # the twemoji comparison's model (docs/results.md)


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("size,batch,model", [(s, b, {}) for s, b in CASES] + [(64, 32, SMALL_DATA)],
                         ids=["64-paper256", "256-paper256", "64-small-data"])
def test_bench_stylegan_train_step(benchmark, size, batch, model, mode):
    G, D, rt = _models(size, mode, **model)
    cfg = TrainConfig(data="", out="", arch="stylegan", size=size, batch=batch, lr_g=0.0025, lr_d=0.0025,
                      beta1=0.0, beta2=0.99, aug="ada", r1_gamma=0.0, precision=rt.precision,
                      channels_last=rt.channels_last)
    opt_G = torch.optim.Adam(G.parameters(), lr=cfg.lr_g, betas=(0.0, 0.99))
    opt_D = torch.optim.Adam(D.parameters(), lr=cfg.lr_d, betas=(0.0, 0.99))
    step = StyleGANStep(G, D, opt_G, opt_D, cfg, rt)
    real = rt.prepare_images(torch.rand(batch, 3, size, size) * 2 - 1)
    counter = iter(range(10**6))

    def run():
        return step(lambda: real, next(counter))

    stats = benchmark.pedantic(run, rounds=3, warmup_rounds=1, iterations=1)
    assert all(v == v for v in stats.values())  # finite numbers came out
    benchmark.extra_info["images_per_s"] = batch / benchmark.stats.stats.mean
    benchmark.extra_info["batch"] = batch


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("size,batch", CASES)
def test_bench_stylegan_generate(benchmark, size, batch, mode):
    G, _, rt = _models(size, mode)
    G.eval().requires_grad_(False)
    z = torch.randn(batch, G.z_dim)

    def run():
        with torch.no_grad(), rt.autocast():
            return G(z)

    img = benchmark.pedantic(run, rounds=3, warmup_rounds=1, iterations=1)
    assert img.shape == (batch, 3, size, size)
    benchmark.extra_info["images_per_s"] = batch / benchmark.stats.stats.mean
    benchmark.extra_info["batch"] = batch
