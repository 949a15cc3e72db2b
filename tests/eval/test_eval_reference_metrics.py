"""KID, IS and PR/DC equal the reference packages (torch-fidelity, clean-fid, prdc) on the same features."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ganplug.errors import DataError
from ganplug.eval.metrics import inception_score, kid, prdc


@pytest.fixture(scope="module")
def feats():
    rng = np.random.default_rng(0)
    fake = rng.normal(size=(60, 48)).astype(np.float32)
    real = (rng.normal(size=(70, 48)) * 1.2 + 0.1).astype(np.float32)
    return fake, real


def test_kid_equals_torch_fidelity_for_the_same_seed(feats):
    from torch_fidelity.metric_kid import kid_features_to_metric

    fake, real = feats
    ours = kid.kid(fake, real, subsets=20, subset_size=25, seed=7)
    ref = kid_features_to_metric(torch.from_numpy(fake), torch.from_numpy(real), kid_subsets=20, kid_subset_size=25,
                                 rng_seed=7, verbose=False, kid_kernel="poly", kid_kernel_poly_degree=3,
                                 kid_kernel_poly_gamma=None, kid_kernel_poly_coef0=1)
    assert ours.mean == pytest.approx(ref["kernel_inception_distance_mean"], rel=1e-6)
    assert ours.std == pytest.approx(ref["kernel_inception_distance_std"], rel=1e-6)


def test_kid_equals_clean_fid_when_subsets_are_whole_sets(feats):
    from cleanfid.fid import kernel_distance

    fake, real = feats
    fake = fake[:50].astype(np.float64)
    real = real[:50].astype(np.float64)
    ours = kid.kid(fake, real, subsets=3, subset_size=50, seed=0)
    assert ours.mean == pytest.approx(kernel_distance(fake, real, num_subsets=3, max_subset_size=1000), rel=1e-9)
    assert ours.std == pytest.approx(0.0, abs=1e-12)  # every subset is a permutation of the whole set


def test_kid_subset_larger_than_set_adjusts_or_refuses(feats):
    fake, real = feats
    r = kid.kid(fake, real, subsets=2, subset_size=1000)
    assert r.subset_size == 60 and "reduced from 1000 to 60" in r.note
    with pytest.raises(DataError, match="larger than the sets"):
        kid.kid(fake, real, subsets=2, subset_size=1000, adjust=False)


def test_inception_score_equals_torch_fidelity():
    from torch_fidelity.metric_isc import isc_features_to_metric

    logits = np.random.default_rng(1).normal(size=(57, 1008)) * 3
    ref = isc_features_to_metric(torch.from_numpy(logits), splits=10, shuffle=False)
    ours = inception_score.inception_score(logits, splits=10)
    assert ours.mean == pytest.approx(ref["inception_score_mean"], rel=1e-10)
    assert ours.std == pytest.approx(ref["inception_score_std"], rel=1e-9)
    ref_shuffled = isc_features_to_metric(torch.from_numpy(logits), splits=10, shuffle=True, rng_seed=2020)
    assert inception_score.inception_score(logits, 10, shuffle_seed=2020).mean == pytest.approx(
        ref_shuffled["inception_score_mean"], rel=1e-10)


def test_inception_score_splits_larger_than_set():
    logits = np.random.default_rng(2).normal(size=(4, 1008))
    r = inception_score.inception_score(logits, splits=10)
    assert r.splits == 4 and "reduced from 10 to 4" in r.note
    with pytest.raises(DataError, match="at least 10 samples"):
        inception_score.inception_score(logits, splits=10, adjust=False)


@pytest.mark.parametrize("seed", [0, 1])
def test_prdc_equals_the_prdc_package(seed):
    from prdc import compute_prdc

    rng = np.random.default_rng(seed)
    real = rng.normal(size=(80, 20)).astype(np.float32)
    fake = (rng.normal(size=(70, 20)) * 0.8 + 0.3).astype(np.float32)
    ref3 = compute_prdc(real, fake, nearest_k=3)
    ref5 = compute_prdc(real, fake, nearest_k=5)
    pr = prdc.precision_recall(real, fake, 3)
    dc = prdc.density_coverage(real, fake, 5)
    assert pr["precision"] == pytest.approx(ref3["precision"], abs=1e-6)
    assert pr["recall"] == pytest.approx(ref3["recall"], abs=1e-6)
    assert dc["density"] == pytest.approx(ref5["density"], abs=1e-6)
    assert dc["coverage"] == pytest.approx(ref5["coverage"], abs=1e-6)
    assert 0 < pr["precision"] < 1 and 0 < dc["coverage"] < 1  # a case where the balls matter


def test_prdc_needs_more_samples_than_k():
    with pytest.raises(DataError, match="more than 5"):
        prdc.density_coverage(np.zeros((4, 3)), np.zeros((9, 3)), 5)
