"""Reading one image file of any common format into 8-bit RGB or RGBA.

Every reader in ganplug (prep, train on a raw folder, eval, serve, projection) goes through here so
a user's image looks the same everywhere: EXIF orientation applied, 16-bit scaled (not clipped),
palette/grayscale/CMYK expanded, transparency kept as alpha or composited onto a background. The
pixel count is checked from the header before any pixel is decoded, so a decompression bomb costs
nothing.
"""

from __future__ import annotations

import errno
import struct
import warnings
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from ganplug.errors import DataError

IMAGE_EXTENSIONS = frozenset(
    {".png", ".jpg", ".jpeg", ".jpe", ".jfif", ".webp", ".bmp", ".dib", ".tif", ".tiff", ".gif"}
)
DEFAULT_MAX_PIXELS = 100_000_000  # 100 megapixels: a 10,000 x 10,000 painting still reads

_NAMED_COLOURS = {"white": (255, 255, 255), "black": (0, 0, 0), "gray": (128, 128, 128), "grey": (128, 128, 128)}


class ImageReadError(DataError):
    """One file that cannot be used; `reason` is the short text prep lists in report.json."""

    def __init__(self, path: Path | str, reason: str, fix: str = "") -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}" + (f"; {fix}." if fix else "."))


def parse_color(text: str | tuple[int, int, int]) -> tuple[int, int, int]:
    """'white' | 'black' | 'gray' | '#rrggbb' | '#rgb' | (r, g, b) -> (r, g, b)."""
    if isinstance(text, tuple):
        if len(text) == 3 and all(isinstance(v, int) and 0 <= v <= 255 for v in text):
            return text
        raise DataError(f"background colour {text!r} must be three integers 0-255.")
    t = text.strip().lower()
    if t in _NAMED_COLOURS:
        return _NAMED_COLOURS[t]
    h = t[1:] if t.startswith("#") else t
    if len(h) == 3:
        h = "".join(c * 2 for c in h)
    if len(h) == 6:
        try:
            return (int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16))
        except ValueError:
            pass
    raise DataError(f"background colour {text!r} is not understood; use white, black, gray or #rrggbb.")


def _allow_pillow_up_to(max_pixels: int) -> None:
    # Our own check below is the policy; Pillow's bomb guard must not be stricter than it.
    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and max_pixels * 2 > limit:
        Image.MAX_IMAGE_PIXELS = max_pixels * 2


def _open_error_reason(path: Path, e: OSError) -> tuple[str, str]:
    if isinstance(e, PermissionError) or e.errno == errno.EACCES:
        return "permission denied", "make it readable (chmod a+r) or remove it from the folder"
    if e.errno == errno.ELOOP:
        return "symlink loop", "fix or delete the symbolic link"
    if isinstance(e, FileNotFoundError):
        return "file not found (broken symbolic link?)", "fix or delete the link"
    if isinstance(e, IsADirectoryError):
        return "is a folder, not an image", ""
    return f"cannot be read ({e.strerror or e})", ""


