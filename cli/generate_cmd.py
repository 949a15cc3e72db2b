"""`ganplug generate`, `variations`, `interpolate`, `rank` and `translate`: images from a trained checkpoint.

Each command parses its options, calls the operation in `ganplug.ops` (the server calls the same ones)
and writes files. torch and the library are imported inside the commands, so `--help` stays instant.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from ganplug.cli import validate as v
from ganplug.errors import UserError
from ganplug.seeds import MAX_SEEDS

CKPT_HELP = "A run folder (its latest checkpoint) or a .safetensors checkpoint file."
NOISE_HELP = "Noise inputs for style-based models: const (default), random or none."
TILE_HELP = "Seamless: the left edge continues the right and the top the bottom (as the plugins' Tileable)."


def _refuse_existing(path: Path, force: bool) -> None:
    if path.exists() and not force:
        raise UserError(f"{path} already exists; pass --force to overwrite it or choose another name.")


def _load(ckpt: Path, device: str, precision: str, *, translator: bool = False):
    """The checkpoint's EMA generator, refusing a seed-driven model where a translator is needed and back."""
    from ganplug.checkpoint import load_generator
    from ganplug.device import make_runtime

    rt = make_runtime(device, precision)
    model = load_generator(ckpt, device=rt.device)
    if model.spec.image_to_image and not translator:
        raise UserError(f"{model.path} is an image-to-image ({model.spec.arch}) model: it translates images rather "
                        "than drawing them from seeds. Use `ganplug translate CKPT sketch.png --out out.png`.")
    if translator and not model.spec.image_to_image:
        raise UserError(f"{model.path} is a {model.spec.arch} generator that draws images from seeds; translating "
                        "needs a pix2pix model (`ganplug prep SRC DATA --pairs edges`, then "
                        "`ganplug train DATA --arch pix2pix`).")
    rt.prepare_module(model.G)
    return model, rt


def _read_saved_latent(model, path: Path):
    """The ops.Latent of a projection's latent.npy, with its noise maps when they are beside it."""
    from ganplug import ops
    from ganplug.latent import read_latent_file, read_noise_file

    arr = read_latent_file(path)
    space = None
    try:  # projection.json says which space the latent is in; without it, the size tells
        space = json.loads(path.with_name("projection.json").read_text()).get("space")
    except (OSError, ValueError, AttributeError):
        pass
    if space not in ("w", "z"):
        space = None
    spec = model.spec
    w_size = spec.num_ws * model.G.w_dim if spec.style_based else None
    if space is None:  # no record beside it: tell z from w by the size
        space = "w" if arr.size == w_size else "z"
    if arr.size != (w_size if space == "w" else spec.z_dim):
        raise UserError(f"--latent {path} holds {arr.size} numbers (shape {list(arr.shape)}), which is not a "
                        f"latent of this {spec.arch} checkpoint; was it projected with another model?")
    noise_path = path.with_name("noise.safetensors")
    noise = read_noise_file(noise_path) if noise_path.is_file() else None  # read (and checked) as before
    return ops.check_latent(model, arr.reshape(ops.latent_shape(model, space)), space,
                            noise if space == "w" else None)  # a z latent has no noise maps to use


def _edits_and_directions(model, edit: str | None, directions: Path | None):
    """(edits, the checked directions file or None, its path or None) of --edit and --directions."""
    from ganplug.directions import default_path, parse_edits
    from ganplug.directions import load as load_directions

    edits = parse_edits(edit)
    if directions is not None and not edits:
        raise UserError("--directions chooses the file for --edit; give --edit K:AMOUNT too.")
    if not edits:
        return edits, None, None
    found_at = directions or default_path(model)
    return edits, load_directions(found_at, model), found_at


def _write_each(images, names: list[str], outdir: Path, force: bool, sidecar: Path | None = None) -> None:
    """One PNG per image into `outdir`, refusing to overwrite any of them (or the sidecar) without --force."""
    from ganplug.sampling import save_image_atomic, to_pil

    clashes = [outdir / nm for nm in names if (outdir / nm).exists()]
    clashes += [sidecar] if sidecar is not None and sidecar.exists() else []
    if clashes and not force:
        raise UserError(f"{clashes[0]} already exists ({len(clashes)} files would be overwritten); "
                        "pass --force or choose another --outdir.")
    outdir.mkdir(parents=True, exist_ok=True)
    for img, nm in zip(images, names, strict=True):
        save_image_atomic(to_pil(img), outdir / nm)


