"""`ganplug train`: train a model on a folder of images or a prepared dataset."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import typer

from ganplug.cli import validate as v
from ganplug.errors import UserError
from ganplug.train.config import AUGS, LOSSES, TrainConfig, field_defaults, flag

# Every default below is TrainConfig's (one source; tests/train/test_family_options.py checks each option).
# Options whose default depends on the family (optimiser, model widths) default to None: the family decides.
D = field_defaults()
# CLI options that set a field of the family's model config; refused for a family whose config lacks it.
MODEL_FLAGS = ("z_dim", "base_channels", "kernel", "init", "d_dropout", "mapping_layers", "capacity",
               "dense_bottleneck", "skip_drop")
# What --resume may change; the run's other settings are its own (config.json).
RESUME_FLAGS = {"resume", "steps", "minutes", "device", "precision", "watch", "watch_every", "on_collapse", "force",
                "dry_run", "gpus"}
EXPLICIT = ("COMMANDLINE", "ENVIRONMENT")  # click parameter sources that mean "the user gave it"
NOT_CONFIG = {"data", "out", "resume", "force", "dry_run", "watch", "watch_every", "on_collapse", "model", "minutes",
              "gpus", *MODEL_FLAGS}


def parse_model_options(items: list[str]) -> dict[str, object]:
    """`--model key=value` pairs (repeated, or comma-separated in one: `--model z_dim=64,w_dim=64`); values
    are parsed as JSON where they can be (numbers, true/false)."""
    out: dict[str, object] = {}
    pieces = [p for item in items for p in (item.split(",") if all("=" in q for q in item.split(",")) else [item])]
    for item in pieces:
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
    ctx: typer.Context,
    data: Path = typer.Argument(None, help="Image folder or prepared dataset (`ganplug prep`)."),
    out: Path = typer.Option(None, "--out", "-o", callback=v.output_dir,
                             help="Run folder for checkpoints, samples and logs."),
    arch: str = typer.Option(D["arch"], help="Model family: fastgan (the default: small data, skip-layer "
                             "excitation, self-supervised D, hinge, DiffAugment, batch 8, 32 on a CPU), dcgan, "
                             "stylegan, or pix2pix (image to image, trained on pairs from `ganplug prep --pairs`)."),
    size: int = typer.Option(None, min=1, help=f"Image size in pixels, a power of two (default: a prepared "
                             f"dataset's size, else {D['size']})."),
    steps: int = typer.Option(D["steps"], min=1, help="Generator updates."),
    batch: int = typer.Option(D["batch"], min=1, show_default=False,
                              help=f"Images per batch (default {D['batch']}; fastgan 8, or 32 on a CPU)."),
    minutes: float = typer.Option(D["max_seconds"] / 60, callback=v.non_negative,
                                  help="Stop after this much wall time, with a final checkpoint "
                                  "(0 = no limit; --steps still caps the run)."),
    lr_g: float = typer.Option(None, callback=v.positive,
                               help="Generator learning rate (Adam; default the family's: dcgan and pix2pix 2e-4, "
                               "stylegan 0.0025)."),
    lr_d: float = typer.Option(None, callback=v.positive,
                               help="Discriminator learning rate (Adam; dcgan and pix2pix 2e-4, stylegan 0.0025)."),
    beta1: float = typer.Option(None, callback=v.adam_beta, help="Adam beta1 (dcgan and pix2pix 0.5, stylegan 0)."),
    beta2: float = typer.Option(None, callback=v.adam_beta,
                                help="Adam beta2 (dcgan and pix2pix 0.999, stylegan 0.99)."),
    loss: str = typer.Option(D["loss"], show_default=False,
                             help=f"Adversarial loss: {', '.join(LOSSES)} (default {D['loss']}); fastgan trains with "
                             "hinge only."),
    gp_weight: float = typer.Option(D["gp_weight"], callback=v.non_negative,
                                    help="Weight of the WGAN-GP gradient penalty (--loss wgan-gp)."),
    d_steps: int = typer.Option(D["d_steps"], min=1, help="Discriminator updates per generator update."),
    label_smoothing: float = typer.Option(D["label_smoothing"], callback=v.label_fraction,
                                          help="One-sided label smoothing: real targets 1-a (--loss nonsat)."),
    label_noise: float = typer.Option(D["label_noise"], callback=v.label_fraction,
                                      help="Noisy labels: real ~ U[1-a, 1], fake ~ U[0, a] (--loss nonsat)."),
    ema_kimg: float = typer.Option(D["ema_kimg"], callback=v.non_negative,
                                   help="Half-life of the generator EMA, in thousands of images (0 = no EMA)."),
    ema_rampup: float = typer.Option(D["ema_rampup"], callback=v.non_negative,
                                     help="EMA half-life at most this fraction of the images seen so far (0 = off)."),
    seed: int = typer.Option(D["seed"], callback=v.seed, help="Random seed (runs are deterministic on the CPU)."),
    mirror: bool = typer.Option(D["mirror"], "--mirror/--no-mirror", help="Random horizontal flips of training "
                                "images."),
    background: str = typer.Option(D["background"], help="Background for transparent images (white, black, gray, "
                                   "#rrggbb)."),
    alpha: bool = typer.Option(D["alpha"], "--alpha/--no-alpha",
                               help="Generate RGBA cut-outs (--alpha) or opaque images composited onto --background. "
                                    "Default: as the dataset was prepared; a raw folder keeps transparency when most "
                                    "of its images have it."),
    sample_every: int = typer.Option(D["sample_every"], min=0, help="Steps between sample grids (0 = only at the "
                                     "end)."),
    ckpt_every: int = typer.Option(D["ckpt_every"], min=0, help="Steps between checkpoints (0 = only at the end)."),
    keep_checkpoints: int = typer.Option(D["keep_checkpoints"], min=0, help="Newest checkpoints to keep (0 = all)."),
    grid_samples: int = typer.Option(D["grid_samples"], min=1, help="Images in each sample grid (seeds 0..n-1)."),
    resume: Path = typer.Option(None, help="Continue this run folder exactly where it stopped."),
    init_from: Path = typer.Option(None, help="Transfer learning: start from this checkpoint's weights."),
    freeze_d: int = typer.Option(D["freeze_d"], min=0, help="Freeze the first N discriminator blocks (Freeze-D; "
                                 "dcgan, stylegan)."),
    allow_partial: bool = typer.Option(D["allow_partial"],
                                       help="--init-from: copy the layers that fit even if others differ."),
    z_dim: int = typer.Option(None, min=1, help="Latent size (dcgan 100, stylegan 512)."),
    base_channels: int = typer.Option(None, min=1, help="Width of the outermost G/D blocks (dcgan, pix2pix: 64)."),
    kernel: int = typer.Option(None, help="DCGAN kernel size, 4 or 5."),
    init: str = typer.Option(None, help="DCGAN weight init: normal (N(0,0.02)) or glorot."),
    d_dropout: float = typer.Option(None, callback=v.dropout, help="Dropout in the DCGAN discriminator."),
    mapping_layers: int = typer.Option(None, min=1,
                                       help="StyleGAN mapping layers (8 as in StyleGAN, 2 for small data)."),
    capacity: float = typer.Option(None, callback=v.positive,
                                   help="StyleGAN width multiplier (1.0 = StyleGAN2 paper256 widths)."),
    aug: str = typer.Option(D["aug"], help=f"Augment D's inputs (every image family): {', '.join(AUGS)} (diffaug: "
                            "fixed --aug-p; ada: adaptive)."),
    aug_p: float = typer.Option(D["aug_p"], callback=v.unit_interval,
                                help="Augmentation probability with --aug diffaug."),
    aug_ops: str = typer.Option(D["aug_ops"], help="Augmentations: bgc, diffaug, all, or a list like "
                                "translation,cutout."),
    ada_target: float = typer.Option(D["ada_target"], callback=v.open_unit_interval,
                                     help="ADA target for E[sign(D(real))] (--aug ada)."),
    ada_kimg: float = typer.Option(D["ada_kimg"], callback=v.positive,
                                   help="ADA speed: thousands of images for p to move by 1 (--aug ada)."),
    r1_gamma: float = typer.Option(None, callback=v.non_negative,
                                   help="StyleGAN R1 weight (default 0.0002 * size^2 / batch)."),
    r1_interval: int = typer.Option(D["r1_interval"], min=1, help="StyleGAN lazy R1: every N discriminator "
                                    "updates."),
    pl_weight: float = typer.Option(D["pl_weight"], callback=v.non_negative,
                                    help="StyleGAN path-length regularisation weight (0 = off, 2 = paper)."),
    style_mixing: float = typer.Option(D["style_mixing"], callback=v.unit_interval,
                                       help="StyleGAN style-mixing probability."),
    l1_weight: float = typer.Option(D["l1_weight"], callback=v.non_negative,
                                    help="pix2pix: weight of the L1 distance to the target image."),
    jitter: bool = typer.Option(D["jitter"], "--jitter/--no-jitter",
                                help="pix2pix: the paper's random jitter (resize by 286/256, random crop back; "
                                "the same crop for both images of a pair)."),
    dense_bottleneck: int = typer.Option(None, min=0, help="pix2pix: N fully connected layers (LeakyReLU 0.2) at "
                                         "the 1x1 bottleneck, for translations whose parts move (pose, turn, mirror; "
                                         "5 in the mugshots write-up; default 0)."),
    skip_drop: int = typer.Option(None, min=0, help="pix2pix: remove the K outermost U-Net skip connections, so "
                                  "the input's layout is not copied straight to the output (helped a mirrored "
                                  "layout of plain shapes, blurred detailed images: docs/results.md); 0 = the "
                                  "paper's U-Net (default), log2(size) - 1 = no skips at all."),
    model: list[str] = typer.Option([], "--model", help="Other model options as KEY=VALUE (repeatable)."),
    device: str = typer.Option(D["device"], help="auto, cpu, cuda, cuda:N or mps."),
    precision: str = typer.Option(D["precision"], help="auto, fp32, bf16 or fp16 (autocast)."),
    channels_last: bool = typer.Option(D["channels_last"], "--channels-last/--no-channels-last",
                                       help="Channels-last memory."),
    force: bool = typer.Option(False, help="Delete an existing run in --out and start again."),
    dry_run: bool = typer.Option(False, help="Print the resolved configuration (family defaults, model config, "
                                 "spec, derived values) and exit, without creating the run folder."),
    watch: bool = typer.Option(True, "--watch/--no-watch", help="Check for mode collapse during training."),
    watch_every: int = typer.Option(500, "--watch-every", min=1, help="Steps between collapse checks."),
    on_collapse: str = typer.Option("warn", "--on-collapse", help="warn, stop, or rollback (to the last healthy "
                                    "checkpoint, with a remedy)."),
    gpus: int = typer.Option(1, "--gpus", min=1, help="Train data-parallel on N processes, one per GPU (with --device "
                             "cpu, N CPU processes): relaunches itself under torchrun; --batch is the global batch. "
                             "See the README's \"More than one GPU\" for torchrun and several machines."),
) -> None:
    """Train a GAN. Checkpoints go to OUT/checkpoints, sample grids to OUT/samples."""
    given = given_options(ctx)
    if resume is None and data is None:
        raise UserError(
            "no training data given. Pass a folder of images (or a dataset made by `ganplug prep`), "
            "e.g. `ganplug train my_art/ --out runs/first`, or try `ganplug demo` to train on the bundled demo set."
        )
    if resume is not None:
        if out is not None and Path(out) != Path(resume):
            raise UserError("--resume continues the run in place; leave out --out (or give the same folder).")
        refuse_on_resume(given - {"out"})
        out = resume
    if out is None:
        raise UserError("--out is required: the folder where the run's checkpoints and samples go.")
    if on_collapse not in ("warn", "stop", "rollback"):
        raise UserError(f"--on-collapse must be warn, stop or rollback, not {on_collapse!r}.")
    params = {**ctx.params, "data": data, "out": out, "size": size or _dataset_size(data) or D["size"]}
    cfg = config_from_options(params, given, parse_model_options(model))
    if dry_run:
        typer.echo(json.dumps(dry_run_document(cfg, resume is not None), indent=2))
        return
    if gpus > 1:
        from ganplug.train.distributed import relaunch

        relaunch("train", gpus, cfg.device)  # does not return
    run(cfg, resume=resume is not None, force=force, watch=watch, watch_every=watch_every, on_collapse=on_collapse,
        batch_is_default="batch" not in given)


def given_options(ctx: typer.Context) -> set[str]:
    """The parameters the user set (command line or environment), as opposed to defaults."""
    sources = {name: ctx.get_parameter_source(name) for name in ctx.params}  # click's ParameterSource
    return {name for name, source in sources.items() if source is not None and source.name in EXPLICIT}


def refuse_on_resume(given: set[str]) -> None:
    """--resume trains on the run's saved settings: an option that would change them is refused, not dropped."""
    ignored = sorted(given - RESUME_FLAGS)
    if ignored:
        shown = ", ".join("DATA" if n == "data" else flag(n) for n in ignored)
        raise UserError(f"--resume continues with the run's own settings (its config.json), so {shown} would be "
                        "ignored; only --steps, --minutes, --device and --precision may change. Start a new run "
                        "(or --init-from the checkpoint) to train with other options.")


