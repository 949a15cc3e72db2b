"""The classic synthetic mode-collapse benchmarks: a ring of 8 and a grid of 25 2D Gaussians.

Setups and metrics as in Unrolled GAN (Metz et al. 2017), VEEGAN (Srivastava et al. 2017) and PacGAN
(Lin et al. 2018):
- ring: 8 equal-weight Gaussians, means evenly spaced on a circle of radius 2, std 0.02 (Unrolled GAN;
  PacGAN's code uses the same shape at half the scale: radius 1, std 0.01);
- grid: 25 equal-weight Gaussians, means on {-4, -2, 0, 2, 4}^2, std 0.05 (VEEGAN / PacGAN code).
Metrics (VEEGAN section 5.1, PacGAN Table 1), on 2,500 generated samples:
- a sample is "high quality" when it lies within 3 standard deviations of its nearest mode mean;
- the number of "modes captured" is the number of components whose mean is the nearest one to at least
  one high-quality sample (`min_count` = 1; stricter variants in the literature ask for more points).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

SAMPLES = 2500  # samples drawn from a generator for the metrics (VEEGAN, PacGAN)
HQ_STDS = 3.0  # "within three standard deviations of the nearest mode"


@dataclass(frozen=True)
class Mixture:
    name: str
    means: np.ndarray  # [K, 2]
    std: float

    @property
    def k(self) -> int:
        return len(self.means)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """n points: a uniformly chosen component each, plus isotropic Gaussian noise of `std`."""
        idx = rng.integers(0, self.k, n)
        return self.means[idx] + rng.normal(0.0, self.std, (n, 2))


def ring(k: int = 8, radius: float = 2.0, std: float = 0.02) -> Mixture:
    angles = 2 * math.pi * np.arange(k) / k
    return Mixture("ring-8", np.stack([radius * np.cos(angles), radius * np.sin(angles)], 1), std)


def grid(side: int = 5, spacing: float = 2.0, std: float = 0.05) -> Mixture:
    ticks = spacing * (np.arange(side) - (side - 1) / 2)
    return Mixture(f"grid-{side * side}", np.array(list(itertools.product(ticks, ticks)), dtype=np.float64), std)


MIXTURES = {"ring": ring, "grid": grid}


@dataclass
class ModeCount:
    modes: int  # components captured
    high_quality: float  # share of samples within HQ_STDS std of their nearest mode (0-1)
    per_mode: np.ndarray  # high-quality samples registered to each component
    nearest: np.ndarray  # nearest component of every sample


def count_modes(mix: Mixture, samples: np.ndarray, *, stds: float = HQ_STDS, min_count: int = 1) -> ModeCount:
    """VEEGAN/PacGAN metrics: high-quality share and modes with at least `min_count` high-quality samples."""
    x = np.asarray(samples, dtype=np.float64).reshape(len(samples), 2)
    d = np.sqrt(((x[:, None, :] - mix.means[None, :, :]) ** 2).sum(-1))  # [N, K]
    nearest = d.argmin(1)
    good = d[np.arange(len(x)), nearest] <= stds * mix.std
    good &= np.isfinite(x).all(1)
    per_mode = np.bincount(nearest[good], minlength=mix.k)
    return ModeCount(int((per_mode >= min_count).sum()), float(good.mean()) if len(x) else 0.0, per_mode, nearest)


# Published numbers on these benchmarks: (modes captured, % high-quality samples); None = not reported.
PUBLISHED = {
    "ring": {
        "GAN (VEEGAN Table 1)": (1.0, 99.3),
        "ALI (VEEGAN Table 1)": (2.8, 0.13),
        "Unrolled GAN (VEEGAN Table 1)": (7.6, 35.6),
        "VEEGAN (VEEGAN Table 1)": (8.0, 52.9),
        "GAN (PacGAN Table 1)": (6.3, 98.2),
        "PacGAN2 (PacGAN Table 1)": (7.9, 95.6),
        "PacGAN4 (PacGAN Table 1)": (7.8, 95.9),
    },
    "grid": {
        "GAN (VEEGAN Table 1)": (3.3, 0.5),
        "ALI (VEEGAN Table 1)": (15.8, 1.6),
        "Unrolled GAN (VEEGAN Table 1)": (23.6, 16.0),
        "VEEGAN (VEEGAN Table 1)": (24.6, 40.0),
        "GAN (PacGAN Table 1)": (17.3, 94.8),
        "PacGAN2 (PacGAN Table 1)": (23.8, 91.3),
        "PacGAN4 (PacGAN Table 1)": (24.8, 93.6),
    },
}
