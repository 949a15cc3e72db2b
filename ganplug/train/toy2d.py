"""Train the 2D-point MLP GAN (ganplug.models.mlp) on a point sampler with ganplug's own ClassicStep.

The image loop (train/loop.py) reads image datasets and writes checkpoints; the synthetic mode-collapse
benchmarks need neither, only the same G+D iteration, losses, penalties and EMA the image runs use. This
module is that thin driver: real batches come from a callable, and the result is the trained generator
(and its EMA copy) in memory.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from ganplug.device import make_runtime
from ganplug.models import build_models, config_from_dict
from ganplug.train.config import TrainConfig
from ganplug.train.ema import ema_beta, update_ema
from ganplug.train.loop import make_adam
from ganplug.train.steps import ClassicStep


@dataclass
class ToyRun:
    G: torch.nn.Module
    G_ema: torch.nn.Module | None  # None when EMA is off
    history: list[dict[str, float]] = field(default_factory=list)


def toy_config(**overrides) -> TrainConfig:
    """A TrainConfig for a point run: no data folder, no run folder, EMA off unless ema_kimg > 0."""
    values = {"data": "", "out": "", "arch": "mlp", "size": 1, "batch": 256, "lr_g": 1e-4, "lr_d": 1e-4,
              "beta1": 0.5, "beta2": 0.999, "ema_kimg": 0.0, "ema_rampup": 0.0, "device": "cpu", "precision": "fp32",
              "channels_last": False}
    values.update(overrides)
    return TrainConfig(**values)


def train_points(sample_real: Callable[[int, np.random.Generator], np.ndarray], cfg: TrainConfig, *,
                 model: dict | None = None, log_every: int = 0) -> ToyRun:
    """`cfg.steps` ClassicStep iterations on batches from `sample_real(n, rng)` ([n, 2] float arrays)."""
    cfg.validate()
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    rt = make_runtime(cfg.device, cfg.precision, channels_last=False)
    G, D, _ = build_models("mlp", config_from_dict("mlp", {"size": 1, "channels": 2, **(model or {})}))
    G, D = G.to(rt.device), D.to(rt.device)
    G_ema = copy.deepcopy(G).eval().requires_grad_(False) if cfg.ema_kimg > 0 else None
    betas = (cfg.beta1, cfg.beta2)
    step = ClassicStep(G, D, make_adam(G.parameters(), lr=cfg.lr_g, betas=betas),
                       make_adam(D.parameters(), lr=cfg.lr_d, betas=betas), cfg, rt)

    def next_real() -> torch.Tensor:
        x = torch.as_tensor(sample_real(cfg.batch, rng), dtype=torch.float32, device=rt.device)
        return x.view(cfg.batch, 2, 1, 1)

    run = ToyRun(G, G_ema)
    for i in range(cfg.steps):
        stats = step(next_real, i)
        if G_ema is not None:
            update_ema(G_ema, G, ema_beta(cfg.batch, cfg.ema_kimg, (i + 1) * cfg.batch, cfg.ema_rampup))
        if log_every and (i + 1) % log_every == 0:
            run.history.append({"step": i + 1, **stats})
    return run


@torch.no_grad()
def sample_points(G: torch.nn.Module, n: int, seed: int = 0) -> np.ndarray:
    """n generated points [n, 2] from latents drawn with their own seeded generator."""
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(n, G.z_dim, generator=gen).to(next(G.parameters()).device)
    was = G.training
    G.eval()
    out = G(z).reshape(n, -1).double().cpu().numpy()
    G.train(was)
    return out