def config_from_options(params: dict, given: set[str], model_opts: dict[str, object]) -> TrainConfig:
    """The run's TrainConfig from the CLI's values: family defaults under the user's options, model flags
    checked against the family's model config, then every option checked against the family."""
    from ganplug.models import get_family

    arch = params["arch"]
    fam = get_family(arch)
    model_fields = {f.name for f in dataclasses.fields(fam.config_cls)}
    for name in MODEL_FLAGS:
        if params.get(name) is None:
            continue
        if name not in model_fields:
            from ganplug.models import FAMILIES

            users = sorted(f.name for f in FAMILIES.values() if name in {x.name for x in
                                                                           dataclasses.fields(f.config_cls)})
            raise UserError(f"{flag(name)} does nothing for --arch {arch}; it is an option of {', '.join(users)}.")
        model_opts[name] = params[name]
    own = fam.train_defaults or {}  # the family's defaults win over the CLI's unless the user gave the option
    values = {k: params[k] for k in params if k not in NOT_CONFIG | {"arch"} and params[k] is not None
              and (k in given or k not in own)}
    values.update(data=str(params["data"]) if params["data"] is not None else "", out=str(params["out"]),
                  init_from=str(params.get("init_from") or ""), max_seconds=params["minutes"] * 60)
    cfg = TrainConfig.for_family(arch, **values)
    if fam.model_defaults is not None:
        model_opts = {**fam.model_defaults(cfg), **model_opts}
    cfg.model = model_opts
    cfg.validate()
    cfg.check_options({"max_seconds" if n == "minutes" else n for n in given} - NOT_CONFIG)
    return cfg


