"""`ganplug mix` (style-mixing grid), `ganplug project` (GAN inversion of an image) and `ganplug directions`
(latent directions by PCA, for `generate --edit`).

They call `ganplug.ops` and `ganplug.directions` (as the server's /v1/stylemix, /v1/project and edits do);
torch is imported inside the commands only, so `--help` stays instant.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import typer

from ganplug.cli import validate as v
from ganplug.errors import UserError

CKPT_HELP = "A run folder (its latest checkpoint) or a .safetensors checkpoint file."


def _load(ckpt: Path, device: str):
    from ganplug.checkpoint import load_generator
    from ganplug.device import make_runtime

    rt = make_runtime(device, "fp32", channels_last=False)
    model = load_generator(ckpt, device=rt.device)
    return model, rt


def mix(
    ckpt: Path = typer.Argument(..., help=CKPT_HELP),
    rows: str = typer.Option("1,2,3", callback=v.seed_list, help="Row seeds: they give the style inputs in --styles."),
    cols: str = typer.Option("4,5,6", callback=v.seed_list, help="Column seeds: they give all other style inputs."),
    styles: str = typer.Option(None, help="Style inputs taken from the rows, e.g. '0-6' (default: the coarse half)."),
    out: Path = typer.Option(Path("mix.png"), callback=v.output_file,
                             help="Output grid image; mix.json beside it records how to redo it."),
    truncation: float = typer.Option(1.0, callback=v.truncation, help="Truncation psi in w space."),
    noise: str = typer.Option("const", help="Noise inputs: const, random or none."),
    tileable: bool = typer.Option(False, help="Seamless: the left edge continues the right and the top the bottom."),
    device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:N or mps."),
    force: bool = typer.Option(False, help="Overwrite existing output files."),
) -> None:
    """Style-mixing grid: rows take the coarse styles (pose, shape), columns the fine ones (colour, detail)."""
    from ganplug import ops
    from ganplug.atomic import atomic_write_bytes
    from ganplug.sampling import make_grid, parse_seeds, save_image_atomic

    row_seeds, col_seeds = parse_seeds(rows), parse_seeds(cols)
    if noise not in ops.NOISE_MODES:
        raise UserError(f"--noise must be const, random or none, not {noise!r}.")
    sidecar = out.with_suffix(".json")
    for path in (out, sidecar):
        if path.exists() and not force:
            raise UserError(f"{path} already exists; pass --force to overwrite it or choose another --out.")
    model, rt = _load(ckpt, device)
    ops.require_style_based(model, "style mixing")
    result = ops.mix(model, rt, row_seeds, col_seeds, styles, truncation=truncation, noise=noise, tileable=tileable)
    style_idx = result.params["styles"]
    save_image_atomic(make_grid(ops.mix_grid(result), nrow=len(col_seeds) + 1), out)
    record = {"checkpoint": str(model.path), "step": model.meta.get("step"), "rows": row_seeds, "cols": col_seeds,
              "styles_from_rows": style_idx, "num_ws": model.spec.num_ws, "truncation": truncation, "noise": noise,
              "tileable": tileable,
              "layout": "top row: column seeds; left column: row seeds; cell = row styles in styles_from_rows, "
                        "column styles elsewhere"}
    atomic_write_bytes(sidecar, json.dumps(record, indent=2).encode())
    typer.echo(f"wrote {out} ({len(row_seeds)}x{len(col_seeds)} mixes; rows give styles "
               f"{style_idx[0]}-{style_idx[-1]} of 0-{model.spec.num_ws - 1}) and {sidecar.name}")


def project(
    ckpt: Path = typer.Argument(..., help=CKPT_HELP),
    image: Path = typer.Argument(..., help="The image to reproduce (resized to the model's size if needed)."),
    out: Path = typer.Option(Path("proj"), callback=v.output_dir, help="Output folder."),
    steps: int = typer.Option(500, min=1, help="Optimisation steps."),
    lr: float = typer.Option(0.1, callback=v.positive, help="Peak learning rate (Adam)."),
    loss: str = typer.Option("auto", help="auto (VGG16 if its weights are found), vgg, or pixel (L1 + MS-SSIM)."),
    noise: bool = typer.Option(True, "--noise/--no-noise", help="Also optimise the noise maps (stylegan)."),
    video: str = typer.Option("gif", help="Progress video format: gif or mp4."),
    seed: int = typer.Option(0, callback=v.seed, help="Random seed."),
    weights_dir: Path = typer.Option(None, help="Folder with vgg16-397923af.pth and vgg.pth (LPIPS)."),
    allow_unverified_weights: bool = typer.Option(False, help="Use a VGG16 file whose hash is not the published one."),
    device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:N or mps."),
    force: bool = typer.Option(False, help="Overwrite files in an existing output folder."),
) -> None:
    """Find the latent that reproduces IMAGE: writes projected.png, latent.npy, noise maps and a progress video."""
    import numpy as np
    from rich.progress import Progress
    from safetensors.torch import save as st_save

    from ganplug import ops
    from ganplug.atomic import atomic_write_bytes
    from ganplug.latent import load_target
    from ganplug.sampling import save_animation, save_image_atomic, to_pil

    if video not in ("gif", "mp4"):
        raise UserError(f"--video must be gif or mp4, not {video!r}.")
    names = ["target.png", "projected.png", "latent.npy", "noise.safetensors", f"progress.{video}", "projection.json"]
    clashes = [out / n for n in names if (out / n).exists()]
    if clashes and not force:
        raise UserError(f"{clashes[0]} already exists; pass --force to overwrite the projection in {out}, "
                        "or choose another --out.")
    model, rt = _load(ckpt, device)
    target = load_target(image, model.spec.size, ops.input_channels(model), model.background)
    for note in target.notices:
        typer.echo(f"note: {note}")
    with Progress(transient=True) as bar:
        task = bar.add_task("projecting", total=steps)
        result = ops.project(
            model, rt, target.image, steps=steps, lr=lr, loss=loss, optimize_noise=noise, seed=seed,
            weights_dir=str(weights_dir) if weights_dir else None, allow_unverified_weights=allow_unverified_weights,
            progress=lambda i, d: bar.update(task, completed=i + 1, description=f"loss {d:.4f}"),
        )
    typer.echo(result.loss_note)
    out.mkdir(parents=True, exist_ok=True)
    save_image_atomic(to_pil(target.image), out / "target.png")
    save_image_atomic(to_pil(result.image), out / "projected.png")
    buf = io.BytesIO()
    np.save(buf, result.latent.numpy().astype(np.float32), allow_pickle=False)
    atomic_write_bytes(out / "latent.npy", buf.getvalue())
    files = ["target.png", "projected.png", "latent.npy"]
    if result.noise:
        atomic_write_bytes(out / "noise.safetensors", st_save({k: v.contiguous() for k, v in result.noise.items()}))
        files.append("noise.safetensors")
    frames = [to_pil(f) for f in result.frames]
    save_animation(frames, out / f"progress.{video}", fps=10)
    files.append(f"progress.{video}")
    record = {"checkpoint": str(model.path), "step": model.meta.get("step"), "image": str(image),
              "space": result.space, "latent_shape": list(result.latent.shape), "steps": steps, "lr": lr,
              "loss": result.loss_name, "loss_note": result.loss_note, "notices": target.notices,
              "first_loss": result.losses[0], "final_loss": result.losses[-1], "seed": seed,
              "files": files, "regenerate": f"ganplug generate {model.path} --latent {out / 'latent.npy'} "
                                            "--out again.png"}
    atomic_write_bytes(out / "projection.json", json.dumps(record, indent=2).encode())
    typer.echo(f"wrote {', '.join(files)} and projection.json to {out} "
               f"(loss {result.losses[0]:.4f} -> {result.losses[-1]:.4f})")


PREVIEW_AMOUNTS = (-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0)  # standard deviations, one column each


def _preview(model, rt, found, seeds: list[int], batch_size: int, bar) -> object:
    """The sheet: one row per direction, for each seed its image from -3 to +3 standard deviations."""
    import torch

    from ganplug import ops
    from ganplug.sampling import make_grid

    rows = []
    for k in range(found.count):
        by_amount = torch.stack([ops.generate(model, rt, seeds, edits=[(k, a)], directions=found,
                                              batch_size=batch_size).images for a in PREVIEW_AMOUNTS])
        rows.append(by_amount.transpose(0, 1).flatten(0, 1))  # seed-major: each seed's -3..+3 together
        bar.update(k + 1)
    return make_grid(torch.cat(rows), nrow=len(seeds) * len(PREVIEW_AMOUNTS))


def directions(
    ckpt: Path = typer.Argument(..., help=CKPT_HELP),
    n: int = typer.Option(12, min=1, max=512, help="Directions to keep (the largest principal components)."),
    out: Path = typer.Option(None, callback=v.output_file,
                             help="Output file (default RUN/directions.safetensors); the preview sheet goes beside "
                                  "it as .png."),
    samples: int = typer.Option(10_000, min=16, max=1_000_000, help="Latents sampled for the PCA."),
    seed: int = typer.Option(0, callback=v.seed, help="Seed of the sampled latents."),
    preview_seeds: str = typer.Option("0,1,2", callback=v.seed_list, help="Seeds shown in the preview sheet."),
    batch_size: int = typer.Option(256, min=1, help="Latents per forward pass."),
    names: bool = typer.Option(False, "--names", help="Print the names given to the directions (Krita's Steer "
                               "panel, or PUT /v1/models/NAME/directions/names) and exit; finds nothing."),
    device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:N or mps."),
    force: bool = typer.Option(False, help="Overwrite existing output files."),
) -> None:
    """Find interpretable latent directions without labels (GANSpace PCA), for `generate --edit K:AMOUNT`."""
    from ganplug import directions as dirs
    from ganplug.progress import Bar
    from ganplug.sampling import parse_seeds, save_image_atomic

    if names:
        from ganplug.checkpoint import resolve_checkpoint

        path = out or dirs.default_path_of(resolve_checkpoint(ckpt))
        if not path.is_file():
            raise UserError(f"{path} does not exist; make it with `ganplug directions {ckpt}`.")
        for line in dirs.describe_names(path):
            typer.echo(line)
        return
    model, rt = _load(ckpt, device)
    space = dirs.space_of(model)  # refuses image-to-image models
    out = out or dirs.default_path(model)
    sheet = out.with_suffix(".png")
    for path in (out, sheet):
        if path.exists() and not force:
            raise UserError(f"{path} already exists; pass --force to replace it or choose another --out.")
    with Bar("sampling", samples, unit="latent") as bar:
        found = dirs.find(model, n=n, samples=samples, seed=seed, batch_size=batch_size,
                          progress=lambda done, _total: bar.update(done))
    dirs.save(found, out)  # names given to an earlier file (directions.names.json) no longer apply to it
    with Bar("preview", found.count, unit="row") as bar:
        grid = _preview(model, rt, found, parse_seeds(preview_seeds), batch_size, bar)
    save_image_atomic(grid, sheet)
    spreads = ", ".join(f"{x:.3g}" for x in found.std[:4].tolist())
    typer.echo(f"wrote {out} ({found.count} directions in {space}, spreads {spreads}...) and {sheet.name} "
               f"(rows: directions; columns: -3..+3 std per seed). Use them: "
               f"`ganplug generate {ckpt} --seed 7 --edit 0:+2 --out edited.png`")


def register(app: typer.Typer) -> None:
    app.command("mix")(mix)
    app.command("project")(project)
    app.command("directions")(directions)
