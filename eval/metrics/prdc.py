"""Precision and recall (Kynkaanniemi et al. 2019, k=3) and density and coverage (Naeem et al. 2020, k=5)
from k-nearest-neighbour balls in a feature space; the `prdc` package's definitions.

A real ball's radius is the distance to its k-th nearest other real sample (and likewise for fake).
precision: share of fakes inside some real ball; recall: share of reals inside some fake ball;
density: mean number of real balls holding each fake, / k; coverage: share of real balls whose
nearest fake lies inside. Distances are exact float64 Euclidean, computed in row blocks.
"""

from __future__ import annotations

import numpy as np
import torch

from ganplug.errors import DataError

BLOCK = 2048


def pairwise_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ta, tb = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    out = np.empty((len(a), len(b)))
    for i in range(0, len(a), BLOCK):
        out[i:i + BLOCK] = torch.cdist(ta[i:i + BLOCK], tb, compute_mode="donot_use_mm_for_euclid_dist").numpy()
    return out


def knn_radii(features: np.ndarray, k: int) -> np.ndarray:
    """Distance from each row to its k-th nearest other row (the row itself excluded)."""
    d = pairwise_distances(features, features)
    return np.partition(d, k, axis=1)[:, k]  # index 0 is the point itself (distance 0)


def _check(real, fake, k, what):
    if len(real) <= k or len(fake) <= k:
        raise DataError(f"{what} with k={k} needs more than {k} real and fake samples; got {len(real)} real and "
                        f"{len(fake)} fake.")


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = 3) -> dict[str, float]:
    _check(real, fake, k, "precision/recall")
    r_real, r_fake = knn_radii(real, k), knn_radii(fake, k)
    d = pairwise_distances(real, fake)  # [real, fake]
    precision = (d < r_real[:, None]).any(axis=0).mean()
    recall = (d < r_fake[None, :]).any(axis=1).mean()
    return {"precision": float(precision), "recall": float(recall), "k": k}


def density_coverage(real: np.ndarray, fake: np.ndarray, k: int = 5) -> dict[str, float]:
    _check(real, fake, k, "density/coverage")
    r_real = knn_radii(real, k)
    d = pairwise_distances(real, fake)
    density = (d < r_real[:, None]).sum(axis=0).mean() / k
    coverage = (d.min(axis=1) < r_real).mean()
    return {"density": float(density), "coverage": float(coverage), "k": k}
