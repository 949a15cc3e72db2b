"""StyleGAN2 training step: the adversarial loss of --loss (non-saturating logistic by default), lazy R1,
optional path length, style mixing, differentiable augmentation before D (fixed p or ADA), and the
tracked mean of w.

One call = `d_steps` D updates, then one G update, as the loop's `TrainStep` protocol asks. Following
StyleGAN2 (Karras et al. 2020) and StyleGAN2-ADA:
- D: losses.d_loss(--loss) on D(aug(x)) and D(aug(G(z))): for nonsat with plain targets exactly
  softplus(D(aug(G(z)))) + softplus(-D(aug(x))), StyleGAN2's loss; hinge and wgan-gp (with its gradient
  penalty at interpolates, weight --gp-weight) as for every family, and --label-smoothing/--label-noise
  shape the nonsat targets. Every `r1_interval` D updates a separate R1 step
  with weight gamma/2 * r1_interval on the gradient w.r.t. the *un-augmented* reals.
- G: losses.g_loss(--loss) (nonsat: softplus(-D(aug(G(z))))); every `PL_INTERVAL` G updates, if
  pl_weight > 0, a path-length step on half a batch with weight pl_weight * PL_INTERVAL.
- Lazy regularisation changes Adam's effective schedule, so, as in the paper, lr and betas of the
  regularised network are corrected by c = interval / (interval + 1) once, when the step is built.
- Style mixing: with probability `style_mixing` per sample, the styles from a random layer onwards come
  from a second latent. w_avg (for truncation) follows the batch mean of w with beta 0.998.
- ADA: every D update passes D(aug(real)) to the controller; p is used for real and fake alike.

The fake batch of the last D update is kept (with its graph) for the G update, as ClassicStep does,
saving one generator forward per iteration.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from ganplug.device import Runtime
from ganplug.errors import UserError
from ganplug.models.stylegan import mix_styles
from ganplug.train import distributed, losses
from ganplug.train.augment import AdaController, DiscriminatorAugment
from ganplug.train.config import TrainConfig
from ganplug.train.frozen import frozen
from ganplug.train.penalties import path_length_penalty, r1_penalty
from ganplug.train.steps import adversarial_stats, d_adversarial

PL_INTERVAL = 4
PL_BATCH_SHRINK = 2
PL_DECAY = 0.01
W_AVG_BETA = 0.998


def auto_r1_gamma(size: int, batch: int) -> float:
    """StyleGAN2-ADA's `auto` heuristic: gamma = 0.0002 * size^2 / batch."""
    return 0.0002 * size * size / batch


def lazy_correction(opt: torch.optim.Optimizer, interval: int) -> None:
    """Scale lr by c and raise betas to the power c, c = interval / (interval + 1) (StyleGAN2 app. B)."""
    c = interval / (interval + 1)
    for group in opt.param_groups:
        group["lr"] = group["lr"] * c
        b1, b2 = group["betas"]
        group["betas"] = (b1**c, b2**c)


def global_path_length_penalty(images: Tensor, ws: Tensor, pl_mean: Tensor, decay: float) -> tuple[Tensor, Tensor]:
    """`penalties.path_length_penalty` for one rank's shard of a multi-process batch: the running mean moves
    by the *global* batch's mean length (all-reduced), as it does in a one-process run of that batch."""
    h, w = images.shape[2], images.shape[3]
    img = images.float()
    noise = torch.randn_like(img) / (h * w) ** 0.5
    (grad,) = torch.autograd.grad((img * noise).sum(), ws, create_graph=True)
    lengths = grad.float().square().sum(2).mean(1).sqrt()
    mean_len = distributed.mean_tensor(lengths.detach().mean())
    new_mean = pl_mean.detach().float() + decay * (mean_len - pl_mean.detach().float())
    penalty = (lengths - new_mean).square().mean()
    return penalty, new_mean.to(pl_mean.dtype)


