"""A training run: the run folder, resume, checkpoints, sample grids, logs and the time budget around a Trainer.

`train()` sets the run up (resolving a resumed run's own settings, the dataset, the family's models and
step, transfer weights, the saved state) and hands the iterations to `ganplug.train.trainer.Trainer` with
the callbacks that make a run: log, grid, collapse watch, checkpoint, time budget. It reports through an
optional `Reporter` (the CLI draws a progress bar from it) and always leaves a final checkpoint behind.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

import torch
from PIL import Image

from ganplug import checkpoint as ckpt
from ganplug.atomic import atomic_write_text
from ganplug.device import Runtime, make_runtime
from ganplug.errors import CheckpointError, UserError
from ganplug.models import build_models, config_from_dict, get_family, takes_images
from ganplug.sampling import make_grid, render_latents, save_animation, save_image_atomic, to_uint8, z_from_seeds
from ganplug.train import distributed
from ganplug.train.batches import BatchSource
from ganplug.train.config import TrainConfig
from ganplug.train.ema import recalibrate_batchnorm
from ganplug.train.memory import check_fits
from ganplug.train.rundir import CONFIG_NAME, prepare_run_dir
from ganplug.train.sinks import open_sinks
from ganplug.train.steps import build_step
from ganplug.train.trainer import Decision, Remedy, Trainer, make_adam, rng_state, set_rng_state

__all__ = ["Reporter", "TrainResult", "TrainWatch", "TrainingInterrupted", "WatchResult", "make_adam", "train"]


class Reporter(Protocol):
    def start(self, total: int, first: int, info: dict[str, Any]) -> None: ...
    def update(self, step: int, stats: dict[str, float]) -> None: ...
    def message(self, text: str) -> None: ...
    def finish(self) -> None: ...


@dataclass
class WatchResult:
    """What a training watch found: `healthy` False means act according to `on_collapse`."""

    healthy: bool
    stats: dict[str, float] = field(default_factory=dict)  # logged as watch/<name>
    reasons: list[str] = field(default_factory=list)  # one sentence each, shown to the user


@dataclass(frozen=True)
class RemedyContext:
    """What a watch may read to choose a remedy: the run config in force, D's learning rate, ADA's p
    (None without ADA) and whether the family's step augments D's inputs."""

    cfg: TrainConfig
    lr_d: float
    ada_p: float | None
    augments: bool


class TrainWatch(Protocol):
    """Checks the generator every `every` steps (mode collapse, D overpowering G...).

    `begin` is given the resolved run config and its dataset once, before the first step. `on_collapse`
    is "warn" (log and print), "stop" (save and stop) or "rollback" (go back to the last healthy state and
    apply `remedy`, which returns the changes it wants instead of making them).
    """

    every: int
    on_collapse: str

    def begin(self, cfg: TrainConfig, dataset: Any) -> None: ...

    def check(self, step: int, G_ema: torch.nn.Module, history: list[dict[str, float]]) -> WatchResult: ...

    def remedy(self, context: RemedyContext) -> Remedy: ...


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    checkpoint: Path
    samples: list[Path] = field(default_factory=list)
    stopped_early: bool = False
    history: list[dict[str, float]] = field(default_factory=list)  # the last steps' stats (a bounded window)
    checks: list[dict[str, float]] = field(default_factory=list)  # every watch check's row
    events: list[dict[str, Any]] = field(default_factory=list)  # rollbacks and other interventions
    stop_reason: str = ""
    config: TrainConfig | None = None  # as it trained: a batch may have been capped or shrunk (config.json's)


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training, with what is on disk: `checkpoint` is the one saved for `step`, or None when
    no step finished in this process (then `resumed_from`, if any, is still the run's latest state)."""

    def __init__(self, run_dir: Path, step: int, checkpoint: Path | None, resumed_from: Path | None):
        super().__init__(f"interrupted at step {step}")
        self.run_dir, self.step, self.checkpoint, self.resumed_from = run_dir, step, checkpoint, resumed_from


