"""The Trainer: iterations of a family's step, EMA, the non-finite rollback and callbacks, with no files.

`train/loop.py` (the Run) wraps this with a run folder, resume, checkpoints, grids and a time budget;
`train/toy2d.py` uses it bare for the 2D benchmarks. What happens after each step is a list of callbacks
(logging, grids, the collapse watch, checkpoints, the time budget), each of which may ask to stop or to
roll back; a rollback carries the option changes it wants (a remedy), which the Trainer applies to its own
copy of the run config and the optimisers, never to the caller's objects.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from ganplug.device import Runtime
from ganplug.errors import UserError
from ganplug.train import distributed
from ganplug.train.config import TrainConfig
from ganplug.train.ema import ema_beta, update_ema

MAX_NONFINITE = 3  # rollbacks in a row before training gives up
HISTORY = 1000  # per-step stats kept in memory (the watch reads the last `every` of them)


def make_adam(params, *, lr: float, betas: tuple[float, float]) -> torch.optim.Adam:
    """Adam, fused where torch supports it for these tensors (CPU and CUDA): the same update in one
    kernel, measured ~8x faster than the per-tensor loop for a 64 px DCGAN's 6.3 M parameters."""
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=lr, betas=betas, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(params, lr=lr, betas=betas)


def rng_state(rt: Runtime) -> dict[str, Tensor]:
    state = {"torch": torch.get_rng_state()}
    if rt.device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(rt.device)
    return state


def set_rng_state(rt: Runtime, tensors: dict[str, Tensor]) -> None:
    """Restore what `rng_state` saved, under the `rng.` names checkpoints use."""
    if "rng.torch" in tensors:
        torch.set_rng_state(tensors["rng.torch"])
    if rt.device.type == "cuda" and "rng.cuda" in tensors:
        torch.cuda.set_rng_state(tensors["rng.cuda"], rt.device)


class TrainStep(Protocol):
    """One G+D iteration of a family: `next_real()` yields real batches; returns plain float stats."""

    cfg: TrainConfig

    def __call__(self, next_real: Callable[[], Tensor], step: int) -> dict[str, float]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@dataclass
class Remedy:
    """What a callback wants changed when it rolls back: run-config fields (`lr_d`, `aug_p`, ...) and
    `ada_p`, the ADA controller's probability; `description` is shown to the user."""

    changes: dict[str, Any] = field(default_factory=dict)
    description: str = ""


@dataclass
class Decision:
    """A callback's answer after a step: None (carry on), or one of these. `warn` marks the step unhealthy
    (a later rollback never returns to it) without stopping."""

    action: str  # "warn" | "stop" | "rollback"
    reason: str = ""
    remedy: Remedy | None = None


class Callback(Protocol):
    """A callback whose class sets `decided_on_rank0 = True` (a clock, a watch) has its decision broadcast from
    rank 0 in a multi-process run, so every rank acts alike; the others must decide alike by construction."""

    def on_step(self, trainer: Trainer, step: int, stats: dict[str, float]) -> Decision | None: ...


class Snapshot:
    """The last good training state, in memory: what a rollback returns to."""

    def __init__(self, runtime: Runtime, parts: tuple):
        self.runtime, self.parts = runtime, parts
        self.states: list = []
        self.step = 0
        self.rng: dict[str, Tensor] = {}

    def capture(self, step: int) -> None:
        self.states = [copy.deepcopy(p.state_dict()) for p in self.parts]
        self.step, self.rng = step, {f"rng.{k}": v for k, v in rng_state(self.runtime).items()}

    def restore(self, keep_lr: tuple[torch.optim.Optimizer, ...] = ()) -> int:
        """Go back to the captured state; `keep_lr` optimisers keep their current learning rates, so
        reductions made after earlier rollbacks compound instead of being undone."""
        lrs = [[g["lr"] for g in opt.param_groups] for opt in keep_lr]
        for part, state in zip(self.parts, self.states, strict=True):
            part.load_state_dict(copy.deepcopy(state))
        for opt, group_lrs in zip(keep_lr, lrs, strict=True):
            for g, lr in zip(opt.param_groups, group_lrs, strict=True):
                g["lr"] = lr
        set_rng_state(self.runtime, self.rng)
        return self.step


@dataclass
class FitResult:
    step: int
    stopped: bool = False  # a callback asked to stop
    reason: str = ""


