"""One training iteration per model family, behind one small protocol.

A step object owns what one G+D update needs (the models, optimisers, loss and any state such as an
ADA probability); the loop owns data, EMA, logging and checkpoints. A family names its step builder
in its `Family.step` (ganplug.models.registry); None means `ClassicStep`. `state_dict()` returns plain
JSON numbers saved with each checkpoint. A step reads `self.cfg` at every call: the loop may hand it a
new config mid-run (a collapse remedy).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from ganplug.device import Runtime
from ganplug.train import losses
from ganplug.train.augment import AdaController, DiscriminatorAugment
from ganplug.train.config import TrainConfig
from ganplug.train.frozen import frozen
from ganplug.train.penalties import wgan_gp_penalty


class TrainStep(Protocol):
    def __call__(self, next_real: Callable[[], Tensor], step: int) -> dict[str, float]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def gradient_penalty(cfg: TrainConfig, D: Callable[[Tensor], Tensor], real: Tensor, fake: Tensor, rt: Runtime,
                     stats: dict[str, float]) -> Tensor | None:
    """--gp-weight times WGAN-GP's penalty at interpolates of `real` and `fake` (D's inputs before
    augmentation; `D` applies it) when --loss is wgan-gp, else None. Logged as loss/grad_penalty."""
    if cfg.loss != "wgan-gp":
        return None
    with rt.autocast():
        gp = wgan_gp_penalty(D, real, fake)
    stats["loss/grad_penalty"] = gp.item()
    return cfg.gp_weight * gp


def d_adversarial(cfg: TrainConfig, D: Callable[[Tensor], Tensor], real_logits: Tensor, fake_logits: Tensor,
                  real: Tensor, fake: Tensor, rt: Runtime, stats: dict[str, float]) -> Tensor:
    """D's loss for --loss, with --label-smoothing/--label-noise, plus the gradient penalty of wgan-gp."""
    loss = losses.d_loss(cfg.loss, real_logits, fake_logits, smoothing=cfg.label_smoothing, noise=cfg.label_noise)
    gp = gradient_penalty(cfg, D, real, fake, rt, stats)
    return loss if gp is None else loss + gp


def adversarial_stats(loss_g: Tensor, loss_d: Tensor, real_logits: Tensor, fake_logits: Tensor) -> dict[str, float]:
    """What every family logs each step under the same names: the progress line, metrics.jsonl and the
    collapse watch read them alike whichever family trained."""
    return {
        "loss/G": loss_g.item(),
        "loss/D": loss_d.item(),
        "scores/real": real_logits.float().mean().item(),
        "scores/fake": fake_logits.float().mean().item(),
    }


class ClassicStep:
    """DCGAN-style update: `d_steps` D updates, then one G update on the last fake batch.

    The fake batch of the last D update is reused (detached for D, attached for G), as in the canonical
    DCGAN example: one generator forward per iteration. With --aug, D sees every real and generated
    image through the same differentiable augmentation (ganplug.train.augment).
    """

    def __init__(self, G: nn.Module, D: nn.Module, opt_G: torch.optim.Optimizer, opt_D: torch.optim.Optimizer,
                 cfg: TrainConfig, runtime: Runtime):
        self.G, self.D, self.opt_G, self.opt_D = G, D, opt_G, opt_D
        self.cfg, self.rt = cfg, runtime
        self.augment = DiscriminatorAugment(cfg)

    @property
    def ada(self) -> AdaController | None:
        return self.augment.ada

    def _z(self, n: int) -> Tensor:
        return torch.randn(n, self.G.z_dim, device=self.rt.device)

    def _d(self, x: Tensor) -> Tensor:
        return self.D(self.augment(x, self.cfg))

    def __call__(self, next_real: Callable[[], Tensor], step: int) -> dict[str, float]:
        cfg, rt, G = self.cfg, self.rt, self.G
        stats: dict[str, float] = {}
        for _ in range(cfg.d_steps):
            real = next_real()
            with rt.autocast():
                fake = G(self._z(real.shape[0]))
                real_logits = self._d(real)
                fake_logits = self._d(fake.detach())
            loss_d = d_adversarial(cfg, self._d, real_logits, fake_logits, real, fake, rt, stats)
            self.opt_D.zero_grad(set_to_none=True)
            loss_d.backward()
            self.opt_D.step()
            self.augment.observe(real_logits)
        with frozen(self.D):
            with rt.autocast():
                fake_logits_g = self._d(fake)
            loss_g = losses.g_loss(cfg.loss, fake_logits_g)
            self.opt_G.zero_grad(set_to_none=True)
            loss_g.backward()
        self.opt_G.step()
        stats.update(adversarial_stats(loss_g, loss_d, real_logits, fake_logits))
        if cfg.loss == "nonsat":  # D(x) and D(G(z)) as probabilities, as the DCGAN example prints them
            stats["prob/real"] = torch.sigmoid(real_logits.float()).mean().item()
            stats["prob/fake"] = torch.sigmoid(fake_logits.float()).mean().item()
        if cfg.aug != "none":
            stats["aug/p"] = self.augment.p(cfg)
        return stats

    def state_dict(self) -> dict[str, Any]:
        return self.augment.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.augment.load_state_dict(state)


StepBuilder = Callable[[nn.Module, nn.Module, torch.optim.Optimizer, torch.optim.Optimizer, TrainConfig, Runtime],
                       TrainStep]


def build_step(arch: str, *args) -> TrainStep:
    """The family's training step (its `Family.step`, or ClassicStep) for (G, D, opt_G, opt_D, cfg, runtime)."""
    from ganplug.models import get_family

    builder = get_family(arch).step or ClassicStep
    return builder(*args)
