"""Finding exact and near duplicates among prepared images.

A near duplicate is the same picture saved again: re-compressed, re-sized, slightly re-coloured.
Its perceptual fingerprint (a 32 x 32 colour thumbnail) differs from the original by small, diffuse
amounts everywhere. Two different designs that share most pixels (a smiling and a frowning face) differ
by a lot in a few places. So a match needs both a small mean difference (the threshold) and almost no
strongly differing thumbnail pixels. DCT hashes (pHash) were tried first: on flat-background art their
low-energy bits flip under JPEG noise and they confuse near-identical-but-different designs.

Search is a vectorised scan: a 4 x 4 thumbnail lower-bounds the 32 x 32 distance, so only the few
images it admits are compared in full.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
from PIL import Image

DEFAULT_THRESHOLD = 12.0  # mean absolute difference (0-255 levels) of the 32 x 32 thumbnails
LOCAL_LEVEL = 24  # a thumbnail pixel differing by more than this is a local change ...
LOCAL_SHARE = 0.0025  # ... and more than 0.25% of such pixels (3 of 1024) means another design

_T = 32  # thumbnail side
_C = 4  # coarse thumbnail side


@dataclass(frozen=True)
class Fingerprint:
    thumb: np.ndarray  # (32, 32, 3) int16
    coarse: np.ndarray  # (4 * 4 * 3,) float32 block means of `thumb`
    digest: bytes  # exact pixel content


def _rgb(arr: np.ndarray) -> np.ndarray:
    if arr.shape[2] == 4:  # transparency shows as mid-gray, so a changed alpha counts as a change
        a = arr[..., 3:4].astype(np.uint16)
        return ((arr[..., :3] * a + 128 * (255 - a) + 127) // 255).astype(np.uint8)
    return arr


def fingerprint(arr: np.ndarray) -> Fingerprint:
    """Fingerprint of an H x W x 3|4 uint8 image."""
    rgb = np.ascontiguousarray(_rgb(arr))
    thumb = np.asarray(Image.fromarray(rgb).resize((_T, _T), Image.Resampling.BOX)).astype(np.int16)
    k = _T // _C
    coarse = thumb.reshape(_C, k, _C, k, 3).mean(axis=(1, 3), dtype=np.float32).reshape(-1)
    return Fingerprint(thumb, coarse, hashlib.sha1(np.ascontiguousarray(arr).data).digest())


def difference(a: Fingerprint, b: Fingerprint) -> tuple[float, float]:
    """(mean difference in levels, share of strongly differing pixels) between two fingerprints."""
    d = np.abs(a.thumb - b.thumb).max(axis=2)
    return float(d.mean()), float((d > LOCAL_LEVEL).mean())


class DuplicateIndex:
    """Fingerprints of the images kept so far; `match` finds the first one a new image duplicates."""

    def __init__(self, threshold: float = DEFAULT_THRESHOLD):
        self.threshold = float(threshold)
        self._coarse = np.zeros((1024, _C * _C * 3), dtype=np.float32)
        self._thumbs = np.zeros((1024, _T, _T, 3), dtype=np.uint8)
        self._labels: list[object] = []
        self._exact: dict[bytes, int] = {}

    def __len__(self) -> int:
        return len(self._labels)

    def match(self, fp: Fingerprint) -> tuple[object, float] | None:
        """(label of the earlier image, mean difference) if `fp` duplicates one, else None."""
        if fp.digest in self._exact:
            return self._labels[self._exact[fp.digest]], 0.0
        n = len(self._labels)
        if n == 0:
            return None
        # |block-mean difference| of a channel <= the block's mean of per-pixel max-over-channel
        # differences, so this mean is a lower bound of the full distance: no match is missed.
        coarse = np.abs(self._coarse[:n] - fp.coarse).mean(axis=1)
        cand = np.flatnonzero(coarse <= self.threshold + 1e-3)
        if len(cand) == 0:
            return None
        d = np.abs(self._thumbs[cand].astype(np.int16) - fp.thumb).max(axis=3).reshape(len(cand), -1)
        ok = (d.mean(axis=1) <= self.threshold) & ((d > LOCAL_LEVEL).mean(axis=1) <= LOCAL_SHARE)
        if not ok.any():
            return None
        i = int(np.flatnonzero(ok)[0])
        return self._labels[cand[i]], round(float(d[i].mean()), 2)

    def add(self, fp: Fingerprint, label: object) -> None:
        n = len(self._labels)
        if n == len(self._coarse):
            self._coarse = np.concatenate([self._coarse, np.zeros_like(self._coarse)])
            self._thumbs = np.concatenate([self._thumbs, np.zeros_like(self._thumbs)])
        self._coarse[n] = fp.coarse
        self._thumbs[n] = fp.thumb
        self._exact.setdefault(fp.digest, n)
        self._labels.append(label)
