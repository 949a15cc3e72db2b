"""The operations on a trained model, once: the CLI commands and the server's endpoints both call these.

Each is a plain function of (loaded model, runtime, typed parameters) returning uint8 images on the CPU
and, per image, what regenerates it. Callers only add transport: the CLI writes files, the server
parses requests, resizes, base64-encodes and runs jobs. So the same seeds and options give the same
pixels in Krita, Blender, the web page and on the command line.

Family choices live here and nowhere else: a style-based model morphs by lerp in w (StyleGAN's papers
do), a z-only model by slerp in z; style mixing takes a set of style inputs from the rows; an edit along
a latent direction (ganplug.directions) moves w after truncation (GANSpace edits after the mapping), or z
before the generator's own truncation for z-only models. A saved latent (`Latent`: a projection's w or z)
takes a seed's place in `generate_latent` and `variations`, truncated and edited as a seed's would be.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from ganplug import fastpath
from ganplug.checkpoint import LoadedModel
from ganplug.device import Runtime
from ganplug.directions import Directions, Edit, format_edits, offset
from ganplug.errors import UserError
from ganplug.fastpath import CompiledPass
from ganplug.latent import Projection, _noise_buffers, as_model_input, mix_grid_cells, parse_styles, style_mix
from ganplug.latent import project as _project
from ganplug.sampling import interpolation_latents, lerp, path_positions, slerp, to_uint8, z_from_seeds
from ganplug.tiling import tileable as _tileable

NOISE_MODES = ("const", "random", "none")
Progress = Callable[[int, int], None]  # (images done, images in all); may raise to cancel


@dataclass
class Images:
    """uint8 NCHW images on the CPU, one label per image (seed, variation, frame...) and the resolved
    parameters: together, everything needed to regenerate them."""

    images: Tensor
    labels: list[dict[str, int]]
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class Mix(Images):
    """Style-mixing cells, row-major (cell r, c: row seed r's styles in `styles`, column seed c's
    elsewhere), plus the row and column seeds' own images for a grid's headers."""

    row_images: Tensor | None = None
    col_images: Tensor | None = None


@dataclass(frozen=True)
class Latent:
    """A latent to draw from instead of a seed (a projection's, or one sent back by a client): w
    [num_ws, w_dim] for style-based models or z [z_dim], float32 on the CPU, plus the noise maps a
    projection optimised with it (`ganplug project`'s noise.safetensors; style-based only)."""

    values: Tensor
    space: str
    noise_maps: dict[str, Tensor] | None = None


# ----------------------------------------------------------------------------------- shared steps


def noise_kwargs(model: LoadedModel, noise: str | None) -> dict[str, str]:
    """Generator keywords for a noise mode; None is the model's own default (const for style-based)."""
    if noise is None:
        return {}
    if not model.spec.style_based:
        raise UserError(f"noise modes apply to style-based models; this checkpoint is {model.spec.arch}.")
    if noise not in NOISE_MODES:
        raise UserError(f"noise must be const, random or none, not {noise!r}.")
    return {"noise_mode": noise}


def require_seed_driven(model: LoadedModel, what: str) -> None:
    if model.spec.image_to_image:
        raise UserError(f"{model.path.name} is an image-to-image ({model.spec.arch}) model: it translates images "
                        f"and cannot {what} from seeds; translate an image instead.")


def require_style_based(model: LoadedModel, what: str) -> None:
    if not model.spec.style_based:
        raise UserError(f"{what} needs a style-based model (--arch stylegan); this checkpoint is {model.spec.arch}.")


def render(fn: Callable[[Tensor], Tensor], inputs: Tensor, runtime: Runtime, *, batch_size: int = 32,
           tileable: bool = False, progress: Progress | None = None) -> Tensor:
    """uint8 images of `fn` (a generator call, [-1, 1] out) over `inputs` in batches; tileable only
    inside each call, so other requests and models are unaffected."""
    chunks = []
    for start in range(0, len(inputs), batch_size):
        x = inputs[start : start + batch_size].to(runtime.device)
        with torch.no_grad(), runtime.autocast(), _tileable(tileable):
            chunks.append(to_uint8(fn(x)).cpu())
        if progress is not None:
            progress(min(len(inputs), start + batch_size), len(inputs))
    return torch.cat(chunks) if chunks else torch.zeros(0, dtype=torch.uint8)


def _fast(model: LoadedModel, noise: str | None) -> CompiledPass | None:
    """The model's compiled pass where it computes the same thing: constant noise (the one it traced)."""
    return model.fast if model.fast is not None and noise in (None, "const") else None


def _g(model: LoadedModel, truncation: float, noise: str | None) -> Callable[[Tensor], Tensor]:
    kwargs = noise_kwargs(model, noise)
    fast = _fast(model, noise)
    if fast is not None:
        return lambda z: fast(fastpath.latents(model, z, truncation))
    return lambda z: model.G(z, truncation=truncation, **kwargs)


def _synthesis(model: LoadedModel, noise: str | None) -> Callable[[Tensor], Tensor]:
    mode = noise_kwargs(model, noise).get("noise_mode", "const")
    fast = _fast(model, noise) if model.spec.style_based else None
    if fast is not None:
        return fast
    return lambda ws: model.G.synthesis(ws, noise_mode=mode)


def _edited(model: LoadedModel, truncation: float, noise: str | None, directions: Directions,
            edits: Sequence[Edit]) -> Callable[[Tensor], Tensor]:
    """z -> image with the edits' offset added: to every style input's w after truncation (style-based),
    or to z before G, whose truncation then scales it with z (z-only models truncate z itself)."""
    delta = offset(directions, edits)
    if directions.space == "w":
        G, synth = model.G, _synthesis(model, noise)

        def in_w(z: Tensor) -> Tensor:
            ws = G.mapping(z, truncation=truncation)
            return synth(ws + delta.to(ws.device, ws.dtype))

        return in_w
    g = _g(model, truncation, noise)
    return lambda z: g(z + delta.to(z.device, z.dtype))


def edit_params(directions: Directions, edits: Sequence[Edit]) -> dict[str, Any]:
    """What a record needs to redo the edits: the --edit string, the space and the file's generator."""
    return {"edits": format_edits(edits), "edit_space": directions.space,
            "directions_for": directions.meta.get("generator_sha256")}


def latent_shape(model: LoadedModel, space: str) -> tuple[int, ...]:
    """The shape of the model's latent in `space`: w [num_ws, w_dim] (style-based models) or z [z_dim]."""
    require_seed_driven(model, "draw from a latent")
    if space == "w":
        if not model.spec.style_based:
            raise UserError(f"a w latent needs a style-based model; this checkpoint is {model.spec.arch}, whose "
                            f"latent is z ({model.spec.z_dim} numbers).")
        return (int(model.spec.num_ws), int(model.G.w_dim))
    if space == "z":
        return (int(model.spec.z_dim),)
    raise UserError(f"a latent's space is 'w' or 'z', not {space!r}.")


def check_latent(model: LoadedModel, values: np.ndarray | Tensor, space: str,
                 noise_maps: dict[str, Tensor] | None = None) -> Latent:
    """A latent checked against the model: exactly its shape in `space`, finite numbers."""
    arr = torch.as_tensor(np.asarray(values, dtype=np.float32)) if isinstance(values, np.ndarray) else values.float()
    shape = latent_shape(model, space)
    if tuple(arr.shape) != shape:
        raise UserError(f"the latent has shape {list(arr.shape)}, but a {space} latent of this {model.spec.arch} "
                        f"model has shape {list(shape)}; was it found with another model?")
    if not bool(torch.isfinite(arr).all()):
        raise UserError("the latent holds nan or infinite values.")
    if noise_maps and space != "w":
        raise UserError("noise maps go with a w latent of a style-based model, not a z latent.")
    return Latent(arr.detach().cpu().contiguous(), space, noise_maps or None)


def _truncate_w(G: torch.nn.Module, ws: Tensor, psi: float) -> Tensor:
    """w_avg + psi (w - w_avg) on every style input, as the mapping truncates (a no-op at psi = 1)."""
    return ws if psi == 1.0 else G.w_avg.to(ws.dtype).lerp(ws, psi)


def _w_synthesis(model: LoadedModel, noise: str | None, latent: Latent) -> Callable[[Tensor], Tensor]:
    """ws -> image, with the latent's own noise maps (const noise) when it has them."""
    if not latent.noise_maps:
        return _synthesis(model, noise)
    if noise not in (None, "const"):
        raise UserError(f"this latent comes with the noise maps it was projected with, which are const noise; "
                        f"noise {noise!r} would replace them (move noise.safetensors away to use it).")
    G = copy.deepcopy(model.G)
    own = _noise_buffers(G)
    for name, value in latent.noise_maps.items():
        if name not in own or own[name].shape != value.shape:
            raise UserError(f"the saved noise map {name} does not fit this generator; was it projected with "
                            "another checkpoint?")
        own[name].copy_(value)
    return lambda ws: G.synthesis(ws, noise_mode="const")


def _latent_params(latent: Latent) -> dict[str, Any]:
    return {"latent_space": latent.space, "latent_noise_maps": bool(latent.noise_maps)}


# ----------------------------------------------------------------------------------- seeds to images


def generate(model: LoadedModel, runtime: Runtime, seeds: Sequence[int], *, truncation: float = 1.0,
             noise: str | None = None, tileable: bool = False, batch_size: int = 32,
             progress: Progress | None = None, edits: Sequence[Edit] = (),
             directions: Directions | None = None) -> Images:
    """One image per seed; seed N is the same image at any batch size. `edits` (direction, amount in
    standard deviations) move each latent along `directions` (from ganplug.directions.load)."""
    require_seed_driven(model, "generate")
    seeds = [int(s) for s in seeds]
    z = z_from_seeds(seeds, model.spec.z_dim)
    params: dict[str, Any] = {"seeds": seeds, "truncation": truncation, "noise": noise, "tileable": tileable}
    fn = _g(model, truncation, noise)
    if edits:
        if directions is None:
            raise UserError("edits need a directions file: make one with `ganplug directions RUN`.")
        fn = _edited(model, truncation, noise, directions, edits)
        params.update(edit_params(directions, edits))
    imgs = render(fn, z, runtime, batch_size=batch_size, tileable=tileable, progress=progress)
    return Images(imgs, [{"seed": s} for s in seeds], params)


def generate_latent(model: LoadedModel, runtime: Runtime, latent: Latent, *, truncation: float = 1.0,
                    noise: str | None = None, tileable: bool = False, progress: Progress | None = None,
                    edits: Sequence[Edit] = (), directions: Directions | None = None) -> Images:
    """The image of one latent (from `check_latent`), with truncation and edits applied as for a seed's: a z
    latent goes through G (which truncates z), a w latent is truncated toward w_avg, then edited, in w."""
    if edits and directions is None:
        raise UserError("edits need a directions file: make one with `ganplug directions RUN`.")
    params: dict[str, Any] = {**_latent_params(latent), "truncation": truncation, "noise": noise,
                              "tileable": tileable}
    if edits:
        params.update(edit_params(directions, edits))
    if latent.space == "z":
        fn = _edited(model, truncation, noise, directions, edits) if edits else _g(model, truncation, noise)
    else:
        G, synth = model.G, _w_synthesis(model, noise, latent)
        delta = offset(directions, edits) if edits else None

        def fn(ws: Tensor) -> Tensor:
            ws = _truncate_w(G, ws, truncation)
            return synth(ws if delta is None else ws + delta.to(ws.device, ws.dtype))

    imgs = render(fn, latent.values[None], runtime, tileable=tileable, progress=progress)
    return Images(imgs, [{}], params)


def variation_seed(seed: int, index: int) -> int:
    """The noise seed of variation `index` of `seed` (deterministic, independent of the batch)."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def variations(model: LoadedModel, runtime: Runtime, seed: int, count: int, *, strength: float = 0.3,
               truncation: float = 1.0, noise: str | None = None, tileable: bool = False, batch_size: int = 32,
               progress: Progress | None = None, edits: Sequence[Edit] = (), directions: Directions | None = None,
               latent: Latent | None = None) -> Images:
    """Images near one seed: its z slerped toward variation k's own z by `strength` (0 = the seed's image).

    `edits` move every variation along `directions` as `generate` moves a seed's image, so variations of an
    edited image are edited variations. With `latent`, the latent is the image varied and `seed` only picks
    the variations' own latents: a z latent is slerped toward them as a seed's z is; a w latent (truncated
    toward w_avg) is lerped toward their truncated w."""
    require_seed_driven(model, "make variations")
    if not 0.0 <= strength <= 1.0:
        raise UserError(f"strength must be between 0 and 1, not {strength}.")
    if edits and directions is None:
        raise UserError("edits need a directions file: make one with `ganplug directions RUN`.")
    z_dim = model.spec.z_dim
    away = z_from_seeds([variation_seed(seed, i) for i in range(1, count + 1)], z_dim)
    params: dict[str, Any] = {"seed": seed, "count": count, "strength": strength, "truncation": truncation,
                              "noise": noise, "tileable": tileable}
    if edits:
        params.update(edit_params(directions, edits))
    if latent is not None:
        params.update(_latent_params(latent))
    if latent is None or latent.space == "z":
        base = z_from_seeds([seed], z_dim) if latent is None else latent.values[None]
        inputs = slerp(base.expand_as(away), away, strength)
        fn = _edited(model, truncation, noise, directions, edits) if edits else _g(model, truncation, noise)
    else:
        G, synth = model.G, _w_synthesis(model, noise, latent)
        device = next(G.parameters()).device
        with torch.no_grad():
            w_away = G.mapping(away.to(device), truncation=truncation)
            w_base = _truncate_w(G, latent.values.to(device)[None], truncation)
        inputs = lerp(w_base.expand_as(w_away), w_away, strength)
        delta = offset(directions, edits) if edits else None

        def fn(ws: Tensor) -> Tensor:
            return synth(ws if delta is None else ws + delta.to(ws.device, ws.dtype))

    imgs = render(fn, inputs, runtime, batch_size=batch_size, tileable=tileable, progress=progress)
    return Images(imgs, [{"seed": seed, "variation": i} for i in range(1, count + 1)], params)


def interpolation_ws(model: LoadedModel, seeds: Sequence[int], frames: int, *, truncation: float = 1.0,
                     loop: bool = False) -> Tensor:
    """The w path of a style-based morph: each seed's (truncated) w, lerped between neighbours."""
    if len(seeds) < 2:
        raise UserError("interpolation needs at least two seeds, e.g. --seeds 3,7.")
    if frames < len(seeds):
        raise UserError(f"{frames} frames cannot visit {len(seeds)} seeds; ask for at least {len(seeds)} frames.")
    keys = list(seeds) + ([seeds[0]] if loop else [])
    G = model.G
    with torch.no_grad():
        ws = G.mapping(z_from_seeds(keys, model.spec.z_dim, next(G.parameters()).device), truncation=truncation)
    return torch.stack([lerp(ws[k], ws[k + 1], t) for k, t in path_positions(frames, len(keys) - 1, loop)])


def interpolate(model: LoadedModel, runtime: Runtime, seeds: Sequence[int], frames: int, *, loop: bool = False,
                truncation: float = 1.0, noise: str | None = None, tileable: bool = False, batch_size: int = 32,
                progress: Progress | None = None) -> Images:
    """`frames` images through the seeds in order: lerp in w for style-based models, slerp in z otherwise."""
    require_seed_driven(model, "interpolate")
    seeds = [int(s) for s in seeds]
    if model.spec.style_based:
        path = interpolation_ws(model, seeds, frames, truncation=truncation, loop=loop)
        fn, space = _synthesis(model, noise), "w (lerp)"
    else:
        path = interpolation_latents(seeds, frames, model.spec.z_dim, loop=loop)
        fn, space = _g(model, truncation, noise), "z (slerp)"
    imgs = render(fn, path, runtime, batch_size=batch_size, tileable=tileable, progress=progress)
    return Images(imgs, [{"frame": i} for i in range(frames)],
                  {"seeds": seeds, "frames": frames, "loop": loop, "space": space, "truncation": truncation,
                   "noise": noise, "tileable": tileable})


def resolve_styles(model: LoadedModel, styles: str | Sequence[int] | None) -> list[int]:
    """Style-input indices from '0-6' or a list; None is the coarse half (pose and shape from the rows)."""
    num_ws = model.spec.num_ws
    if styles is None:
        return list(range(num_ws // 2))
    text = styles if isinstance(styles, str) else ",".join(str(int(s)) for s in styles)
    return parse_styles(text, num_ws)


def mix(model: LoadedModel, runtime: Runtime, row_seeds: Sequence[int], col_seeds: Sequence[int],
        styles: str | Sequence[int] | None = None, *, truncation: float = 1.0, noise: str | None = None,
        tileable: bool = False, batch_size: int = 32, progress: Progress | None = None) -> Mix:
    """Style mixing: cell (r, c) takes the style inputs in `styles` from row seed r, the rest from column seed c."""
    require_style_based(model, "style mixing")
    style_idx = resolve_styles(model, styles)
    rows, cols = [int(s) for s in row_seeds], [int(s) for s in col_seeds]
    synth = _synthesis(model, noise)

    def draw(ws: Tensor, report: bool) -> Tensor:
        return render(synth, ws, runtime, batch_size=batch_size, tileable=tileable,
                      progress=progress if report else None)

    row_imgs, col_imgs, cells = style_mix(model.G, rows, cols, style_idx, truncation=truncation, draw=draw)
    labels = [{"row_seed": r, "col_seed": c} for r in rows for c in cols]
    return Mix(cells, labels, {"row_seeds": rows, "col_seeds": cols, "styles": style_idx,
                               "num_ws": model.spec.num_ws, "truncation": truncation, "noise": noise,
                               "tileable": tileable}, row_images=row_imgs, col_images=col_imgs)


def mix_grid(result: Mix) -> Tensor:
    """The (R+1) x (C+1) grid of a mix: column seeds on top, row seeds on the left, top-left blank."""
    assert result.row_images is not None and result.col_images is not None
    return mix_grid_cells(result.row_images, result.col_images, result.images)


# ----------------------------------------------------------------------------------- images in


def input_channels(model: LoadedModel) -> int:
    """Channels of the images the model takes: a translator's input side, else its output (projection)."""
    if not model.spec.image_to_image:
        return model.spec.channels
    found = getattr(model.spec, "in_channels", None)  # the spec gains it in issue 13; the config has it now
    return int(found if found is not None else model.G.cfg.in_channels)


def composite(rgba: np.ndarray, background: tuple[int, int, int]) -> np.ndarray:
    """uint8 [..., H, W, 4] -> [..., H, W, 3] on `background`, by the formula training used on its images
    (`ganplug.data.decode.apply_background`, PIL's alpha_composite): the one compositing of transparency,
    so model inputs, eval's images and training data never differ by a rounding."""
    from ganplug.data.decode import apply_background

    flat = rgba.reshape(-1, *rgba.shape[-3:])
    out = [np.asarray(apply_background(Image.fromarray(np.ascontiguousarray(a), "RGBA"), background, False))
           for a in flat]
    return np.stack(out).reshape(*rgba.shape[:-1], 3) if out else np.zeros((*rgba.shape[:-1], 3), np.uint8)


def model_input(model: LoadedModel, img: Image.Image) -> Tensor:
    """A PIL image as the model takes it: uint8 [C, H, W] at its size, transparency composited onto the
    background it was trained with (the one compositing path, `ganplug.data.decode.apply_background`)."""
    return as_model_input(img, model.spec.size, input_channels(model), model.background)


def translate(model: LoadedModel, runtime: Runtime, images: Tensor, *, tileable: bool = False,
              batch_size: int = 8, progress: Progress | None = None) -> Images:
    """Image-to-image: uint8 [N, C, H, W] inputs (from `model_input`) -> uint8 outputs."""
    if not model.spec.image_to_image:
        raise UserError(f"{model.path.name} is a {model.spec.arch} generator that draws images from seeds; "
                        "translating needs a pix2pix model (`ganplug train DATA --arch pix2pix`).")
    x = images.float() / 127.5 - 1.0
    G = model.G
    imgs = render(lambda t: G(runtime.prepare_images(t)), x, runtime, batch_size=batch_size, tileable=tileable,
                  progress=progress)
    return Images(imgs, [{"input": i} for i in range(len(imgs))], {"tileable": tileable})


def project(model: LoadedModel, runtime: Runtime, target: Tensor, *, steps: int = 500, lr: float = 0.1,
            loss: str = "auto", optimize_noise: bool = True, seed: int = 0, weights_dir: str | None = None,
            allow_unverified_weights: bool = False, progress: Callable[[int, float], None] | None = None
            ) -> Projection:
    """The latent whose image matches `target` (uint8 [C, H, W] from `model_input`): w for style-based
    models, z otherwise. `progress(step, loss)` may raise to cancel."""
    require_seed_driven(model, "be projected into")
    return _project(model.G, target, steps=steps, lr=lr, loss=loss, optimize_noise=optimize_noise, seed=seed,
                    weights_dir=weights_dir, allow_unverified_weights=allow_unverified_weights,
                    device=runtime.device, progress=progress)


# ----------------------------------------------------------------------------------- judging


def rank(model: LoadedModel, D: torch.nn.Module, runtime: Runtime, seeds: Sequence[int], *, batch_size: int = 64,
         progress: Progress | None = None) -> tuple[Images, Tensor]:
    """Images for `seeds` and the discriminator's score of each (higher = more convincing to D)."""
    result = generate(model, runtime, seeds, batch_size=batch_size, progress=progress)
    with torch.no_grad():
        scores = torch.cat([D(runtime.prepare_images(chunk.float() / 127.5 - 1)).float().reshape(-1).cpu()
                            for chunk in result.images.split(batch_size)])
    return result, scores
