"""Memorisation: exact copies of training images are flagged, unseen real images are not."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ganplug.eval.features.handcrafted import handcrafted_features
from ganplug.eval.memorisation import memorisation
from ganplug.eval.sources import FolderSource

TWEMOJI = Path(__file__).resolve().parents[2] / ".." / "shared" / "datasets" / "twemoji-128"


@pytest.fixture(scope="module")
def twemoji_features():
    if not TWEMOJI.is_dir():
        pytest.skip(f"shared twemoji dataset not found at {TWEMOJI}")
    src = FolderSource.open(TWEMOJI, 700, seed=3)
    arr = np.concatenate([np.stack(b.arrays) for b in src.batches(128)])
    return handcrafted_features(torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous())


def test_copies_are_flagged_and_held_out_images_are_not(twemoji_features):
    f = twemoji_features
    train, held = f[:500], f[500:]
    copies = train[np.arange(0, 500, 10)]  # 50 exact copies of training assets
    m = memorisation(np.concatenate([copies, held]), train)
    assert m.flagged[:50].all()
    assert (m.neighbours[:50, 0] == np.arange(0, 500, 10)).all()
    assert m.flagged[50:].mean() <= 0.05
    assert np.median(m.ratio[50:]) > 0.6
    pairs = m.closest_pairs(5)
    assert all(s < 50 and r == 0.0 for s, _, _, r in pairs)


def test_distances_match_a_direct_search():
    rng = np.random.default_rng(0)
    train, fake = rng.normal(size=(40, 5)), rng.normal(size=(7, 5))
    m = memorisation(fake, train, k=2)
    d = np.sqrt(((fake[:, None] - train[None]) ** 2).sum(-1))
    np.testing.assert_array_equal(m.neighbours[:, 0], d.argmin(1))
    np.testing.assert_allclose(m.distances[:, 0], d.min(1), rtol=1e-12)
    dt = np.sqrt(((train[:, None] - train[None]) ** 2).sum(-1)) + np.diag(np.full(40, np.inf))
    np.testing.assert_allclose(m.ratio, d.min(1) / dt.min(1)[d.argmin(1)], rtol=1e-12)
