"""Latent tools: style-mixing grids and projection (GAN inversion) of an image into latent space.

Interpolation lives in sampling.py (`interpolate`: slerp in z, lerp in w for style-based models).

Projection follows StyleGAN2's projector (Karras et al. 2020, app. D): start at the mean w, optimise one
w (broadcast to every style input) and the per-layer noise maps with Adam; the learning rate ramps up
over the first 5% and down (cosine) over the last 25% of the steps; Gaussian noise of 5% of w's spread,
fading out over the first 75%, is added to w to explore; the noise maps are kept at zero mean and unit
variance and penalised for spatial autocorrelation at several scales so they cannot encode the image.
The image distance is LPIPS-VGG16 when those weights are present locally (see
ganplug.eval.features.weights), otherwise pixel L1 plus (1 - MS-SSIM); the result says which.
Generators without a w space (DCGAN) are projected in z, starting from the best of 16 random draws.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn

from ganplug.errors import UserError
from ganplug.sampling import to_uint8, z_from_seeds
from ganplug.seeds import parse_int_list

# ----------------------------------------------------------------------------------- style mixing


def parse_styles(text: str, num_ws: int) -> list[int]:
    """'0-6' or '0,1,4-5' -> style-input indices, each checked against the model's num_ws."""
    out = parse_int_list(text, what="--styles", example="'0-6' or '0,2,4-5'")
    if not out:
        raise UserError(f"--styles {text!r} names no style inputs.")
    bad = sorted({s for s in out if not 0 <= s < num_ws})
    if bad:
        shown = ", ".join(map(str, bad[:4])) + ("..." if len(bad) > 4 else "")
        raise UserError(
            f"--styles {text!r}: {shown} out of range; this model has {num_ws} style inputs "
            f"(0-{num_ws - 1}: 0-{num_ws // 2 - 1} coarse, {num_ws // 2}-{num_ws - 1} fine)."
        )
    return sorted(set(out))


def _require_style_based(G: nn.Module, what: str) -> None:
    if not G.spec.style_based:
        raise UserError(f"{what} needs a style-based generator (--arch stylegan); this checkpoint has no w space.")


def mix_ws(rows_w: Tensor, cols_w: Tensor, styles: Sequence[int]) -> Tensor:
    """The one style mixing of a set of style inputs: [R*C, num_ws, w_dim], row-major; cell (r, c) takes the
    inputs in `styles` from rows_w[r] and all others from cols_w[c]. (Training's per-sample crossover is
    models.stylegan.mix_styles, a contiguous prefix; `--styles` may name any set, e.g. '0,2,4-5'.)"""
    take_row = torch.zeros(rows_w.shape[1], dtype=torch.bool, device=rows_w.device)
    take_row[list(styles)] = True
    r, c = len(rows_w), len(cols_w)
    a = rows_w[:, None].expand(r, c, *rows_w.shape[1:])
    b = cols_w[None].expand(r, c, *cols_w.shape[1:])
    return torch.where(take_row.view(1, 1, -1, 1), a, b).reshape(r * c, *rows_w.shape[1:])


@torch.no_grad()
def style_mix(G: nn.Module, row_seeds: Sequence[int], col_seeds: Sequence[int], styles: Sequence[int], *,
              truncation: float = 1.0, draw: Callable[[Tensor, bool], Tensor]) -> tuple[Tensor, Tensor, Tensor]:
    """(row images, column images, mixed cells row-major), each uint8 from `draw(ws, is_cells)`."""
    _require_style_based(G, "style mixing")
    device = next(G.parameters()).device
    seeds = list(dict.fromkeys(list(row_seeds) + list(col_seeds)))
    ws = G.mapping(z_from_seeds(seeds, G.z_dim, device), truncation=truncation)
    w_of = {s: ws[i] for i, s in enumerate(seeds)}
    rows_w = torch.stack([w_of[s] for s in row_seeds])
    cols_w = torch.stack([w_of[s] for s in col_seeds])
    return draw(rows_w, False), draw(cols_w, False), draw(mix_ws(rows_w, cols_w, styles), True)


