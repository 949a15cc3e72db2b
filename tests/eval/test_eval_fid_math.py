"""Frechet distance: the eigenvalue and N x N routes against float64 references computed other ways."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg

from ganplug.errors import DataError
from ganplug.eval.metrics import fid


def _reference_trace_sqrt(s1, s2):
    """Tr sqrt(S1 S2) from the general (non-symmetric) eigenvalues of S1 S2, float64."""
    vals = np.linalg.eigvals(s1 @ s2)
    return float(np.sqrt(np.clip(vals.real, 0, None)).sum())


def test_eigen_route_matches_reference_when_fewer_samples_than_dimensions():
    rng = np.random.default_rng(0)
    d, n = 256, 40  # N < D: rank-deficient covariances, where sqrtm misbehaves
    a = rng.normal(size=(n, d)) @ rng.normal(size=(d, d)) * 0.1
    b = rng.normal(size=(n + 7, d)) @ rng.normal(size=(d, d)) * 0.1 + 0.3
    mu1, s1 = fid.gaussian_stats(a)
    mu2, s2 = fid.gaussian_stats(b)
    ref = float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * _reference_trace_sqrt(s1, s2))
    # the reference sums sqrt of ~200 rounding-level "zero" eigenvalues, so it is good to ~1e-8 only
    assert fid.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(ref, rel=1e-7)
    assert fid.fid_from_features(a, b) == pytest.approx(ref, rel=1e-7)  # the N x N route
    assert fid.fid_from_features(a, b) == pytest.approx(fid.frechet_distance(mu1, s1, mu2, s2), rel=1e-7)


def test_full_rank_case_matches_scipy_sqrtm_and_clean_fid_formula():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(600, 32))
    b = rng.normal(size=(500, 32)) * 1.3 + 0.2
    mu1, s1 = fid.gaussian_stats(a)
    mu2, s2 = fid.gaussian_stats(b)
    np.testing.assert_allclose(s1, np.cov(a, rowvar=False), rtol=1e-12)
    root = scipy.linalg.sqrtm(s1 @ s2)
    ref = float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * np.real(root)))
    assert fid.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(ref, rel=1e-9)
    assert fid.fid_from_features(a, b) == pytest.approx(ref, rel=1e-9)


def test_fid_never_routes_through_scipy_sqrtm(monkeypatch):
    """scipy 1.18 removed sqrtm's `disp`; ganplug must not depend on sqrtm at all."""
    monkeypatch.setattr(scipy.linalg, "sqrtm", lambda *a, **k: (_ for _ in ()).throw(AssertionError("sqrtm used")))
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(30, 64)), rng.normal(size=(90, 64))
    assert np.isfinite(fid.fid_from_features(a, b))
    mu1, s1 = fid.gaussian_stats(a)
    assert fid.frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0.0, abs=1e-5)


def test_stats_round_trip_and_bad_files(tmp_path):
    rng = np.random.default_rng(3)
    mu, sigma = fid.gaussian_stats(rng.normal(size=(10, 2048)))
    p = fid.save_stats(tmp_path / "s.npz", mu, sigma)
    mu2, sigma2 = fid.load_stats(p, dim=2048)
    np.testing.assert_array_equal(mu, mu2)
    np.testing.assert_array_equal(sigma, sigma2)
    np.savez(tmp_path / "wrong.npz", mu=np.zeros(2048), sigma=np.zeros((2048, 100)))
    with pytest.raises(DataError, match=r"sigma \(2048, 100\)"):
        fid.load_stats(tmp_path / "wrong.npz")
    np.savez(tmp_path / "small.npz", mu=np.zeros(64), sigma=np.eye(64))
    with pytest.raises(DataError, match="64-d"):
        fid.load_stats(tmp_path / "small.npz", dim=2048)
    np.savez(tmp_path / "keys.npz", mean=np.zeros(3))
    with pytest.raises(DataError, match="needs `mu` and `sigma`"):
        fid.load_stats(tmp_path / "keys.npz")


def test_nan_features_are_reported_not_scored():
    a = np.random.default_rng(4).normal(size=(20, 16))
    a[3, 5] = np.nan
    with pytest.raises(DataError, match="NaN"):
        fid.fid_from_features(a, a[::-1].copy())
