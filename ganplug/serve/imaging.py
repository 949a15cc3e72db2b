"""PNG in and out of the server: encoding results, decoding uploads within limits, resizing."""

from __future__ import annotations

import base64
import binascii
import io
import warnings

import numpy as np
from PIL import Image

from ganplug.serve.errors import ApiError


def png_bytes(arr: np.ndarray) -> bytes:
    """uint8 HWC (C = 1, 3 or 4) -> PNG file bytes."""
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(arr)).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def resize(arr: np.ndarray, width: int, height: int, periodic: bool = False) -> np.ndarray:
    """Lanczos resampling; `periodic` resamples a 3x3 tiling and keeps the middle, so seams stay seamless."""
    h, w = arr.shape[:2]
    if (w, h) == (width, height):
        return arr
    src = np.tile(arr, (3, 3, 1)) if periodic else arr
    tw, th = (3 * width, 3 * height) if periodic else (width, height)
    img = Image.fromarray(src.squeeze(-1) if src.shape[2] == 1 else src)
    out = np.asarray(img.resize((tw, th), Image.Resampling.LANCZOS))
    if out.ndim == 2:
        out = out[..., None]
    return out[height : 2 * height, width : 2 * width] if periodic else out


def decode_upload(data_b64: str, max_bytes: int, max_pixels: int) -> Image.Image:
    """A base64 image from a request -> PIL image, refusing oversized or malformed uploads with a 4xx."""
    if len(data_b64) > (max_bytes * 4) // 3 + 8:
        raise ApiError(413, "upload_too_large", f"the uploaded image is over the {max_bytes // (1 << 20)} MiB limit.")
    if data_b64.startswith("data:") and "," in data_b64:  # a data: URL from a browser
        data_b64 = data_b64.split(",", 1)[1]
    try:
        raw = base64.b64decode(data_b64, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, "bad_image", "`image` is not valid base64; send the file's bytes base64-encoded.") from None
    if len(raw) > max_bytes:
        raise ApiError(413, "upload_too_large", f"the uploaded image is over the {max_bytes // (1 << 20)} MiB limit.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(raw))
            w, h = img.size
            if w * h > max_pixels:
                raise ApiError(413, "image_too_large",
                               f"the uploaded image is {w}x{h} pixels; the limit is {max_pixels} pixels in all.")
            if img.format not in ("PNG", "JPEG", "WEBP"):
                raise ApiError(415, "bad_image", f"upload a PNG, JPEG or WebP image, not {img.format}.")
            img.load()
    except ApiError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ApiError(413, "image_too_large", "the uploaded image has too many pixels.") from None
    except Exception:  # PIL raises many types for damaged files
        raise ApiError(400, "bad_image", "`image` could not be read as a PNG, JPEG or WebP image.") from None
    return img