def _write_record(path: Path, model, result, files: list[str]) -> None:
    """The sidecar that regenerates every image: checkpoint, resolved options and each file's label."""
    from ganplug.atomic import atomic_write_bytes

    record = {"checkpoint": str(model.path), "step": model.meta.get("step"), "arch": model.spec.arch,
              **result.params, "z": "N(0, I) from numpy RandomState(seed)",
              "images": [{"file": f, "index": k, **lab} for k, (f, lab) in enumerate(zip(files, result.labels,
                                                                                        strict=True))]}
    atomic_write_bytes(path, json.dumps(record, indent=2).encode())


def generate(
    ckpt: Path = typer.Argument(..., help=CKPT_HELP),
    n: int = typer.Option(64, min=1, max=MAX_SEEDS, help="Number of images (seeds SEED..SEED+N-1)."),
    seed: int = typer.Option(0, callback=v.seed, help="First seed."),
    seeds: str = typer.Option(None, callback=v.seed_list,
                              help="Explicit seeds, e.g. '3,7,12' or '0-15' (overrides --n/--seed)."),
    out: Path = typer.Option(None, callback=v.output_file, help="Write one grid image here (.png)."),
    outdir: Path = typer.Option(None, callback=v.output_dir,
                                help="Write one PNG per image here, plus seeds.json to regenerate them."),
    truncation: float = typer.Option(1.0, callback=v.truncation,
                                     help="Truncation psi: 1 = none, smaller = safer, less varied."),
    noise: str = typer.Option(None, help=NOISE_HELP),
    tileable: bool = typer.Option(False, help=TILE_HELP),
    latent: Path = typer.Option(None, help="Regenerate one image from a latent.npy written by `ganplug project` "
                                "(its noise.safetensors and projection.json beside it are used; --truncation and "
                                "--edit apply as for a seed); needs --out."),
    edit: str = typer.Option(None, help="Move along latent directions, K:AMOUNT in standard deviations, e.g. "
                             "'0:+2.5,3:-1' (from `ganplug directions`; in w after truncation, or in z)."),
    directions: Path = typer.Option(None, help="The directions file for --edit (default RUN/directions.safetensors)."),
    nrow: int = typer.Option(None, min=1, help="Images per grid row."),
    batch_size: int = typer.Option(32, min=1, help="Images generated per forward pass."),
    device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:N or mps."),
    precision: str = typer.Option("fp32", help="fp32, bf16, fp16 or auto."),
    force: bool = typer.Option(False, help="Overwrite existing output files."),
) -> None:
    """Generate images: a grid (--out) or one file per seed (--outdir)."""
    if (out is None) == (outdir is None):
        raise UserError("give exactly one of --out grid.png or --outdir DIR.")
    if out is not None:  # before torch is imported: a refusal is instant
        _refuse_existing(out, force)
    from ganplug import ops
    from ganplug.directions import parse_edits
    from ganplug.sampling import make_grid, parse_seeds, save_image_atomic, to_pil

    parse_edits(edit)  # an unreadable --edit is refused before the checkpoint loads
    if latent is not None:
        if seeds is not None or n != 64 or seed != 0:
            raise UserError("--latent draws the saved latent instead of seeds; drop --seeds, --n and --seed.")
        if out is None:
            raise UserError("--latent regenerates one image: give --out image.png, not --outdir.")
        model, rt = _load(ckpt, device, precision)
        edits, found, _ = _edits_and_directions(model, edit, directions)
        result = ops.generate_latent(model, rt, _read_saved_latent(model, latent), truncation=truncation,
                                     noise=noise, tileable=tileable, edits=edits, directions=found)
        save_image_atomic(to_pil(result.images[0]), out)
        typer.echo(f"wrote {out} from {latent}")
        return
    seed_list = parse_seeds(seeds) if seeds is not None else list(range(seed, seed + n))
    model, rt = _load(ckpt, device, precision)
    edits, found, found_at = _edits_and_directions(model, edit, directions)
    result = ops.generate(model, rt, seed_list, truncation=truncation, noise=noise, tileable=tileable,
                          batch_size=batch_size, edits=edits, directions=found)
    if found_at is not None:
        result.params["directions"] = str(found_at)
    if out is not None:
        save_image_atomic(make_grid(result.images, nrow=nrow), out)
        typer.echo(f"wrote {out} ({len(seed_list)} images, seeds {seed_list[0]}..{seed_list[-1]})")
        return
    names = [f"{i:04d}-seed{s}.png" for i, s in enumerate(seed_list)]
    _write_each(result.images, names, outdir, force, sidecar=outdir / "seeds.json")
    _write_record(outdir / "seeds.json", model, result, names)
    typer.echo(f"wrote {len(seed_list)} images and seeds.json to {outdir}")