def _freeze_d(D: torch.nn.Module, n: int) -> None:
    blocks = getattr(D, "blocks", None)
    if blocks is None:
        raise UserError("--freeze-d: this architecture's discriminator has no blocks to freeze.")
    if n > len(blocks):
        raise UserError(f"--freeze-d {n}: the discriminator has only {len(blocks)} blocks.")
    # A discriminator with several input branches (FastGAN's two scales) lists them; each keeps its first n.
    for stack in getattr(D, "input_stacks", (blocks,)):
        for block in list(stack)[:n]:
            block.requires_grad_(False)


def _init_from(path: str, arch: str, G, D, G_ema, allow_partial: bool = False) -> tuple[Path, list[str]]:
    """Transfer learning: copy every tensor whose name and shape match.

    Layers the source lacks (a new resolution's blocks) start fresh and are reported. A layer present in
    both with another shape is a mismatch: refused, naming the layers, unless `allow_partial`.
    Returns the checkpoint used and notes for the user.
    """
    src = ckpt.resolve_checkpoint(path)
    meta = ckpt.read_meta(src)
    if meta.get("arch") != arch:
        raise CheckpointError(
            f"--init-from {src}: it is a {meta.get('arch')!r} checkpoint, but this run trains {arch!r}; "
            f"use --arch {meta.get('arch')} or another checkpoint."
        )
    tensors = ckpt.read_tensors(src, ("G.", "D.", "G_ema."))
    notes: list[str] = []
    for prefix, module in (("G", G), ("D", D), ("G_ema", G_ema)):
        state = ckpt.strip_prefix(tensors, prefix)
        if prefix == "G" and not state and "release" in meta:  # an exported model keeps only G_ema
            state = ckpt.strip_prefix(tensors, "G_ema")
        if prefix == "D" and not state and "release" in meta:
            raise CheckpointError(f"--init-from {src}: the exported model has no discriminator (it was exported "
                                  "with --no-discriminator); fine-tune from a run folder or a full checkpoint.")
        own = module.state_dict()
        fitting = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
        mismatched = [f"{prefix}.{k} {tuple(state[k].shape)} -> {tuple(own[k].shape)}"
                      for k in own if k in state and own[k].shape != state[k].shape]
        if mismatched and not allow_partial:
            shown = "; ".join(mismatched[:8]) + (f" (+{len(mismatched) - 8} more)" if len(mismatched) > 8 else "")
            raise CheckpointError(
                f"--init-from {src}: {len(mismatched)} layer(s) have other shapes in this model: {shown}. "
                "Pass --allow-partial to copy only the layers that fit and initialise the rest afresh."
            )
        if not fitting:
            raise CheckpointError(f"--init-from {src}: no {prefix} layer fits this model (different size or widths).")
        fresh = [k for k in own if k not in fitting]
        if prefix != "G_ema" and fresh:
            notes.append(f"{prefix}: {len(fitting)} tensors copied, {len(fresh)} initialised afresh")
        own.update(fitting)
        module.load_state_dict(own)
    return src, notes


def _rgb(x: torch.Tensor) -> torch.Tensor:
    return x.repeat(1, 3, 1, 1) if x.shape[1] == 1 else x[:, :3]


def translation_grid(G: torch.nn.Module, pairs: torch.Tensor, in_channels: int, runtime: Runtime) -> Image.Image:
    """Rows of (input, translation, target) triplets, two triplets per row."""
    a, b = pairs[:, :in_channels], pairs[:, in_channels:]
    with torch.no_grad(), runtime.autocast():
        out = G(a)
    trip = torch.stack([to_uint8(_rgb(a)).cpu(), to_uint8(_rgb(out)).cpu(), to_uint8(_rgb(b)).cpu()], dim=1)
    return make_grid(trip.flatten(0, 1), nrow=6)


