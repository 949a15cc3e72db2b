"""The training loop: wires data, a family's train step, EMA, logging, samples and checkpoints.

`train()` is the whole run as one function. It reports through an optional `Reporter` (the CLI draws a
progress bar from it) and stops early when `should_stop()` says so or the time budget runs out, always
leaving a final checkpoint behind.
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
from typing import Any, Protocol

import torch
from PIL import Image

from ganplug import checkpoint as ckpt
from ganplug.atomic import atomic_write_text
from ganplug.device import Runtime, make_runtime
from ganplug.errors import CheckpointError, UserError
from ganplug.models import build_models, config_from_dict, get_family, takes_images
from ganplug.sampling import make_grid, render_latents, save_animation, save_image_atomic, to_uint8, z_from_seeds
from ganplug.train.batches import BatchSource
from ganplug.train.config import TrainConfig
from ganplug.train.ema import ema_beta, recalibrate_batchnorm, update_ema
from ganplug.train.memory import check_fits
from ganplug.train.rundir import CONFIG_NAME, prepare_run_dir
from ganplug.train.sinks import open_sinks
from ganplug.train.steps import build_step

MAX_NONFINITE = 3  # rollbacks in a row before training gives up


class Snapshot:
    """The last good training state, in memory: what a non-finite loss rolls back to."""

    def __init__(self, runtime: Runtime, parts: tuple):
        self.runtime, self.parts = runtime, parts
        self.states: list = []
        self.step = 0
        self.rng: dict[str, torch.Tensor] = {}

    def capture(self, step: int) -> None:
        self.states = [copy.deepcopy(p.state_dict()) for p in self.parts]
        self.step, self.rng = step, {f"rng.{k}": v for k, v in _rng_state(self.runtime).items()}

    def restore(self, keep_lr: tuple[torch.optim.Optimizer, ...] = ()) -> int:
        """Go back to the captured state; `keep_lr` optimisers keep their current learning rates, so
        reductions made after earlier rollbacks compound instead of being undone."""
        lrs = [[g["lr"] for g in opt.param_groups] for opt in keep_lr]
        for part, state in zip(self.parts, self.states, strict=True):
            part.load_state_dict(copy.deepcopy(state))
        for opt, group_lrs in zip(keep_lr, lrs, strict=True):
            for g, lr in zip(opt.param_groups, group_lrs, strict=True):
                g["lr"] = lr
        _set_rng_state(self.runtime, self.rng)
        return self.step


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


class TrainWatch(Protocol):
    """Checks the generator every `every` steps (mode collapse, D overpowering G...).

    `on_collapse` is "warn" (log and print), "stop" (save and stop) or "rollback" (go back to the last
    healthy checkpoint and apply `remedy`, which returns a description of what it changed).
    """

    every: int
    on_collapse: str

    def check(self, step: int, G_ema: torch.nn.Module, history: list[dict[str, float]]) -> WatchResult: ...

    def remedy(self, step_fn: Any, opt_G: torch.optim.Optimizer, opt_D: torch.optim.Optimizer) -> str: ...


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    checkpoint: Path
    samples: list[Path] = field(default_factory=list)
    stopped_early: bool = False
    history: list[dict[str, float]] = field(default_factory=list)  # per-step stats of this process
    events: list[dict[str, Any]] = field(default_factory=list)  # rollbacks and other interventions
    stop_reason: str = ""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training, with what is on disk: `checkpoint` is the one saved for `step`, or None when
    no step finished in this process (then `resumed_from`, if any, is still the run's latest state)."""

    def __init__(self, run_dir: Path, step: int, checkpoint: Path | None, resumed_from: Path | None):
        super().__init__(f"interrupted at step {step}")
        self.run_dir, self.step, self.checkpoint, self.resumed_from = run_dir, step, checkpoint, resumed_from


def make_adam(params, *, lr: float, betas: tuple[float, float]) -> torch.optim.Adam:
    """Adam, fused where torch supports it for these tensors (CPU and CUDA): the same update in one
    kernel, measured ~8x faster than the per-tensor loop for a 64 px DCGAN's 6.3 M parameters."""
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=lr, betas=betas, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(params, lr=lr, betas=betas)


