"""Vendi score: the effective number of distinct samples in a set (Friedman & Dieng 2023, "The Vendi Score: A
Diversity Evaluation Metric for Machine Learning").

VS = exp(-sum_i l_i log l_i), the l_i the eigenvalues of K / n, with K the n x n cosine-similarity matrix of the
feature vectors (K_ii = 1, so the l_i sum to 1). It is 1 for n identical samples, n for n mutually orthogonal
ones, and k for k equal-sized clusters of identical samples; it does not change when features are rescaled.

K / n = X X^T / n for the row-normalised features X shares its non-zero eigenvalues with X^T X / n (d x d), so
the smaller of the two is decomposed: 10,000 Inception features cost one 2048 x 2048 eigendecomposition.
"""

from __future__ import annotations

import numpy as np

from ganplug.errors import DataError


def vendi_score(features: np.ndarray) -> float:
    """Vendi score of `features` [n, d] with the cosine-similarity kernel (float64 throughout)."""
    x = np.asarray(features, np.float64)
    if x.ndim != 2 or len(x) < 1:
        raise DataError(f"the Vendi score needs a non-empty [n, d] feature array; got shape {x.shape}.")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    if not np.isfinite(norms).all() or (norms == 0).any():
        raise DataError("the Vendi score needs finite, non-zero feature vectors (cosine similarity is undefined "
                        f"for {int((norms == 0).sum())} all-zero rows).")
    x = x / norms
    n, d = x.shape
    gram = x @ x.T if n <= d else x.T @ x
    eig = np.linalg.eigvalsh(gram / n)
    eig = eig[eig > 1e-15]  # rounding leaves tiny negatives and zeros; 0 log 0 = 0
    return float(np.exp(-np.sum(eig * np.log(eig))))
