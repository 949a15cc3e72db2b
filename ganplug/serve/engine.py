"""What each endpoint computes: transport around `ganplug.ops`, the operations the CLI runs too.

A runner checks the request against the server's limits, calls the operation (so the pixels are the
CLI's for the same seeds and options), resizes and base64-encodes the images. They run in a worker
thread; every generator call is followed by `ctx.progress(...)`, which is also where a cancelled job
stops.
"""

from __future__ import annotations

import base64
import binascii
import math
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from ganplug import ops
from ganplug.checkpoint import LoadedModel
from ganplug.device import Runtime
from ganplug.directions import Directions, Edit, format_edits, offset, parse_edits
from ganplug.errors import UserError
from ganplug.serve import schema as S
from ganplug.serve.batching import MicroBatcher, Offer
from ganplug.serve.errors import ApiError
from ganplug.serve.imaging import b64, decode_upload, png_bytes, resize
from ganplug.serve.jobs import JobContext
from ganplug.serve.settings import ServeSettings

MAX_OUTPUT_PIXELS = 64 << 20  # all images of one request together


@dataclass
class Work:
    """Everything a computation needs besides its request."""

    model_name: str
    loaded: LoadedModel
    runtime: Runtime
    settings: ServeSettings
    ctx: JobContext
    # the model's checked directions file (the server caches it); raises ApiError 422 when there is none
    directions: Callable[[], Directions] | None = None
    # micro-batching (ganplug.serve.batching): the request's offer and the batcher holding it, when batchable
    batcher: MicroBatcher | None = None
    offer: Offer | None = None


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


def _encode(work: Work, result: ops.Images, req: S._Output, label: Callable[[dict], str]) -> list[S.ImageOut]:
    """The operation's images resized to the requested output and base64-encoded, with their labels."""
    w, h = output_size(req, work.loaded.spec.size, len(result.images), work.settings)
    out = []
    for img, meta in zip(result.images, result.labels, strict=True):
        arr = resize(img.permute(1, 2, 0).numpy(), w, h, periodic=req.tileable)
        known = {k: v for k, v in meta.items() if k in S.ImageOut.model_fields}
        out.append(S.ImageOut(png=b64(png_bytes(arr)), width=w, height=h, label=label(meta), **known))
    return out


def _progress(work: Work, what: str) -> ops.Progress:
    """Progress after each generator call; `ctx.progress` is also where a cancelled job stops."""
    work.ctx.progress(0.0, what)

    def report(done: int, total: int) -> None:
        work.ctx.progress(done / total, f"{done}/{total} images")

    return report


def _opts(work: Work, req: S._Output, what: str) -> dict:
    """The keywords every seed-driven operation takes, from the request and the server's settings."""
    return {"truncation": req.truncation, "noise": getattr(req, "noise", None), "tileable": req.tileable,
            "batch_size": work.settings.chunk, "progress": _progress(work, what)}


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


def _require_noise_fits(work: Work, req: S._Output) -> None:
    if getattr(req, "noise", None) is not None and not work.loaded.spec.style_based:
        raise ApiError(422, "not_supported", f"model {work.model_name!r} ({work.loaded.spec.arch}) has no noise "
                                             "inputs; `noise` applies to style-based models.")


def latent_to_wire(latent: torch.Tensor, space: str) -> dict:
    """A latent as `params.latent`: {space, shape, dtype float32, data: base64 of little-endian bytes}."""
    arr = np.ascontiguousarray(latent.detach().cpu().float().numpy(), dtype="<f4")
    return {"space": space, "shape": list(arr.shape), "dtype": "float32", "data": b64(arr.tobytes())}


def latent_from_wire(work: Work, wire: S.Latent) -> ops.Latent:
    """The request's latent, decoded and checked against the model: 422 `bad_latent` with the reason."""
    def bad(why: str) -> ApiError:
        return ApiError(422, "bad_latent", f"latent: {why}")

    count = math.prod(wire.shape)
    if count > S.MAX_LATENT_VALUES:
        raise bad(f"shape {wire.shape} holds {count} numbers, over this server's limit of {S.MAX_LATENT_VALUES}.")
    try:
        raw = base64.b64decode(wire.data, validate=True)
    except (binascii.Error, ValueError):
        raise bad("`data` is not valid base64.") from None
    if len(raw) != 4 * count:
        raise bad(f"`data` holds {len(raw)} bytes, but shape {wire.shape} of float32 needs {4 * count}.")
    arr = np.frombuffer(raw, dtype="<f4").reshape(wire.shape).astype(np.float32)
    try:
        return ops.check_latent(work.loaded, arr, wire.space)
    except UserError as e:
        raise bad(str(e)) from None


