"""Tileable (seamless) generation: circular padding in every convolution, at inference time only.

A generator whose spatial layers all treat their input as a torus produces an image whose left edge
continues its right edge and whose top continues its bottom. Training is untouched: `tileable()` is a
context manager that, in the calling thread and inside the block only, rewrites the padded convolutions
and the smooth upsamplings that the generator runs:

- `conv2d` with padding p: the input is wrapped by p on each side and convolved with padding 0;
- `conv_transpose2d` (stride s, padding p, kernel k): there is no built-in circular mode, so the
  input is wrapped by m = ceil((d(k-1) + output_padding) / s) pixels, the transposed convolution runs
  with padding 0 and the result is cropped back to the normal output; for DCGAN's k=4, s=2, p=1 this
  is the exact transposed convolution on a torus;
- `interpolate` in bilinear/bicubic mode with an integer scale: wrapped by 2 source pixels, cropped.

Layers with padding 0 (DCGAN's first 1x1 -> 4x4 projection) are left alone: they make the first
feature map, which every later layer then treats as periodic.

The rewrite intercepts the calls with a `torch.overrides.TorchFunctionMode`, so it covers nn.Conv2d,
nn.ConvTranspose2d and hand-written modulated convolutions alike, whatever the model family, without
touching `torch.nn.functional` or any model: torch keeps the mode stack per thread, so a server can run
tileable and plain requests on the same cached generator at once, and nothing outside the block (other
threads, other models, training) ever sees it. `ganplug.ops` enters it around each generator call only.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode


def _pair(v) -> tuple[int, int]:
    if isinstance(v, int):
        return v, v
    v = tuple(v)
    return (v[0], v[0]) if len(v) == 1 else (int(v[0]), int(v[1]))


def wrap_pad(x: torch.Tensor, top: int, bottom: int, left: int, right: int) -> torch.Tensor:
    """Circular padding of the last two dims by any amount (even more than the size itself)."""
    h, w = x.shape[-2], x.shape[-1]
    if top or bottom:
        rows = torch.arange(-top, h + bottom, device=x.device) % h
        x = x.index_select(-2, rows)
    if left or right:
        cols = torch.arange(-left, w + right, device=x.device) % w
        x = x.index_select(-1, cols)
    return x


def _conv2d(orig, input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    if input.dim() != 4:
        return orig(input, weight, bias, stride, padding, dilation, groups)
    kh, kw = weight.shape[-2], weight.shape[-1]
    dh, dw = _pair(dilation)
    if isinstance(padding, str):
        if padding == "valid":
            return orig(input, weight, bias, stride, padding, dilation, groups)
        # "same" (stride 1): total padding d(k-1), the extra pixel on the far side as torch does.
        th, tw = dh * (kh - 1), dw * (kw - 1)
        pads = (th // 2, th - th // 2, tw // 2, tw - tw // 2)
    else:
        ph, pw = _pair(padding)
        pads = (ph, ph, pw, pw)
    if not any(pads):
        return orig(input, weight, bias, stride, padding, dilation, groups)
    x = wrap_pad(input, *pads)
    return orig(x, weight, bias, stride, 0, dilation, groups)


def _conv_transpose2d(orig, input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    ph, pw = _pair(padding)
    if input.dim() != 4 or (ph == 0 and pw == 0):
        return orig(input, weight, bias, stride, padding, output_padding, groups, dilation)
    sh, sw = _pair(stride)
    oph, opw = _pair(output_padding)
    dh, dw = _pair(dilation)
    kh, kw = weight.shape[-2], weight.shape[-1]
    mh = math.ceil((dh * (kh - 1) + oph) / sh)
    mw = math.ceil((dw * (kw - 1) + opw) / sw)
    n_h, n_w = input.shape[-2], input.shape[-1]
    y = orig(wrap_pad(input, mh, mh, mw, mw), weight, bias, stride, 0, 0, groups, dilation)
    out_h = (n_h - 1) * sh - 2 * ph + dh * (kh - 1) + oph + 1
    out_w = (n_w - 1) * sw - 2 * pw + dw * (kw - 1) + opw + 1
    top, left = mh * sh + ph, mw * sw + pw
    return y[..., top : top + out_h, left : left + out_w]


def _interpolate(orig, input, size=None, scale_factor=None, mode="nearest", align_corners=None, **kw):
    smooth = mode in ("bilinear", "bicubic")
    if not smooth or input.dim() != 4 or align_corners:
        return orig(input, size=size, scale_factor=scale_factor, mode=mode, align_corners=align_corners, **kw)
    h, w = input.shape[-2], input.shape[-1]
    if size is not None:
        oh, ow = _pair(size)
        sh, sw = oh / h, ow / w
    else:
        sh, sw = (float(s) for s in _pair_float(scale_factor))
    if sh != int(sh) or sw != int(sw):  # wrap-and-crop is exact only for integer scales
        return orig(input, size=size, scale_factor=scale_factor, mode=mode, align_corners=align_corners, **kw)
    m = 2
    y = orig(wrap_pad(input, m, m, m, m), scale_factor=(sh, sw), mode=mode, align_corners=align_corners, **kw)
    top, left = int(m * sh), int(m * sw)
    return y[..., top : top + int(h * sh), left : left + int(w * sw)]


def _pair_float(v) -> tuple[float, float]:
    if isinstance(v, (int, float)):
        return float(v), float(v)
    v = tuple(v)
    return (float(v[0]), float(v[0])) if len(v) == 1 else (float(v[0]), float(v[1]))


# torch.nn.functional's own functions (F.conv2d is torch.conv2d), looked up once: F is never modified.
_REWRITES = {F.conv2d: _conv2d, F.conv_transpose2d: _conv_transpose2d, F.interpolate: _interpolate}


class _Torus(TorchFunctionMode):
    """Routes the three spatial ops to their torus versions; everything else runs as it is. While this
    runs, torch has popped the mode, so the rewrites' own torch calls are not intercepted again."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        rewrite = _REWRITES.get(func)
        if rewrite is None:
            return func(*args, **kwargs)
        return rewrite(func, *args, **kwargs)


