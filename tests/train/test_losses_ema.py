"""Adversarial losses against their textbook formulas in float64, label noise ranges, and the EMA."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from ganplug.train import losses
from ganplug.train.ema import ema_beta, recalibrate_batchnorm, update_ema


def _logits():
    g = torch.Generator().manual_seed(0)
    return torch.randn(16, generator=g, dtype=torch.float64) * 3, torch.randn(16, generator=g, dtype=torch.float64) * 3


def test_nonsaturating_matches_the_log_formula():
    r, f = _logits()
    sig = torch.sigmoid
    expected_d = (-torch.log(sig(r))).mean() + (-torch.log(1 - sig(f))).mean()
    expected_g = (-torch.log(sig(f))).mean()
    torch.testing.assert_close(losses.d_loss("nonsat", r, f).double(), expected_d, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(losses.g_loss("nonsat", f).double(), expected_g, rtol=1e-6, atol=1e-6)


def test_hinge_and_wasserstein():
    r, f = _logits()
    expected = torch.clamp(1 - r, min=0).mean() + torch.clamp(1 + f, min=0).mean()
    torch.testing.assert_close(losses.d_loss("hinge", r, f).double(), expected, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(losses.g_loss("hinge", f).double(), -f.mean(), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(losses.d_loss("wgan-gp", r, f).double(), f.mean() - r.mean(), rtol=1e-6, atol=1e-6)


def test_label_smoothing_changes_real_target():
    r, f = _logits()
    a = 0.1
    sig = torch.sigmoid
    expected = (-(1 - a) * torch.log(sig(r)) - a * torch.log(1 - sig(r))).mean() + (-torch.log(1 - sig(f))).mean()
    got = losses.d_loss("nonsat", r, f, smoothing=a).double()
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)


def test_label_noise_ranges():
    torch.manual_seed(0)
    real = losses.real_targets(10_000, 0.0, 0.1, torch.device("cpu"))
    fake = losses.fake_targets(10_000, 0.1, torch.device("cpu"))
    assert real.min() >= 0.9 and real.max() <= 1.0 and real.std() > 0.02
    assert fake.min() >= 0.0 and fake.max() <= 0.1 and fake.std() > 0.02


@pytest.mark.parametrize("kind", ["nonsat", "hinge", "wgan-gp"])
def test_generator_loss_pushes_fake_scores_up(kind):
    f = torch.zeros(4, requires_grad=True)
    losses.g_loss(kind, f).backward()
    assert (f.grad < 0).all()  # gradient descent raises D's score of fakes


def test_ema_half_life():
    batch, half_kimg = 32, 2.0
    beta = ema_beta(batch, half_kimg, nimg=10**9)
    steps = half_kimg * 1000 / batch
    assert math.isclose(beta**steps, 0.5, rel_tol=1e-9)
    # ramp-up: early in training the half-life is rampup * images seen
    assert math.isclose(ema_beta(batch, half_kimg, nimg=1000, rampup=0.05) ** (50 / batch), 0.5, rel_tol=1e-9)


def test_update_ema_is_lerp_and_copies_buffers():
    torch.manual_seed(0)
    model, ema = nn.BatchNorm1d(3), nn.BatchNorm1d(3)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([1.0, 2.0, 3.0]))
        ema.weight.copy_(torch.zeros(3))
        model.running_mean.copy_(torch.tensor([5.0, 6.0, 7.0]))
    update_ema(ema, model, beta=0.75)
    torch.testing.assert_close(ema.weight, torch.tensor([0.25, 0.5, 0.75]))
    torch.testing.assert_close(ema.running_mean, model.running_mean)


def test_recalibrated_batchnorm_matches_population_statistics():
    """After recalibration, running stats equal the stats of the layer input over the passes."""
    torch.manual_seed(0)
    lin = nn.Linear(4, 3)
    G = nn.Sequential(lin, nn.BatchNorm1d(3))
    G.z_dim = 4
    recalibrate_batchnorm(G, 4, torch.device("cpu"), batches=3, batch=50, seed=7)
    gen = torch.Generator().manual_seed(7)
    feats = torch.cat([lin(torch.randn(50, 4, generator=gen)) for _ in range(3)]).detach()
    bn = G[1]
    torch.testing.assert_close(bn.running_mean, feats.mean(0), rtol=1e-5, atol=1e-5)
    # BatchNorm keeps the unbiased per-batch variance; with equal batches the average of those
    var_expected = torch.stack([f.var(0, unbiased=True) for f in feats.split(50)]).mean(0)
    torch.testing.assert_close(bn.running_var, var_expected, rtol=1e-5, atol=1e-5)
    assert bn.momentum == 0.1  # restored
