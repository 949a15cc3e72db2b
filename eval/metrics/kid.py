"""Kernel Inception Distance: unbiased MMD^2 with the cubic polynomial kernel k(x,y) = (x.y/d + 1)^3,
averaged over random subsets (Binkowski et al. 2018; the clean-fid and torch-fidelity definition).

Subsets are drawn with numpy's RandomState(seed), first from `features_1` then from `features_2`,
without replacement, in the same order as torch-fidelity, so both give identical numbers for one seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ganplug.errors import DataError


@dataclass
class KIDResult:
    mean: float
    std: float
    subset_size: int
    subsets: int
    note: str | None = None


def mmd2_unbiased_poly(x: np.ndarray, y: np.ndarray) -> float:
    d = x.shape[1]
    m = x.shape[0]
    kxx = (x @ x.T / d + 1) ** 3
    kyy = (y @ y.T / d + 1) ** 3
    kxy = (x @ y.T / d + 1) ** 3
    return float((kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1)) - 2 * kxy.sum() / (m * m))


def kid(features_1: np.ndarray, features_2: np.ndarray, subsets: int = 100, subset_size: int = 1000,
        seed: int = 0, adjust: bool = True) -> KIDResult:
    """KID between two feature sets. With `adjust`, a subset size larger than a set shrinks to fit (noted);
    without it that is refused with the numbers."""
    f1, f2 = np.asarray(features_1, np.float64), np.asarray(features_2, np.float64)
    n1, n2 = len(f1), len(f2)
    note = None
    if subset_size > min(n1, n2):
        if not adjust:
            raise DataError(f"KID subset size {subset_size} is larger than the sets ({n1} fake, {n2} real); "
                            f"use --kid-subset-size {min(n1, n2)} or more samples.")
        note = f"KID subset size reduced from {subset_size} to {min(n1, n2)} (sets have {n1} and {n2} samples)"
        subset_size = min(n1, n2)
    if subset_size < 2:
        raise DataError(f"KID needs at least 2 samples in each set; got {n1} and {n2}.")
    rng = np.random.RandomState(seed)
    vals = np.empty(subsets)
    for i in range(subsets):
        a = f1[rng.choice(n1, subset_size, replace=False)]
        b = f2[rng.choice(n2, subset_size, replace=False)]
        vals[i] = mmd2_unbiased_poly(a, b)
    return KIDResult(mean=float(vals.mean()), std=float(vals.std()), subset_size=subset_size, subsets=subsets,
                     note=note)
