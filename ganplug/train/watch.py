"""The training watch: the collapse battery on a small fixed-seed batch, plus the discriminator's signals.

Every `every` steps the EMA generator draws the same `samples` latents (fixed seeds, so changes come
from the weights alone); their network-free features are judged against a real reference built once
from the training set (ganplug.eval.collapse). The discriminator's own signals are read from the loss
history since the last check:
- D loss near zero (the discriminator wins outright; generator gradients vanish),
- D(x) and D(G(z)) diverging (mean sigmoid probabilities far apart, or raw scores for hinge/WGAN).
The step is unhealthy when the verdict is not "healthy" or the discriminator dominates. `remedy` lowers
D's learning rate and strengthens D-side regularisation (augmentation probability when the step has one,
otherwise one-sided label smoothing), and says what it did.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ganplug.eval.collapse import DEFAULT_THRESHOLDS, RealReference, Thresholds, assess, build_reference
from ganplug.eval.features.handcrafted import handcrafted_features
from ganplug.sampling import to_uint8, z_from_seeds
from ganplug.train.loop import RemedyContext, WatchResult
from ganplug.train.trainer import Remedy

SEED0 = 7_000_000  # latents of the watch batch; far from the sample-grid seeds 0..n


@dataclass
class WatchSettings:
    every: int = 500
    on_collapse: str = "warn"  # warn | stop | rollback
    samples: int = 128  # generated images per check
    real: int = 512  # training images in the cached reference
    d_loss_floor: float = 0.05  # mean D loss (nonsat/hinge) below this = D wins outright
    prob_gap: float = 0.9  # mean D(x) - D(G(z)) (probabilities) above this = diverging
    lr_factor: float = 0.5  # remedy: D's learning rate times this
    aug_step: float = 0.2  # remedy: augmentation probability plus this
    max_rollbacks: int = 3  # then the watch only warns (rolling back forever would not finish)
    seed: int = 0


def images_to_features(images: torch.Tensor) -> np.ndarray:
    if images.shape[1] == 1:
        images = images.repeat(1, 3, 1, 1)
    return handcrafted_features(images[:, :3])


class CollapseWatch:
    """A `TrainWatch` (ganplug.train.loop): `every`, `on_collapse`, `check`, `remedy`."""

    def __init__(self, real_images: Any, settings: WatchSettings | None = None, *, loss: str = "nonsat",
                 thresholds: Thresholds = DEFAULT_THRESHOLDS):
        """`real_images`: uint8 NCHW tensor, a callable returning one (loaded at the first check), or None to
        take them from the run's dataset in `begin`."""
        self.settings = s = settings or WatchSettings()
        if s.on_collapse not in ("warn", "stop", "rollback"):
            from ganplug.errors import UserError

            raise UserError(f"--on-collapse must be warn, stop or rollback, not {s.on_collapse!r}.")
        self.every, self.on_collapse = s.every, s.on_collapse
        self._real = real_images
        self.loss = loss
        self.thresholds = thresholds
        self.ref: RealReference | None = None
        self.rollbacks = 0
        self.last = None  # the last Verdict, for callers that want the details

    @classmethod
    def for_config(cls, cfg=None, settings: WatchSettings | None = None) -> CollapseWatch:
        """A watch over a run's training set, which the run hands it in `begin` (nothing is read twice,
        and a resumed run's own saved settings are the ones that count)."""
        return cls(None, settings or WatchSettings())

    def begin(self, cfg, dataset) -> None:
        """Called by the run once its config is resolved: the loss in force and the real reference images
        (a fixed-seed subset of the training set, as uint8 NCHW)."""
        self.loss = cfg.loss
        if self._real is None:
            rng = np.random.default_rng(self.settings.seed)
            idx = np.sort(rng.choice(len(dataset), min(self.settings.real, len(dataset)), replace=False))
            self._real = torch.from_numpy(np.asarray(dataset.images[idx])).permute(0, 3, 1, 2).contiguous()

    def reference(self) -> RealReference:
        if self.ref is None:
            real = self._real() if callable(self._real) else self._real
            self.ref = build_reference(images_to_features(real), seed=self.settings.seed,
                                       baseline_n=self.settings.samples, thresholds=self.thresholds)
        return self.ref

    @torch.no_grad()
    def sample(self, G_ema: torch.nn.Module) -> torch.Tensor:
        device = next(G_ema.parameters()).device
        z = z_from_seeds(range(SEED0, SEED0 + self.settings.samples), G_ema.z_dim, device)
        was = G_ema.training
        G_ema.eval()
        out = torch.cat([to_uint8(G_ema(z[i:i + 64])).cpu() for i in range(0, len(z), 64)])
        G_ema.train(was)
        return out

    def d_signals(self, history: list[dict[str, float]]) -> tuple[dict[str, float], list[str]]:
        s = self.settings
        recent = [h for h in history[-self.every:] if "loss/D" in h]
        if not recent:
            return {}, []
        stats = {"d_loss": float(np.mean([h["loss/D"] for h in recent]))}
        reasons = []
        if "prob/real" in recent[-1]:
            gap = float(np.mean([h["prob/real"] - h["prob/fake"] for h in recent]))
            stats["d_prob_gap"] = gap
            if gap > s.prob_gap:
                reasons.append(f"the discriminator tells real from generated almost perfectly (D(x) - D(G(z)) = "
                               f"{gap:.2f} on average over the last {len(recent)} steps).")
        if "scores/real" in recent[-1]:
            stats["d_score_gap"] = float(np.mean([h["scores/real"] - h["scores/fake"] for h in recent]))
        if self.loss in ("nonsat", "hinge") and stats["d_loss"] < s.d_loss_floor:
            reasons.append(f"the discriminator loss is near zero ({stats['d_loss']:.3f} on average): D wins "
                           "outright and the generator's gradients vanish.")
        return stats, reasons

    def check(self, step: int, G_ema: torch.nn.Module, history: list[dict[str, float]]) -> WatchResult:
        ref = self.reference()
        images = self.sample(G_ema)
        v = assess(ref, images_to_features(images), images, thresholds=self.thresholds)
        self.last = v
        s = v.stats
        stats = {"severity": v.severity, "coverage": s["coverage"], "recall": s["recall"], "js": s["js"],
                 "ndb_over_k": s["ndb_over_k"], "empty_bins": s["empty_bins"],
                 "duplicate_rate": s["duplicate_rate"], "diversity_ratio": s["diversity_ratio"]}
        if "msssim" in s:
            stats["msssim"] = s["msssim"]
        d_stats, d_reasons = self.d_signals(history)
        stats.update(d_stats)
        reasons = ([f"{v.verdict} (severity {v.severity:.2f}): " + " ".join(v.reasons)]
                   if v.verdict != "healthy" else []) + d_reasons
        return WatchResult(healthy=not reasons, stats=stats, reasons=reasons)

    def remedy(self, context: RemedyContext) -> Remedy:
        """The changes a rollback should make, without making them: D's learning rate down, then D-side
        regularisation the run really uses (ADA's p, the augmentation probability, or one-sided label
        smoothing for the BCE loss; hinge and WGAN-GP have no labels to smooth)."""
        s, cfg = self.settings, context.cfg
        self.rollbacks += 1
        lr_d = context.lr_d * s.lr_factor
        changes: dict[str, Any] = {"lr_d": lr_d}
        done = [f"D's learning rate x{s.lr_factor} (now {lr_d:.2e})"]
        if context.ada_p is not None:
            changes["ada_p"] = min(1.0, context.ada_p + s.aug_step)
            done.append(f"ADA probability raised to {changes['ada_p']:.2f}")
        elif context.augments and cfg.aug in ("diffaug", "none"):
            changes["aug"] = "diffaug"
            changes["aug_p"] = s.aug_step if cfg.aug == "none" else min(1.0, cfg.aug_p + s.aug_step)
            done.append(f"augmentation probability raised to {changes['aug_p']:.2f}")
        elif cfg.loss == "nonsat" and cfg.label_smoothing < 0.2:
            changes["label_smoothing"] = round(cfg.label_smoothing + 0.1, 3)
            done.append(f"one-sided label smoothing {changes['label_smoothing']:.1f}")
        if self.rollbacks >= s.max_rollbacks:
            self.on_collapse = "warn"
            done.append(f"after {self.rollbacks} rollbacks the watch now only warns")
        return Remedy(changes=changes, description="; ".join(done))