_local = threading.local()


@contextlib.contextmanager
def tileable(enabled: bool = True) -> Iterator[None]:
    """Inside this block (this thread only), generators produce seamless, tileable images."""
    if not enabled:
        yield
        return
    depth = getattr(_local, "depth", 0)
    _local.depth = depth + 1
    try:
        with _Torus():
            yield
    finally:
        _local.depth = depth


def is_active() -> bool:
    """Whether this thread is inside `tileable()`: a compiled pass (ganplug.fastpath) then runs eagerly,
    because its graph was traced without the torus rewrites."""
    return getattr(_local, "depth", 0) > 0


def seam_jumps(img) -> dict[str, float]:
    """Mean absolute jump across the wrap-around seams vs between interior neighbours (HWC or CHW ok).

    Used by tests and by `ganplug serve`'s docs: a tileable image has seam jumps no larger than the
    interior ones.
    """
    import numpy as np

    a = np.asarray(img, dtype=np.float64)
    if a.ndim == 2:
        a = a[..., None]
    if a.shape[0] <= 4 and a.shape[-1] > 4:  # CHW -> HWC
        a = np.moveaxis(a, 0, -1)
    cols = np.abs(np.diff(a, axis=1)).mean(axis=(0, 2))  # mean jump between column k and k+1
    rows = np.abs(np.diff(a, axis=0)).mean(axis=(1, 2))
    seam_x = np.abs(a[:, 0] - a[:, -1]).mean()
    seam_y = np.abs(a[0] - a[-1]).mean()
    # Upsampling makes jumps depend on a pair's position (odd/even pixel); the max over interior pairs
    # is the fair bound for the seam, which sits where every upsampling level has a boundary.
    return {"seam_x": float(seam_x), "seam_y": float(seam_y),
            "interior_x": float(cols.mean()), "interior_y": float(rows.mean()),
            "interior_x_max": float(cols.max()), "interior_y_max": float(rows.max())}