def _edits_of(work: Work, req: S.GenerateRequest | S.VariationsRequest) -> tuple[list[Edit], Directions | None]:
    """The request's edits and the directions they move along, checked: 422 for a model without a directions
    file, a direction it does not have or an unreadable edit string."""
    raw = req.edits if isinstance(req.edits, str) or req.edits is None else [e.model_dump() for e in req.edits]
    try:
        edits = parse_edits(raw)
        if not edits:
            return [], None
        if work.directions is None:
            raise ApiError(422, "no_directions", f"model {work.model_name!r} has no directions to edit along.")
        found = work.directions()
        offset(found, edits)  # checks every index against the file
    except UserError as e:
        raise ApiError(422, "bad_edits", str(e)) from None
    return edits, found


def _edit_echo(edits: list[Edit], found: Directions | None) -> dict:
    return {"edits": format_edits(edits), "edit_space": found.space} if found is not None else {}


def batch_key(model_name: str, req: S.GenerateRequest) -> tuple | None:
    """What a generate request shares with the others of its batch: everything that changes the network
    pass (the output size does not: images are resized after). None when it is not batched: a latent takes
    another path, and random noise comes from the global RNG, so a batch would change it."""
    if req.latent is not None or req.noise == "random":
        return None
    edits = req.edits if isinstance(req.edits, str) or req.edits is None else [e.model_dump() for e in req.edits]
    return (model_name, float(req.truncation), req.noise, bool(req.tileable), repr(edits))


def batch_images(req: S.GenerateRequest) -> int:
    return len(req.seeds) if req.seeds else req.count


@dataclass
class _SeedPlan:
    """A generate request checked and resolved: its seeds and edits."""

    seeds: list[int]
    edits: list[Edit]
    found: Directions | None


def _plan_generate(work: Work, req: S.GenerateRequest) -> _SeedPlan:
    _require_seed_driven(work, "generate")
    _require_noise_fits(work, req)
    edits, found = _edits_of(work, req)
    if req.seeds:
        seeds = list(req.seeds)
    else:
        start = req.seed if req.seed is not None else secrets.randbelow(2**32)
        seeds = [(start + i) % 2**32 for i in range(req.count)]
    check_count(len(seeds), work.settings.max_batch)
    output_size(req, work.loaded.spec.size, len(seeds), work.settings)
    return _SeedPlan(seeds, edits, found)


def _generate_seeds(work: Work, req: S.GenerateRequest, plan: _SeedPlan, **opts) -> ops.Images:
    return ops.generate(work.loaded, work.runtime, plan.seeds, edits=plan.edits, directions=plan.found,
                        truncation=req.truncation, noise=getattr(req, "noise", None), tileable=req.tileable, **opts)


def _seed_response(work: Work, req: S.GenerateRequest, plan: _SeedPlan, result: ops.Images, t0: float):
    images = _encode(work, result, req, lambda m: f"{work.model_name} #{m['seed']}")
    return _response(work, "generate", req, images, t0, seeds=plan.seeds, **_edit_echo(plan.edits, plan.found))