class Trainer:
    """Owns the networks, optimisers and step; `fit` runs iterations until `steps` or a callback stops it.

    `cfg` is the Trainer's own copy of the run config: remedies change it (and the step sees the change),
    so `trainer.cfg` is what a checkpoint must record.
    """

    def __init__(self, *, G: nn.Module, D: nn.Module, G_ema: nn.Module | None, opt_G: torch.optim.Optimizer,
                 opt_D: torch.optim.Optimizer, step_fn: TrainStep, runtime: Runtime, cfg: TrainConfig,
                 on_event: Callable[[int, dict[str, Any]], None] | None = None, shard_group: int = 1):
        """`shard_group`: in a multi-process run, D's sample groups (`distributed.World.shard`)."""
        self.shard_group = shard_group
        self.G, self.D, self.G_ema, self.opt_G, self.opt_D = G, D, G_ema, opt_G, opt_D
        self.step_fn, self.runtime = step_fn, runtime
        self.cfg = step_fn.cfg = dataclasses.replace(cfg)
        self.on_event = on_event or (lambda step, event: None)
        self.history: deque[dict[str, float]] = deque(maxlen=HISTORY)
        self.events: list[dict[str, Any]] = []
        parts = tuple(p for p in (G, D, G_ema, opt_G, opt_D, step_fn) if p is not None)
        self.good = Snapshot(runtime, parts)
        self.healthy = True  # whether the current step was judged healthy by every callback
        self._strikes = 0  # non-finite steps since the last good state

    # ------------------------------------------------------------------ state the callbacks use

    def mark_good(self, step: int) -> None:
        """The state at `step` is safe to return to (the Run calls it when it writes a checkpoint)."""
        if self.healthy:
            self.good.capture(step)
        self._strikes = 0

    def apply(self, remedy: Remedy) -> None:
        """Make a remedy's changes: D's learning rate in its optimiser, ADA's p in the step, the rest in
        the Trainer's run config, which the step reads."""
        changes = dict(remedy.changes)
        if "lr_d" in changes:
            for g in self.opt_D.param_groups:
                g["lr"] = float(changes["lr_d"])
        if "ada_p" in changes:
            ada = getattr(self.step_fn, "ada", None)
            if ada is None:
                raise ValueError("a remedy changed ADA's p in a run without ADA")
            ada.p = float(changes.pop("ada_p"))
        self.cfg = self.step_fn.cfg = dataclasses.replace(self.cfg, **changes)

    # ------------------------------------------------------------------ the loop

    def _nonfinite(self, stats: dict[str, float]) -> int:
        self._strikes += 1
        bad = {k: v for k, v in stats.items() if not math.isfinite(v)}
        if self._strikes >= MAX_NONFINITE:
            lrs = f"G {self.opt_G.param_groups[0]['lr']:.2e}, D {self.opt_D.param_groups[0]['lr']:.2e}"
            raise UserError(
                f"training diverged: non-finite losses {bad} {self._strikes} times in a row, even after halving "
                f"the learning rates (now {lrs}). The last good checkpoint is in the run's checkpoints/ folder; "
                "try --loss hinge or a lower --lr-d."
            )
        step = self.good.restore(keep_lr=(self.opt_G, self.opt_D))
        for opt in (self.opt_G, self.opt_D):
            for group in opt.param_groups:
                group["lr"] *= 0.5
        event = {"event": "nonfinite_rollback", "bad": bad, "restored_step": step,
                 "lr_g": self.opt_G.param_groups[0]["lr"], "lr_d": self.opt_D.param_groups[0]["lr"]}
        self.on_event(step, event)
        return step

    def _rollback(self, decision: Decision) -> int:
        step = self.good.restore(keep_lr=(self.opt_G, self.opt_D))
        remedy = decision.remedy or Remedy()
        self.apply(remedy)
        event = {"event": "collapse_rollback", "restored_step": step, "remedy": remedy.description,
                 "reasons": [decision.reason] if decision.reason else []}
        self.events.append(event)
        self.on_event(step, event)
        return step

    def fit(self, start: int, next_real: Callable[[int], Tensor], callbacks: list[Callback],
            on_progress: Callable[[int], None] | None = None) -> FitResult:
        """Train from `start` to `cfg.steps`. `next_real(k)` is the k-th real batch of the run (a pure
        function of k, so a rollback or a resume sees the same batches); `on_progress(step)` is told the
        step reached even when a Ctrl-C arrives mid-way."""
        self.good.capture(start)
        self.G.train()
        self.D.train()
        w = distributed.world()
        draws = distributed.GlobalDraws(w, self.shard_group) if w.distributed else None
        step = start
        while step < self.cfg.steps:
            sub = [0]

            def real(k=step, sub=sub) -> Tensor:
                if draws is None:
                    x = next_real(k * self.cfg.d_steps + sub[0])
                else:  # the batch source shards the batch itself
                    with draws.paused():
                        x = next_real(k * self.cfg.d_steps + sub[0])
                sub[0] += 1
                return x

            distributed.maybe_crash(step)
            t0 = time.perf_counter()
            if draws is None:
                stats = self.step_fn(real, step)
            else:  # every random draw for the global batch, this rank's rows kept; stats are the ranks' mean
                with draws:
                    stats = self.step_fn(real, step)
                stats = distributed.mean_stats(stats)
            if not all(math.isfinite(v) for v in stats.values()):
                step = self._nonfinite(stats)
                continue
            step += 1
            if self.G_ema is not None:
                update_ema(self.G_ema, self.G,
                           ema_beta(self.cfg.batch, self.cfg.ema_kimg, step * self.cfg.batch, self.cfg.ema_rampup))
            stats["speed/images_per_s"] = self.cfg.batch * self.cfg.d_steps / max(time.perf_counter() - t0, 1e-9)
            if on_progress is not None:
                on_progress(step)
            self.history.append({"step": step, **stats})
            self.healthy = True
            rolled_back = False
            for cb in callbacks:
                decision = cb.on_step(self, step, stats)
                if w.distributed and getattr(cb, "decided_on_rank0", False):
                    decision = distributed.from_rank0(decision)
                if decision is None:
                    continue
                self.healthy = False
                if decision.action == "stop":
                    return FitResult(step, stopped=True, reason=decision.reason)
                if decision.action == "rollback":
                    step, rolled_back = self._rollback(decision), True
                    break
            if rolled_back:
                continue
        return FitResult(step)
