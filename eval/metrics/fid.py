"""Frechet distance between Gaussians fitted to features (FID when the features are Inception pool3).

    d^2 = |mu1 - mu2|^2 + Tr(S1) + Tr(S2) - 2 Tr((S1 S2)^(1/2))

Tr((S1 S2)^(1/2)) is the sum of square roots of the eigenvalues of S1 S2, which equal those of the
symmetric PSD matrix S1^(1/2) S2 S1^(1/2). Two symmetric eigendecompositions in float64 give it
without scipy's `sqrtm`, which at N < 2048 samples (rank-deficient covariances, this project's usual
case) returns complex garbage or fails, is slow, and whose `disp` argument (used by clean-fid 0.1.35)
is gone in scipy 1.18. Tiny negative eigenvalues from rounding are clipped to zero. When both feature
sets are at hand and smaller than the dimension, the same trace is the nuclear norm of the N1 x N2
cross-product of centred features (exact, and milliseconds instead of seconds). Runs on any torch
device; on CUDA the decompositions run on the GPU.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ganplug.errors import DataError


def gaussian_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased covariance (as numpy.cov(rowvar=False)) in float64."""
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise DataError(f"FID needs at least 2 feature vectors, got array of shape {f.shape}.")
    check_finite(f, "features")
    mu = f.mean(axis=0)
    centred = f - mu
    sigma = centred.T @ centred / (f.shape[0] - 1)
    return mu, sigma


def check_finite(arr: np.ndarray, what: str) -> None:
    if not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).any(axis=tuple(range(1, arr.ndim))).sum()) if arr.ndim > 1 else 1
        raise DataError(f"{what} contain NaN or infinite values ({bad} row(s)); the images or the network "
                        f"produced non-finite numbers, so no score is reported. Check the inputs (and try "
                        f"--precision fp32).")


def _sym_sqrt(m: torch.Tensor) -> torch.Tensor:
    vals, vecs = torch.linalg.eigh(m)
    return (vecs * vals.clamp_min(0).sqrt()) @ vecs.T


def trace_sqrt_product(sigma1, sigma2, device: str | torch.device = "cpu") -> float:
    """Tr((S1 S2)^(1/2)) for symmetric PSD S1, S2 via eigenvalues, in float64."""
    s1 = torch.as_tensor(np.asarray(sigma1), dtype=torch.float64, device=device)
    s2 = torch.as_tensor(np.asarray(sigma2), dtype=torch.float64, device=device)
    s1 = (s1 + s1.T) / 2
    root1 = _sym_sqrt(s1)
    inner = root1 @ s2 @ root1
    vals = torch.linalg.eigvalsh((inner + inner.T) / 2)
    return float(vals.clamp_min(0).sqrt().sum().item())


def frechet_distance(mu1, sigma1, mu2, sigma2, device: str | torch.device = "cpu") -> float:
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (mu1.size, mu1.size):
        raise DataError(f"Gaussian statistics do not match: mu {mu1.shape} vs {mu2.shape}, sigma {sigma1.shape} "
                        f"vs {sigma2.shape} (expected sigma to be D x D for mu of length D).")
    for arr, name in ((mu1, "mu"), (mu2, "mu"), (sigma1, "sigma"), (sigma2, "sigma")):
        check_finite(arr, f"statistics ({name})")
    diff = mu1 - mu2
    tr = trace_sqrt_product(sigma1, sigma2, device)
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * tr)


def trace_sqrt_product_from_features(f1: np.ndarray, f2: np.ndarray, device: str | torch.device = "cpu") -> float:
    """Tr((S1 S2)^(1/2)) straight from the feature rows, for when N is far below D.

    With centred rows A, B: S1 S2 = A'A B'B / c, whose non-zero eigenvalues are those of (AB')(AB')' / c,
    so the trace is the sum of singular values of AB' / sqrt(c): an N1 x N2 problem instead of D x D.
    """
    a = torch.as_tensor(np.asarray(f1), dtype=torch.float64, device=device)
    b = torch.as_tensor(np.asarray(f2), dtype=torch.float64, device=device)
    a, b = a - a.mean(0), b - b.mean(0)
    scale = ((a.shape[0] - 1) * (b.shape[0] - 1)) ** 0.5
    return float(torch.linalg.svdvals(a @ b.T / scale).sum().item())


def fid_from_features(fake: np.ndarray, real: np.ndarray, device="cpu") -> float:
    """FID of two feature sets; uses the N x N route when both sets are smaller than the dimension."""
    mu1, s1 = gaussian_stats(fake)
    mu2, s2 = gaussian_stats(real)
    if max(len(fake), len(real)) < mu1.size:
        diff = mu1 - mu2
        tr = trace_sqrt_product_from_features(fake, real, device)
        return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * tr)
    return frechet_distance(mu1, s1, mu2, s2, device)


def save_stats(path: str | Path, mu: np.ndarray, sigma: np.ndarray) -> Path:
    """Write `mu`/`sigma` as .npz (the clean-fid / pytorch-fid format), atomically."""
    from ganplug.atomic import atomic_write

    path = Path(path)
    atomic_write(path, lambda f: np.savez_compressed(f, mu=np.asarray(mu, np.float64),
                                                     sigma=np.asarray(sigma, np.float64)))
    return path


def load_stats(path: str | Path, dim: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Read an .npz with `mu` [D] and `sigma` [D, D]; refuse anything else with the shapes found."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            keys = set(z.files)
            if not {"mu", "sigma"} <= keys:
                raise DataError(f"{path} has arrays {sorted(keys)}; a statistics file needs `mu` and `sigma` "
                                f"(as written by `ganplug eval --save-stats` or clean-fid).")
            mu, sigma = z["mu"].astype(np.float64), z["sigma"].astype(np.float64)
    except (OSError, ValueError) as e:
        raise DataError(f"{path} is not a readable .npz statistics file ({e}).") from None
    if mu.ndim != 1 or sigma.shape != (mu.size, mu.size):
        raise DataError(f"{path}: mu has shape {mu.shape} and sigma {sigma.shape}; expected mu [D] and sigma [D, D].")
    if dim is not None and mu.size != dim:
        raise DataError(f"{path} holds {mu.size}-d statistics but the features here are {dim}-d "
                        f"(Inception pool3 is 2048-d); it was made with another network.")
    check_finite(mu, f"{path} mu")
    check_finite(sigma, f"{path} sigma")
    return mu, sigma