def _compute_batch(work: Work, offers: list[Offer]) -> list[tuple[object, BaseException | None]]:
    """One `ops.generate` over the seeds of every offer of a batch (all share truncation, noise, tileable and
    edits), split back per offer as (plan, images). A request that does not check out fails alone; a batch
    whose pass fails is retried one request at a time, so only the failing request fails."""
    plans: list[_SeedPlan | None] = []
    outcomes: list[tuple[object, BaseException | None]] = []
    for offer in offers:
        try:
            plans.append(_plan_generate(work, offer.request))
            outcomes.append((None, None))
        except Exception as e:  # noqa: BLE001 - this request's own error, raised in its own job
            plans.append(None)
            outcomes.append((None, e))
    live = [i for i, p in enumerate(plans) if p is not None]
    if not live:
        return outcomes
    if len(live) == 1:  # alone: the request's own chunks, progress and cancel, exactly as unbatched
        i = live[0]
        try:
            own = offers[i] is work.offer  # progress and cancel are the leader's job's: only for its own request
            report = _progress(work, f"generating {len(plans[i].seeds)} image(s)") if own else None
            result = _generate_seeds(work, offers[i].request, plans[i], batch_size=work.settings.chunk,
                                     progress=report)
            outcomes[i] = ((plans[i], result), None)
        except Exception as e:  # noqa: BLE001
            outcomes[i] = (None, e)
        return outcomes
    first = plans[live[0]]
    seeds = [s for i in live for s in plans[i].seeds]
    req0 = offers[live[0]].request
    try:
        together = ops.generate(work.loaded, work.runtime, seeds, edits=first.edits, directions=first.found,
                                truncation=req0.truncation, noise=getattr(req0, "noise", None),
                                tileable=req0.tileable, batch_size=len(seeds))
    except Exception:  # noqa: BLE001 - find which request fails: each alone
        for i in live:
            try:
                one = _generate_seeds(work, offers[i].request, plans[i], batch_size=work.settings.chunk)
                outcomes[i] = ((plans[i], one), None)
            except Exception as e:  # noqa: BLE001
                outcomes[i] = (None, e)
        return outcomes
    start = 0
    for i in live:
        n = len(plans[i].seeds)
        part = ops.Images(together.images[start : start + n], together.labels[start : start + n],
                          {**together.params, "seeds": plans[i].seeds})
        outcomes[i] = ((plans[i], part), None)
        start += n
    return outcomes


def run_generate(work: Work, req: S.GenerateRequest) -> S.ImagesResponse:
    t0 = time.perf_counter()
    if work.offer is not None and work.batcher is not None:
        plan, result = work.batcher.run(work.offer, lambda offers: _compute_batch(work, offers))
        work.ctx.check()  # a job cancelled while its batch ran stops here; the others keep their images
        return _seed_response(work, req, plan, result, t0)
    if req.latent is None:
        plan = _plan_generate(work, req)
        result = _generate_seeds(work, req, plan, batch_size=work.settings.chunk,
                                 progress=_progress(work, f"generating {len(plan.seeds)} image(s)"))
        return _seed_response(work, req, plan, result, t0)
    _require_seed_driven(work, "generate")
    _require_noise_fits(work, req)
    edits, found = _edits_of(work, req)
    latent = latent_from_wire(work, req.latent)
    output_size(req, work.loaded.spec.size, 1, work.settings)
    opts = _opts(work, req, "generating 1 image from a latent")
    opts.pop("batch_size")
    result = ops.generate_latent(work.loaded, work.runtime, latent, edits=edits, directions=found, **opts)
    images = _encode(work, result, req, lambda m: f"{work.model_name} latent ({latent.space})")
    return _response(work, "generate", req, images, t0, **_edit_echo(edits, found))


def run_variations(work: Work, req: S.VariationsRequest) -> S.ImagesResponse:
    _require_seed_driven(work, "make variations")
    _require_noise_fits(work, req)
    edits, found = _edits_of(work, req)
    t0 = time.perf_counter()
    check_count(req.count, work.settings.max_batch, "variations")
    output_size(req, work.loaded.spec.size, req.count, work.settings)
    latent = latent_from_wire(work, req.latent) if req.latent is not None else None
    result = ops.variations(work.loaded, work.runtime, req.seed, req.count, strength=req.strength, edits=edits,
                            directions=found, latent=latent,
                            **_opts(work, req, f"generating {req.count} variation(s)"))
    images = _encode(work, result, req, lambda m: f"{work.model_name} #{m['seed']} v{m['variation']}")
    return _response(work, "variations", req, images, t0, **_edit_echo(edits, found))


def run_interpolate(work: Work, req: S.InterpolateRequest) -> S.ImagesResponse:
    """Lerp in w for style-based models, slerp in z otherwise: `ganplug interpolate`'s path (ops.interpolate)."""
    _require_seed_driven(work, "interpolate")
    _require_noise_fits(work, req)
    t0 = time.perf_counter()
    check_count(req.frames, work.settings.frame_limit, "frames")
    if req.frames < len(req.seeds):
        raise ApiError(422, "bad_request", f"{req.frames} frames cannot visit {len(req.seeds)} seeds; "
                                           f"ask for at least {len(req.seeds)} frames.")
    output_size(req, work.loaded.spec.size, req.frames, work.settings)
    result = ops.interpolate(work.loaded, work.runtime, req.seeds, req.frames, loop=req.loop,
                             **_opts(work, req, f"generating {req.frames} frame(s)"))
    images = _encode(work, result, req, lambda m: f"{work.model_name} frame {m['frame']}")
    return _response(work, "interpolate", req, images, t0, space=result.params["space"])