def _resolve(cfg: TrainConfig, resume: bool) -> tuple[TrainConfig, Path | None, int]:
    """The config a run trains with: a resumed run's own saved settings, with only its length and where it
    runs taken from `cfg`. Returns it, the checkpoint to resume from and its step."""
    run_dir = Path(cfg.out)
    if not resume:
        cfg.validate()
        return cfg, None, 0
    if distributed.world().main:  # it cleans stale temporary files
        prepare_run_dir(run_dir, resume=True, force=False)
    distributed.barrier()
    resume_from = ckpt.resolve_checkpoint(run_dir)
    saved, step = ckpt.read_resume_meta(resume_from)
    overrides = {k: getattr(cfg, k) for k in ("steps", "device", "precision", "max_seconds")}
    cfg = TrainConfig.from_dict({**saved, **overrides, "out": str(run_dir)})
    cfg.validate()
    if step >= cfg.steps:
        raise UserError(f"{run_dir} is already at step {step}; pass a larger --steps to train further.")
    return cfg, resume_from, step


def _model_config(cfg: TrainConfig, dataset) -> Any:
    shape = {"size": cfg.size, "channels": dataset.channels}
    if takes_images(cfg.arch):  # image-to-image: trained on aligned (A, B) pairs
        if dataset.pairs_a is None:
            raise UserError(f"--arch {cfg.arch} learns from aligned pairs, and {cfg.data} has none. Prepare them with "
                            f"`ganplug prep SRC OUT --pairs edges` (sketches derived from the images) or "
                            "`--pairs A_DIR,B_DIR` (two folders matched by file name).")
        shape["in_channels"] = int(dataset.pairs_a.shape[3])
    return config_from_dict(cfg.arch, {**shape, **cfg.model})


def _restore(path: Path, trainer: Trainer) -> None:
    """Weights, optimiser and step state and the RNG of a checkpoint, into a freshly built trainer."""
    meta = ckpt.read_meta(path)
    tensors = ckpt.read_tensors(path)
    for prefix, module in (("G", trainer.G), ("D", trainer.D), ("G_ema", trainer.G_ema)):
        ckpt.load_module_state(module, ckpt.strip_prefix(tensors, prefix), prefix, path)
    ckpt.restore_optimizer(trainer.opt_G, "opt_G", tensors, meta)
    ckpt.restore_optimizer(trainer.opt_D, "opt_D", tensors, meta)
    trainer.step_fn.load_state_dict(meta.get("step_state", {}))
    set_rng_state(trainer.runtime, tensors)


class Run:
    """The files of one run around its Trainer: grids, checkpoints, the log, and the watch's view."""

    def __init__(self, run_dir: Path, trainer: Trainer, meta_base: dict[str, Any], grid: torch.Tensor,
                 image_to_image: bool, in_channels: int, sinks: list, reporter: Reporter | None):
        self.run_dir, self.trainer, self.meta_base, self.grid = run_dir, trainer, meta_base, grid
        self.image_to_image, self.in_channels = image_to_image, in_channels
        self.sinks, self.reporter = sinks, reporter
        self.main = distributed.world().main  # only rank 0 of a multi-process run writes and prints
        self.samples_dir = run_dir / "samples"
        if self.main:
            self.samples_dir.mkdir(exist_ok=True)
        self.samples: list[Path] = []
        self.checkpoint: Path | None = None
        self.last_saved = -1
        self._calibrated_at = -1

    def log(self, step: int, row: dict[str, Any]) -> None:
        for s in self.sinks:
            s.write(step, row)

    def say(self, text: str) -> None:
        if self.reporter:
            self.reporter.message(text)

    def calibrate(self, step: int) -> None:
        """BatchNorm statistics of G_ema for its own weights, at most once per step (its own RNG)."""
        if self._calibrated_at != step:
            t = self.trainer
            recalibrate_batchnorm(t.G_ema, t.G.z_dim, t.runtime.device, autocast=t.runtime.autocast)
            self._calibrated_at = step

    def write_samples(self, step: int) -> Path:
        path = self.samples_dir / f"step-{step:06d}.png"
        if not self.main:
            return path
        self.calibrate(step)
        t = self.trainer
        if self.image_to_image:
            save_image_atomic(translation_grid(t.G_ema, self.grid, self.in_channels, t.runtime), path)
        else:
            imgs = render_latents(t.G_ema, self.grid, runtime=t.runtime)
            save_image_atomic(make_grid(imgs, nrow=int(math.ceil(math.sqrt(len(imgs))))), path)
        self.samples.append(path)
        return path

    def save(self, step: int) -> Path:
        if not self.main:  # rank 0 holds the same state and writes it
            self.last_saved = step
            return self.checkpoint
        self.calibrate(step)
        t = self.trainer
        self.checkpoint = ckpt.save_training_checkpoint(
            self.run_dir, step=step, G=t.G, D=t.D, G_ema=t.G_ema, opt_G=t.opt_G, opt_D=t.opt_D,
            rng=rng_state(t.runtime),
            # the trainer's config, not the one the run began with: a remedy may have changed it since
            meta={**self.meta_base, "train": t.cfg.to_dict(), "step_state": t.step_fn.state_dict(),
                  "nimg": step * t.cfg.batch},
            keep=t.cfg.keep_checkpoints,
        )
        self.last_saved = step
        return self.checkpoint


