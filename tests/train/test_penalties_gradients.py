"""Gradient penalties against closed forms and finite differences (float64, tiny inputs)."""

from __future__ import annotations

import torch

from ganplug.train.penalties import path_length_penalty, r1_penalty, wgan_gp_penalty


def _quadratic_d(a: torch.Tensor):
    """D(x) = x^T A x per sample, so grad_x D = (A + A^T) x exactly."""

    def d(x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(1)
        return torch.einsum("ni,ij,nj->n", flat, a, flat)

    return d


def test_r1_matches_closed_form():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 2, 2, 2, generator=g, dtype=torch.float64)
    a = torch.randn(8, 8, generator=g, dtype=torch.float64)
    x.requires_grad_(True)
    logits = _quadratic_d(a)(x)
    got = r1_penalty(logits, x)
    grad = x.detach().flatten(1) @ (a + a.T).T
    want = grad.square().sum(1).mean()
    torch.testing.assert_close(got.double(), want, rtol=1e-6, atol=1e-9)


def test_r1_is_differentiable_in_d_parameters():
    """The penalty must carry a graph to D's weights (create_graph); check its gradient numerically."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 1, 2, 2, generator=g, dtype=torch.float64)
    w = torch.randn(4, 3, generator=g, dtype=torch.float64, requires_grad=True)

    def penalty(weight: torch.Tensor) -> torch.Tensor:
        xi = x.clone().requires_grad_(True)
        logits = torch.tanh(xi.flatten(1) @ weight).sum(1)
        return r1_penalty(logits, xi)

    assert torch.autograd.gradcheck(penalty, (w,))


def test_wgan_gp_linear_critic_is_alpha_free():
    g = torch.Generator().manual_seed(2)
    v = torch.randn(12, generator=g, dtype=torch.float64)
    real = torch.randn(4, 3, 2, 2, generator=g, dtype=torch.float64)
    fake = torch.randn(4, 3, 2, 2, generator=g, dtype=torch.float64)
    got = wgan_gp_penalty(lambda x: x.flatten(1) @ v, real, fake)
    want = (v.norm() - 1) ** 2
    torch.testing.assert_close(got.double(), want, rtol=1e-6, atol=1e-9)


def test_wgan_gp_uses_interpolates_between_real_and_fake():
    """D(x) = ||x||^2: grad = 2x. With real == fake every interpolate is that point."""
    g = torch.Generator().manual_seed(3)
    real = torch.randn(5, 2, 3, 3, generator=g, dtype=torch.float64)
    got = wgan_gp_penalty(lambda x: x.flatten(1).square().sum(1), real, real.clone())
    want = (2 * real.flatten(1).norm(dim=1) - 1).square().mean()
    torch.testing.assert_close(got.double(), want, rtol=1e-6, atol=1e-9)
    # Between two different points the gradient norm lies between theirs, scaled by 2.
    fake = torch.zeros_like(real)
    p = wgan_gp_penalty(lambda x: x.flatten(1).square().sum(1), real, fake)
    hi = (torch.maximum(2 * real.flatten(1).norm(dim=1) - 1, torch.ones(5, dtype=torch.float64))).square()
    assert p.item() <= hi.mean().item() + 1e-9


def test_wgan_gp_is_zero_for_unit_gradient_critic():
    v = torch.zeros(12, dtype=torch.float64)
    v[0] = 1.0
    real = torch.randn(4, 3, 2, 2, dtype=torch.float64)
    got = wgan_gp_penalty(lambda x: x.flatten(1) @ v, real, torch.randn_like(real))
    assert abs(float(got)) < 1e-12


def test_path_length_linear_synthesis_closed_form():
    """images[n] = sum_{k,d} ws[n,k,d] M[k,d]: J^T y is a contraction of M with y, computed here by einsum."""
    g = torch.Generator().manual_seed(4)
    n, k, d, c, h, w = 3, 2, 5, 2, 3, 4
    m = torch.randn(k, d, c, h, w, generator=g, dtype=torch.float64)
    ws = torch.randn(n, k, d, generator=g, dtype=torch.float64, requires_grad=True)
    images = torch.einsum("nkd,kdchw->nchw", ws, m)
    y = torch.randn(n, c, h, w, generator=g, dtype=torch.float64)
    pl_mean = torch.tensor(0.5, dtype=torch.float64)

    penalty, new_mean = path_length_penalty(images, ws, pl_mean, decay=0.01, noise=y)

    jty = torch.einsum("nchw,kdchw->nkd", y / (h * w) ** 0.5, m)
    lengths = jty.square().sum(2).mean(1).sqrt()
    want_mean = 0.5 + 0.01 * (lengths.mean() - 0.5)
    want = (lengths - want_mean).square().mean()
    torch.testing.assert_close(new_mean.double(), want_mean, rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(penalty.double(), want, rtol=1e-6, atol=1e-9)
    assert not new_mean.requires_grad


def test_path_length_nonlinear_matches_full_jacobian():
    """A small nonlinear synthesis: compare with the explicit Jacobian from torch.autograd.functional."""
    g = torch.Generator().manual_seed(5)
    n, k, d, pix = 2, 3, 4, 6
    a = torch.randn(k * d, pix, generator=g, dtype=torch.float64)

    def synth(ws_one: torch.Tensor) -> torch.Tensor:  # [k, d] -> [1, 1, 2, 3]
        return torch.tanh(ws_one.reshape(-1) @ a).reshape(1, 1, 2, 3)

    ws = torch.randn(n, k, d, generator=g, dtype=torch.float64, requires_grad=True)
    images = torch.cat([synth(ws[i]) for i in range(n)])
    y = torch.randn(n, 1, 2, 3, generator=g, dtype=torch.float64)
    penalty, new_mean = path_length_penalty(images, ws, torch.tensor(0.0, dtype=torch.float64), noise=y)

    lengths = []
    for i in range(n):
        jac = torch.autograd.functional.jacobian(synth, ws[i].detach())  # [1,1,2,3,k,d]
        jty = torch.einsum("chw,chwkd->kd", y[i] / 6**0.5, jac[0])
        lengths.append(jty.square().sum(1).mean().sqrt())
    lengths = torch.stack(lengths)
    want_mean = 0.01 * lengths.mean()
    torch.testing.assert_close(new_mean.double(), want_mean, rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(penalty.double(), (lengths - want_mean).square().mean(), rtol=1e-6, atol=1e-9)


def test_path_length_penalty_backpropagates_to_generator_weights():
    w = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
    ws = torch.randn(2, 1, 4, dtype=torch.float64, requires_grad=True)
    images = torch.tanh(ws[:, 0] @ w).reshape(2, 1, 2, 3)
    penalty, _ = path_length_penalty(images, ws, torch.tensor(0.0, dtype=torch.float64))
    (gw,) = torch.autograd.grad(penalty, w)
    assert gw.abs().sum() > 0
