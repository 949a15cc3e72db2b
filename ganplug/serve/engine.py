"""What each endpoint computes, as plain functions of (loaded model, request, job context).

They run in a worker thread; every generator call is followed by `ctx.progress(...)`, which is also
where a cancelled job stops.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ganplug.checkpoint import LoadedModel
from ganplug.device import Runtime
from ganplug.sampling import interpolation_latents, render_latents, slerp, to_uint8, z_from_seeds
from ganplug.serve import schema as S
from ganplug.serve.errors import ApiError
from ganplug.serve.imaging import b64, decode_upload, png_bytes, resize
from ganplug.serve.jobs import JobContext
from ganplug.serve.settings import ServeSettings
from ganplug.tiling import tileable

MAX_OUTPUT_PIXELS = 64 << 20  # all images of one request together


@dataclass
class Work:
    """Everything a computation needs besides its request."""

    model_name: str
    loaded: LoadedModel
    runtime: Runtime
    settings: ServeSettings
    ctx: JobContext


def output_size(req: S._Output, native: int, count: int, settings: ServeSettings) -> tuple[int, int]:
    w = req.width or req.size or native
    h = req.height or req.size or native
    if max(w, h) > settings.max_side:
        raise ApiError(422, "too_large",
                       f"{w}x{h} is larger than this server's limit of {settings.max_side} px a side.")
    if count * w * h > MAX_OUTPUT_PIXELS:
        raise ApiError(422, "too_large", f"{count} images of {w}x{h} is too many pixels for one request; "
                                         "ask for fewer or smaller images.")
    return w, h


def check_count(count: int, limit: int, what: str = "images") -> None:
    """The request schema states the same limits; this also covers counts it cannot express (rows x columns)."""
    if count > limit:
        raise ApiError(422, "batch_too_large", f"{count} {what} is more than this server's limit of "
                                               f"{limit} per request; split the request.")


def variation_seed(seed: int, index: int) -> int:
    """The noise seed of variation `index` of `seed` (deterministic, independent of the batch)."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def _render(work: Work, z: torch.Tensor, req: S._Output, labels: Sequence[dict],
            g_call: Callable[[torch.Tensor], torch.Tensor] | None = None) -> list[S.ImageOut]:
    """Run the generator over latents in chunks, reporting progress; returns encoded images."""
    spec = work.loaded.spec
    w, h = output_size(req, spec.size, len(z), work.settings)
    out: list[S.ImageOut] = []
    chunk = work.settings.chunk
    work.ctx.progress(0.0, f"generating {len(z)} image(s)")
    for start in range(0, len(z), chunk):
        zz = z[start : start + chunk]
        with tileable(req.tileable), torch.no_grad():
            if g_call is None:
                imgs = render_latents(work.loaded.G, zz, batch_size=chunk, runtime=work.runtime,
                                      truncation=req.truncation)
            else:
                with work.runtime.autocast():
                    imgs = to_uint8(g_call(zz.to(work.runtime.device))).cpu()
        for i, img in enumerate(imgs):
            arr = resize(img.permute(1, 2, 0).numpy(), w, h, periodic=req.tileable)
            meta = labels[start + i]
            out.append(S.ImageOut(png=b64(png_bytes(arr)), width=w, height=h, **meta))
        work.ctx.progress(min(len(z), start + chunk) / len(z), f"{min(len(z), start + chunk)}/{len(z)} images")
    return out


def _response(work: Work, kind: str, req: S._Output, images: list[S.ImageOut], t0: float, **params) -> S.ImagesResponse:
    resolved = req.model_dump(exclude={"image"})
    resolved.update(params, model=work.model_name)
    return S.ImagesResponse(model=work.model_name, kind=kind, images=images, params=resolved,
                            elapsed_s=round(time.perf_counter() - t0, 4))


def _require_seed_driven(work: Work, what: str) -> None:
    if work.loaded.spec.image_to_image:
        raise ApiError(422, "not_supported",
                       f"model {work.model_name!r} is an image-to-image ({work.loaded.spec.arch}) model: it translates "
                       f"an uploaded image and cannot {what} from seeds; use /v1/translate.")


def run_generate(work: Work, req: S.GenerateRequest) -> S.ImagesResponse:
    _require_seed_driven(work, "generate")
    t0 = time.perf_counter()
    if req.seeds:
        seeds = list(req.seeds)
    else:
        start = req.seed if req.seed is not None else secrets.randbelow(2**32)
        seeds = [(start + i) % 2**32 for i in range(req.count)]
    check_count(len(seeds), work.settings.max_batch)
    z = z_from_seeds(seeds, work.loaded.spec.z_dim)
    label = f"{work.model_name} #%d"
    images = _render(work, z, req, [{"seed": s, "label": label % s} for s in seeds])
    return _response(work, "generate", req, images, t0, seeds=seeds)


def run_variations(work: Work, req: S.VariationsRequest) -> S.ImagesResponse:
    _require_seed_driven(work, "make variations")
    t0 = time.perf_counter()
    check_count(req.count, work.settings.max_batch, "variations")
    base = z_from_seeds([req.seed], work.loaded.spec.z_dim)
    noise = z_from_seeds([variation_seed(req.seed, i) for i in range(1, req.count + 1)], work.loaded.spec.z_dim)
    z = slerp(base.expand_as(noise), noise, req.strength)
    labels = [{"seed": req.seed, "variation": i, "label": f"{work.model_name} #{req.seed} v{i}"}
              for i in range(1, req.count + 1)]
    return _response(work, "variations", req, _render(work, z, req, labels), t0)


