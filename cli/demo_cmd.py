"""`ganplug demo`: train a DCGAN on the bundled emoji set for a few minutes and show what it made."""

from __future__ import annotations

import math
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


def demo(
    minutes: float = typer.Option(3.0, callback=v.positive, help="Training time budget in minutes."),
    out: Path = typer.Option(Path("ganplug-demo"), callback=v.output_beside,
                             help="Run folder (a free name is chosen if it exists)."),
    device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:N or mps."),
    precision: str = typer.Option("auto", help="auto, fp32, bf16 or fp16."),
    batch: int = typer.Option(64, min=1, help="Images per batch."),
) -> None:
    """Train a 64x64 DCGAN on the bundled emoji for MINUTES, then write a sample grid, a morph and a timelapse."""
    from ganplug import ops
    from ganplug.cli.progress import RichReporter
    from ganplug.sampling import generate_all, make_grid, save_animation, save_image_atomic, to_pil
    from ganplug.train.config import TrainConfig
    from ganplug.train.loop import train

    data = demo_data_dir()
    run_dir = _free_name(out)
    cfg = TrainConfig(data=str(data), out=str(run_dir), arch="dcgan", size=64, steps=1_000_000, batch=batch,
                      sample_every=100, ckpt_every=500, max_seconds=minutes * 60, device=device, precision=precision,
                      ema_kimg=2.0, model={"base_channels": 32})  # 4x fewer FLOPs: ~4x the steps in the budget
    reporter = RichReporter()
    reporter.console.print(f"ganplug demo: {_minutes(minutes)} of DCGAN training on {len(list(data.glob('*.png')))} "
                           "Twemoji images (CC-BY 4.0, (c) Twitter, Inc and other contributors)")
    result = train(cfg, reporter=reporter)

    from ganplug.checkpoint import load_generator
    from ganplug.device import make_runtime

    rt = make_runtime(device, "fp32")
    model = load_generator(result.checkpoint, device=rt.device)
    grid = run_dir / "samples-final.png"
    save_image_atomic(make_grid(generate_all(model.G, range(64), runtime=rt), nrow=8), grid)
    morph = run_dir / "morph.gif"
    frames = ops.interpolate(model, rt, [0, 1, 2, 3, 4, 0], 90).images
    save_animation([to_pil(f) for f in frames], morph, fps=24)
    reporter.console.print(f"\n[bold]done[/] after {result.step} steps. Look at:")
    reporter.console.print(f"  sample grid  {grid}")
    reporter.console.print(f"  morph        {morph}")
    reporter.console.print(f"  timelapse    {run_dir / 'timelapse.gif'}")
    reporter.console.print(f"  checkpoint   {result.checkpoint}")
    reporter.console.print(judge_demo(model.G, result.step, cfg, run_dir))
    reporter.console.print(f"next: `ganplug generate {run_dir} --n 16 --out grid.png`, or train longer with "
                           f"`ganplug train --resume {run_dir} --steps {result.step + 2000}`")


def _minutes(m: float) -> str:
    return f"{m:g} minute" + ("" if m == 1 else "s")


# What the README's demo picture took: about 1,000 steps of batch 64 on a quiet 2-core CPU.
MEANINGFUL_STEPS = 1000


def judge_demo(G, steps: int, cfg, run_dir: Path) -> str:
    """Say plainly what the grid shows: the collapse battery on 128 fixed-seed samples against the
    training images, read together with how long the model trained."""
    from ganplug.data import load_training_data
    from ganplug.train.watch import CollapseWatch, WatchSettings

    watch = CollapseWatch(None, WatchSettings(samples=128, real=438))
    data = load_training_data(cfg.data, size=cfg.size, background=cfg.background, keep_alpha=cfg.alpha, progress=False)
    watch.begin(cfg, data)
    watch.check(steps, G, [])
    v = watch.last
    seen = f"{steps} steps ({steps * cfg.batch:,} images seen)"
    if v.verdict == "healthy" and steps >= MEANINGFUL_STEPS:
        return f"verdict: the samples vary like the training images do (collapse check: healthy) after {seen}."
    more = max(MEANINGFUL_STEPS, 2 * steps)
    early = steps < MEANINGFUL_STEPS
    why = (f"only {seen}; the README's picture took about {MEANINGFUL_STEPS:,} steps" if early else
           f"{seen}, and the collapse check says {v.verdict} (severity {v.severity:.2f})")
    return (f"verdict: the grid is not yet meaningful ({why}; the machine may have been busy). Train on with "
            f"`ganplug train --resume {run_dir} --steps {more}`, or run `ganplug demo --minutes "
            f"{math.ceil(cfg.max_seconds / 60 * MEANINGFUL_STEPS / max(steps, 1)):d}` on a quiet machine.")


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
