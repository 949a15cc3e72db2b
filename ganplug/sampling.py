"""Seeds -> latents -> images, and the image plumbing around it (grids, GIFs, latent paths).

Which path a family morphs along (lerp in w, slerp in z) is chosen in ganplug.ops, once.

Every latent comes from its own seeded RNG, so seed N is the same image at any batch size and on any
device: a saved seed is enough to regenerate an image.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from ganplug.device import Runtime
from ganplug.errors import UserError
from ganplug.seeds import MAX_SEEDS, SEED_MAX, parse_seeds  # noqa: F401  (re-exported: torch-free home)


def z_from_seeds(seeds: Sequence[int], z_dim: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Standard-normal latents, one independent RNG per seed (float64 -> float32 for exactness)."""
    rows = [np.random.RandomState(int(s) % (2**32)).randn(z_dim) for s in seeds]
    return torch.from_numpy(np.stack(rows).astype(np.float32)).to(device)


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] float images -> uint8 with round-to-nearest."""
    return ((x.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


@torch.no_grad()
def generate(
    G: nn.Module,
    seeds: Sequence[int],
    *,
    truncation: float = 1.0,
    batch_size: int = 32,
    runtime: Runtime | None = None,
    **g_kwargs,
) -> Iterator[tuple[list[int], torch.Tensor]]:
    """Yield (seeds, uint8 NCHW images on the CPU) in batches of at most `batch_size`."""
    device = runtime.device if runtime else next(G.parameters()).device
    seeds = [int(s) for s in seeds]
    for start in range(0, len(seeds), batch_size):
        chunk = seeds[start : start + batch_size]
        z = z_from_seeds(chunk, G.z_dim, device)
        if runtime is not None:
            with runtime.autocast():
                img = G(z, truncation=truncation, **g_kwargs)
        else:
            img = G(z, truncation=truncation, **g_kwargs)
        yield chunk, to_uint8(img).cpu()


def generate_all(G: nn.Module, seeds: Sequence[int], **kwargs) -> torch.Tensor:
    """All images for `seeds` as one uint8 NCHW tensor."""
    return torch.cat([imgs for _, imgs in generate(G, seeds, **kwargs)])


# ----------------------------------------------------------------------------- latent paths


def lerp(a: torch.Tensor, b: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
    return a + (b - a) * t


def slerp(a: torch.Tensor, b: torch.Tensor, t: float | torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Spherical interpolation along the last dim; magnitudes are interpolated linearly.

    Gaussian latents live near a sphere, so slerp keeps in-between latents typical (lerp shrinks them).
    """
    na, nb = a.norm(dim=-1, keepdim=True), b.norm(dim=-1, keepdim=True)
    ua, ub = a / na.clamp_min(eps), b / nb.clamp_min(eps)
    cos = (ua * ub).sum(-1, keepdim=True).clamp(-1 + eps, 1 - eps)
    omega = torch.acos(cos)
    so = torch.sin(omega)
    t = torch.as_tensor(t, dtype=a.dtype, device=a.device)
    direction = (torch.sin((1 - t) * omega) * ua + torch.sin(t * omega) * ub) / so
    return direction * lerp(na, nb, t)


def interpolation_latents(seeds: Sequence[int], frames: int, z_dim: int, loop: bool = False) -> torch.Tensor:
    """`frames` latents moving through the seeds' latents in order with slerp (frames >= len(seeds))."""
    if len(seeds) < 2:
        raise UserError("interpolation needs at least two seeds, e.g. --seeds 3,7.")
    if frames < len(seeds):
        raise UserError(f"--frames {frames} is fewer than the {len(seeds)} seeds; use at least {len(seeds)}.")
    keys = z_from_seeds(list(seeds) + ([seeds[0]] if loop else []), z_dim)
    return torch.stack([slerp(keys[k], keys[k + 1], t) for k, t in path_positions(frames, len(keys) - 1, loop)])


def path_positions(frames: int, segments: int, loop: bool) -> list[tuple[int, float]]:
    """(segment, fraction within it) of each frame of a path through `segments + 1` key latents."""
    out = []
    for i in range(frames):
        pos = i * segments / (frames - (0 if loop else 1))
        k = min(int(pos), segments - 1)
        out.append((k, pos - k))
    return out