# ---------------------------------------------------------------------------- the run's callbacks, in order


@dataclass
class _Log:
    run: Run

    def on_step(self, trainer: Trainer, step: int, stats: dict[str, float]) -> Decision | None:
        self.run.log(step, stats)
        if self.run.reporter:
            self.run.reporter.update(step, stats)
        return None


@dataclass
class _Grids:
    run: Run
    every: int

    def on_step(self, trainer: Trainer, step: int, stats: dict[str, float]) -> Decision | None:
        if self.every and step % self.every == 0:
            self.run.write_samples(step)
        return None


@dataclass
class _Watch:
    """Runs on every rank (the same G_ema, the same draws); rank 0's verdict is the one acted on."""

    decided_on_rank0: ClassVar[bool] = True
    run: Run
    watch: TrainWatch
    checks: list[dict[str, float]] = field(default_factory=list)

    def on_step(self, trainer: Trainer, step: int, stats: dict[str, float]) -> Decision | None:
        w = self.watch
        if not w.every or step % w.every:
            return None
        self.run.calibrate(step)  # the same G_ema statistics whether or not a grid was written this step
        verdict = w.check(step, trainer.G_ema, list(trainer.history)[-w.every:])
        row = {f"watch/{k}": v for k, v in verdict.stats.items()} | {"watch/healthy": float(verdict.healthy)}
        self.run.log(step, row)
        trainer.history[-1].update(row)
        self.checks.append({"step": step, **row})
        if verdict.healthy:
            return None
        why = " ".join(verdict.reasons) or "the training watch flagged this step."
        self.run.say(f"step {step}: {why}")
        if w.on_collapse == "stop":
            return Decision("stop", reason=why)
        if w.on_collapse == "rollback":
            ada = getattr(trainer.step_fn, "ada", None)
            context = RemedyContext(cfg=trainer.cfg, lr_d=float(trainer.opt_D.param_groups[0]["lr"]),
                                    ada_p=None if ada is None else float(ada.p),
                                    augments=trainer.cfg.aug != "none" or _family_augments(trainer.cfg.arch))
            return Decision("rollback", reason=why, remedy=w.remedy(context))
        return Decision("warn", reason=why)


def _family_augments(arch: str) -> bool:
    """Whether this family's step applies --aug to D's inputs (so a remedy may turn it on)."""
    return "aug" in get_family(arch).train_options


@dataclass
class _Checkpoints:
    run: Run
    every: int

    def on_step(self, trainer: Trainer, step: int, stats: dict[str, float]) -> Decision | None:
        if self.every and step % self.every == 0:
            self.run.save(step)
            trainer.mark_good(step)  # only when every callback so far found the step healthy
        return None