def style_mixing_grid(G: nn.Module, row_seeds: Sequence[int], col_seeds: Sequence[int],
                      styles: Sequence[int] | None = None, *, truncation: float = 1.0,
                      noise_mode: str = "const", device: torch.device | str = "cpu") -> Tensor:
    """uint8 images [(R+1)*(C+1), C, H, W] for a grid: the top row shows the column seeds, the left
    column the row seeds (top-left cell blank), and cell (r, c) takes the style inputs in `styles`
    from row seed r and all others from column seed c. Default `styles`: the coarse half."""
    _require_style_based(G, "style mixing")
    styles = list(range(G.num_ws // 2)) if styles is None else list(styles)

    def draw(w: Tensor, _cells: bool) -> Tensor:
        return to_uint8(G.synthesis(w.to(device), noise_mode=noise_mode)).cpu()

    return mix_grid_cells(*style_mix(G, row_seeds, col_seeds, styles, truncation=truncation, draw=draw))


def mix_grid_cells(row_imgs: Tensor, col_imgs: Tensor, cells: Tensor) -> Tensor:
    """A mix laid out as (R+1) x (C+1) images: column seeds on top, row seeds on the left, top-left blank."""
    cols = len(col_imgs)
    parts = [torch.full_like(col_imgs[:1], 255), col_imgs]
    for r in range(len(row_imgs)):
        parts += [row_imgs[r : r + 1], cells[r * cols : (r + 1) * cols]]
    return torch.cat(parts)


# ----------------------------------------------------------------------------------- target images


@dataclass
class Target:
    image: Tensor  # uint8 [C, H, W] at the model's size and channel count
    notices: list[str] = field(default_factory=list)


def as_model_input(img: Image.Image, size: int, channels: int,
                   background: tuple[int, int, int] = (255, 255, 255)) -> Tensor:
    """A PIL image in a model's channels and size: uint8 [C, H, W]. Transparency is composited onto the
    colour the model was trained with, as training did; dropping alpha would leave it black."""
    from ganplug.data.decode import apply_background

    if channels == 4:
        img = img.convert("RGBA")
    else:
        img = apply_background(img.convert("RGBA") if img.mode not in ("RGB", "RGBA") else img, background, False)
    if img.size != (size, size):
        img = img.resize((size, size), Image.Resampling.LANCZOS)
    return torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1).contiguous()


def load_target(path: Path, size: int, channels: int, background: tuple[int, int, int] = (255, 255, 255)) -> Target:
    """Read an image file for projection or translation, in the model's channels and (with a notice) size."""
    from ganplug.data.decode import DOWNSCALE_FIX, open_image

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path} does not exist or is not a file; give a PNG, JPEG or WebP image.")
    # the one safe decoder: decompression bombs, truncated files and non-images are a DataError naming the file
    img = open_image(path, large_fix=DOWNSCALE_FIX)
    notices = []
    if img.size != (size, size):
        notices.append(f"{path.name} is {img.size[0]}x{img.size[1]}; resized to {size}x{size} (the model's size)"
                       + (" and squashed to a square" if img.size[0] != img.size[1] else "") + ".")
    return Target(image=as_model_input(img, size, channels, background), notices=notices)


# ----------------------------------------------------------------------------------- image distances


class PixelSSIMLoss(nn.Module):
    """Mean absolute error on [-1, 1] images plus (1 - MS-SSIM) on [0, 255] (all channels)."""

    name = "pixel+ms-ssim"

    def __init__(self, target: Tensor):
        super().__init__()
        self.register_buffer("target", target.float() / 127.5 - 1)

    def forward(self, img: Tensor) -> Tensor:
        from ganplug.eval.metrics.msssim import ms_ssim

        l1 = (img - self.target).abs().mean()
        ssim = ms_ssim((img.double() + 1) * 127.5, (self.target.double() + 1) * 127.5).mean()
        return l1 + (1 - ssim).float()


class LPIPSLoss(nn.Module):
    """LPIPS-VGG16 distance (RGB only) plus a small L1 term on every channel (alpha has no VGG)."""

    name = "lpips-vgg16"

    def __init__(self, target: Tensor, lpips: nn.Module):
        super().__init__()
        self.lpips = lpips
        self.register_buffer("target", target.float() / 127.5 - 1)

    def forward(self, img: Tensor) -> Tensor:
        a = (img[:, :3] + 1) * 127.5
        b = (self.target[:, :3] + 1) * 127.5
        return self.lpips(a, b).mean() + 0.1 * (img - self.target).abs().mean()


def image_loss(target: Tensor, kind: str = "auto", weights_dir: str | None = None,
               allow_unverified: bool = False) -> tuple[nn.Module, str]:
    """The projection distance to `target` (uint8 [1, C, H, W]) and a sentence saying which one and why."""
    if kind not in ("auto", "vgg", "pixel"):
        raise UserError(f"--loss must be auto, vgg or pixel, not {kind!r}.")
    if kind in ("auto", "vgg"):
        from ganplug.eval.features.lpips import LPIPSVGG
        from ganplug.eval.features.weights import locate, missing_message

        vgg = locate("vgg16", weights_dir, allow_unverified=allow_unverified)
        lin = locate("lpips-vgg16", weights_dir, allow_unverified=allow_unverified)
        if vgg is not None and lin is not None:
            model = LPIPSVGG.from_files(vgg, lin)
            tag = "" if vgg.verified else " (unverified VGG16 file: not the published weights)"
            return LPIPSLoss(target, model), f"perceptual loss: LPIPS-VGG16 from {vgg.path}{tag}"
        from ganplug.eval.features.weights import KNOWN

        missing = [k for k, f in (("vgg16", vgg), ("lpips-vgg16", lin)) if f is None]
        if kind == "vgg":
            raise UserError(missing_message(KNOWN[missing[0]], weights_dir))
        why = f"{KNOWN[missing[0]].filename} not found locally"
        return PixelSSIMLoss(target), f"pixel L1 + MS-SSIM loss ({why}; VGG16 perceptual loss unavailable)"
    return PixelSSIMLoss(target), "pixel L1 + MS-SSIM loss (as asked)"