def _styles_of(work: Work, req: S.StyleMixRequest) -> list[int] | str | None:
    """`styles` as the CLI's --styles; the older `crossover` k is an alias for styles 0..k-1."""
    num_ws = work.loaded.spec.num_ws
    if req.styles is not None and req.crossover is not None:
        raise ApiError(422, "bad_request", "give `styles` or the older `crossover`, not both.")
    if req.crossover is None:
        return req.styles
    if not 0 < req.crossover < num_ws:
        raise ApiError(422, "bad_request", f"crossover must be between 1 and {num_ws - 1} for this model.")
    return list(range(req.crossover))


def run_stylemix(work: Work, req: S.StyleMixRequest) -> S.ImagesResponse:
    t0 = time.perf_counter()
    spec = work.loaded.spec
    if not spec.style_based:
        raise ApiError(422, "not_supported", f"model {work.model_name!r} is a {spec.arch} generator without "
                                             "style layers; style mixing needs a style-based model.")
    n = len(req.row_seeds) * len(req.col_seeds)
    check_count(n, work.settings.max_batch)
    output_size(req, spec.size, n, work.settings)
    styles = _styles_of(work, req)
    result = ops.mix(work.loaded, work.runtime, req.row_seeds, req.col_seeds, styles,
                     **_opts(work, req, f"mixing {n} image(s)"))
    images = _encode(work, result, req, lambda m: f"{work.model_name} #{m['row_seed']}x#{m['col_seed']}")
    return _response(work, "stylemix", req, images, t0, styles=result.params["styles"])


def upload_as_model_input(work: Work, image_b64: str) -> torch.Tensor:
    """An uploaded image, checked against the limits, in the model's mode and size: uint8 [C, H, W]."""
    img = decode_upload(image_b64, work.settings.max_upload_bytes, work.settings.max_upload_pixels)
    return ops.model_input(work.loaded, img)


def run_translate(work: Work, req: S.TranslateRequest) -> S.ImagesResponse:
    spec = work.loaded.spec
    if not spec.image_to_image:
        raise ApiError(422, "not_supported",
                       f"model {work.model_name!r} does not translate: it is a {spec.arch} generator that makes "
                       "images from seeds. Image-to-image needs a pix2pix model, and none is loaded.")
    t0 = time.perf_counter()
    output_size(req, spec.size, 1, work.settings)
    x = upload_as_model_input(work, req.image)[None]
    result = ops.translate(work.loaded, work.runtime, x, tileable=req.tileable, batch_size=work.settings.chunk,
                           progress=_progress(work, "translating"))
    images = _encode(work, result, req, lambda m: f"{work.model_name} translation")
    return _response(work, "translate", req, images, t0)


def run_project(work: Work, req: S.ProjectRequest) -> S.ImagesResponse:
    spec = work.loaded.spec
    if not spec.style_based:
        raise ApiError(422, "not_supported",
                       f"model {work.model_name!r} ({spec.arch}) does not support projection: finding an image in "
                       "latent space needs a style-based model.")
    t0 = time.perf_counter()
    output_size(req, spec.size, 1, work.settings)
    target = upload_as_model_input(work, req.image)

    def on_step(step: int, loss: float) -> None:  # also where a cancelled job stops
        work.ctx.progress((step + 1) / req.steps, f"projecting: step {step + 1}/{req.steps}, loss {loss:.4f}")

    result = ops.project(work.loaded, work.runtime, target, steps=req.steps, seed=req.seed,
                         optimize_noise=req.optimize_noise, progress=on_step)
    one = ops.Images(result.image[None], [{}])
    images = _encode(work, one, req.model_copy(update={"tileable": False}),
                     lambda m: f"{work.model_name} projection ({result.loss_name})")
    return _response(work, "project", req, images, t0, loss=result.losses[-1], loss_note=result.loss_note,
                     latent=latent_to_wire(result.latent, result.space))


RUNNERS: dict[str, Callable[[Work, S._Output], S.ImagesResponse]] = {
    "generate": run_generate,
    "variations": run_variations,
    "interpolate": run_interpolate,
    "stylemix": run_stylemix,
    "translate": run_translate,
    "project": run_project,
}
