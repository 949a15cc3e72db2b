"""The synthetic 2D benchmarks: the VEEGAN/PacGAN mode-count definitions on hand-made point sets, the mlp
family's contract, and a short MLP GAN run with ClassicStep that reaches more than one mode."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ganplug.errors import UserError
from ganplug.eval.mixtures import count_modes, grid, ring
from ganplug.models import build_models, config_from_dict, get_family
from ganplug.train.toy2d import sample_points, toy_config, train_points


def test_ring_and_grid_follow_the_published_setup():
    r, g = ring(), grid()
    assert r.k == 8 and r.std == 0.02 and g.k == 25 and g.std == 0.05
    np.testing.assert_allclose(np.hypot(r.means[:, 0], r.means[:, 1]), 2.0)
    angles = np.sort(np.mod(np.arctan2(r.means[:, 1], r.means[:, 0]), 2 * math.pi))
    np.testing.assert_allclose(np.diff(angles), 2 * math.pi / 8)
    assert sorted(set(g.means[:, 0])) == [-4, -2, 0, 2, 4] and sorted(set(g.means[:, 1])) == [-4, -2, 0, 2, 4]
    x = r.sample(20_000, np.random.default_rng(0))
    off = x - r.means[np.argmin(((x[:, None] - r.means[None]) ** 2).sum(-1), 1)]
    assert abs(off.std() - 0.02) < 0.001  # the noise is isotropic with the stated std
    # real samples are ~99% high quality (P[chi_2 <= 9] = 1 - exp(-4.5) = 0.989) and hit every mode
    mc = count_modes(r, x)
    assert mc.modes == 8 and abs(mc.high_quality - (1 - math.exp(-4.5))) < 0.005


def test_all_modes_subset_and_off_mode_points():
    mix = ring()
    means = mix.means
    # one point exactly on each mode: 8 modes, 100% high quality
    full = count_modes(mix, means.copy())
    assert full.modes == 8 and full.high_quality == 1.0 and full.per_mode.tolist() == [1] * 8
    # 30 points on each of modes 0, 3, 5 only
    subset = np.repeat(means[[0, 3, 5]], 30, axis=0)
    sub = count_modes(mix, subset)
    assert sub.modes == 3 and sub.high_quality == 1.0 and sub.per_mode[[0, 3, 5]].tolist() == [30, 30, 30]
    # off-mode points: the origin (2 away from every mode) and a point 4 std outside mode 1
    out = np.array([[0.0, 0.0], means[1] * (1 + 4 * 0.02 / 2)])
    both = count_modes(mix, np.concatenate([subset, out]))
    assert both.modes == 3 and both.high_quality == pytest.approx(90 / 92)
    # the 3-std boundary: 2.9 std away counts, 3.1 std away does not
    inside, outside = means[2] + [0, 2.9 * 0.02], means[2] + [0, 3.1 * 0.02]
    assert count_modes(mix, inside[None]).modes == 1 and count_modes(mix, outside[None]).modes == 0
    # a mode "captured" by off-mode points only is not captured: all samples near (not at) one mode
    near = np.repeat((means[4] * 1.2)[None], 50, axis=0)
    assert count_modes(mix, near).modes == 0 and count_modes(mix, near).high_quality == 0.0
    # min_count: a mode needs that many high-quality samples
    lopsided = np.concatenate([np.repeat(means[[0]], 25, 0), means[[1]]])
    assert count_modes(mix, lopsided).modes == 2 and count_modes(mix, lopsided, min_count=20).modes == 1


def test_grid_nearest_mode_assignment_uses_the_grid_std():
    mix = grid()
    pts = mix.means + np.array([0.14, 0.0])  # 2.8 std of 0.05 to the right of every mode: all count
    assert count_modes(mix, pts).modes == 25
    pts = mix.means + np.array([0.16, 0.0])  # 3.2 std: none count
    mc = count_modes(mix, pts)
    assert mc.modes == 0 and mc.high_quality == 0.0
    nan = np.array([[np.nan, 0.0], [0.0, 0.0]])  # a non-finite sample is never high quality
    assert count_modes(mix, nan).high_quality == 0.5


def test_mlp_family_contract_and_bad_config():
    cfg = config_from_dict("mlp", {"size": 1, "channels": 2, "hidden": 16})
    G, D, spec = build_models("mlp", cfg)
    assert (spec.arch, spec.size, spec.channels, spec.z_dim) == ("mlp", 1, 2, 2)
    x = G(torch.randn(5, G.z_dim))
    assert x.shape == (5, 2, 1, 1) and D(x).shape == (5,)
    assert get_family("mlp").spec(cfg) == spec
    with pytest.raises(UserError, match="2D points"):
        config_from_dict("mlp", {"size": 32, "channels": 3})  # what `ganplug train --arch mlp` on images would pass


def test_a_short_mlp_gan_run_with_classicstep_reaches_several_grid_modes():
    torch.set_num_threads(1)
    mix = grid()
    torch.manual_seed(0)
    untrained = build_models("mlp", config_from_dict("mlp", {}))[0]
    before = count_modes(mix, sample_points(untrained, 2500))
    assert before.modes <= 1  # an untrained G puts all its points in one small blob near the origin
    cfg = toy_config(steps=600, loss="wgan-gp", d_steps=2, seed=0, lr_g=1e-3, lr_d=1e-3, batch=128)
    after = count_modes(mix, sample_points(train_points(mix.sample, cfg).G, 2500))
    assert after.modes >= 3, after.per_mode  # seeds 0-2 reach 4-12 of the 25 modes after 600 steps