def run_interpolate(work: Work, req: S.InterpolateRequest) -> S.ImagesResponse:
    _require_seed_driven(work, "interpolate")
    t0 = time.perf_counter()
    check_count(req.frames, work.settings.frame_limit, "frames")
    if req.frames < len(req.seeds):
        raise ApiError(422, "bad_request", f"{req.frames} frames cannot visit {len(req.seeds)} seeds; "
                                           f"ask for at least {len(req.seeds)} frames.")
    z = interpolation_latents(req.seeds, req.frames, work.loaded.spec.z_dim, loop=req.loop)
    labels = [{"frame": i, "label": f"{work.model_name} frame {i}"} for i in range(req.frames)]
    return _response(work, "interpolate", req, _render(work, z, req, labels), t0)


def run_stylemix(work: Work, req: S.StyleMixRequest) -> S.ImagesResponse:
    t0 = time.perf_counter()
    spec, G = work.loaded.spec, work.loaded.G
    if not spec.style_based:
        raise ApiError(422, "not_supported", f"model {work.model_name!r} is a {spec.arch} generator without "
                                             "style layers; style mixing needs a style-based model.")
    n = len(req.row_seeds) * len(req.col_seeds)
    check_count(n, work.settings.max_batch)
    crossover = spec.num_ws // 2 if req.crossover is None else req.crossover
    if not 0 < crossover < spec.num_ws:
        raise ApiError(422, "bad_request", f"crossover must be between 1 and {spec.num_ws - 1} for this model.")
    dev = work.runtime.device
    with torch.no_grad():
        ws_row = G.mapping(z_from_seeds(req.row_seeds, spec.z_dim, dev), truncation=req.truncation)
        ws_col = G.mapping(z_from_seeds(req.col_seeds, spec.z_dim, dev), truncation=req.truncation)
    pairs = [(r, c) for r in range(len(req.row_seeds)) for c in range(len(req.col_seeds))]
    ws = torch.stack([torch.cat([ws_row[r, :crossover], ws_col[c, crossover:]]) for r, c in pairs])
    labels = [{"row_seed": req.row_seeds[r], "col_seed": req.col_seeds[c],
               "label": f"{work.model_name} #{req.row_seeds[r]}x#{req.col_seeds[c]}"} for r, c in pairs]
    images = _render(work, ws, req, labels, g_call=lambda w: G.synthesis(w, noise_mode="const"))
    return _response(work, "stylemix", req, images, t0, crossover=crossover)


def upload_as_model_input(work: Work, image_b64: str) -> torch.Tensor:
    """An uploaded image, checked against the limits, in the model's mode and size: uint8 [C, H, W]."""
    from ganplug.latent import as_model_input

    spec, G = work.loaded.spec, work.loaded.G
    img = decode_upload(image_b64, work.settings.max_upload_bytes, work.settings.max_upload_pixels)
    channels = G.cfg.in_channels if spec.image_to_image else spec.channels
    return as_model_input(img, spec.size, channels, work.loaded.background)


def run_translate(work: Work, req: S.TranslateRequest) -> S.ImagesResponse:
    spec = work.loaded.spec
    if not spec.image_to_image:
        raise ApiError(422, "not_supported",
                       f"model {work.model_name!r} does not translate: it is a {spec.arch} generator that makes "
                       "images from seeds. Image-to-image needs a pix2pix model, and none is loaded.")
    t0 = time.perf_counter()
    x = upload_as_model_input(work, req.image).float()[None] / 127.5 - 1.0
    G = work.loaded.G
    images = _render(work, x, req, [{"label": f"{work.model_name} translation"}], g_call=lambda t: G(t))
    return _response(work, "translate", req, images, t0)


def run_project(work: Work, req: S.ProjectRequest) -> S.ImagesResponse:
    spec = work.loaded.spec
    if not spec.style_based:
        raise ApiError(422, "not_supported",
                       f"model {work.model_name!r} ({spec.arch}) does not support projection: finding an image in "
                       "latent space needs a style-based model.")
    from ganplug.latent import project

    t0 = time.perf_counter()
    target = upload_as_model_input(work, req.image)

    def on_step(step: int, loss: float) -> None:  # also where a cancelled job stops
        work.ctx.progress((step + 1) / req.steps, f"projecting: step {step + 1}/{req.steps}, loss {loss:.4f}")

    result = project(work.loaded.G, target, steps=req.steps, seed=req.seed, device=work.runtime.device,
                     progress=on_step)
    w, h = output_size(req, spec.size, 1, work.settings)
    out = resize(result.image.permute(1, 2, 0).numpy(), w, h, periodic=False)
    images = [S.ImageOut(png=b64(png_bytes(out)), width=w, height=h,
                         label=f"{work.model_name} projection ({result.loss_name})")]
    return _response(work, "project", req, images, t0, loss=result.losses[-1], loss_note=result.loss_note)


RUNNERS: dict[str, Callable[[Work, S._Output], S.ImagesResponse]] = {
    "generate": run_generate,
    "variations": run_variations,
    "interpolate": run_interpolate,
    "stylemix": run_stylemix,
    "translate": run_translate,
    "project": run_project,
}
