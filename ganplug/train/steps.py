"""One training iteration per model family, behind one small protocol.

A step object owns what one G+D update needs (the models, optimisers, loss and any state such as an
ADA probability); the loop owns data, EMA, logging and checkpoints. Families register a builder in
`STEP_BUILDERS`; `state_dict()` returns plain JSON numbers saved with each checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from ganplug.device import Runtime
from ganplug.train import losses
from ganplug.train.config import TrainConfig
from ganplug.train.frozen import frozen
from ganplug.train.penalties import wgan_gp_penalty
from ganplug.train.pix2pix_step import Pix2PixStep
from ganplug.train.stylegan_loss import StyleGANStep


class TrainStep(Protocol):
    def __call__(self, next_real: Callable[[], Tensor], step: int) -> dict[str, float]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class ClassicStep:
    """DCGAN-style update: `d_steps` D updates, then one G update on the last fake batch.

    The fake batch of the last D update is reused (detached for D, attached for G), as in the canonical
    DCGAN example: one generator forward per iteration.
    """

    def __init__(self, G: nn.Module, D: nn.Module, opt_G: torch.optim.Optimizer, opt_D: torch.optim.Optimizer,
                 cfg: TrainConfig, runtime: Runtime):
        self.G, self.D, self.opt_G, self.opt_D = G, D, opt_G, opt_D
        self.cfg, self.rt = cfg, runtime

    def _z(self, n: int) -> Tensor:
        return torch.randn(n, self.G.z_dim, device=self.rt.device)

    def __call__(self, next_real: Callable[[], Tensor], step: int) -> dict[str, float]:
        cfg, rt, G, D = self.cfg, self.rt, self.G, self.D
        stats: dict[str, float] = {}
        for _ in range(cfg.d_steps):
            real = next_real()
            with rt.autocast():
                fake = G(self._z(real.shape[0]))
                real_logits = D(real)
                fake_logits = D(fake.detach())
            loss_d = losses.d_loss(cfg.loss, real_logits, fake_logits, smoothing=cfg.label_smoothing,
                                   noise=cfg.label_noise)
            if cfg.loss == "wgan-gp":
                with rt.autocast():
                    gp = wgan_gp_penalty(D, real, fake)
                loss_d = loss_d + cfg.gp_weight * gp
                stats["loss/grad_penalty"] = gp.item()
            self.opt_D.zero_grad(set_to_none=True)
            loss_d.backward()
            self.opt_D.step()
        with frozen(D):
            with rt.autocast():
                fake_logits_g = D(fake)
            loss_g = losses.g_loss(cfg.loss, fake_logits_g)
            self.opt_G.zero_grad(set_to_none=True)
            loss_g.backward()
        self.opt_G.step()
        stats.update({
            "loss/G": loss_g.item(),
            "loss/D": loss_d.item(),
            "scores/real": real_logits.float().mean().item(),
            "scores/fake": fake_logits.float().mean().item(),
        })
        if cfg.loss == "nonsat":  # D(x) and D(G(z)) as probabilities, as the DCGAN example prints them
            stats["prob/real"] = torch.sigmoid(real_logits.float()).mean().item()
            stats["prob/fake"] = torch.sigmoid(fake_logits.float()).mean().item()
        return stats

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


StepBuilder = Callable[[nn.Module, nn.Module, torch.optim.Optimizer, torch.optim.Optimizer, TrainConfig, Runtime],
                       TrainStep]

STEP_BUILDERS: dict[str, StepBuilder] = {"dcgan": ClassicStep, "stylegan": StyleGANStep, "pix2pix": Pix2PixStep}


def build_step(arch: str, *args) -> TrainStep:
    try:
        return STEP_BUILDERS[arch](*args)
    except KeyError:
        raise ValueError(f"no training step registered for architecture {arch!r}") from None