@torch.no_grad()
def render_latents(G: nn.Module, z: torch.Tensor, *, batch_size: int = 32, runtime: Runtime | None = None,
                   truncation: float = 1.0, **g_kwargs) -> torch.Tensor:
    device = runtime.device if runtime else next(G.parameters()).device
    chunks = []
    for start in range(0, len(z), batch_size):
        zz = z[start : start + batch_size].to(device)
        if runtime is not None:
            with runtime.autocast():
                img = G(zz, truncation=truncation, **g_kwargs)
        else:
            img = G(zz, truncation=truncation, **g_kwargs)
        chunks.append(to_uint8(img).cpu())
    return torch.cat(chunks)


# ----------------------------------------------------------------------------- image files


def to_pil(img: torch.Tensor) -> Image.Image:
    """One uint8 CHW tensor -> PIL image (RGB or RGBA)."""
    arr = img.permute(1, 2, 0).contiguous().numpy()
    return Image.fromarray(arr, mode="RGBA" if arr.shape[2] == 4 else "RGB")


def make_grid(images: torch.Tensor, nrow: int | None = None, pad: int = 2, fill: int = 255) -> Image.Image:
    """uint8 NCHW -> one PIL image, `nrow` images per row (default: as square as possible)."""
    n, c, h, w = images.shape
    nrow = nrow or max(1, math.ceil(math.sqrt(n)))
    rows = math.ceil(n / nrow)
    grid = np.full((rows * (h + pad) + pad, nrow * (w + pad) + pad, c), fill, dtype=np.uint8)
    arr = images.permute(0, 2, 3, 1).numpy()
    for i in range(n):
        r, k = divmod(i, nrow)
        y, x = pad + r * (h + pad), pad + k * (w + pad)
        grid[y : y + h, x : x + w] = arr[i]
    return Image.fromarray(grid, mode="RGBA" if c == 4 else "RGB")


def save_image_atomic(img: Image.Image, path: Path, **save_kwargs) -> None:
    """Save a PIL image via a temp file and rename, so an existing file is never half-overwritten."""
    import io

    from ganplug.atomic import atomic_write_bytes

    path = Path(path)
    buf = io.BytesIO()
    fmt = {".png": "PNG", ".gif": "GIF", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}.get(path.suffix.lower())
    if fmt is None:
        raise UserError(f"{path}: unsupported image extension {path.suffix!r}; use .png, .gif, .jpg or .webp.")
    img.save(buf, format=fmt, **save_kwargs)
    atomic_write_bytes(path, buf.getbuffer())


def save_animation(frames: Sequence[Image.Image], path: Path, fps: float = 12.0) -> None:
    """GIF (always) or MP4 (needs imageio-ffmpeg)."""
    path = Path(path)
    if not frames:
        raise UserError(f"no frames to write to {path}.")
    suffix = path.suffix.lower()
    if suffix == ".gif":
        pal = [f.convert("RGB") for f in frames]
        save_image_atomic(pal[0], path, save_all=True, append_images=pal[1:], duration=int(1000 / fps), loop=0)
    elif suffix == ".mp4":
        from ganplug.extras import require

        imageio = require("imageio.v2", "media", f"writing {path.name}", "use a .gif")
        require("imageio_ffmpeg", "media", f"writing {path.name}", "use a .gif")  # the ffmpeg backend
        import tempfile

        with tempfile.NamedTemporaryFile(suffix=".mp4", dir=path.parent, delete=False) as tmp:
            tmp_path = Path(tmp.name)
        try:
            with imageio.get_writer(tmp_path, fps=fps, codec="libx264", quality=8, macro_block_size=1) as w:
                for f in frames:
                    w.append_data(np.asarray(f.convert("RGB")))
            tmp_path.replace(path)
        finally:
            tmp_path.unlink(missing_ok=True)
    else:
        raise UserError(f"{path}: animations are written as .gif or .mp4, not {suffix!r}.")
