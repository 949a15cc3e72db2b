"""`--n auto`: a sample count sized to the machine, and the time estimate printed before a long run.

On CUDA the documented protocol runs (10,000 samples; 50,000 for published FID-50k numbers). Elsewhere a
CPU would spend most of an hour on 10,000 Inception passes in silence, so one small batch is timed
through the generator and the feature networks and the count is the one that fits in about three
minutes (at least 500, which is still enough for FID/KID to rank models). The timing uses random
latents and synthetic images: no file is decoded and no seed is drawn twice (the one-pass rule).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from ganplug.eval.features import handcrafted
from ganplug.eval.sources import CheckpointSource, Source

FULL_N = 10_000  # the documented default protocol (and the most `auto` ever picks)
PUBLISHED_N = 50_000  # FID-50k, what papers report
CPU_BUDGET_S = 180.0  # what `auto` aims for off CUDA
CPU_MIN_N = 500  # below this FID/KID are too noisy to compare models
TIMING_BATCH = 16


@dataclass
class SampleCount:
    """The count used, whether `auto` chose it, and what it should cost (None when not timed)."""

    n: int
    auto: bool
    device: str
    seconds_per_sample: float | None = None  # generator + features for one FAKE image
    seconds_real: float | None = None  # features for the whole REAL set (an upper bound: it may be cached)
    seconds_per_pair: float = 0.0  # recall's k-NN among the samples: n x n distances
    auto_n: int | None = None  # what `auto` would pick here (off CUDA, when timed)
    what: str = "samples"  # "images" when FAKE is an image set

    @property
    def estimate_s(self) -> float | None:
        if self.seconds_per_sample is None:
            return None
        return self.n * self.seconds_per_sample + self.n ** 2 * self.seconds_per_pair + (self.seconds_real or 0.0)

    def as_json(self) -> dict:
        est = self.estimate_s
        return {"n": self.n, "auto": self.auto, "device": self.device, "auto_n": self.auto_n,
                "seconds_per_sample": None if self.seconds_per_sample is None else round(self.seconds_per_sample, 5),
                "estimate_s": est}  # unrounded: a tiny run takes milliseconds

    def message(self) -> str | None:
        """The line printed before the pass starts (None: an explicit count that needs no warning)."""
        est = self.estimate_s
        about = f"about {human_duration(est)} (timed on this {self.device.upper()})" if est else ""
        if self.auto and self.device == "cuda":
            return (f"--n auto: {self.n:,} {self.what} (the documented protocol on CUDA); published FID-50k numbers "
                    f"use --n {PUBLISHED_N}")
        if self.auto:
            full = f"--n {PUBLISHED_N} for published FID-50k numbers"
            if self.n < FULL_N:
                full = f"--n {FULL_N} (or {full})"
            return f"--n auto: {self.n:,} {self.what} on {self.device.upper()}, {about}; for the full protocol: " \
                   f"{full} on a GPU"
        if self.auto_n is not None and self.n > self.auto_n and est:
            return (f"--n {self.n:,} on {self.device.upper()} will take {about}; --n auto would take "
                    f"{self.auto_n:,} {self.what} (about {human_duration(CPU_BUDGET_S)})")
        return None


def human_duration(seconds: float) -> str:
    """'40 s', '3 min', '1 h 12 min': an estimate reads better rounded than as h:mm:ss."""
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    if seconds < 3600:
        return f"{round(seconds / 60)} min"
    h, m = divmod(round(seconds / 60), 60)
    return f"{h} h {m} min"


def _seconds(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _feature_seconds(inception, size: int, batch: int) -> float:
    """Seconds per image for the features every input goes through (Inception when loaded, handcrafted)."""
    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(batch)]
    x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    t = _seconds(lambda: handcrafted.handcrafted_features(x))
    if inception is not None:
        t += _seconds(lambda: inception.extract(arrays))
    return t / batch


def _generator_seconds(src: CheckpointSource, batch: int) -> float:
    """Seconds per sample of the generator, from random latents (no seed of the evaluation is drawn)."""
    G, rt = src.G, src.runtime
    z = torch.randn(batch, G.z_dim, device=rt.device)
    with torch.no_grad(), rt.autocast():
        return _seconds(lambda: G(z, truncation=src.truncation)) / batch


def _pair_seconds(dim: int) -> float:
    """Seconds per sample pair of recall's k-NN distances, in the PR feature space of `dim` values."""
    if dim <= 0:
        return 0.0
    from ganplug.eval.metrics.prdc import knn_radii

    rows = 512  # smaller blocks run faster per pair than the real n x n matrix and underestimate it
    a = np.random.default_rng(0).standard_normal((rows, dim))
    return _seconds(lambda: knn_radii(a, 3)) / rows ** 2


def fit(budget: float, per_pair: float, per_sample: float, fixed: float) -> int:
    """The largest n with per_pair n^2 + per_sample n + fixed <= budget (0 when nothing fits)."""
    left = budget - fixed
    if left <= 0:
        return 0
    if per_pair <= 0:
        return int(left / per_sample) if per_sample > 0 else FULL_N
    return int((-per_sample + (per_sample ** 2 + 4 * per_pair * left) ** 0.5) / (2 * per_pair))


def choose(requested: int | str, fake: Source, real_count: int, inception, size: int, device: str,
           pair_dim: int = 0) -> SampleCount:
    """The count to use for `--n` (an int, or "auto"), timing one small batch only where it matters.
    `pair_dim`: the PR feature size when precision/recall runs (its n x n distances count too)."""
    auto = requested == "auto"
    n = FULL_N if auto else int(requested)
    gen = isinstance(fake, CheckpointSource)
    what = "samples" if gen else "images"
    if device == "cuda" or (not auto and n <= CPU_MIN_N):
        return SampleCount(n if gen else min(n, fake.count), auto, device, what=what)
    batch = TIMING_BATCH
    per_feature = _feature_seconds(inception, size or 64, batch)
    per_sample = per_feature + (_generator_seconds(fake, batch) if gen else 0.0)
    real_s = real_count * per_feature
    per_pair = _pair_seconds(pair_dim)
    auto_n = int(np.clip(fit(CPU_BUDGET_S, per_pair, per_sample, real_s) // 100 * 100, CPU_MIN_N, FULL_N))
    chosen = auto_n if auto else n
    return SampleCount(chosen if gen else min(chosen, fake.count), auto, device, per_sample, real_s, per_pair,
                       auto_n, what)