def _rng_state(rt: Runtime) -> dict[str, torch.Tensor]:
    state = {"torch": torch.get_rng_state()}
    if rt.device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(rt.device)
    return state


def _set_rng_state(rt: Runtime, tensors: dict[str, torch.Tensor]) -> None:
    if "rng.torch" in tensors:
        torch.set_rng_state(tensors["rng.torch"])
    if rt.device.type == "cuda" and "rng.cuda" in tensors:
        torch.cuda.set_rng_state(tensors["rng.cuda"], rt.device)


def _freeze_d(D: torch.nn.Module, n: int) -> None:
    blocks = getattr(D, "blocks", None)
    if blocks is None:
        raise UserError("--freeze-d: this architecture's discriminator has no blocks to freeze.")
    if n > len(blocks):
        raise UserError(f"--freeze-d {n}: the discriminator has only {len(blocks)} blocks.")
    for block in list(blocks)[:n]:
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


def train(
    cfg: TrainConfig,
    *,
    resume: bool = False,
    force: bool = False,
    reporter: Reporter | None = None,
    should_stop: Callable[[], bool] | None = None,
    watch: TrainWatch | None = None,
) -> TrainResult:
    """Train (or resume) the run in `cfg.out`. Returns where the final checkpoint is."""
    run_dir = Path(cfg.out)
    resume_from: Path | None = None
    if resume:
        prepare_run_dir(run_dir, resume=True, force=False)
        resume_from = ckpt.resolve_checkpoint(run_dir)
        saved, resume_step = ckpt.read_resume_meta(resume_from)
        # The run's own settings win; only the length and where it runs may change on resume.
        overrides = {k: getattr(cfg, k) for k in ("steps", "device", "precision", "max_seconds")}
        cfg = TrainConfig.from_dict({**saved, **overrides, "out": str(run_dir)})
    cfg.validate()
    from ganplug.data import load_training_data  # the data layer imports PIL etc.; keep it off import time

    dataset = load_training_data(cfg.data, size=cfg.size, background=cfg.background)
    notes: list[str] = []  # shown once the reporter has started
    if cfg.batch > len(dataset):  # a bigger batch would only repeat images (and a huge one exhausts memory)
        notes.append(f"--batch {cfg.batch} is larger than the dataset ({len(dataset)} images); "
                     f"training with --batch {len(dataset)}")
        cfg = dataclasses.replace(cfg, batch=len(dataset))
    runtime = make_runtime(cfg.device, cfg.precision, cfg.channels_last)

    shape = {"size": cfg.size, "channels": dataset.channels}
    if takes_images(cfg.arch):  # image-to-image: trained on aligned (A, B) pairs
        if dataset.pairs_a is None:
            raise UserError(f"--arch {cfg.arch} learns from aligned pairs, and {cfg.data} has none. Prepare them with "
                            f"`ganplug prep SRC OUT --pairs edges` (sketches derived from the images) or "
                            "`--pairs A_DIR,B_DIR` (two folders matched by file name).")
        shape["in_channels"] = int(dataset.pairs_a.shape[3])
        if watch is not None:
            watch = None  # the collapse watch samples z; a translator has none
            if reporter:
                reporter.message(f"the mode-collapse watch is for generators driven by z; it is off for {cfg.arch}")
    model_cfg = config_from_dict(cfg.arch, {**shape, **cfg.model})
    check_fits(cfg.arch, model_cfg, get_family(cfg.arch).spec(model_cfg), cfg.batch, runtime.device)
    if not resume:  # only now, once everything that can be refused was: --force never wipes a run for nothing
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
    for m in (G, D, G_ema):
        runtime.prepare_module(m)
    betas = (cfg.beta1, cfg.beta2)
    opt_G = make_adam(G.parameters(), lr=cfg.lr_g, betas=betas)
    opt_D = make_adam([p for p in D.parameters() if p.requires_grad], lr=cfg.lr_d, betas=betas)
    step_fn = build_step(cfg.arch, G, D, opt_G, opt_D, cfg, runtime)

    start = 0
    if resume_from is not None:
        meta = ckpt.read_meta(resume_from)
        tensors = ckpt.read_tensors(resume_from)
        for prefix, module in (("G", G), ("D", D), ("G_ema", G_ema)):
            ckpt.load_module_state(module, ckpt.strip_prefix(tensors, prefix), prefix, resume_from)
        ckpt.restore_optimizer(opt_G, "opt_G", tensors, meta)
        ckpt.restore_optimizer(opt_D, "opt_D", tensors, meta)
        step_fn.load_state_dict(meta.get("step_state", {}))
        _set_rng_state(runtime, tensors)
        start = resume_step
        if start >= cfg.steps:
            raise UserError(f"{run_dir} is already at step {start}; pass a larger --steps to train further.")

    meta_base = {"arch": cfg.arch, "model": ckpt.config_dict(model_cfg), "train": cfg.to_dict(),
                 "spec": ckpt.config_dict(spec), "dataset": {"path": str(cfg.data), "count": len(dataset),
                                                             "skipped": dataset.meta.get("skipped", [])[:20]}}
    atomic_write_text(run_dir / CONFIG_NAME, json.dumps({**meta_base, "init_from": str(init_src or "")}, indent=2))

    batches = BatchSource(dataset, cfg.batch, seed=cfg.seed, mirror=cfg.mirror, runtime=runtime,
                          pairs=spec.image_to_image)
    if spec.image_to_image:  # the grid shows fixed pairs: input | translation | target
        rows = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(cfg.seed))[:cfg.grid_samples // 4]
        grid_pairs = runtime.prepare_images(torch.cat(dataset.batch_pairs(rows.sort().values.numpy()), dim=1))
        grid_pairs = grid_pairs.float() / 127.5 - 1.0
    else:
        grid_z = z_from_seeds(range(cfg.grid_samples), G.z_dim, runtime.device)
    sinks = open_sinks(run_dir, start if resume else None)
    samples_dir = run_dir / "samples"
    samples_dir.mkdir(exist_ok=True)

    calibrated_at = [-1]  # BatchNorm statistics of G_ema are recomputed at most once per step

    def calibrate(step: int) -> None:
        if calibrated_at[0] != step:
            recalibrate_batchnorm(G_ema, G.z_dim, runtime.device, autocast=runtime.autocast)
            calibrated_at[0] = step

    def write_samples(step: int) -> Path:
        calibrate(step)
        path = samples_dir / f"step-{step:06d}.png"
        if spec.image_to_image:
            save_image_atomic(translation_grid(G_ema, grid_pairs, model_cfg.in_channels, runtime), path)
            return path
        imgs = render_latents(G_ema, grid_z, runtime=runtime)
        save_image_atomic(make_grid(imgs, nrow=int(math.ceil(math.sqrt(len(imgs))))), path)
        return path

    def save(step: int) -> Path:
        calibrate(step)
        return ckpt.save_training_checkpoint(
            run_dir, step=step, G=G, D=D, G_ema=G_ema, opt_G=opt_G, opt_D=opt_D, rng=_rng_state(runtime),
            # the run config is re-read at each save: a remedy may have changed it since the start
            meta={**meta_base, "train": cfg.to_dict(), "step_state": step_fn.state_dict(), "nimg": step * cfg.batch},
            keep=cfg.keep_checkpoints,
        )

    info = {"device": str(runtime.device), "precision": runtime.precision, "images": len(dataset),
            "run": str(run_dir)}
    result = TrainResult(run_dir=run_dir, step=start, checkpoint=resume_from or Path())
    t_start = time.perf_counter()
    data_time = 0.0
    step = start
    last_saved = start if resume_from else -1
    good = Snapshot(runtime, (G, D, G_ema, opt_G, opt_D, step_fn))
    good.capture(start)
    strikes = 0  # non-finite steps since the last good checkpoint
    G.train()
    D.train()
    try:
        if reporter:
            reporter.start(cfg.steps, start, info)
            for note in notes + [f"--init-from {init_src.name}: {n}" for n in init_notes]:
                reporter.message(note)
        while step < cfg.steps:
            t0 = time.perf_counter()
            sub = [0]

            def next_real(k=step, sub=sub) -> torch.Tensor:
                nonlocal data_time
                td = time.perf_counter()
                x = batches.get(k * cfg.d_steps + sub[0])
                sub[0] += 1
                data_time += time.perf_counter() - td
                return x

            stats = step_fn(next_real, step)
            if not all(math.isfinite(v) for v in stats.values()):
                strikes += 1
                bad = {k: v for k, v in stats.items() if not math.isfinite(v)}
                if strikes >= MAX_NONFINITE:
                    lrs = f"G {opt_G.param_groups[0]['lr']:.2e}, D {opt_D.param_groups[0]['lr']:.2e}"
                    raise UserError(
                        f"training diverged: non-finite losses {bad} {strikes} times in a row, even after halving the "
                        f"learning rates (now {lrs}). The last good checkpoint is in {run_dir}/checkpoints; "
                        "try --loss hinge or a lower --lr-d."
                    )
                step = good.restore(keep_lr=(opt_G, opt_D))
                for opt in (opt_G, opt_D):
                    for group in opt.param_groups:
                        group["lr"] *= 0.5
                note = {"event": "nonfinite_rollback", "bad": bad, "restored_step": step,
                        "lr_g": opt_G.param_groups[0]["lr"], "lr_d": opt_D.param_groups[0]["lr"]}
                for s in sinks:
                    s.write(step, note)
                if reporter:
                    reporter.message(f"non-finite loss {bad}: went back to step {step} and halved the learning rates")
                continue
            step += 1
            update_ema(G_ema, G, ema_beta(cfg.batch, cfg.ema_kimg, step * cfg.batch, cfg.ema_rampup))
            dt = time.perf_counter() - t0
            stats["speed/images_per_s"] = cfg.batch * cfg.d_steps / max(dt, 1e-9)
            for s in sinks:
                s.write(step, stats)
            result.history.append({"step": step, **stats})
            if reporter:
                reporter.update(step, stats)
            if cfg.sample_every and step % cfg.sample_every == 0:
                result.samples.append(write_samples(step))
            healthy = True
            if watch is not None and watch.every and step % watch.every == 0:
                verdict = watch.check(step, G_ema, result.history)
                healthy = verdict.healthy
                row = {f"watch/{k}": v for k, v in verdict.stats.items()}
                row["watch/healthy"] = float(healthy)
                for s in sinks:
                    s.write(step, row)
                result.history[-1].update(row)
                if not healthy:
                    why = " ".join(verdict.reasons) or "the training watch flagged this step."
                    if reporter:
                        reporter.message(f"step {step}: {why}")
                    if watch.on_collapse == "stop":
                        result.stopped_early = True
                        result.stop_reason = why
                        break
                    if watch.on_collapse == "rollback":
                        step = good.restore(keep_lr=(opt_G, opt_D))
                        change = watch.remedy(step_fn, opt_G, opt_D)
                        event = {"event": "collapse_rollback", "restored_step": step, "remedy": change,
                                 "reasons": verdict.reasons}
                        for s in sinks:
                            s.write(step, event)
                        result.events.append(event)
                        if reporter:
                            reporter.message(f"rolled back to step {step}; {change}")
                        continue
            if cfg.ckpt_every and step % cfg.ckpt_every == 0:
                result.checkpoint, last_saved = save(step), step
                if healthy:  # a rollback only ever returns to a state the watch did not flag
                    good.capture(step)
                strikes = 0
            out_of_time = cfg.max_seconds > 0 and time.perf_counter() - t_start >= cfg.max_seconds
            if out_of_time or (should_stop is not None and should_stop()):
                result.stopped_early = step < cfg.steps
                break
    except KeyboardInterrupt as e:
        saved = None
        if step > start:
            saved = save(step) if step != last_saved else result.checkpoint
        raise TrainingInterrupted(run_dir, step, saved, resume_from) from e
    finally:
        for s in sinks:
            s.close()
        if reporter:
            reporter.finish()
    if step != last_saved:
        result.checkpoint = save(step)
    if not cfg.sample_every or step % cfg.sample_every:
        result.samples.append(write_samples(step))
    result.step = step
    elapsed = time.perf_counter() - t_start
    if reporter and elapsed > 0:
        reporter.message(f"data loading took {100 * data_time / elapsed:.1f}% of the training time")
    write_timelapse(run_dir)
    return result


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
