"""Inception Score: exp(E_x KL(p(y|x) || p(y))) over `splits` chunks, mean and std.

Probabilities are the softmax of the 1008 logits WITHOUT the output bias, as StyleGAN2-ADA
(`no_output_bias=True`) and torch-fidelity (`logits_unbiased`) define it. Chunks are consecutive
after an optional seeded shuffle (torch-fidelity shuffles with numpy RandomState(2020).permutation;
StyleGAN2-ADA does not). ganplug's default is StyleGAN2-ADA's (`shuffle_seed=None`); `ganplug eval
--is-split-order shuffled` passes `--seed` as the shuffle seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ganplug.errors import DataError


@dataclass
class ISResult:
    mean: float
    std: float
    splits: int
    note: str | None = None


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(axis=1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=1, keepdims=True))


def inception_score(logits: np.ndarray, splits: int = 10, shuffle_seed: int | None = None,
                    adjust: bool = True) -> ISResult:
    logits = np.asarray(logits, np.float64)
    n = len(logits)
    note = None
    if splits > n:
        if not adjust or n < 1:
            raise DataError(f"Inception Score with {splits} splits needs at least {splits} samples; got {n}.")
        note = f"IS splits reduced from {splits} to {n} (only {n} samples)"
        splits = n
    if shuffle_seed is not None:
        logits = logits[np.random.RandomState(shuffle_seed).permutation(n)]
    log_p = _log_softmax(logits)
    p = np.exp(log_p)
    scores = []
    for i in range(splits):
        lo, hi = i * n // splits, (i + 1) * n // splits
        pc, lpc = p[lo:hi], log_p[lo:hi]
        log_q = np.log(pc.mean(axis=0, keepdims=True))
        scores.append(np.exp((pc * (lpc - log_q)).sum(axis=1).mean()))
    return ISResult(mean=float(np.mean(scores)), std=float(np.std(scores)), splits=splits, note=note)