@dataclass
class _Budget:
    decided_on_rank0: ClassVar[bool] = True  # clocks differ between processes
    max_seconds: float
    should_stop: Callable[[], bool] | None
    t_start: float = field(default_factory=time.perf_counter)

    def on_step(self, trainer: Trainer, step: int, stats: dict[str, float]) -> Decision | None:
        if self.max_seconds > 0 and time.perf_counter() - self.t_start >= self.max_seconds:
            minutes = self.max_seconds / 60
            return Decision("stop", reason=f"the time limit ({minutes:g} minute{'' if minutes == 1 else 's'}) "
                                           "was reached")
        if self.should_stop is not None and self.should_stop():
            return Decision("stop", reason="asked to stop")
        return None


def _grid_inputs(cfg: TrainConfig, dataset, G, image_to_image: bool, runtime: Runtime) -> torch.Tensor:
    """Fixed grid inputs: latents of seeds 0..n-1, or fixed pairs (input | translation | target)."""
    if not image_to_image:
        return z_from_seeds(range(cfg.grid_samples), G.z_dim, runtime.device)
    rows = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(cfg.seed))[:cfg.grid_samples // 4]
    pairs = runtime.prepare_images(torch.cat(dataset.batch_pairs(rows.sort().values.numpy()), dim=1))
    return pairs.float() / 127.5 - 1.0


def train(
    cfg: TrainConfig,
    *,
    resume: bool = False,
    force: bool = False,
    reporter: Reporter | None = None,
    should_stop: Callable[[], bool] | None = None,
    watch: TrainWatch | None = None,
    batch_is_default: bool = False,
) -> TrainResult:
    """Train (or resume) the run in `cfg.out`. Returns where the final checkpoint is.

    Over 80 lines because it is the one place that orders a run's set-up: every refusal (config, data,
    model, memory) comes before `--force` replaces anything, and the seed is set just before the models
    are built so that a resumed and an uninterrupted run draw the same numbers.

    Started by torchrun with several processes (WORLD_SIZE > 1), it joins their process group and trains
    data-parallel (ganplug.train.distributed); only rank 0 writes and reports.

    `batch_is_default`: nobody chose cfg.batch, so when its step would not fit in memory a smaller batch
    that does replaces it (with a note, and in config.json) instead of the run being refused.
    """
    w, device, created = distributed.setup(cfg.device)
    try:
        result = _train(cfg, w, device, resume, force, reporter if w.main else None, should_stop, watch,
                        batch_is_default)
        distributed.barrier()  # rank 0 has written everything before any rank leaves
        return result
    finally:
        distributed.teardown(created)


def _train(cfg: TrainConfig, w: distributed.World, device: str, resume: bool, force: bool,
           reporter: Reporter | None, should_stop: Callable[[], bool] | None,
           watch: TrainWatch | None, batch_is_default: bool) -> TrainResult:
    run_dir = Path(cfg.out)
    cfg, resume_from, start = _resolve(cfg, resume)
    from ganplug.data import load_training_data  # the data layer imports PIL etc.; keep it off import time

    if not w.main:  # rank 0 prepares (and caches) a raw folder first
        distributed.barrier()
    dataset = load_training_data(cfg.data, size=cfg.size, background=cfg.background, keep_alpha=cfg.alpha,
                                 progress=w.main)
    if w.main:
        distributed.barrier()
    notes: list[str] = []  # shown once the reporter has started
    if cfg.batch > len(dataset):  # a bigger batch would only repeat images (and a huge one exhausts memory)
        notes.append(f"--batch {cfg.batch} is larger than the dataset ({len(dataset)} images); "
                     f"training with --batch {len(dataset)}")
        cfg = dataclasses.replace(cfg, batch=len(dataset))
    distributed.check_batch(cfg.batch, w)
    runtime = make_runtime(device, cfg.precision, cfg.channels_last)
    model_cfg = _model_config(cfg, dataset)
    spec = get_family(cfg.arch).spec(model_cfg)
    if watch is not None and spec.image_to_image:
        watch = None  # the collapse watch samples z; a translator has none
        notes.append(f"the mode-collapse watch is for generators driven by z; it is off for {cfg.arch}")
    per_rank = check_fits(cfg.arch, model_cfg, spec, cfg.batch // w.size, runtime.device,
                          may_shrink=batch_is_default and not resume)
    if per_rank * w.size != cfg.batch:  # a batch nobody chose, too big for the memory free here
        notes.append(f"the default batch ({cfg.batch}) needs more memory than {runtime.device} has free; training "
                     f"with --batch {per_rank * w.size} (give --batch to choose)")
        cfg = dataclasses.replace(cfg, batch=per_rank * w.size)
    # only now, once everything that can be refused was: --force never wipes a run for nothing (rank 0 only)
    if not resume and w.main:
        kept = prepare_run_dir(run_dir, resume=False, force=force)
        if kept:
            shown = ", ".join(p.name for p in kept[:5]) + (f" (+{len(kept) - 5} more)" if len(kept) > 5 else "")
            notes.append(f"--force replaced the run in {run_dir} and kept what ganplug did not write: {shown}")

    torch.manual_seed(cfg.seed)
    G, D, spec = build_models(cfg.arch, model_cfg)
    G_ema = copy.deepcopy(G).eval().requires_grad_(False)
    init_src, init_notes = None, []
    if cfg.init_from and not resume:
        init_src, init_notes = _init_from(cfg.init_from, cfg.arch, G, D, G_ema, cfg.allow_partial)
    if cfg.freeze_d:
        _freeze_d(D, cfg.freeze_d)
    if w.distributed:  # train-mode BatchNorm over the global batch (G_ema only samples, on its own)
        G, D = (distributed.convert_batchnorm(m, runtime.device) for m in (G, D))
    for m in (G, D, G_ema):
        runtime.prepare_module(m)
    betas = (cfg.beta1, cfg.beta2)
    opt_G = make_adam(G.parameters(), lr=cfg.lr_g, betas=betas)
    opt_D = make_adam([p for p in D.parameters() if p.requires_grad], lr=cfg.lr_d, betas=betas)
    if w.distributed:
        for opt in (opt_G, opt_D):
            distributed.sync_gradients(opt)
    step_fn = build_step(cfg.arch, G, D, opt_G, opt_D, cfg, runtime)
    # StyleGAN's minibatch-stddev groups samples in D: a multi-process run keeps its groups whole on one rank
    group = int(getattr(model_cfg, "mbstd_group", 1))
    if w.distributed and group > 1 and cfg.batch % (group * w.size):
        notes.append(f"--batch {cfg.batch} on {w.size} processes: D's minibatch-stddev groups of {group} are formed "
                     f"within each process's {cfg.batch // w.size} images, unlike one process with this batch "
                     f"(a --batch that is a multiple of {group * w.size} keeps them identical)")
    trainer = Trainer(G=G, D=D, G_ema=G_ema, opt_G=opt_G, opt_D=opt_D, step_fn=step_fn, runtime=runtime, cfg=cfg,
                      shard_group=group)
    if resume_from is not None:
        _restore(resume_from, trainer)
    for m in (G, D, G_ema):
        distributed.broadcast_module(m)  # equal by seeding and by the checkpoint; made certain
    distributed.barrier()  # rank 0 has prepared the run folder

    meta_base = {"arch": cfg.arch, "model": ckpt.config_dict(model_cfg), "train": cfg.to_dict(),
                 "spec": ckpt.config_dict(spec), "dataset": {"path": str(cfg.data), "count": len(dataset),
                                                             "skipped": dataset.meta.get("skipped", [])[:20]}}
    if w.main:
        atomic_write_text(run_dir / CONFIG_NAME, json.dumps({**meta_base, "init_from": str(init_src or "")},
                                                            indent=2))
    if watch is not None:
        watch.begin(cfg, dataset)
    run = Run(run_dir, trainer, meta_base, _grid_inputs(cfg, dataset, G, spec.image_to_image, runtime),
              spec.image_to_image, spec.in_channels, open_sinks(run_dir, start if resume else None) if w.main else [],
              reporter)
    run.checkpoint, run.last_saved = resume_from, (start if resume_from else -1)
    return _execute(run, cfg, start, dataset, watch, should_stop, notes + [
        f"--init-from {init_src.name}: {n}" for n in init_notes])


def _execute(run: Run, cfg: TrainConfig, start: int, dataset, watch: TrainWatch | None,
             should_stop: Callable[[], bool] | None, notes: list[str]) -> TrainResult:
    """Fit with the run's callbacks, then the final checkpoint, grid and timelapse."""
    trainer, reporter = run.trainer, run.reporter
    w = distributed.world()
    batches = BatchSource(dataset, cfg.batch, seed=cfg.seed, mirror=cfg.mirror, runtime=trainer.runtime,
                          pairs=run.image_to_image,
                          shard=w.shard(cfg.batch, trainer.shard_group) if w.distributed else None)
    data_time = [0.0]

    def next_real(k: int) -> torch.Tensor:
        t0 = time.perf_counter()
        x = batches.get(k)
        data_time[0] += time.perf_counter() - t0
        return x

    def on_event(step: int, event: dict[str, Any]) -> None:
        run.log(step, event)
        if event["event"] == "nonfinite_rollback":
            run.say(f"non-finite loss {event['bad']}: went back to step {step} and halved the learning rates")
        else:
            run.say(f"rolled back to step {step}; {event['remedy']}")

    trainer.on_event = on_event
    watching = _Watch(run, watch) if watch is not None else None
    callbacks = [_Log(run), _Grids(run, cfg.sample_every), *([watching] if watching else []),
                 _Checkpoints(run, cfg.ckpt_every), _Budget(cfg.max_seconds, should_stop)]
    reached = [start]
    t_start = time.perf_counter()
    try:
        if reporter:
            reporter.start(cfg.steps, start, {"device": str(trainer.runtime.device),
                                              "precision": trainer.runtime.precision, "images": len(dataset),
                                              "run": str(run.run_dir), "batch": cfg.batch * cfg.d_steps,
                                              "max_seconds": cfg.max_seconds})
            for note in notes:
                reporter.message(note)
        fit = trainer.fit(start, next_real, callbacks, on_progress=lambda s: reached.__setitem__(0, s))
    except KeyboardInterrupt as e:
        step, saved = reached[0], None
        if step > start:
            saved = run.save(step) if step != run.last_saved else run.checkpoint
        raise TrainingInterrupted(run.run_dir, step, saved, None if step > start else run.checkpoint) from e
    finally:
        for s in run.sinks:
            s.close()
        if reporter:
            reporter.finish()
    step = fit.step
    if step != run.last_saved:
        run.save(step)
    if not cfg.sample_every or step % cfg.sample_every:
        run.write_samples(step)
    elapsed = time.perf_counter() - t_start
    if reporter and elapsed > 0:
        reporter.message(f"data loading took {100 * data_time[0] / elapsed:.1f}% of the training time")
    if run.main:
        write_timelapse(run.run_dir)
    return TrainResult(run_dir=run.run_dir, step=step, checkpoint=run.checkpoint, samples=run.samples,
                       stopped_early=fit.stopped and step < cfg.steps, history=list(trainer.history),
                       checks=watching.checks if watching else [], events=trainer.events, stop_reason=fit.reason,
                       config=cfg)


def write_timelapse(run_dir: Path, fps: float = 4.0) -> Path | None:
    """RUN/timelapse.gif from the sample grids, in step order (the training evolution video)."""
    grids = sorted((run_dir / "samples").glob("step-*.png"))
    if not grids:
        return None
    frames = []
    for p in grids:
        with Image.open(p) as im:
            im.thumbnail((512, 512))
            frames.append(im.convert("RGB"))
    frames += [frames[-1]] * 3  # linger on the final state
    out = run_dir / "timelapse.gif"
    save_animation(frames, out, fps=fps)
    return out
