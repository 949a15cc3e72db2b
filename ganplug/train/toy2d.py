"""Train the 2D-point MLP GAN (ganplug.models.mlp) on a point sampler with ganplug's own ClassicStep.

The image run (train/loop.py) reads image datasets and writes checkpoints; the synthetic mode-collapse
benchmarks need neither, only the same Trainer (G+D iteration, losses, penalties, EMA, non-finite
rollback) the image runs use. Real batches come from a callable, and the result is the trained generator
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
from ganplug.train.steps import ClassicStep
from ganplug.train.trainer import Trainer, make_adam


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
    """`cfg.steps` ClassicStep iterations through the Trainer, on batches from `sample_real(n, rng)`."""
    cfg.validate()
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    rt = make_runtime(cfg.device, cfg.precision, channels_last=False)
    G, D, _ = build_models("mlp", config_from_dict("mlp", {"size": 1, "channels": 2, **(model or {})}))
    G, D = G.to(rt.device), D.to(rt.device)
    G_ema = copy.deepcopy(G).eval().requires_grad_(False) if cfg.ema_kimg > 0 else None
    betas = (cfg.beta1, cfg.beta2)
    opt_G = make_adam(G.parameters(), lr=cfg.lr_g, betas=betas)
    opt_D = make_adam(D.parameters(), lr=cfg.lr_d, betas=betas)
    trainer = Trainer(G=G, D=D, G_ema=G_ema, opt_G=opt_G, opt_D=opt_D, step_fn=ClassicStep(G, D, opt_G, opt_D, cfg, rt),
                      runtime=rt, cfg=cfg)

    def next_real(_k: int) -> torch.Tensor:  # a stream from `rng`, in call order
        x = torch.as_tensor(sample_real(cfg.batch, rng), dtype=torch.float32, device=rt.device)
        return x.view(cfg.batch, 2, 1, 1)

    run = ToyRun(G, G_ema)

    class _Every:
        def on_step(self, trainer: Trainer, step: int, stats: dict[str, float]) -> None:
            if log_every and step % log_every == 0:
                run.history.append({"step": step, **stats})

    trainer.fit(0, next_real, [_Every()])
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