def _to_8bit(im: Image.Image) -> Image.Image:
    """Scale high-bit-depth single-channel images to 8 bits by range, not by clipping."""
    if im.mode.startswith("I;16"):
        a = np.asarray(im).astype(np.uint32)
        return Image.fromarray(((a * 255 + 32767) // 65535).astype(np.uint8), "L")
    if im.mode == "I":
        a = np.asarray(im).astype(np.int64)
        top = int(a.max(initial=0))
        scale = 255 if top <= 255 else (65535 if top <= 65535 else top)
        a = np.clip(a, 0, None)
        return Image.fromarray(((a * 255 + scale // 2) // scale).astype(np.uint8), "L")
    if im.mode == "F":
        a = np.asarray(im).astype(np.float64)
        a = a * 255.0 if float(np.nanmax(a, initial=0.0)) <= 1.0 else a
        return Image.fromarray(np.clip(np.nan_to_num(a), 0, 255).round().astype(np.uint8), "L")
    return im


def normalize_mode(im: Image.Image) -> Image.Image:
    """Any Pillow mode -> "RGB" (opaque) or "RGBA" (has transparency)."""
    im = _to_8bit(im)
    has_alpha = im.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in im.info
    if has_alpha:
        if im.mode in ("RGBa", "La"):
            im = im.convert(im.mode.replace("a", "A"))
        return im if im.mode == "RGBA" else im.convert("RGBA")
    if im.mode == "RGB":
        return im
    if im.mode in ("LAB", "HSV"):
        return im.convert("RGB") if im.mode == "HSV" else Image.fromarray(_lab_to_rgb(np.asarray(im)), "RGB")
    return im.convert("RGB")


def _lab_to_rgb(lab: np.ndarray) -> np.ndarray:
    # Pillow stores L in 0..255 and a/b offset by 128; go through XYZ (D65) to sRGB.
    L = lab[..., 0].astype(np.float64) * (100.0 / 255.0)
    a = lab[..., 1].astype(np.float64) - 128.0
    b = lab[..., 2].astype(np.float64) - 128.0
    fy = (L + 16.0) / 116.0
    fx, fz = fy + a / 500.0, fy - b / 200.0

    def finv(t: np.ndarray) -> np.ndarray:
        return np.where(t > 6 / 29, t**3, 3 * (6 / 29) ** 2 * (t - 4 / 29))

    xyz = np.stack([0.95047 * finv(fx), finv(fy), 1.08883 * finv(fz)], axis=-1)
    m = np.array([[3.2406, -1.5372, -0.4986], [-0.9689, 1.8758, 0.0415], [0.0557, -0.2040, 1.0570]])
    lin = np.clip(xyz @ m.T, 0, 1)
    srgb = np.where(lin <= 0.0031308, 12.92 * lin, 1.055 * lin ** (1 / 2.4) - 0.055)
    return (srgb * 255).round().astype(np.uint8)


def apply_background(im: Image.Image, background: tuple[int, int, int], keep_alpha: bool) -> Image.Image:
    """RGB/RGBA -> RGBA (keep_alpha) or RGB with transparency composited onto `background`."""
    if keep_alpha:
        return im if im.mode == "RGBA" else im.convert("RGBA")
    if im.mode == "RGB":
        return im
    canvas = Image.new("RGBA", im.size, background + (255,))
    canvas.alpha_composite(im)
    return canvas.convert("RGB")


TOO_LARGE_FIX = "raise --max-pixels to read it"  # prep's option
DOWNSCALE_FIX = "downscale it first"  # commands without --max-pixels


@contextmanager
def _opened(path: Path, max_pixels: int, large_fix: str) -> Iterator[Image.Image]:
    """The lazily opened image, its header checked (format, size within `max_pixels`); no pixel decoded."""
    _allow_pillow_up_to(max_pixels)
    try:
        f = open(path, "rb")  # Pillow reads lazily from it; closed on leaving
    except OSError as e:
        reason, fix = _open_error_reason(path, e)
        raise ImageReadError(path, reason, fix) from e
    with f:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                im = Image.open(f)
        except Image.DecompressionBombError as e:
            raise ImageReadError(  # Pillow refuses before reading any pixel; its limit is twice ours
                path, f"too large: its header declares more than {2 * Image.MAX_IMAGE_PIXELS / 1e6:.0f} megapixels "
                f"(the limit is {max_pixels / 1e6:g}; a decompression bomb?)", large_fix) from e
        except Image.UnidentifiedImageError as e:
            ext = path.suffix.lower().lstrip(".") or "image"
            raise ImageReadError(
                path, f"not a valid {ext.upper()} file (its content is not an image Pillow can read)"
            ) from e
        except (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error) as e:
            raise ImageReadError(path, f"corrupt header ({e})") from e
        w, h = im.size
        if w * h > max_pixels:
            raise ImageReadError(
                path,
                f"too large: {w}x{h} is {w * h / 1e6:.0f} megapixels, over the limit of {max_pixels / 1e6:g}",
                large_fix,
            )
        if w < 1 or h < 1:
            raise ImageReadError(path, f"empty image ({w}x{h})")
        yield im


@dataclass(frozen=True)
class ImageHeader:
    size: tuple[int, int]  # (width, height)
    mode: str  # Pillow's mode before any conversion
    has_alpha: bool


def probe_image(path: Path | str, *, max_pixels: int = DEFAULT_MAX_PIXELS,
                large_fix: str = TOO_LARGE_FIX) -> ImageHeader:
    """Size, mode and transparency of one file from its header alone, with open_image's checks (bombs,
    non-images, unreadable files: ImageReadError); truncated pixel data shows only when it is decoded."""
    path = Path(path)
    with _opened(path, max_pixels, large_fix) as im:
        has_alpha = im.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in im.info
        return ImageHeader(size=im.size, mode=im.mode, has_alpha=has_alpha)


def open_image(path: Path | str, *, max_pixels: int = DEFAULT_MAX_PIXELS, draft_need: int | None = None,
               large_fix: str = TOO_LARGE_FIX) -> Image.Image:
    """Open, size-check, decode and orient one file; returns a loaded "RGB" or "RGBA" image.

    `draft_need`: the smallest side the caller needs after decoding; JPEGs then decode at a reduced
    DCT scale, which is several times faster for large photos and loses nothing at the target size.
    `large_fix`: what the message tells the user to do about an image over `max_pixels` (prep has
    --max-pixels; other commands say to downscale it).
    Raises ImageReadError (a DataError) with a short reason.
    """
    path = Path(path)
    with _opened(path, max_pixels, large_fix) as im:
        w, h = im.size
        if draft_need and im.format == "JPEG" and min(w, h) > draft_need:
            scale = draft_need / min(w, h)
            im.draft(im.mode if im.mode in ("RGB", "L", "CMYK") else "RGB", (int(w * scale) + 1, int(h * scale) + 1))
        try:
            im.seek(0)  # first frame of GIF / animated WebP / multi-page TIFF
            im.load()
            im = ImageOps.exif_transpose(im) or im
            return normalize_mode(im)
        except MemoryError as e:
            raise ImageReadError(path, "not enough memory to decode it", "lower --workers or downscale it") from e
        except (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error, IndexError) as e:
            raise ImageReadError(path, f"truncated or corrupt ({e})") from e


def decode_image(
    path: Path | str,
    *,
    background: str | tuple[int, int, int] = "white",
    keep_alpha: bool = False,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> np.ndarray:
    """One user image -> H x W x 3 (or x 4 with keep_alpha) uint8, with prep's conversions.

    Raises DataError (ImageReadError) saying which file and what is wrong with it.
    """
    im = open_image(path, max_pixels=max_pixels)
    return np.asarray(apply_background(im, parse_color(background), keep_alpha)).copy()
