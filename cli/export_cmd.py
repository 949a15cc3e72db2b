"""`ganplug export`: a run's model as one small file to share, ship or serve (weights only)."""

from __future__ import annotations

from pathlib import Path

import typer

from ganplug.cli import validate as v


def export(
    run: Path = typer.Argument(..., help="Run folder or checkpoint file."),
    out: Path = typer.Argument(..., callback=v.output_file, help="The .safetensors file to write."),
    dtype: str = typer.Option("fp16", help="Weight precision: fp16 (half the size; what samples need), bf16 or "
                                           "fp32."),
    discriminator: bool = typer.Option(True, "--discriminator/--no-discriminator",
                                       help="Keep D too, so others can fine-tune it (`train --init-from`); "
                                            "without it the file only generates."),
    notice: str = typer.Option("", help="Licence and attribution of the training images, stored in the file."),
    force: bool = typer.Option(False, "--force", help="Replace OUT if it exists."),
) -> None:
    """Write RUN's generator (and discriminator) as one .safetensors file: no optimiser state, so it is a
    fraction of a checkpoint; generate, serve and --init-from read it like a run."""
    from ganplug.errors import UserError

    if out.suffix != ".safetensors":
        raise UserError(f"{out}: name the file *.safetensors (it is a safetensors file; readers look for that).")
    if out.exists() and not force:
        raise UserError(f"{out} exists; choose another name or pass --force to replace it.")
    from ganplug.checkpoint import export_release

    path = export_release(run, out, dtype=dtype, discriminator=discriminator, notice=notice)
    typer.echo(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB); try `ganplug generate {path} --n 16 "
               f"--out grid.png`")


def register(app: typer.Typer) -> None:
    app.command("export")(export)