# ----------------------------------------------------------------------------------- projection


@dataclass
class Projection:
    latent: Tensor  # w [num_ws, w_dim] for style-based models, z [z_dim] otherwise
    space: str  # "w" or "z"
    noise: dict[str, Tensor]  # optimised noise maps by buffer name (style-based only)
    image: Tensor  # uint8 [C, H, W], the final projected image
    losses: list[float]  # image distance at each step
    frames: list[Tensor]  # uint8 [C, H, W] snapshots for the progress video
    loss_name: str
    loss_note: str


def _noise_buffers(G: nn.Module) -> dict[str, Tensor]:
    return {name: buf for name, buf in G.named_buffers() if name.endswith("noise_const")}


def _noise_autocorrelation(noise: Tensor) -> Tensor:
    """Sum over scales (down to 8x8) of the squared mean products with 1-pixel shifted copies."""
    loss = noise.new_zeros([])
    x = noise[None, None]
    while True:
        loss = loss + (x * torch.roll(x, 1, dims=3)).mean() ** 2 + (x * torch.roll(x, 1, dims=2)).mean() ** 2
        if x.shape[2] <= 8:
            return loss
        x = F.avg_pool2d(x, 2)


def _w_stats(G: nn.Module, device, samples: int = 10000, seed: int = 123) -> tuple[Tensor, float]:
    gen = torch.Generator(device="cpu").manual_seed(seed)
    z = torch.randn(samples, G.z_dim, generator=gen).to(device)
    with torch.no_grad():
        w = G.mapping(z)[:, :1, :]
    w_avg = w.mean(0, keepdim=True)  # [1, 1, w_dim]
    w_std = float(((w - w_avg).square().sum() / samples) ** 0.5)
    return w_avg, w_std


def project(G: nn.Module, target: Tensor, *, steps: int = 500, lr: float = 0.1, loss: str = "auto",
            weights_dir: str | None = None, allow_unverified_weights: bool = False, optimize_noise: bool = True,
            noise_weight: float = 1e5, frame_every: int = 10, seed: int = 0, device: torch.device | str = "cpu",
            progress: Callable[[int, float], None] | None = None) -> Projection:
    """Find a latent whose image matches `target` (uint8 [C, H, W]). G is copied, never modified."""
    if steps < 1:
        raise UserError(f"--steps must be at least 1, not {steps}.")
    G = copy.deepcopy(G).to(device).eval().requires_grad_(False)
    size = G.spec.size
    if target.dim() != 3 or target.shape[-1] != size or target.shape[-2] != size:
        raise UserError(f"the target must be a {size}x{size} image; load it with load_target() to resize it.")
    torch.manual_seed(seed)
    tgt = target.unsqueeze(0).to(device)
    dist, note = image_loss(tgt, loss, weights_dir, allow_unverified_weights)
    dist = dist.to(device)
    style_based = G.spec.style_based

    noise_bufs: dict[str, Tensor] = {}
    if style_based:
        w_avg, w_std = _w_stats(G, device)
        latent = w_avg.clone().requires_grad_(True)  # [1, 1, w_dim], broadcast to every style input
        if optimize_noise:
            noise_bufs = _noise_buffers(G)
            for buf in noise_bufs.values():
                buf.normal_()
                buf.requires_grad_(True)
        params = [latent, *noise_bufs.values()]
    else:
        w_std = 1.0
        # z = 0 can be a dead point (bias-free layers, ReLU at 0): start from the best of a few draws.
        with torch.no_grad():
            cands = torch.randn(16, G.z_dim, device=device)
            scores = torch.stack([dist(G(c[None]).float()) for c in cands])
        latent = cands[int(scores.argmin())][None].clone().requires_grad_(True)
        params = [latent]
    opt = torch.optim.Adam(params, lr=lr, betas=(0.9, 0.999))

    def render(lat: Tensor) -> Tensor:
        if style_based:
            return G.synthesis(lat.expand(-1, G.num_ws, -1), noise_mode="const")
        return G(lat)

    losses: list[float] = []
    frames: list[Tensor] = []
    for step in range(steps):
        t = step / steps
        w_noise = w_std * 0.05 * max(0.0, 1.0 - t / 0.75) ** 2 if style_based else 0.0
        ramp = min(1.0, (1.0 - t) / 0.25)  # cosine ramp-down over the last 25%
        ramp = (0.5 - 0.5 * math.cos(ramp * math.pi)) * min(1.0, t / 0.05)  # linear ramp-up over the first 5%
        for group in opt.param_groups:
            group["lr"] = lr * ramp
        img = render(latent + torch.randn_like(latent) * w_noise)
        d = dist(img.float())
        reg = sum((_noise_autocorrelation(b) for b in noise_bufs.values()), img.new_zeros([]))
        total = d + noise_weight * reg
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        with torch.no_grad():
            for buf in noise_bufs.values():
                buf.sub_(buf.mean()).mul_(buf.square().mean().rsqrt())
        losses.append(d.item())
        if progress is not None:
            progress(step, losses[-1])
        if frame_every and (step % frame_every == 0 or step == steps - 1):
            with torch.no_grad():
                frames.append(to_uint8(render(latent))[0].cpu())

    with torch.no_grad():
        final = to_uint8(render(latent))[0].cpu()
    if style_based:
        out_latent = latent.detach()[0].expand(G.num_ws, -1).clone().cpu()
    else:
        out_latent = latent.detach()[0].cpu()
    noise = {k: v.detach().cpu().clone() for k, v in noise_bufs.items()}
    return Projection(latent=out_latent, space="w" if style_based else "z", noise=noise, image=final,
                      losses=losses, frames=frames, loss_name=dist.name, loss_note=note)