def variations(
    ckpt: Path = typer.Argument(..., help=CKPT_HELP),
    seed: int = typer.Option(..., callback=v.seed, help="The seed whose image to vary."),
    n: int = typer.Option(4, min=1, max=MAX_SEEDS, help="Number of variations."),
    strength: float = typer.Option(0.3, callback=v.unit_interval,
                                   help="0 = the seed's own image, 1 = unrelated images."),
    outdir: Path = typer.Option(..., callback=v.output_dir,
                                help="Write one PNG per variation here, plus variations.json."),
    truncation: float = typer.Option(1.0, callback=v.truncation, help="Truncation psi."),
    noise: str = typer.Option(None, help=NOISE_HELP),
    tileable: bool = typer.Option(False, help=TILE_HELP),
    edit: str = typer.Option(None, help="Vary the edited image: K:AMOUNT along latent directions, as "
                             "`generate --edit` (every variation is moved alike)."),
    directions: Path = typer.Option(None, help="The directions file for --edit (default RUN/directions.safetensors)."),
    latent: Path = typer.Option(None, help="Vary a latent.npy written by `ganplug project` instead of the seed's "
                                "image; --seed then picks the variations."),
    batch_size: int = typer.Option(32, min=1, help="Images generated per forward pass."),
    device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:N or mps."),
    precision: str = typer.Option("fp32", help="fp32, bf16, fp16 or auto."),
    force: bool = typer.Option(False, help="Overwrite existing output files."),
) -> None:
    """Images near one seed (the plugins' Variations): the same pixels as the server's /v1/variations."""
    from ganplug import ops
    from ganplug.directions import parse_edits

    parse_edits(edit)
    model, rt = _load(ckpt, device, precision)
    edits, found, found_at = _edits_and_directions(model, edit, directions)
    base = _read_saved_latent(model, latent) if latent is not None else None
    result = ops.variations(model, rt, seed, n, strength=strength, truncation=truncation, noise=noise,
                            tileable=tileable, batch_size=batch_size, edits=edits, directions=found, latent=base)
    if found_at is not None:
        result.params["directions"] = str(found_at)
    if latent is not None:
        result.params["latent"] = str(latent)
    names = [f"seed{seed}-v{lab['variation']}.png" for lab in result.labels]
    _write_each(result.images, names, outdir, force, sidecar=outdir / "variations.json")
    _write_record(outdir / "variations.json", model, result, names)
    typer.echo(f"wrote {n} variations of seed {seed} and variations.json to {outdir}")


def interpolate(
    ckpt: Path = typer.Argument(..., help=CKPT_HELP),
    seeds: str = typer.Option("0,1", callback=v.seed_list, help="Seeds to pass through, in order, e.g. '3,7,12'."),
    frames: int = typer.Option(48, min=2, max=10_000, help="Number of frames."),
    out: Path = typer.Option(Path("morph.gif"), callback=v.output_file,
                             help="Output animation (.gif, or .mp4 with imageio-ffmpeg)."),
    outdir: Path = typer.Option(None, callback=v.output_dir,
                                help="Write one PNG per frame here instead of an animation (exact pixels)."),
    fps: float = typer.Option(24.0, callback=v.fps, help="Frames per second."),
    loop: bool = typer.Option(False, help="Return to the first seed at the end."),
    truncation: float = typer.Option(1.0, callback=v.truncation, help="Truncation psi."),
    noise: str = typer.Option(None, help=NOISE_HELP),
    tileable: bool = typer.Option(False, help=TILE_HELP),
    device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:N or mps."),
    precision: str = typer.Option("fp32", help="fp32, bf16, fp16 or auto."),
    force: bool = typer.Option(False, help="Overwrite an existing output file."),
) -> None:
    """Morph between seeds (lerp in w for style-based models, slerp in z otherwise) as a GIF, MP4 or PNGs."""
    from ganplug import ops
    from ganplug.sampling import parse_seeds, save_animation, to_pil

    seed_list = parse_seeds(seeds)
    if outdir is None:
        if out.suffix.lower() not in (".gif", ".mp4"):
            raise UserError(f"--out {out}: write a .gif or an .mp4.")
        _refuse_existing(out, force)
    model, rt = _load(ckpt, device, precision)
    result = ops.interpolate(model, rt, seed_list, frames, loop=loop, truncation=truncation, noise=noise,
                             tileable=tileable)
    via = ", ".join(map(str, seed_list))
    if outdir is not None:
        names = [f"frame{i:04d}.png" for i in range(frames)]
        _write_each(result.images, names, outdir, force, sidecar=outdir / "frames.json")
        _write_record(outdir / "frames.json", model, result, names)
        typer.echo(f"wrote {frames} frames through seeds {via} and frames.json to {outdir}")
        return
    save_animation([to_pil(im) for im in result.images], out, fps=fps)
    typer.echo(f"wrote {out} ({frames} frames through seeds {via})")


