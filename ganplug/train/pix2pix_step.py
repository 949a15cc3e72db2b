"""pix2pix training step: conditional adversarial loss on (input, output) pairs plus lambda * L1.

D sees cat([A, B]) for real pairs and cat([A, G(A)]) for fake ones and scores every patch; its loss is
halved, as in the paper, to slow D relative to G. G minimises the adversarial loss on its pairs plus
`l1_weight` times the mean absolute difference to the target B (lambda = 100 in the paper): L1 holds
the low frequencies, the PatchGAN the texture.

Shared options work as for every family: --loss picks the adversarial loss (with wgan-gp, the gradient
penalty is taken at interpolates of real and fake *pairs*, A included, and added unhalved), and --aug
augments D's pairs: geometric ops move A and B together, colour ops touch only B
(ganplug.train.augment.augment_pair); ADA reads the mean sign of D's patch logits on real pairs.

The loop hands the step `cat([A, B], dim=1)`: one tensor, so batches, flips and the rest of the loop
stay as they are for every family. With `jitter` (on by default, as in the paper) each pair is resized
up by 286/256 and cropped back to its size at a random offset; the crop is taken of that one tensor, so
A and B move together exactly as the loop's mirror flips do. The offsets are drawn from (seed, step,
D update), never from the global RNG, so a resumed run sees the crops an uninterrupted one sees.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ganplug.device import Runtime
from ganplug.train import losses
from ganplug.train.augment import AdaController, DiscriminatorAugment
from ganplug.train.config import TrainConfig
from ganplug.train.frozen import frozen
from ganplug.train.steps import adversarial_stats, gradient_penalty


def split_pair(x: Tensor, in_channels: int) -> tuple[Tensor, Tensor]:
    """cat([A, B], dim=1) -> (A, B)."""
    return x[:, :in_channels], x[:, in_channels:]


JITTER_SCALE = 286 / 256  # the paper: 256 px pairs resized to 286, then a random 256 crop


def jitter_size(size: int) -> int:
    """The side a pair is resized to before the crop: 286 at 256 px, 36 at 32 px."""
    return round(size * JITTER_SCALE)


def random_jitter(x: Tensor, generator: torch.Generator) -> Tensor:
    """Resize [N, C, H, W] up by 286/256 (bilinear: no overshoot past [-1, 1]) and crop back to H x W at one
    random offset per image, all C channels alike: A and B of a pair stay aligned."""
    n, _, h, w = x.shape
    big = F.interpolate(x, size=(jitter_size(h), jitter_size(w)), mode="bilinear", align_corners=False)
    tops = torch.randint(0, big.shape[2] - h + 1, (n,), generator=generator).tolist()
    lefts = torch.randint(0, big.shape[3] - w + 1, (n,), generator=generator).tolist()
    out = torch.stack([big[i, :, t : t + h, le : le + w] for i, (t, le) in enumerate(zip(tops, lefts, strict=True))])
    channels_last = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    return out.contiguous(memory_format=torch.channels_last) if channels_last else out  # the layout it came in


def jitter_generator(seed: int, step: int, update: int) -> torch.Generator:
    """The crop offsets of D update `update` of `step`: a pure function of the run's seed, for exact resume."""
    return torch.Generator().manual_seed((seed * 1_000_003 + step) * 17 + update)


class Pix2PixStep:
    def __init__(self, G: nn.Module, D: nn.Module, opt_G: torch.optim.Optimizer, opt_D: torch.optim.Optimizer,
                 cfg: TrainConfig, runtime: Runtime):
        self.G, self.D, self.opt_G, self.opt_D = G, D, opt_G, opt_D
        self.cfg, self.rt = cfg, runtime
        self.in_channels = G.spec.in_channels
        self.augment = DiscriminatorAugment(cfg, split=self.in_channels)

    @property
    def ada(self) -> AdaController | None:
        return self.augment.ada

    def _d(self, pair: Tensor) -> Tensor:
        """Patch logits of D on an augmented pair, [N, h, w]."""
        return self.D(self.augment(pair, self.cfg))

    def _real(self, x: Tensor, step: int, update: int) -> Tensor:
        """The real pair batch, jittered when the run asks for it."""
        if not self.cfg.jitter:
            return x
        return random_jitter(x, jitter_generator(self.cfg.seed, step, update))

    def __call__(self, next_real: Callable[[], Tensor], step: int) -> dict[str, float]:
        cfg, rt, G = self.cfg, self.rt, self.G
        stats: dict[str, float] = {}
        for update in range(cfg.d_steps):
            a, b = split_pair(self._real(next_real(), step, update), self.in_channels)
            with rt.autocast():
                fake = G(a)
                real_pair, fake_pair = torch.cat([a, b], dim=1), torch.cat([a, fake.detach()], dim=1)
                real_patches = self._d(real_pair)
                fake_logits = self._d(fake_pair).flatten()
            real_logits = real_patches.flatten()
            loss_d = 0.5 * losses.d_loss(cfg.loss, real_logits, fake_logits, smoothing=cfg.label_smoothing,
                                         noise=cfg.label_noise)
            gp = gradient_penalty(cfg, self._d, real_pair, fake_pair, rt, stats)
            if gp is not None:  # not halved: it constrains D's gradients, it is no term of the game
                loss_d = loss_d + gp
            self.opt_D.zero_grad(set_to_none=True)
            loss_d.backward()
            self.opt_D.step()
            self.augment.observe(real_patches)
        with frozen(self.D):
            with rt.autocast():
                fake_logits_g = self._d(torch.cat([a, fake], dim=1)).flatten()
            loss_adv = losses.g_loss(cfg.loss, fake_logits_g)
            loss_l1 = (fake.float() - b.float()).abs().mean()
            loss_g = loss_adv + cfg.l1_weight * loss_l1
            self.opt_G.zero_grad(set_to_none=True)
            loss_g.backward()
        self.opt_G.step()
        stats.update(adversarial_stats(loss_g, loss_d, real_logits, fake_logits))
        stats.update({"loss/G_adv": loss_adv.item(), "loss/L1": loss_l1.item()})
        if cfg.aug != "none":
            stats["aug/p"] = self.augment.p(cfg)
        return stats

    def state_dict(self) -> dict[str, Any]:
        return self.augment.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.augment.load_state_dict(state)