@torch.no_grad()
def render_projection(G: nn.Module, latent: Tensor, space: str, noise: dict[str, Tensor] | None = None) -> Tensor:
    """Regenerate a projected image from its saved latent (and noise maps): float [1, C, H, W]."""
    if space == "z":
        return G(latent.reshape(1, -1))
    _require_style_based(G, "a w latent")
    if noise:
        G = copy.deepcopy(G)
        own = _noise_buffers(G)
        for name, value in noise.items():
            if name not in own or own[name].shape != value.shape:
                raise UserError(f"the saved noise map {name} does not fit this generator; was it projected with "
                                "another checkpoint?")
            own[name].copy_(value)
    return G.synthesis(latent.reshape(1, G.num_ws, -1), noise_mode="const")


def read_latent_file(path: Path) -> np.ndarray:
    """The latent in a latent.npy written by `ganplug project` (float32), with a clear error for anything else."""
    path = Path(path)
    redo = "pass the latent.npy that `ganplug project` wrote."
    if not path.is_file():
        raise UserError(f"--latent {path} does not exist or is not a file; {redo}")
    try:
        with open(path, "rb") as f:
            head = f.read(6)
    except OSError as e:
        raise UserError(f"--latent {path} could not be read ({e.strerror}); {redo}") from None
    if head[:4] == b"PK\x03\x04":
        raise UserError(f"--latent {path} could not be read as a .npy array: it is an .npz archive; {redo}")
    if head != b"\x93NUMPY":
        raise UserError(f"--latent {path} could not be read as a .npy array: it is not a .npy file (no numpy "
                        f"header); {redo}")
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        why = "it holds Python objects" if "pickle" in str(e) else f"it is damaged: {e}"
        raise UserError(f"--latent {path} could not be read as a .npy array: {why}; {redo}") from None
    if arr.dtype.kind not in "fiu":
        raise UserError(f"--latent {path} holds {arr.dtype} values, not numbers; {redo}")
    if not np.isfinite(arr).all():
        raise UserError(f"--latent {path} holds nan or infinite values; {redo}")
    return arr.astype(np.float32)


def read_noise_file(path: Path) -> dict[str, Tensor]:
    """The noise maps in a projection's noise.safetensors, with a clear error for a damaged file."""
    from safetensors import SafetensorError
    from safetensors.torch import load as st_load

    path = Path(path)
    try:
        noise = st_load(path.read_bytes())
    except (SafetensorError, OSError, ValueError) as e:
        raise UserError(
            f"{path} (the noise maps of the projection beside it) is damaged or not a safetensors file ({e}). "
            "Project the image again, or move the file away to render with the generator's own noise "
            "(the image will then differ from projected.png)."
        ) from None
    bad = [k for k, v in noise.items() if not v.is_floating_point() or not torch.isfinite(v).all()]
    if bad:
        raise UserError(f"{path}: the noise map {bad[0]} holds values that are not finite numbers; project the "
                        "image again, or move the file away to render with the generator's own noise.")
    return noise