def dry_run_document(cfg: TrainConfig, resume: bool) -> dict:
    """What a real run would train with: the run config (a resumed run's own), and under "resolved" the
    family's model config with the data's channels, its spec, and values derived at run time."""
    from ganplug.train.config import resolve

    if resume:
        from ganplug import checkpoint as ckpt

        saved, _ = ckpt.read_resume_meta(ckpt.resolve_checkpoint(cfg.out))
        overrides = {k: getattr(cfg, k) for k in ("steps", "device", "precision", "max_seconds")}
        cfg = TrainConfig.from_dict({**saved, **overrides, "out": cfg.out})
    channels, in_channels, count = _data_shape(cfg)
    notes = []
    if count is not None and cfg.batch > count:
        notes.append(f"--batch {cfg.batch} is larger than the dataset ({count} images); training with --batch {count}")
        cfg = dataclasses.replace(cfg, batch=count)
    return {**cfg.to_dict(), "resolved": resolve(cfg, channels, in_channels), "notes": notes}


def _data_shape(cfg: TrainConfig) -> tuple[int, int, int | None]:
    """(channels, A-side channels, images) as training will see them, without preparing a raw folder: a
    prepared dataset says; for a raw folder prep's --alpha rule is applied (its count is known only after prep)."""
    from ganplug.data import is_prepared_dataset, load_training_data
    from ganplug.data.cache import raw_folder_channels

    if not is_prepared_dataset(Path(cfg.data)):
        return raw_folder_channels(Path(cfg.data), background=cfg.background, keep_alpha=cfg.alpha), 3, None
    ds = load_training_data(cfg.data, size=cfg.size, background=cfg.background, keep_alpha=cfg.alpha)
    in_channels = int(ds.pairs_a.shape[3]) if ds.pairs_a is not None else 3
    return ds.channels, in_channels, len(ds)