def _stack_vertically(parts):
    """PIL images one above the other with a 12 px grey gap (rank's best above its worst)."""
    from PIL import Image

    gap = 12
    height = sum(p.height for p in parts) + gap * (len(parts) - 1)
    canvas = Image.new(parts[0].mode, (max(p.width for p in parts), height), (128,) * len(parts[0].getbands()))
    y = 0
    for p in parts:
        canvas.paste(p, (0, y))
        y += p.height + gap
    return canvas


def rank(
    ckpt: Path = typer.Argument(..., help=CKPT_HELP),
    n: int = typer.Option(256, min=1, max=MAX_SEEDS, help="Samples to score."),
    best: int = typer.Option(16, min=0, help="How many of the best-scored samples to show."),
    worst: int = typer.Option(16, min=0, help="How many of the worst-scored samples to show."),
    seed: int = typer.Option(0, callback=v.seed, help="First seed."),
    out: Path = typer.Option(Path("ranked.png"), callback=v.output_file,
                             help="Output image: best on top, worst below."),
    device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:N or mps."),
    force: bool = typer.Option(False, help="Overwrite an existing output file."),
) -> None:
    """Score samples with the discriminator and show the best and the worst."""
    import torch

    from ganplug import ops
    from ganplug.checkpoint import load_discriminator
    from ganplug.sampling import make_grid, save_image_atomic

    if best + worst == 0:
        raise UserError("--best and --worst are both 0; show at least one image.")
    if best > n or worst > n:
        raise UserError(f"--best {best} / --worst {worst} cannot exceed --n {n}.")
    _refuse_existing(out, force)
    model, rt = _load(ckpt, device, "fp32")
    D, _ = load_discriminator(model.path, device=rt.device)
    seeds = list(range(seed, seed + n))
    result, scores = ops.rank(model, D, rt, seeds)
    order = torch.argsort(scores, descending=True)
    parts = []
    if best:
        parts.append(make_grid(result.images[order[:best]]))
    if worst:
        parts.append(make_grid(result.images[order[-worst:].flip(0)]))
    save_image_atomic(_stack_vertically(parts), out)
    top = ", ".join(f"{seeds[i]} ({scores[i]:.2f})" for i in order[: min(best, 5)].tolist())
    typer.echo(f"wrote {out}: best {best} on top, worst {worst} below. Best seeds (D score): {top}")


def translate(
    ckpt: Path = typer.Argument(..., help=CKPT_HELP),
    images: list[Path] = typer.Argument(..., help="Input images (sketches, edge maps...)."),
    out: Path = typer.Option(None, callback=v.output_file, help="Write the translation of the one input here (.png)."),
    outdir: Path = typer.Option(None, callback=v.output_dir, help="Write one PNG per input here, named after it."),
    tileable: bool = typer.Option(False, help=TILE_HELP),
    device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:N or mps."),
    precision: str = typer.Option("fp32", help="fp32, bf16, fp16 or auto."),
    force: bool = typer.Option(False, help="Overwrite existing output files."),
) -> None:
    """Translate images with an image-to-image (pix2pix) model: a sketch in, a rendered image out."""
    from ganplug import ops
    from ganplug.latent import load_target
    from ganplug.sampling import save_image_atomic, to_pil

    if (out is None) == (outdir is None):
        raise UserError("give exactly one of --out image.png (one input) or --outdir DIR.")
    if out is not None and len(images) != 1:
        raise UserError(f"--out takes one input and {len(images)} were given; use --outdir DIR for several.")
    targets = [out] if out is not None else [outdir / f"{p.stem}.png" for p in images]
    if len(set(targets)) != len(targets):
        raise UserError("two inputs have the same name, so their outputs would collide; rename one.")
    for t in targets:
        _refuse_existing(t, force)
    model, rt = _load(ckpt, device, precision, translator=True)
    inputs = []  # every input is read before anything is written: a bad one costs no half-done folder
    for path in images:
        target = load_target(path, model.spec.size, ops.input_channels(model), model.background)
        for note in target.notices:
            typer.echo(f"note: {note}")
        inputs.append(target.image)
    if outdir is not None:
        outdir.mkdir(parents=True, exist_ok=True)
    for src, dst, img in zip(images, targets, inputs, strict=True):
        result = ops.translate(model, rt, img[None], tileable=tileable)
        save_image_atomic(to_pil(result.images[0]), dst)
        typer.echo(f"wrote {dst} (from {src})")


def register(app: typer.Typer) -> None:
    app.command("generate")(generate)
    app.command("variations")(variations)
    app.command("interpolate")(interpolate)
    app.command("rank")(rank)
    app.command("translate")(translate)