class StyleGANStep:
    def __init__(self, G: nn.Module, D: nn.Module, opt_G: torch.optim.Optimizer, opt_D: torch.optim.Optimizer,
                 cfg: TrainConfig, runtime: Runtime):
        self.G, self.D, self.opt_G, self.opt_D = G, D, opt_G, opt_D
        self.cfg, self.rt = cfg, runtime
        self.r1_gamma = cfg.r1_gamma if cfg.r1_gamma is not None else auto_r1_gamma(cfg.size, cfg.batch)
        self.r1_interval = max(1, cfg.r1_interval)
        self.pl_weight = cfg.pl_weight
        self.style_mixing = cfg.style_mixing
        self.augment = DiscriminatorAugment(cfg, controller=AdaController)
        self.pl_mean = torch.zeros([], device=runtime.device)
        w = distributed.world()
        if self.pl_weight > 0 and max(1, cfg.batch // PL_BATCH_SHRINK) % w.size:
            raise UserError(f"--pl-weight on {w.size} processes: the path-length batch (--batch {cfg.batch} / "
                            f"{PL_BATCH_SHRINK}) must split evenly over them; use a --batch that is a multiple of "
                            f"{PL_BATCH_SHRINK * w.size}.")
        if self.r1_gamma > 0 and self.r1_interval > 1:
            lazy_correction(opt_D, self.r1_interval)
        if self.pl_weight > 0:
            lazy_correction(opt_G, PL_INTERVAL)

    # ------------------------------------------------------------------ pieces

    @property
    def ada(self) -> AdaController | None:
        return self.augment.ada

    @property
    def aug_p(self) -> float:
        return self.augment.p(self.cfg)

    def _aug(self, x: Tensor) -> Tensor:
        return self.augment(x, self.cfg)

    def _d(self, x: Tensor) -> Tensor:
        return self.D(self._aug(x))

    def _z(self, n: int) -> Tensor:
        return torch.randn(n, self.G.z_dim, device=self.rt.device)

    def mapped_ws(self, n: int, *, track: bool = False) -> Tensor:
        """ws for n fresh latents, with style mixing regularisation applied per sample."""
        G = self.G
        ws = G.mapping(self._z(n))
        if track:
            if distributed.world().distributed:  # the global batch's mean w, as one row
                G.update_w_avg(distributed.mean_tensor(ws[:, 0].detach().float().mean(0))[None], beta=W_AVG_BETA)
            else:
                G.update_w_avg(ws, beta=W_AVG_BETA)
        if self.style_mixing > 0:
            ws2 = G.mapping(self._z(n))
            cutoff = torch.randint(1, G.num_ws, (n,), device=ws.device)
            mixed = torch.rand(n, device=ws.device) < self.style_mixing
            cutoff = torch.where(mixed, cutoff, torch.full_like(cutoff, G.num_ws))
            ws = mix_styles(ws, ws2, cutoff)
        return ws

    def _d_main(self, real: Tensor, fake: Tensor, stats: dict[str, float]) -> tuple[Tensor, Tensor, Tensor]:
        with self.rt.autocast():
            fake_logits = self.D(self._aug(fake.detach()))
            real_logits = self.D(self._aug(real))
        loss = d_adversarial(self.cfg, self._d, real_logits, fake_logits, real, fake, self.rt, stats)
        self.opt_D.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_D.step()
        self.augment.observe(real_logits)
        return loss, real_logits, fake_logits

    def _d_r1(self, real: Tensor) -> Tensor:
        x = real.detach().requires_grad_(True)
        with self.rt.autocast():
            logits = self.D(self._aug(x))
        penalty = r1_penalty(logits, x)
        loss = penalty * (self.r1_gamma / 2) * self.r1_interval
        self.opt_D.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_D.step()
        return penalty

    def _g_pl(self) -> Tensor:
        w = distributed.world()
        n = max(1, self.cfg.batch // PL_BATCH_SHRINK) // w.size  # this rank's share of the global half batch
        with self.rt.autocast():
            ws = self.mapped_ws(n)
            img = self.G.synthesis(ws)
        if w.distributed:
            penalty, new_mean = global_path_length_penalty(img, ws, self.pl_mean, decay=PL_DECAY)
        else:
            penalty, new_mean = path_length_penalty(img, ws, self.pl_mean, decay=PL_DECAY)
        self.pl_mean.copy_(new_mean)
        loss = penalty * self.pl_weight * PL_INTERVAL
        self.opt_G.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_G.step()
        return penalty

    # ------------------------------------------------------------------ protocol

    def __call__(self, next_real: Callable[[], Tensor], step: int) -> dict[str, float]:
        cfg = self.cfg
        stats: dict[str, float] = {}
        fake = None
        for i in range(cfg.d_steps):
            real = next_real()
            last = i == cfg.d_steps - 1
            with self.rt.autocast(), torch.set_grad_enabled(last):
                fake = self.G.synthesis(self.mapped_ws(real.shape[0], track=True))
            loss_d, real_logits, fake_logits = self._d_main(real, fake, stats)
            d_index = step * cfg.d_steps + i
            if self.r1_gamma > 0 and d_index % self.r1_interval == 0:
                stats["loss/r1"] = self._d_r1(real).item()

        with frozen(self.D):
            with self.rt.autocast():
                gen_logits = self.D(self._aug(fake))
            loss_g = losses.g_loss(cfg.loss, gen_logits)
            self.opt_G.zero_grad(set_to_none=True)
            loss_g.backward()
        self.opt_G.step()
        if self.pl_weight > 0 and step % PL_INTERVAL == 0:
            stats["loss/pl"] = self._g_pl().item()
            stats["pl_mean"] = float(self.pl_mean)

        stats.update(adversarial_stats(loss_g, loss_d, real_logits, fake_logits))
        stats["aug/p"] = self.aug_p
        if self.ada is not None:
            stats["ada/rt"] = self.ada.last_rt
        return stats

    def state_dict(self) -> dict[str, Any]:
        return {"pl_mean": float(self.pl_mean), **self.augment.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.pl_mean.fill_(float(state.get("pl_mean", 0.0)))
        self.augment.load_state_dict(state)
