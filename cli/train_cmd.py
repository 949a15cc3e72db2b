"""`ganplug train`: train a model on a folder of images or a prepared dataset."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from ganplug.cli import validate as v
from ganplug.errors import UserError
from ganplug.train.config import LOSSES, TrainConfig


def parse_model_options(items: list[str]) -> dict[str, object]:
    """`--model key=value` pairs; values are parsed as JSON where they can be (numbers, true/false)."""
    out: dict[str, object] = {}
    for item in items:
        if "=" not in item:
            raise UserError(f"--model {item!r}: expected KEY=VALUE, e.g. --model base_channels=32.")
        key, value = item.split("=", 1)
        try:
            out[key.strip()] = json.loads(value)
        except ValueError:
            out[key.strip()] = value
    return out


def _dataset_size(data: Path | None) -> int | None:
    """The image size of a prepared dataset, so `ganplug train DATASET` needs no --size."""
    from ganplug.data import is_prepared_dataset, open_dataset

    if data is None or not is_prepared_dataset(Path(data)):
        return None
    return open_dataset(Path(data)).size


def train(
    data: Path = typer.Argument(None, help="Image folder or prepared dataset (`ganplug prep`)."),
    out: Path = typer.Option(None, "--out", "-o", callback=v.output_dir,
                             help="Run folder for checkpoints, samples and logs."),
    arch: str = typer.Option("dcgan", help="Model family: dcgan, stylegan, or pix2pix (image to image, trained "
                             "on pairs from `ganplug prep --pairs`)."),
    size: int = typer.Option(None, min=1, help="Image size in pixels, a power of two (default: a prepared dataset's "
                             "size, else 64)."),
    steps: int = typer.Option(10_000, min=1, help="Generator updates."),
    batch: int = typer.Option(64, min=1, help="Images per batch."),
    minutes: float = typer.Option(0.0, callback=v.non_negative,
                                  help="Stop after this much wall time, with a final checkpoint "
                                  "(0 = no limit; --steps still caps the run)."),
    lr_g: float = typer.Option(None, callback=v.positive,
                               help="Generator learning rate (Adam; dcgan 2e-4, stylegan 0.0025)."),
    lr_d: float = typer.Option(None, callback=v.positive,
                               help="Discriminator learning rate (Adam; dcgan 2e-4, stylegan 0.0025)."),
    beta1: float = typer.Option(None, callback=v.adam_beta, help="Adam beta1 (dcgan 0.5, stylegan 0)."),
    beta2: float = typer.Option(None, callback=v.adam_beta, help="Adam beta2 (dcgan 0.999, stylegan 0.99)."),
    loss: str = typer.Option("nonsat", help=f"Adversarial loss: {', '.join(LOSSES)}."),
    d_steps: int = typer.Option(1, min=1, help="Discriminator updates per generator update."),
    label_smoothing: float = typer.Option(0.0, callback=v.label_fraction,
                                          help="One-sided label smoothing: real targets 1-a."),
    label_noise: float = typer.Option(0.0, callback=v.label_fraction,
                                      help="Noisy labels: real ~ U[1-a, 1], fake ~ U[0, a]."),
    ema_kimg: float = typer.Option(10.0, callback=v.non_negative,
                                   help="Half-life of the generator EMA, in thousands of images (0 = no EMA)."),
    seed: int = typer.Option(0, callback=v.seed, help="Random seed (runs are deterministic on the CPU)."),
    mirror: bool = typer.Option(True, "--mirror/--no-mirror", help="Random horizontal flips of training images."),
    background: str = typer.Option("white", help="Background for transparent images (white, black, gray, #rrggbb)."),
    sample_every: int = typer.Option(200, min=0, help="Steps between sample grids (0 = only at the end)."),
    ckpt_every: int = typer.Option(1000, min=0, help="Steps between checkpoints (0 = only at the end)."),
    keep_checkpoints: int = typer.Option(5, min=0, help="Newest checkpoints to keep (0 = all)."),
    resume: Path = typer.Option(None, help="Continue this run folder exactly where it stopped."),
    init_from: Path = typer.Option(None, help="Transfer learning: start from this checkpoint's weights."),
    freeze_d: int = typer.Option(0, min=0, help="Freeze the first N discriminator blocks (Freeze-D)."),
    allow_partial: bool = typer.Option(False, help="--init-from: copy the layers that fit even if others differ."),
    z_dim: int = typer.Option(None, min=1, help="Latent size (DCGAN default 100)."),
    base_channels: int = typer.Option(None, min=1, help="Width of the outermost G/D blocks (DCGAN default 64)."),
    kernel: int = typer.Option(None, help="DCGAN kernel size, 4 or 5."),
    init: str = typer.Option(None, help="DCGAN weight init: normal (N(0,0.02)) or glorot."),
    d_dropout: float = typer.Option(None, callback=v.dropout, help="Dropout in the discriminator."),
    mapping_layers: int = typer.Option(None, min=1,
                                       help="StyleGAN mapping layers (8 as in StyleGAN, 2 for small data)."),
    capacity: float = typer.Option(None, callback=v.positive,
                                   help="StyleGAN width multiplier (1.0 = StyleGAN2 paper256 widths)."),
    aug: str = typer.Option("none", help="Augment D's inputs (stylegan): none, diffaug (fixed --aug-p) or ada."),
    aug_p: float = typer.Option(0.3, callback=v.unit_interval, help="Augmentation probability with --aug diffaug."),
    aug_ops: str = typer.Option("bgc", help="Augmentations: bgc, diffaug, all, or a list like translation,cutout."),
    ada_target: float = typer.Option(0.6, callback=v.open_unit_interval, help="ADA target for E[sign(D(real))]."),
    r1_gamma: float = typer.Option(None, callback=v.non_negative,
                                   help="StyleGAN R1 weight (default 0.0002 * size^2 / batch)."),
    pl_weight: float = typer.Option(0.0, callback=v.non_negative,
                                    help="StyleGAN path-length regularisation weight (0 = off, 2 = paper)."),
    style_mixing: float = typer.Option(0.9, callback=v.unit_interval, help="StyleGAN style-mixing probability."),
    l1_weight: float = typer.Option(100.0, callback=v.non_negative,
                                    help="pix2pix: weight of the L1 distance to the target image."),
    model: list[str] = typer.Option([], "--model", help="Other model options as KEY=VALUE (repeatable)."),
    device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:N or mps."),
    precision: str = typer.Option("auto", help="auto, fp32, bf16 or fp16 (autocast)."),
    channels_last: bool = typer.Option(True, "--channels-last/--no-channels-last", help="Channels-last memory."),
    force: bool = typer.Option(False, help="Delete an existing run in --out and start again."),
    dry_run: bool = typer.Option(False, help="Print the resolved configuration and exit."),
    watch: bool = typer.Option(True, "--watch/--no-watch", help="Check for mode collapse during training."),
    watch_every: int = typer.Option(500, "--watch-every", min=1, help="Steps between collapse checks."),
    on_collapse: str = typer.Option("warn", "--on-collapse", help="warn, stop, or rollback (to the last healthy "
                                    "checkpoint, with a remedy)."),
) -> None:
    """Train a GAN. Checkpoints go to OUT/checkpoints, sample grids to OUT/samples."""
    if resume is None and data is None:
        raise UserError(
            "no training data given. Pass a folder of images (or a dataset made by `ganplug prep`), "
            "e.g. `ganplug train my_art/ --out runs/first`, or try `ganplug demo` to train on the bundled demo set."
        )
    if resume is not None:
        if out is not None and Path(out) != Path(resume):
            raise UserError("--resume continues the run in place; leave out --out (or give the same folder).")
        out = resume
    if out is None:
        raise UserError("--out is required: the folder where the run's checkpoints and samples go.")
    if size is None:
        size = _dataset_size(data) or 64
    optimiser = {"lr_g": 2e-4, "lr_d": 2e-4, "beta1": 0.5, "beta2": 0.999, **TrainConfig.arch_defaults(arch)}
    optimiser.update({k: v for k, v in (("lr_g", lr_g), ("lr_d", lr_d), ("beta1", beta1), ("beta2", beta2))
                      if v is not None})
    model_opts = parse_model_options(model)
    for key, value in (("z_dim", z_dim), ("base_channels", base_channels), ("kernel", kernel), ("init", init),
                       ("d_dropout", d_dropout), ("mapping_layers", mapping_layers), ("capacity", capacity)):
        if value is not None:
            model_opts[key] = value
    if loss == "wgan-gp" and arch == "dcgan":
        model_opts.setdefault("d_norm", "layer")  # WGAN-GP's per-sample penalty and BatchNorm do not mix
    cfg = TrainConfig(
        data=str(data) if data is not None else "", out=str(out), arch=arch, size=size, steps=steps, batch=batch,
        **optimiser, loss=loss, d_steps=d_steps, label_smoothing=label_smoothing, label_noise=label_noise,
        ema_kimg=ema_kimg, seed=seed, mirror=mirror, background=background, sample_every=sample_every,
        ckpt_every=ckpt_every, keep_checkpoints=keep_checkpoints, init_from=str(init_from or ""), freeze_d=freeze_d,
        allow_partial=allow_partial,
        device=device, precision=precision, channels_last=channels_last, model=model_opts,
        aug=aug, aug_p=aug_p, aug_ops=aug_ops, ada_target=ada_target, r1_gamma=r1_gamma, pl_weight=pl_weight,
        style_mixing=style_mixing, max_seconds=minutes * 60, l1_weight=l1_weight,
    )
    cfg.validate()
    if on_collapse not in ("warn", "stop", "rollback"):
        raise UserError(f"--on-collapse must be warn, stop or rollback, not {on_collapse!r}.")
    if dry_run:
        typer.echo(json.dumps(cfg.to_dict(), indent=2))
        return
    from ganplug.cli.progress import RichReporter as Reporter
    from ganplug.train.loop import train as run_training

    reporter = Reporter()
    try:
        collapse_watch = None
        from ganplug.models import takes_images

        if watch and not takes_images(arch):  # the watch samples z; image-to-image models have none
            from ganplug.train.watch import CollapseWatch, WatchSettings

            collapse_watch = CollapseWatch.for_config(cfg, WatchSettings(every=watch_every, on_collapse=on_collapse))
        result = run_training(cfg, resume=resume is not None, force=force, reporter=reporter, watch=collapse_watch)
    except KeyboardInterrupt as e:
        reporter.console.print(interrupted_message(e, out), highlight=False)
        raise typer.Exit(130) from None
    reporter.console.print(f"done at step {result.step}: checkpoint {result.checkpoint}")
    if result.samples:
        reporter.console.print(f"samples: {result.samples[-1]}   timelapse: {result.run_dir / 'timelapse.gif'}")


def interrupted_message(e: KeyboardInterrupt, out: Path) -> str:
    """Say what Ctrl-C left on disk, and the command that continues from it."""
    from ganplug.train.loop import TrainingInterrupted

    resume = f"`ganplug train --resume {out}`"
    if not isinstance(e, TrainingInterrupted):
        return "interrupted before training started; nothing was saved."
    if e.checkpoint is not None:
        return f"interrupted at step {e.step}; saved {e.checkpoint}. Continue with {resume}."
    if e.resumed_from is not None:
        return f"interrupted before step {e.step + 1}; nothing new was saved ({e.resumed_from} is still the " \
               f"latest). Continue with {resume}."
    return "interrupted before the first step finished; no checkpoint was saved. Run the same command with " \
           "--force to start again."


def register(app: typer.Typer) -> None:
    app.command("train")(train)
