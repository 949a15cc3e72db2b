"""Vendi score against independent references, and end to end through the registry, JSON and report."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from ganplug.errors import DataError
from ganplug.eval import evaluate
from ganplug.eval.metrics.vendi import vendi_score
from ganplug.eval.report import _metric_value


def reference_vendi(x: np.ndarray) -> float:
    """Straight from the definition: the n x n cosine matrix K, eigenvalues of K / n, exp of their entropy."""
    x = np.asarray(x, np.float64)
    k = np.array([[a @ b / np.sqrt((a @ a) * (b @ b)) for b in x] for a in x])
    lam = np.linalg.eigvalsh(k / len(x))
    lam = lam[lam > 0]
    return float(np.exp(-(lam * np.log(lam)).sum()))


def _orthonormal(k: int, d: int, seed: int = 0) -> np.ndarray:
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(d, d)))
    return q[:k]


def test_identical_vectors_score_one():
    v = np.random.default_rng(1).normal(size=(1, 40))
    assert vendi_score(np.repeat(v, 9, axis=0)) == pytest.approx(1.0, abs=1e-9)


def test_orthonormal_vectors_score_n():
    assert vendi_score(_orthonormal(6, 20)) == pytest.approx(6.0, abs=1e-9)


@pytest.mark.parametrize("n, d", [(12, 30), (50, 7)])  # both routes: n x n and d x d eigenproblems
def test_random_features_equal_the_definition(n, d):
    x = np.random.default_rng(n).normal(size=(n, d)) + 0.3
    assert vendi_score(x) == pytest.approx(reference_vendi(x), rel=1e-9)
    assert 1.0 < vendi_score(x) < n


def test_invariant_to_feature_scaling():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(25, 10))
    scaled = x * rng.uniform(0.01, 100.0, size=(25, 1)) * 7.5
    assert vendi_score(scaled) == pytest.approx(vendi_score(x), rel=1e-10)


@pytest.mark.parametrize("k, size", [(4, 6), (3, 20)])
def test_equal_clusters_of_identical_vectors_score_k(k, size):
    """K is block diagonal (all-ones blocks) when the k cluster directions are orthogonal: exactly k."""
    centres = _orthonormal(k, 16, seed=k) * np.arange(1, k + 1)[:, None]  # lengths differ; cosine ignores them
    x = np.repeat(centres, size, axis=0)
    assert vendi_score(x) == pytest.approx(float(k), abs=1e-9)


def test_zero_vectors_are_refused():
    with pytest.raises(DataError, match="non-zero"):
        vendi_score(np.zeros((3, 4)))


def _folder(path, images):
    path.mkdir()
    for i, im in enumerate(images):
        Image.fromarray(im).save(path / f"{i:02d}.png")
    return path


def test_end_to_end_fakes_beside_reals(tmp_path):
    rng = np.random.default_rng(0)
    one = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    fake = _folder(tmp_path / "fake", [one] * 8)  # one image repeated: no diversity
    real = _folder(tmp_path / "real", [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(8)])
    out = evaluate(fake, real, metrics="vendi", progress=False, n=8)
    v = out["metrics"]["vendi"]
    assert v["feature_space"] == "handcrafted-v1" and set(v["spaces"]) == {"handcrafted-v1"}
    assert v["value"] == pytest.approx(1.0, abs=1e-6) and v["real"] > 2.0
    assert v["spaces"]["handcrafted-v1"] == {"fake": v["value"], "real": v["real"]}
    text = _metric_value("vendi", v)
    assert text.startswith("handcrafted-v1: fake 1, real ")


def test_end_to_end_with_inception_reports_both_spaces(tmp_path):
    from evalkit import standin_dir

    rng = np.random.default_rng(1)
    fake = _folder(tmp_path / "fake", [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(5)])
    out = evaluate(fake, metrics="vendi", weights_dir=str(standin_dir()), allow_unverified_weights=True,
                   progress=False, n=5)
    v = out["metrics"]["vendi"]
    assert v["feature_space"] == "inception-pool3" and set(v["spaces"]) == {"handcrafted-v1", "inception-pool3"}
    assert v["real"] is None and 1.0 < v["value"] <= 5.0
    assert v["weights"] == "stand-in"  # the network file's status follows the number