def run(cfg: TrainConfig, *, resume: bool, force: bool, watch: bool, watch_every: int, on_collapse: str,
        batch_is_default: bool = False) -> None:
    """Train with a progress display; Ctrl-C says what was saved."""
    from ganplug.cli.progress import RichReporter as Reporter
    from ganplug.train.loop import train as run_training

    out = Path(cfg.out)
    reporter = Reporter()
    try:
        collapse_watch = None
        from ganplug.models import takes_images

        if watch and not takes_images(cfg.arch):  # the watch samples z; image-to-image models have none
            from ganplug.train.watch import CollapseWatch, WatchSettings

            collapse_watch = CollapseWatch.for_config(cfg, WatchSettings(every=watch_every, on_collapse=on_collapse))
        result = run_training(cfg, resume=resume, force=force, reporter=reporter, watch=collapse_watch,
                              batch_is_default=batch_is_default)
    except KeyboardInterrupt as e:
        reporter.console.print(interrupted_message(e, out), highlight=False)
        raise typer.Exit(130) from None
    except Exception as e:
        rank_failed(e)
        raise
    from ganplug.cli.progress import end_message
    from ganplug.train.distributed import world_from_env

    if not world_from_env().main:  # rank 0 says what happened
        return

    reporter.console.print(end_message(result, cfg.steps, cfg.max_seconds / 60), highlight=False)
    if result.samples:
        reporter.console.print(f"samples: {result.samples[-1]}   timelapse: {result.run_dir / 'timelapse.gif'}")


def rank_failed(e: Exception) -> None:
    """Name the failing rank (ganplug.train.distributed.report_rank_failure); a rank that only lost contact
    with the others exits quietly with 1, since another rank's message gives the cause."""
    from ganplug.train.distributed import report_rank_failure

    if report_rank_failure(e, "train", "resume it from its last checkpoint with `ganplug train --resume RUN`"):
        raise typer.Exit(1) from None


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
