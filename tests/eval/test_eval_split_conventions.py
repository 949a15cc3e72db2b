"""IS split order (consecutive vs shuffled) and KID subset seeding."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from ganplug.cli.app import main
from ganplug.errors import UserError
from ganplug.eval import evaluate
from ganplug.eval.metrics import inception_score, kid
from ganplug.eval.options import EvalOptions
from ganplug.eval.registry import METRICS, MetricInput, Side


def hand_is(logits: np.ndarray, splits: int = 10) -> float:
    """StyleGAN2-ADA's IS: softmax, then `splits` consecutive chunks i*n//splits .. (i+1)*n//splits."""
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    n, scores = len(p), []
    for i in range(splits):
        part = p[i * n // splits:(i + 1) * n // splits]
        kl = part * (np.log(part) - np.log(part.mean(0, keepdims=True)))
        scores.append(np.exp(kl.sum(1).mean()))
    return float(np.mean(scores))


@pytest.fixture(scope="module")
def sorted_logits() -> np.ndarray:
    """Logits ordered by their top class, so consecutive chunks each see few classes and shuffling matters."""
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(230, 1008)) * 3
    logits[np.arange(230), rng.integers(0, 40, 230)] += 12
    return logits[np.argsort(logits.argmax(1), kind="stable")]


def _entry(logits: np.ndarray, **opts) -> dict:
    return METRICS["is"].compute(MetricInput(EvalOptions(**opts), Side(count=len(logits), logits=logits), None))


def test_default_is_consecutive_and_unchanged(sorted_logits):
    out = _entry(sorted_logits)
    assert out["split_order"] == "consecutive" and out["shuffle_seed"] is None
    assert out["value"] == inception_score.inception_score(sorted_logits, 10).mean  # the value before the option
    assert out["value"] == pytest.approx(hand_is(sorted_logits), rel=1e-12)


@pytest.mark.parametrize("seed", [0, 2020])
def test_shuffled_equals_a_numpy_permutation_then_consecutive(sorted_logits, seed):
    from torch_fidelity.metric_isc import isc_features_to_metric

    out = _entry(sorted_logits, is_split_order="shuffled", seed=seed)
    perm = np.random.RandomState(seed).permutation(len(sorted_logits))
    assert out["value"] == pytest.approx(hand_is(sorted_logits[perm]), rel=1e-12)
    assert out["split_order"] == "shuffled" and out["shuffle_seed"] == seed
    tf = isc_features_to_metric(torch.from_numpy(sorted_logits), splits=10, shuffle=True, rng_seed=seed)
    assert out["value"] == pytest.approx(tf["inception_score_mean"], rel=1e-9)
    assert abs(out["value"] - hand_is(sorted_logits)) > 0.1  # the order really changes the number here


def _images(path, n=4):
    path.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(path / f"{i}.png")
    return path


@pytest.mark.parametrize("order", ["shuffled", "consecutive"])
def test_split_order_without_is_is_refused(tmp_path, capsys, order):
    folder = _images(tmp_path / "imgs")
    with pytest.raises(UserError, match="--is-split-order applies only to is"):
        evaluate(folder, metrics="msssim", is_split_order=order, progress=False)
    assert main(["eval", str(folder), "--metrics", "msssim", "--is-split-order", order]) == 2
    assert "--is-split-order applies only to is, which is not among --metrics (msssim)" in capsys.readouterr().err


def test_unknown_split_order_is_refused(tmp_path):
    with pytest.raises(UserError, match="consecutive or shuffled"):
        evaluate(_images(tmp_path / "imgs"), metrics="is", is_split_order="random", progress=False)


def test_split_order_reaches_the_json(tmp_path):
    from evalkit import standin_dir

    folder = _images(tmp_path / "imgs", n=4)
    common = dict(metrics="is", weights_dir=str(standin_dir()), allow_unverified_weights=True, progress=False, n=4)
    shuffled = evaluate(folder, is_split_order="shuffled", seed=5, **common)
    plain = evaluate(folder, **common)
    assert shuffled["settings"]["is_split_order"] == "shuffled" and plain["settings"]["is_split_order"] == "consecutive"
    assert shuffled["metrics"]["is"]["shuffle_seed"] == 5 and plain["metrics"]["is"]["split_order"] == "consecutive"


# ----------------------------------------------------------------------------------------- KID


def test_kid_subsets_are_seeded():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(300, 16)), rng.normal(size=(280, 16)) + 0.05
    first, again = kid.kid(a, b, subsets=30, subset_size=50, seed=4), kid.kid(a, b, subsets=30, subset_size=50, seed=4)
    assert (first.mean, first.std) == (again.mean, again.std)  # bit for bit
    other = kid.kid(a, b, subsets=30, subset_size=50, seed=5)
    assert other.mean != first.mean  # the seed is what picks the subsets


def test_kid_is_the_same_twice_end_to_end(tmp_path):
    from evalkit import standin_dir

    fake, real = _images(tmp_path / "f", n=6), tmp_path / "r"
    real.mkdir()
    rng = np.random.default_rng(9)
    for i in range(6):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(real / f"{i}.png")
    common = dict(metrics="kid", weights_dir=str(standin_dir()), allow_unverified_weights=True, progress=False,
                  kid_subset_size=4, use_cache=False, n=6)
    one, two = evaluate(fake, real, **common), evaluate(fake, real, **common)
    assert one["metrics"]["kid"]["value"] == two["metrics"]["kid"]["value"]  # bit for bit, features recomputed
    assert one["settings"]["seed"] == 0 and one["metrics"]["kid"]["subset_size"] == 4  # the documented default
