"""Memorisation check: is a generated sample a copy of a training image?

For each sample, its nearest training images in a feature space and the distance to the closest one,
divided by that training image's own distance to its nearest *other* training image. A ratio near 0
means the sample sits much closer to one asset than assets sit to each other: a copy (or a trivial
edit of one). A held-out real image typically scores around 1. The memorisation rate is the share of
samples under `threshold` (0.3 by default, from the twemoji calibration in docs/results.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ganplug.errors import DataError
from ganplug.eval.metrics import prdc

DEFAULT_THRESHOLD = 0.3


@dataclass
class Memorisation:
    neighbours: np.ndarray  # [N, k] indices into the training set, nearest first
    distances: np.ndarray  # [N, k] feature distances
    ratio: np.ndarray  # [N] nearest distance / that training image's own NN distance
    train_nn: np.ndarray  # [T] each training image's distance to its nearest other training image
    threshold: float

    @property
    def flagged(self) -> np.ndarray:
        return self.ratio < self.threshold

    @property
    def rate(self) -> float:
        return float(self.flagged.mean())

    def closest_pairs(self, m: int = 8) -> list[tuple[int, int, float, float]]:
        """(sample index, training index, distance, ratio) for the m samples closest to a training image."""
        order = np.argsort(self.ratio, kind="stable")[:m]
        return [(int(i), int(self.neighbours[i, 0]), float(self.distances[i, 0]), float(self.ratio[i]))
                for i in order]

    def as_json(self, m: int = 8) -> dict:
        return {"rate": self.rate, "threshold": self.threshold, "flagged": int(self.flagged.sum()),
                "samples": int(len(self.ratio)), "median_ratio": float(np.median(self.ratio)),
                "closest": [{"sample": s, "train": t, "distance": d, "ratio": r}
                            for s, t, d, r in self.closest_pairs(m)]}


def train_nn_distances(train_features: np.ndarray) -> np.ndarray:
    """Each training image's distance to its nearest other one; exact duplicates inside the training set
    are skipped (a duplicated asset would otherwise make every copy of it look un-memorised)."""
    d = prdc.pairwise_distances(train_features, train_features)
    np.fill_diagonal(d, np.inf)
    d[d <= 1e-9] = np.inf
    nn = d.min(1)
    finite = np.isfinite(nn)
    nn[~finite] = np.median(nn[finite]) if finite.any() else 1.0
    return nn


def memorisation(fake_features: np.ndarray, train_features: np.ndarray, *, k: int = 3,
                 threshold: float = DEFAULT_THRESHOLD, train_nn: np.ndarray | None = None) -> Memorisation:
    fake, train = np.asarray(fake_features, np.float64), np.asarray(train_features, np.float64)
    if len(train) < 2:
        raise DataError(f"the memorisation check needs at least 2 training images; got {len(train)}.")
    if fake.shape[1] != train.shape[1]:
        raise DataError(f"sample features have {fake.shape[1]} dimensions and training features {train.shape[1]}.")
    k = min(k, len(train))
    if train_nn is None:
        train_nn = train_nn_distances(train)
    d = prdc.pairwise_distances(fake, train)
    idx = np.argsort(d, axis=1, kind="stable")[:, :k]
    dist = np.take_along_axis(d, idx, axis=1)
    ratio = dist[:, 0] / np.maximum(train_nn[idx[:, 0]], 1e-12)
    return Memorisation(idx, dist, ratio, train_nn, threshold)
