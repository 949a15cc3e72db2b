"""`ganplug prep`: turn an asset folder into a prepared dataset (see docs/data.md)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from ganplug.cli import validate as v
from ganplug.data.decode import DEFAULT_MAX_PIXELS
from ganplug.data.dedup import DEFAULT_THRESHOLD
from ganplug.data.options import MAX_SIZE, MIN_SIZE


def _summary(result) -> Table:
    c = result.counts
    table = Table(title=f"prepared {result.path}", show_header=True, header_style="bold")
    table.add_column("step")
    table.add_column("images", justify="right")
    table.add_column("notes")
    reasons: dict[str, int] = {}
    for s in result.meta.get("skipped", []):
        key = s["reason"].split(" (")[0].split(":")[0]
        reasons[key] = reasons.get(key, 0) + 1
    notes = ", ".join(f"{n} {r}" for r, n in sorted(reasons.items(), key=lambda x: -x[1])[:4])
    table.add_row("image files found", str(c["files"]), "")
    table.add_row("read", str(c["read"]), "")
    table.add_row("skipped", str(c["skipped"]), notes + (" (see report.json)" if notes else ""))
    extra = f"+{c['parts_from_sheets']} designs" if c["sheets_split"] else ""
    table.add_row("sheets split", str(c["sheets_split"]), extra)
    if c.get("blank_cells"):
        table.add_row("blank sheet cells dropped", str(c["blank_cells"]), "")
    dups = "exact and near (see report.json)" if c["duplicates"] else ""
    table.add_row("duplicates dropped", str(c["duplicates"]), dups)
    table.add_row("augmented copies", str(c["augmented"]), "")
    table.add_row("held out", str(c["holdout"]), "holdout/images.npy" if c["holdout"] else "")
    size, ch = result.meta["size"], result.meta["channels"]
    table.add_row("[bold]training images", f"[bold]{c['train']}", f"{size}x{size} {'RGBA' if ch == 4 else 'RGB'}")
    return table


def alpha_note(alpha: dict, background: str) -> str:
    """The line that says what an automatic --alpha decided, and how to ask for the other."""
    if alpha.get("requested") != "auto" or "checked" not in alpha:
        return ""
    seen = f"{alpha['transparent']} of {alpha['checked']} checked images have transparent pixels"
    if alpha["kept"]:
        return f"kept transparency (RGBA): {seen}; models trained on this generate cut-outs. " \
               f"--no-alpha composites onto {background} instead."
    return f"composited onto {background} (RGB): {seen}. --alpha keeps transparency instead."


def prep(
    src: Path = typer.Argument(..., help="Folder of images (searched recursively)."),
    out: Path = typer.Argument(..., callback=v.output_dir,
                               help="Dataset folder to write (images.npy, dataset.json, preview.png)."),
    size: int = typer.Option(128, min=MIN_SIZE, max=MAX_SIZE, help="Output size in pixels (square)."),
    background: str = typer.Option("white", help="Transparency is composited onto: white, black, gray or #rrggbb."),
    alpha: bool = typer.Option(None, "--alpha/--no-alpha",
                               help="Keep transparency (RGBA; the model then generates cut-outs) or composite it "
                                    "onto --background. Default: keep it when most images have transparent pixels."),
    keep_alpha: bool = typer.Option(False, "--keep-alpha", hidden=True, help="Old name of --alpha."),
    fit: str = typer.Option("pad", help="pad (whole design visible), crop (centre) or stretch."),
    resample: str = typer.Option("lanczos", help="Resampling filter: lanczos, box, bicubic or bilinear."),
    split: str = typer.Option("auto", help="Sheets: auto (two designs side by side), halves, none, or 'grid RxC'."),
    dedup: bool = typer.Option(True, "--dedup/--no-dedup", help="Drop exact and near duplicates."),
    dedup_threshold: float = typer.Option(DEFAULT_THRESHOLD, callback=v.dedup_threshold,
                                          help="Near-duplicate tolerance (mean difference, 0-255)."),
    mirror: bool = typer.Option(False, "--mirror", help="Augmented copies alternate with mirror images."),
    brightness: str = typer.Option(None, help="Brightness factor range for augmented copies, e.g. 0.7,1.2."),
    color: str = typer.Option(None, help="Saturation factor range for augmented copies, e.g. 0.5,0.9."),
    jitter: int = typer.Option(None, min=1, help="Resize to this size, random-crop back to --size (e.g. 286 for 256)."),
    copies: int = typer.Option(None, min=0, max=64,
                               help="Augmented copies per image (default 1 when any augmentation is on)."),
    seed: int = typer.Option(None, callback=v.seed,
                             help="Seed for augmentation and the holdout split (default: random, recorded)."),
    holdout: float = typer.Option(0.0, callback=v.holdout,
                                  help="Fraction of source files held out for evaluation, e.g. 0.2."),
    pairs: str = typer.Option(None, help="Image-to-image pairs: 'edges' (derive sketches) or 'A_DIR,B_DIR'."),
    max_pixels: int = typer.Option(DEFAULT_MAX_PIXELS, min=1, help="Refuse images with more pixels than this."),
    hash_method: str = typer.Option("stat", "--hash", help="Source fingerprint: stat (size, mtime) or contents."),
    workers: int = typer.Option(None, min=1, help="Decoding threads (default: CPU count, at most 8)."),
    force: bool = typer.Option(False, "--force", help="Replace OUT even if it holds something else."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or table."),
) -> None:
    """Decode, clean, split, de-duplicate and augment SRC into a dataset OUT that train and eval read."""
    from ganplug.data.options import PrepOptions
    from ganplug.data.prep import prepare_dataset
    from ganplug.data.progress import prep_progress

    opts = PrepOptions(
        size=size, background=background, keep_alpha=True if keep_alpha else alpha, fit=fit, resample=resample,
        split=split, dedup=dedup, dedup_threshold=dedup_threshold, mirror=mirror, brightness=brightness, color=color,
        jitter=jitter, copies=copies, seed=seed, holdout=holdout, pairs=pairs, max_pixels=max_pixels,
        hash=hash_method,
    )
    console = Console(stderr=True)
    with prep_progress("prep", console=console, enabled=not quiet) as bar:
        result = prepare_dataset(src, out, opts, workers=workers, force=force, progress=bar)
    if result.noop:
        console.print(f"{out} is up to date (same sources and options); nothing to do.")
        return
    if not quiet:
        Console().print(_summary(result))
        note = alpha_note(result.meta.get("alpha", {}), opts.background)
        if note:
            console.print(note, markup=False, highlight=False)
        rate = result.report.get("images_per_second")
        console.print(f"{result.seconds:.1f} s ({rate} images/s); preview: {Path(out) / 'preview.png'}")


def register(app: typer.Typer) -> None:
    app.command("prep")(prep)
