"""`ganplug demo`: show the shipped model's work at once, then fine-tune it for a few minutes and say what it made."""

from __future__ import annotations

from pathlib import Path

import typer

from ganplug.cli import validate as v


def demo_data_dir() -> Path:
    """The bundled demo images (a Twemoji subset, CC-BY 4.0: see its NOTICE)."""
    import ganplug

    return Path(ganplug.__file__).resolve().parent / "demo_data"


def _free_name(base: Path) -> Path:
    """`base`, or `base-2`, `base-3`... so a second demo never overwrites the first."""
    if not base.exists():
        return base
    k = 2
    while (candidate := base.with_name(f"{base.name}-{k}")).exists():
        k += 1
    return candidate


def shipped_model() -> Path:
    """The small FastGAN model that ships in the package (trained on the demo images; see its NOTICE)."""
    import ganplug
    from ganplug.errors import UserError

    path = Path(ganplug.__file__).resolve().parent / "demo_model" / SHIPPED_NAME
    if not path.is_file():
        raise UserError(f"the shipped demo model {path} is missing from this installation; reinstall ganplug "
                        "(`pip install --force-reinstall ganplug`) or train one with `ganplug train`.")
    return path


SHIPPED_NAME = "twemoji64-fastgan.safetensors"
ATTRIBUTION = "Twemoji images (CC-BY 4.0, (c) Twitter, Inc and other contributors)"


def demo(
    minutes: float = typer.Option(3.0, callback=v.positive, help="Fine-tuning time budget in minutes."),
    out: Path = typer.Option(Path("ganplug-demo"), callback=v.output_beside,
                             help="Run folder (a free name is chosen if it exists)."),
    device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:N or mps."),
    precision: str = typer.Option("auto", help="auto, fp32, bf16 or fp16."),
    batch: int = typer.Option(None, min=1, help="Images per batch (default: FastGAN's, 32 on a CPU and 8 on a GPU)."),
) -> None:
    """Generate a grid and a morph from the model that ships with ganplug, then fine-tune it on the bundled
    emoji for MINUTES to show training, and say how to open it in Krita."""
    from ganplug import ops
    from ganplug.checkpoint import load_generator, read_meta
    from ganplug.cli.progress import RichReporter
    from ganplug.device import make_runtime
    from ganplug.train.config import TrainConfig
    from ganplug.train.loop import train

    data = demo_data_dir()
    shipped = shipped_model()
    run_dir = _free_name(out)
    run_dir.mkdir(parents=True)
    reporter = RichReporter()
    say = reporter.console.print
    meta = read_meta(shipped)
    rt = make_runtime(device, "fp32")
    model = load_generator(shipped, device=rt.device)
    trained = meta.get("release", {}).get("step") or meta.get("step", 0)
    say(f"ganplug demo: the model that ships with ganplug, a {meta['model']['size']} px FastGAN trained for "
        f"{trained:,} steps on the {len(list(data.glob('*.png')))} bundled {ATTRIBUTION}", highlight=False)
    grid, morph = _show(model, rt, run_dir, "shipped", ops)
    say(f"  its samples  {grid}\n  its morph    {morph}", markup=False, highlight=False)

    say(f"\nNow {_minutes(minutes)} of fine-tuning on the same images (`ganplug train --init-from`), to show "
        "training; the samples and the timelapse are written as it goes.", highlight=False)
    cfg = TrainConfig.for_family(
        "fastgan", data=str(data), out=str(run_dir / "fine-tune"), size=int(meta["model"]["size"]),
        steps=1_000_000, sample_every=100, ckpt_every=500, max_seconds=minutes * 60, device=device,
        precision=precision, init_from=str(shipped), model=dict(meta["model"]), **({"batch": batch} if batch else {}))
    result = train(cfg, reporter=reporter, batch_is_default=not batch)
    cfg = result.config  # as it trained (a batch may have shrunk)
    tuned = load_generator(result.checkpoint, device=rt.device)
    grid, morph = _show(tuned, rt, run_dir, "fine-tuned", ops)
    say(f"\n[bold]done[/]: fine-tuned for {result.step} steps. Look at:")
    for label, path in (("sample grid", grid), ("morph", morph), ("timelapse", run_dir / "fine-tune" / "timelapse.gif"),
                        ("checkpoint", result.checkpoint)):
        say(f"  {label:12s} {path}", markup=False, highlight=False)
    say(judge_demo(tuned.G, result.step, cfg, run_dir / "fine-tune", pretrained=int(meta.get("nimg", 0))),
        highlight=False)
    say("\nOpen it in Krita: run `ganplug serve --models " + str(run_dir / "fine-tune") + "`, install the docker with "
        "`ganplug plugin build krita` (docs/serving.md), and press Generate; the layers are transparent cut-outs. "
        f"Or `ganplug generate {run_dir / 'fine-tune'} --n 16 --out grid.png`.", markup=False, highlight=False)


def _show(model, rt, run_dir: Path, name: str, ops) -> tuple[Path, Path]:
    """A 64-seed grid and a looping morph through five seeds, written into the demo folder."""
    from ganplug.sampling import generate_all, make_grid, save_animation, save_image_atomic, to_pil

    grid = run_dir / f"{name}-samples.png"
    save_image_atomic(make_grid(generate_all(model.G, range(64), runtime=rt), nrow=8), grid)
    morph = run_dir / f"{name}-morph.gif"
    frames = ops.interpolate(model, rt, [0, 1, 2, 3, 4, 0], 90).images
    save_animation([to_pil(f) for f in frames], morph, fps=24)
    return grid, morph


def _minutes(m: float) -> str:
    return f"{m:g} minute" + ("" if m == 1 else "s")


# Training from scratch, the collapse check reads early samples as collapse: below this many images seen
# the demo says the model is early instead of blaming the art (images, not steps: batches differ by device).
MEANINGFUL_IMAGES = 8_000


def judge_demo(G, steps: int, cfg, run_dir: Path, pretrained: int = 0) -> str:
    """Say plainly what the grid shows: the collapse battery on 128 fixed-seed samples against the
    training images, read together with how many images the model has seen (its own plus the shipped
    model's `pretrained` when it was fine-tuned from it)."""
    from ganplug.data import load_training_data
    from ganplug.train.watch import CollapseWatch, WatchSettings

    watch = CollapseWatch(None, WatchSettings(samples=128, real=438))
    data = load_training_data(cfg.data, size=cfg.size, background=cfg.background, keep_alpha=cfg.alpha, progress=False)
    watch.begin(cfg, data)
    watch.check(steps, G, [])
    v = watch.last
    images = steps * cfg.batch
    total = images + pretrained
    seen = f"{steps} steps ({images:,} images seen)"
    if pretrained:
        seen += f" on top of the shipped model's {pretrained:,}"
    if v.verdict == "healthy" and total >= MEANINGFUL_IMAGES:
        return f"verdict: the samples vary like the training images do (collapse check: healthy) after {seen}."
    early = total < MEANINGFUL_IMAGES
    more = max(-(-(MEANINGFUL_IMAGES - pretrained) // cfg.batch), 2 * steps)
    why = (f"only {seen}; a model needs about {MEANINGFUL_IMAGES:,} images seen before its grid means anything"
           if early else f"{seen}, and the collapse check says {v.verdict} (severity {v.severity:.2f})")
    return (f"verdict: the grid is not yet meaningful ({why}; the machine may have been busy). Train on with "
            f"`ganplug train --resume {run_dir} --steps {more}`.")


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
